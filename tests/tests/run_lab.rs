//! `gomod-trace run -- go mod download` in the lab, one scenario per test: the
//! real Go command, real DNS, TLS and firewall rules. Needs root; under CI=true a
//! scenario that cannot run fails. Every scenario runs with each of
//! [`GO_TOOLCHAINS`] (Go 1.19 and 1.23). Run one at a time (`--test-threads=1`): they
//! share the kernel's tracing state and their timings matter.
use std::time::Duration;

use gomod_trace_lab::{
    with_each_go,
    DUAL_STACK_NAME, MODULES, PRIVATE_MODULE, PROXY_AUTH, PROXY_NAME, SERVFAIL_NAME,
    SILENT_NAME, SUMDB_NAME, TracedRun, only_build, serious_findings, serious_kinds, spans,
};
use serde_json::Value;

fn outcome(span: &Value) -> &str {
    span["outcome"].as_str().unwrap_or("")
}

/// The finding of `kind` in the run's build; fails with the waterfall if absent.
fn finding<'a>(run: &'a TracedRun, kind: &str) -> &'a Value {
    let build = only_build(&run.timeline);
    build["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} finding:\n{}", run.waterfall()))
}

/// Connect spans to `host`, which must exist and all have `role`.
fn connects_to<'a>(run: &'a TracedRun, host: &str, role: &str) -> Vec<&'a Value> {
    let build = only_build(&run.timeline);
    let connects: Vec<&Value> = spans(build, "connect").into_iter().filter(|c| c["host"] == host).collect();
    assert!(!connects.is_empty(), "no connect to {host}:\n{}", run.waterfall());
    for c in &connects {
        assert_eq!(c["role"], role, "role of {host}: {c:#}");
    }
    connects
}

/// Nothing of the secret, as given or base64-encoded (as in Proxy-Authorization),
/// in any output of the run.
fn assert_secret_absent(run: &TracedRun, secret: &str, encoded: &str) {
    let recording = std::fs::read_to_string(&run.events).expect("recording");
    for (what, text) in [
        ("timeline JSON", String::from_utf8_lossy(&run.json).into_owned()),
        ("recording", recording),
        ("text waterfall", run.waterfall()),
        ("stderr", run.stderr.clone()),
    ] {
        assert!(!text.contains(secret), "the secret appears in the {what}");
        assert!(!text.contains(encoded), "the encoded secret appears in the {what}");
    }
}

fn nft_table(chain: &str, hook: &str, rule: &str) -> String {
    format!("table inet gomod_trace_lab {{\n chain {chain} {{\n  type filter hook {hook} priority 0;\n  {rule}\n }}\n}}\n")
}

#[test]
fn clean_download_through_the_tls_proxy() {
    with_each_go("clean_download_through_the_tls_proxy", |lab, go| {
        let run = lab.traced_download(&format!("https://{PROXY_NAME}"), Duration::from_secs(120));
        assert!(
            run.status.success(),
            "go mod download failed: {}",
            run.stderr
        );
        let build = only_build(&run.timeline);
        assert_eq!(
            build["command"],
            serde_json::json!(["go", "mod", "download"])
        );
        assert_eq!(build["exit_code"], 0);
        assert_eq!(build["complete"], true, "{build:#}");
        assert_eq!(
            build["config"]["GOPROXY"],
            serde_json::json!({"value": format!("https://{PROXY_NAME}"), "source": "env"})
        );
        // Go 1.21+ ship their defaults in $GOROOT/go.env.
        let sumdb_source = if go == "1.19" {
            "default"
        } else {
            "goroot_go_env"
        };
        assert_eq!(
            build["config"]["GOSUMDB"],
            serde_json::json!({"value": "sum.golang.org", "source": sumdb_source})
        );
        assert_eq!(build["config"]["GONOSUMDB"]["value"], "lab.test");

        let dns = spans(build, "dns");
        let lookup = dns
            .iter()
            .find(|s| s["host"] == PROXY_NAME && s["attrs"]["qtype"] == "A")
            .expect("A lookup of the proxy");
        assert_eq!(outcome(lookup), "ok");
        assert_eq!(lookup["role"], "dns");
        assert_eq!(
            lookup["attrs"]["answers"],
            serde_json::json!([lab.ip_of(PROXY_NAME).to_string()])
        );

        let connects = spans(build, "connect");
        let to_proxy: Vec<_> = connects.iter().filter(|s| s["port"] == 443).collect();
        assert!(!to_proxy.is_empty(), "no connect to the proxy: {build:#}");
        for c in &to_proxy {
            assert_eq!(outcome(c), "ok");
            assert_eq!(c["role"], "proxy");
            assert_eq!(c["addr"], lab.ip_of(PROXY_NAME).to_string());
            assert_eq!(c["host"], PROXY_NAME, "connect named from the DNS answer");
        }
        let tls = spans(build, "tls");
        assert!(!tls.is_empty(), "no TLS handshake: {build:#}");
        for t in &tls {
            assert_eq!(t["role"], "proxy");
            assert_eq!(t["attrs"]["sni"], PROXY_NAME);
            assert_eq!(outcome(t), "ok", "{t:#}");
            assert_eq!(t["attrs"]["version"], "TLS1.3");
        }
        // The modules crossed the wire: the zips are in the transfer counters.
        let received: u64 = spans(build, "transfer")
            .iter()
            .filter_map(|t| t["attrs"]["bytes_received"].as_u64())
            .sum();
        assert!(
            received > (MODULES as u64) * 200,
            "only {received} bytes received"
        );
        // One module span per module, fetched through the proxy and extracted.
        let modules = spans(build, "module");
        assert_eq!(modules.len(), MODULES, "{}", run.waterfall());
        for i in 1..=MODULES {
            let name = format!("lab.test/mod{i:02}");
            let m = modules
                .iter()
                .find(|m| m["attrs"]["module"] == name.as_str())
                .unwrap_or_else(|| panic!("no span for {name}"));
            assert_eq!(m["attrs"]["version"], "v1.0.0");
            assert_eq!(
                (
                    outcome(m),
                    m["role"].as_str(),
                    m["attrs"]["source"].as_str()
                ),
                ("ok", Some("proxy"), Some("proxy"))
            );
            let files = m["attrs"]["files"].as_array().expect("files");
            // (Not the ziphash: the kernel does not record it, the zip's
            // rename says the same.)
            for part in ["info", "mod", "zip"] {
                assert!(
                    files.iter().any(|f| f == part),
                    "{name}: no {part} in {files:?}"
                );
            }
            assert_eq!(m["attrs"]["extracted"], true, "{m:#}");
            // go.mod, modNN.go, LICENSE: counted by the kernel.
            assert_eq!(m["attrs"]["files_extracted"], 3, "{m:#}");
        }
        // ... which recorded only the first file of each module directory.
        let recording = std::fs::read_to_string(&run.events).expect("recording");
        let extracted_opens = recording
            .lines()
            .filter(|l| l.contains(r#""event":"file""#) && l.contains(r#""op":"open""#) && l.contains("@v1.0.0/"))
            .count();
        assert_eq!(extracted_opens, MODULES, "one recorded file per extracted module");
        assert_eq!(
            serious_findings(build),
            Vec::<String>::new(),
            "{}",
            run.waterfall()
        );
        eprintln!("{}", run.waterfall());
    });
}

#[test]
fn credentials_in_goproxy_never_appear_in_any_output() {
    with_each_go(
        "credentials_in_goproxy_never_appear_in_any_output",
        |lab, _go| {
            let secret = "s3cretPassw0rd";
            let run = lab.traced_download(
                &format!("https://alice:{secret}@{PROXY_NAME}"),
                Duration::from_secs(120),
            );
            assert!(run.status.success(), "{}", run.stderr);
            let recording = std::fs::read_to_string(&run.events).expect("recording");
            for (what, text) in [
                (
                    "timeline JSON",
                    String::from_utf8_lossy(&run.json).into_owned(),
                ),
                ("recording", recording),
                ("text waterfall", run.waterfall()),
                ("stderr", run.stderr.clone()),
            ] {
                assert!(
                    !text.contains(secret),
                    "the GOPROXY password appears in the {what}"
                );
            }
        },
    );
}

/// Issue 15 §2: a credential anywhere in a build's argv (the second URL of a
/// GOPROXY list, header flags, a `.netrc` line, GOAUTH, a secret-named Go
/// flag), in its environment (the second and third URLs of GOPROXY) and in its
/// GOENV file (as `go env -w` wrote it) appears in no output: the recording, the timeline JSON,
/// every export format replayed from the recording, the text report and stderr.
/// The recording is the owner's only.
#[test]
fn credentials_in_any_url_of_a_list_header_or_netrc_never_appear_in_any_output() {
    use std::os::unix::fs::PermissionsExt as _;
    with_each_go(
        "credentials_in_any_url_of_a_list_header_or_netrc_never_appear_in_any_output",
        |lab, _go| {
            let secrets = [
                "ArgvSecondUrlPw1", "GoflagsTok2", "HeaderBearer3", "PrivTok4", "NetrcPw5", "NetrcLogin6",
                "GoauthArg7", "EnvSecondUrlPw8", "EnvThirdUrlTok9",
            ];
            let goenv = lab.path("goenv");
            std::fs::write(&goenv, "").unwrap();
            let script = format!(
                "go env -w 'GOPROXY=https://{PROXY_NAME},https://user:{}@corp.lab.test/go,direct' 'GOFLAGS=-mod=mod -ldflags=-X=main.apiToken={}'; \
                 go env -H 'Authorization: Bearer {}' --header='Private-Token: {}' 'machine corp.lab.test login {} password {}' 'GOAUTH=helper --token {}' 2>/dev/null; \
                 go mod download",
                secrets[0], secrets[1], secrets[2], secrets[3], secrets[5], secrets[4], secrets[6],
            );
            let goproxy = format!("https://{PROXY_NAME},https://user:{}@corp.lab.test/go|https://{}@third.lab.test,direct", secrets[7], secrets[8]);
            let report = lab.path("report.txt");
            let run = lab.traced_to(
                "text",
                &report,
                &["sh", "-c", &script],
                &[("GOPROXY", &goproxy), ("GOENV", goenv.to_str().unwrap())],
                &[],
                Duration::from_secs(180),
            );
            assert!(run.status.success(), "{}", run.stderr);
            let written = std::fs::read_to_string(&goenv).unwrap();
            assert!(written.contains(secrets[0]), "go env -w wrote the file the download reads: {written}");

            // Every output, and what each is.
            let mut outputs = vec![
                ("recording".to_string(), std::fs::read(&run.events).unwrap()),
                ("timeline JSON".to_string(), run.json.clone()),
                ("text report".to_string(), std::fs::read(&report).unwrap()),
                ("verbose text".to_string(), run.waterfall().into_bytes()),
                ("stderr".to_string(), run.stderr.clone().into_bytes()),
            ];
            for format in ["perfetto", "html", "otlp"] {
                let out = lab.path(&format!("export.{format}"));
                let replayed = std::process::Command::new(gomod_trace_lab::gomod_trace_bin())
                    .args(["replay", "--format", format, "--output"])
                    .arg(&out)
                    .arg(&run.events)
                    .output()
                    .expect("replay");
                assert!(replayed.status.success(), "replay {format}: {}", String::from_utf8_lossy(&replayed.stderr));
                outputs.push((format.to_string(), std::fs::read(&out).unwrap()));
            }
            let mut leaks = Vec::new();
            for (what, bytes) in &outputs {
                let text = String::from_utf8_lossy(bytes);
                leaks.extend(secrets.iter().filter(|secret| text.contains(*secret)).map(|secret| format!("{secret} in the {what}")));
            }
            assert!(leaks.is_empty(), "secrets appear: {leaks:#?}");

            // The positions were seen: the builds' argv, the config and the proxy.
            let json = String::from_utf8_lossy(&run.json);
            for shown in [
                "https://REDACTED@corp.lab.test/go",
                "Authorization: REDACTED",
                "--header=Private-Token: REDACTED",
                "machine corp.lab.test login REDACTED password REDACTED",
                "GOAUTH=helper REDACTED",
                "main.apiToken=REDACTED",
            ] {
                assert!(json.contains(shown), "the timeline shows {shown:?}:\n{json}");
            }
            let recording = String::from_utf8_lossy(&outputs[0].1);
            assert!(recording.contains("\"goenv_file\":{\"path\""), "the GOENV file was read: {recording}");
            let mode = std::fs::metadata(&run.events).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the recording is the owner's only");
        },
    );
}

/// The kernel summarises a module cache it knows by the name cmd/go uses for its
/// files: GOMODCACHE as written (here untidy: `//`, `.`, a trailing `/`) is
/// cleaned first, as cmd/go's path joins clean it. Opens that tell nothing (the
/// version list, the .partial creation, the .ziphash) are not recorded.
#[test]
fn an_untidy_gomodcache_is_summarised_as_cmd_go_names_it() {
    if !gomod_trace_lab::lab_available("an_untidy_gomodcache_is_summarised_as_cmd_go_names_it") {
        return;
    }
    let lab = gomod_trace_lab::Lab::start();
    let cache = lab.path("modcache");
    let untidy = format!("{}//./", cache.display()).replacen("/modcache", "//modcache", 1);
    let run = lab.traced_download_env(&[("GOMODCACHE", untidy.as_str())], Duration::from_secs(120));
    assert!(run.status.success(), "go mod download failed: {}", run.stderr);
    let build = only_build(&run.timeline);
    for m in spans(build, "module") {
        assert_eq!((m["attrs"]["extracted"].as_bool(), m["attrs"]["files_extracted"].as_u64()), (Some(true), Some(3)), "{m:#}");
    }
    let recording = std::fs::read_to_string(&run.events).expect("recording");
    let opens: Vec<&str> = recording.lines().filter(|l| l.contains(r#""event":"file""#) && l.contains(r#""op":"open""#)).collect();
    assert_eq!(opens.iter().filter(|l| l.contains("@v1.0.0/")).count(), MODULES, "one recorded file per module directory");
    for told_by_others in ["/@v/list\"", ".partial\"", ".ziphash\""] {
        assert!(!opens.iter().any(|l| l.contains(told_by_others)), "an open of {told_by_others} was recorded");
    }
}

#[test]
fn replay_of_the_recording_gives_the_same_json() {
    with_each_go("replay_of_the_recording_gives_the_same_json", |lab, _go| {
        let run = lab.traced_download(&format!("https://{PROXY_NAME}"), Duration::from_secs(120));
        let replayed = lab.path("replayed.json");
        let status = std::process::Command::new(gomod_trace_lab::gomod_trace_bin())
            .arg("replay")
            .arg(&run.events)
            .args(["--format", "json", "--output"])
            .arg(&replayed)
            .status()
            .expect("run replay");
        assert!(status.success());
        let replayed = std::fs::read(&replayed).expect("replayed timeline");
        assert!(
            run.json == replayed,
            "replay differs from the live timeline"
        );
    });
}

#[test]
fn proxy_name_does_not_resolve() {
    with_each_go("proxy_name_does_not_resolve", |lab, _go| {
        let run = lab.traced_download("https://missing.lab.test", Duration::from_secs(120));
        assert!(!run.status.success(), "go mod download should fail");
        let build = only_build(&run.timeline);
        assert_ne!(build["exit_code"], 0);
        let dns = spans(build, "dns");
        let failed: Vec<_> = dns
            .iter()
            .filter(|s| s["host"] == "missing.lab.test")
            .collect();
        assert!(
            !failed.is_empty(),
            "no lookup of missing.lab.test: {build:#}"
        );
        assert!(
            failed.iter().all(|s| outcome(s) == "nxdomain"),
            "{failed:#?}"
        );
        assert!(
            spans(build, "connect").iter().all(|c| c["port"] != 443),
            "nothing to connect to"
        );
        let findings = serious_findings(build);
        assert!(
            findings
                .iter()
                .any(|f| f.contains("dns_failure") && f.contains("missing.lab.test")),
            "{findings:?}"
        );
    });
}

#[test]
fn proxy_port_refuses() {
    with_each_go("proxy_port_refuses", |lab, _go| {
        let run = lab.traced_download(
            &format!("https://{PROXY_NAME}:8443"),
            Duration::from_secs(120),
        );
        assert!(!run.status.success());
        let build = only_build(&run.timeline);
        let refused: Vec<_> = spans(build, "connect")
            .into_iter()
            .filter(|c| c["port"] == 8443)
            .collect();
        assert!(!refused.is_empty(), "no connect to :8443: {build:#}");
        for c in &refused {
            assert_eq!(outcome(c), "refused", "{c:#}");
            assert_eq!(c["host"], PROXY_NAME);
        }
        let findings = serious_findings(build);
        assert!(
            findings.iter().any(|f| f.contains("connect_refused")),
            "{findings:?}"
        );
    });
}

#[test]
fn firewall_drops_packets_to_the_proxy() {
    with_each_go("firewall_drops_packets_to_the_proxy", |lab, _go| {
        // One module: cmd/go then makes one fetch, which costs one dial timeout.
        lab.require_modules(1);
        lab.client_firewall(&format!(
            "table inet gomod_trace_lab {{\n chain out {{\n  type filter hook output priority 0;\n  ip daddr {} tcp dport 443 drop\n }}\n}}\n",
            lab.ip_of(PROXY_NAME)
        ));
        let run = lab.traced_download(&format!("https://{PROXY_NAME}"), Duration::from_secs(150));
        assert!(!run.status.success());
        let build = only_build(&run.timeline);
        let dropped: Vec<_> = spans(build, "connect")
            .into_iter()
            .filter(|c| c["port"] == 443)
            .collect();
        assert!(!dropped.is_empty(), "no connect to the proxy: {build:#}");
        for c in &dropped {
            assert_eq!(outcome(c), "dropped", "{c:#}");
            assert_eq!(c["attrs"]["drop_reason"], "NETFILTER_DROP");
            assert!(
                c["attrs"]["syn_retransmits"].as_u64().unwrap_or(0) >= 1,
                "{c:#}"
            );
            // Go's dialer gives up after 30 s.
            let ms = c["duration_ms"].as_f64().unwrap_or(0.0);
            assert!((25_000.0..40_000.0).contains(&ms), "connect lasted {ms} ms");
        }
        let finding = build["findings"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["kind"] == "firewall_drop"))
            .unwrap_or_else(|| panic!("no firewall_drop finding: {build:#}"));
        assert_eq!(finding["severity"], "error");
        assert!(
            finding["cost_ms"].as_f64().unwrap_or(0.0) >= 25_000.0,
            "{finding:#}"
        );
    });
}

#[test]
fn goproxy_from_the_goenv_file_and_the_environment_overriding_it() {
    with_each_go(
        "goproxy_from_the_goenv_file_and_the_environment_overriding_it",
        |lab, _go| {
            let goenv = lab.path("goenv");
            std::fs::write(&goenv, format!("GOPROXY=https://{PROXY_NAME}\n")).unwrap();
            let goenv = goenv.to_str().unwrap();

            // As `go env -w GOPROXY=…` leaves it, with nothing in the environment.
            let run = lab.traced_download_env(
                &[("GOPROXY", ""), ("GOENV", goenv)],
                Duration::from_secs(120),
            );
            assert!(run.status.success(), "{}", run.stderr);
            let build = only_build(&run.timeline);
            assert_eq!(
                build["config"]["GOPROXY"],
                serde_json::json!({"value": format!("https://{PROXY_NAME}"), "source": "goenv_file"})
            );
            assert_eq!(
                build["config"]["GOENV"],
                serde_json::json!({"value": goenv, "source": "env"})
            );
            assert!(
                spans(build, "connect").iter().all(|c| c["role"] == "proxy"),
                "{}",
                run.waterfall()
            );

            // The agent's environment wins over the file (failure 15: the wrong proxy used).
            std::fs::write(lab.path("goenv"), "GOPROXY=https://elsewhere.lab.test\n").unwrap();
            let run = lab.traced_download_env(
                &[
                    ("GOPROXY", &format!("https://{PROXY_NAME}")),
                    ("GOENV", goenv),
                ],
                Duration::from_secs(120),
            );
            assert!(run.status.success(), "{}", run.stderr);
            let build = only_build(&run.timeline);
            assert_eq!(build["config"]["GOPROXY"]["source"], "env");
            assert!(
                serious_findings(build).is_empty(),
                "{:?}",
                serious_findings(build)
            );
        },
    );
}

#[test]
fn checksum_verification_turned_off_is_a_warning() {
    with_each_go(
        "checksum_verification_turned_off_is_a_warning",
        |lab, _go| {
            let run = lab.traced_download_env(
                &[("GOSUMDB", "off"), ("GONOSUMDB", "")],
                Duration::from_secs(120),
            );
            assert!(run.status.success(), "{}", run.stderr);
            let build = only_build(&run.timeline);
            let findings = serious_findings(build);
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert!(
                findings[0].contains("checksum_verification_disabled")
                    && findings[0].contains("GOSUMDB=off (from env)"),
                "{findings:?}"
            );
            let finding = &build["findings"][0];
            assert_eq!(finding["severity"], "warning");
        },
    );
}


#[test]
fn checksum_database_reached_directly_and_through_the_proxy() {
    with_each_go("checksum_database_reached_directly_and_through_the_proxy", |lab, _go| {
        lab.require_modules(2);
        let sumdb = lab.gosumdb();
        // Directly: proxy.lab.test answers 404 to /sumdb/<name>/supported.
        let run = lab.traced_download_env(&[("GOSUMDB", &sumdb), ("GONOSUMDB", "")], Duration::from_secs(120));
        assert!(run.status.success(), "{}", run.stderr);
        connects_to(&run, SUMDB_NAME, "sumdb");
        connects_to(&run, PROXY_NAME, "proxy");
        let build = only_build(&run.timeline);
        for m in spans(build, "module") {
            assert_eq!(m["attrs"]["sumdb_lookup"], SUMDB_NAME, "{m:#}");
        }
        assert_eq!(serious_kinds(&run), Vec::<String>::new(), "{}", run.waterfall());

        // Through a proxy that serves /sumdb/<name>/: no connection to the database.
        let run = lab.traced_download_env(
            &[("GOPROXY", "https://mirror.lab.test"), ("GOSUMDB", &sumdb), ("GONOSUMDB", "")],
            Duration::from_secs(120),
        );
        assert!(run.status.success(), "{}", run.stderr);
        let build = only_build(&run.timeline);
        assert!(spans(build, "connect").iter().all(|c| c["host"] != SUMDB_NAME), "{}", run.waterfall());
        for m in spans(build, "module") {
            assert_eq!(m["attrs"]["sumdb_lookup"], SUMDB_NAME, "{m:#}");
        }
        assert_eq!(serious_kinds(&run), Vec::<String>::new(), "{}", run.waterfall());
    });
}

#[test]
fn checksum_database_dropped_by_a_remote_firewall() {
    with_each_go("checksum_database_dropped_by_a_remote_firewall", |lab, _go| {
        lab.require_modules(1);
        // The far side drops packets to the database; the proxy stays reachable.
        lab.server_firewall(&nft_table("in", "input", &format!("ip daddr {} tcp dport 443 drop", lab.ip_of(SUMDB_NAME))));
        let sumdb = lab.gosumdb();
        let run = lab.traced_download_env(&[("GOSUMDB", &sumdb), ("GONOSUMDB", "")], Duration::from_secs(150));
        assert!(!run.status.success());
        assert!(run.stderr.contains("verifying"), "{}", run.stderr);
        connects_to(&run, PROXY_NAME, "proxy");
        for c in connects_to(&run, SUMDB_NAME, "sumdb") {
            assert_eq!(outcome(c), "timeout", "{c:#}");
            assert!(c["attrs"].get("drop_reason").is_none(), "no local drop: {c:#}");
        }
        let f = finding(&run, "sumdb_unreachable");
        assert_eq!(f["severity"], "error");
        assert!(f["message"].as_str().unwrap().contains(SUMDB_NAME), "{f:#}");
        assert!(f["cost_ms"].as_f64().unwrap() >= 25_000.0, "{f:#}");
        let f = finding(&run, "firewall_drop");
        assert!(f["message"].as_str().unwrap().contains("no local drop"), "remote, said so: {f:#}");
        assert_eq!(serious_kinds(&run), ["firewall_drop", "sumdb_unreachable"]);
    });
}

#[test]
fn proxy_answers_404_and_go_falls_back_to_git() {
    with_each_go("proxy_answers_404_and_go_falls_back_to_git", |lab, _go| {
        lab.require_modules(2);
        // Plain HTTP, as many internal proxies are: the 404s are visible.
        let run = lab.traced_download_env(&[("GOPROXY", "http://s404.lab.test,direct")], Duration::from_secs(120));
        assert!(run.status.success(), "{}", run.stderr);
        connects_to(&run, "s404.lab.test", "proxy");
        connects_to(&run, "git.lab.test", "vcs");
        let build = only_build(&run.timeline);
        for m in spans(build, "module") {
            assert_eq!((m["attrs"]["source"].as_str(), m["role"].as_str()), (Some("direct"), Some("vcs")), "{m:#}");
            let module = m["attrs"]["module"].as_str().unwrap();
            let name = module.rsplit('/').next().unwrap();
            assert_eq!(m["attrs"]["vcs_url"], format!("https://git.lab.test/{name}.git"), "{m:#}");
        }
        let f = finding(&run, "fallback_to_direct");
        let message = f["message"].as_str().unwrap();
        assert!(message.contains("2 module(s)") && message.contains("HTTP 404"), "{f:#}");
        assert!(f["cost_ms"].as_f64().unwrap() > 0.0, "{f:#}");
        assert_eq!(finding(&run, "http_error")["severity"], "info");
        assert_eq!(serious_kinds(&run), ["fallback_to_direct"]);
    });
}

#[test]
fn failing_private_proxy_falls_through_to_the_next() {
    with_each_go("failing_private_proxy_falls_through_to_the_next", |lab, _go| {
        lab.require_modules(2);
        // Over TLS: the go command's own requests show the 503 (uprobes).
        let run = lab.traced_download_env(
            &[("GOPROXY", &format!("https://s503.lab.test|https://{PROXY_NAME}"))],
            Duration::from_secs(120),
        );
        assert!(run.status.success(), "{}", run.stderr);
        connects_to(&run, "s503.lab.test", "proxy");
        connects_to(&run, PROXY_NAME, "proxy");
        let f = finding(&run, "proxy_fallthrough");
        let message = f["message"].as_str().unwrap();
        assert!(message.contains("from the proxy https://s503.lab.test") && message.contains(&format!("to https://{PROXY_NAME}")), "{f:#}");
        assert!(message.contains("which answered HTTP 503"), "{f:#}");
        assert!(finding(&run, "http_error")["message"].as_str().unwrap().starts_with("s503.lab.test answered HTTP 503"));
        assert_eq!(serious_kinds(&run), ["http_error", "proxy_fallthrough"]);

        // After `,` only 404/410 move on: a private proxy's 410 sends the module
        // paths to the next proxy all the same.
        let run = lab.traced_download_env(
            &[("GOPROXY", &format!("https://s410.lab.test,https://{PROXY_NAME}"))],
            Duration::from_secs(120),
        );
        assert!(run.status.success(), "{}", run.stderr);
        let message = finding(&run, "proxy_fallthrough")["message"].as_str().unwrap().to_string();
        assert!(message.contains("which answered HTTP 410"), "{message}");
        assert!(finding(&run, "proxy_fallthrough")["remedy"].as_str().unwrap().contains("GOPRIVATE"));
        assert_eq!(serious_kinds(&run), ["proxy_fallthrough"]);

        // Plain HTTP: the proxy's 401 is visible, and it falls through.
        let run = lab.traced_download_env(
            &[("GOPROXY", &format!("http://s401.lab.test|https://{PROXY_NAME}"))],
            Duration::from_secs(120),
        );
        assert!(run.status.success(), "{}", run.stderr);
        let f = finding(&run, "http_error");
        assert!(f["message"].as_str().unwrap().contains("HTTP 401"), "{f:#}");
        assert!(finding(&run, "proxy_fallthrough")["message"].as_str().unwrap().contains("401"));
        assert_eq!(serious_kinds(&run), ["http_error", "proxy_fallthrough"]);

        // Credentials the private proxy rejects (403 inside TLS) stay secret.
        let secret = "t0kenForPrivateProxy";
        let run = lab.traced_download_env(
            &[("GOPROXY", &format!("https://ci:{secret}@s403.lab.test|https://{PROXY_NAME}"))],
            Duration::from_secs(120),
        );
        assert!(run.status.success(), "{}", run.stderr);
        assert!(finding(&run, "proxy_fallthrough")["message"].as_str().unwrap().contains("which answered HTTP 403"));
        assert_eq!(serious_kinds(&run), ["http_error", "proxy_fallthrough"]);
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci:{secret}"));
        assert_secret_absent(&run, secret, &encoded);
    });
}

#[test]
fn private_module_not_in_goprivate_goes_to_the_checksum_database() {
    with_each_go("private_module_not_in_goprivate_goes_to_the_checksum_database", |lab, _go| {
        lab.require(&[PRIVATE_MODULE]);
        let sumdb = lab.gosumdb();
        let base = [("GOSUMDB", sumdb.as_str()), ("GONOSUMDB", ""), ("GOPROXY", "https://proxy.lab.test,direct")];
        let run = lab.traced_download_env(&base, Duration::from_secs(120));
        assert!(!run.status.success(), "the database does not know the private module");
        assert!(run.stderr.contains("verifying"), "{}", run.stderr);
        connects_to(&run, "git.lab.test", "vcs");
        connects_to(&run, SUMDB_NAME, "sumdb");
        let f = finding(&run, "private_module_leak");
        assert_eq!(f["severity"], "error");
        assert!(f["message"].as_str().unwrap().contains("git.lab.test"), "{f:#}");
        assert!(f["remedy"].as_str().unwrap().contains("GOPRIVATE=lab.test"), "{f:#}");
        // The database's answer, inside TLS, quoted; and an error of its own.
        assert!(f["message"].as_str().unwrap().contains("(GET /lookup/lab.test/private@v1.0.0: HTTP 404)"), "{f:#}");
        assert_eq!(serious_kinds(&run), ["fallback_to_direct", "http_error", "private_module_leak"]);

        // Listed in GOPRIVATE: direct by design, nothing asked of the database.
        let mut fixed = base.to_vec();
        fixed.push(("GOPRIVATE", PRIVATE_MODULE));
        let run = lab.traced_download_env(&fixed, Duration::from_secs(120));
        assert!(run.status.success(), "{}", run.stderr);
        let build = only_build(&run.timeline);
        assert!(spans(build, "connect").iter().all(|c| c["host"] != SUMDB_NAME), "{}", run.waterfall());
        assert_eq!(serious_kinds(&run), Vec::<String>::new(), "{}", run.waterfall());
    });
}

#[test]
fn remote_firewall_rejects_with_host_unreachable() {
    with_each_go("remote_firewall_rejects_with_host_unreachable", |lab, _go| {
        lab.require_modules(1);
        let rule = format!("ip daddr {} tcp dport 443 reject with icmpx host-unreachable", lab.ip_of(PROXY_NAME));
        lab.server_firewall(&nft_table("in", "input", &rule));
        let run = lab.traced_download(&format!("https://{PROXY_NAME}"), Duration::from_secs(120));
        assert!(!run.status.success());
        for c in connects_to(&run, PROXY_NAME, "proxy") {
            assert_eq!((outcome(c), c["attrs"]["error"].as_str()), ("unreachable", Some("EHOSTUNREACH")), "{c:#}");
        }
        assert_eq!(serious_kinds(&run), ["host_unreachable"]);
    });
}

#[test]
fn dns_servfail_and_no_answer() {
    with_each_go("dns_servfail_and_no_answer", |lab, _go| {
        lab.require_modules(1);
        let run = lab.traced_download(&format!("https://{SERVFAIL_NAME}"), Duration::from_secs(120));
        assert!(!run.status.success());
        let build = only_build(&run.timeline);
        let lookups: Vec<_> = spans(build, "dns").into_iter().filter(|s| s["host"] == SERVFAIL_NAME).collect();
        assert!(!lookups.is_empty() && lookups.iter().all(|s| outcome(s) == "servfail"), "{}", run.waterfall());
        assert!(finding(&run, "dns_failure")["message"].as_str().unwrap().contains("servfail"));
        assert_eq!(serious_kinds(&run), ["dns_failure"]);

        let run = lab.traced_download(&format!("https://{SILENT_NAME}"), Duration::from_secs(120));
        assert!(!run.status.success());
        let build = only_build(&run.timeline);
        let lookups: Vec<_> = spans(build, "dns").into_iter().filter(|s| s["host"] == SILENT_NAME).collect();
        assert!(!lookups.is_empty() && lookups.iter().all(|s| outcome(s) == "timeout"), "{}", run.waterfall());
        let f = finding(&run, "dns_failure");
        assert!(f["cost_ms"].as_f64().unwrap() >= 9_000.0, "Go waits 2 × 5 s: {f:#}");
        assert_eq!(serious_kinds(&run), ["dns_failure"]);
    });
}

#[test]
fn certificate_from_an_untrusted_ca() {
    with_each_go("certificate_from_an_untrusted_ca", |lab, _go| {
        lab.require_modules(1);
        let run = lab.traced_download("https://untrusted.lab.test", Duration::from_secs(120));
        assert!(!run.status.success());
        assert!(run.stderr.contains("x509"), "{}", run.stderr);
        let build = only_build(&run.timeline);
        let tls = spans(build, "tls");
        assert!(!tls.is_empty(), "{}", run.waterfall());
        for t in &tls {
            assert_eq!((outcome(t), t["attrs"]["alert_from"].as_str()), ("alert", Some("client")), "{t:#}");
            assert_eq!(t["host"], "untrusted.lab.test");
        }
        assert_eq!(serious_kinds(&run), ["tls_handshake_failure"]);
    });
}

#[test]
fn tls_handshake_that_never_answers() {
    with_each_go("tls_handshake_that_never_answers", |lab, _go| {
        lab.require_modules(1);
        let run = lab.traced_download("https://tarpit.lab.test", Duration::from_secs(120));
        assert!(!run.status.success());
        let f = finding(&run, "tls_timeout");
        let cost = f["cost_ms"].as_f64().unwrap();
        assert!((9_500.0..12_000.0).contains(&cost), "Go's 10 s handshake timeout: {f:#}");
        assert_eq!(serious_kinds(&run), ["tls_timeout"]);
    });
}

#[test]
fn proxy_stalls_mid_download() {
    with_each_go("proxy_stalls_mid_download", |lab, _go| {
        lab.require_modules(1);
        // cmd/go would wait forever; the CI step's timeout ends it after 9 s,
        // judged with a 5 s stall threshold (the default, 30 s, would not fire).
        let run = lab.traced_with(
            &["timeout", "-k", "2", "9", "go", "mod", "download"],
            &[("GOPROXY", "https://stall.lab.test")],
            &["--stall-threshold", "5s"],
            Duration::from_secs(60),
        );
        assert_eq!(run.status.code(), Some(124), "the step timed out: {}", run.stderr);
        let build = only_build(&run.timeline);
        let module = &spans(build, "module")[0];
        assert_eq!((outcome(module), module["attrs"]["incomplete_part"].as_str()), ("aborted", Some("zip")), "{module:#}");
        let f = finding(&run, "stalled_transfer");
        let message = f["message"].as_str().unwrap();
        assert!(message.contains("lab.test/mod01@v1.0.0") && message.contains("stall.lab.test"), "{f:#}");
        assert!(f["cost_ms"].as_f64().unwrap() >= 7_000.0, "{f:#}");
        assert_eq!(serious_kinds(&run), ["stalled_transfer"]);
    });
}

#[test]
fn slow_proxy() {
    with_each_go("slow_proxy", |lab, _go| {
        lab.require_modules(2);
        let run = lab.traced_download("https://slow.lab.test", Duration::from_secs(120));
        assert!(run.status.success(), "{}", run.stderr);
        let f = finding(&run, "slow_download");
        assert_eq!(f["severity"], "warning");
        let message = f["message"].as_str().unwrap();
        assert!(message.contains("2 module zip(s)") && message.contains("slow.lab.test delivered"), "{f:#}");
        assert_eq!(serious_kinds(&run), ["slow_download"]);
    });
}

#[test]
fn aaaa_answer_without_ipv6_connectivity() {
    with_each_go("aaaa_answer_without_ipv6_connectivity", |lab, _go| {
        lab.require_modules(2);
        let run = lab.traced_download(&format!("https://{DUAL_STACK_NAME}"), Duration::from_secs(120));
        assert!(run.status.success(), "{}", run.stderr);
        let build = only_build(&run.timeline);
        let v6: Vec<_> = spans(build, "connect").into_iter().filter(|c| c["addr"] == lab.unanswered_ipv6()).collect();
        assert!(!v6.is_empty(), "{}", run.waterfall());
        let f = finding(&run, "dual_stack_delay");
        let cost = f["cost_ms"].as_f64().unwrap();
        assert!((250.0..2_000.0).contains(&cost), "about Go's 300 ms fallback delay: {f:#}");
        assert_eq!(serious_kinds(&run), ["dual_stack_delay"]);
    });
}

#[test]
fn https_proxy_tunnels_and_refuses_wrong_credentials() {
    with_each_go("https_proxy_tunnels_and_refuses_wrong_credentials", |lab, _go| {
        lab.require_modules(2);
        let (user, password) = PROXY_AUTH;
        let run = lab.traced_download_env(
            &[("HTTPS_PROXY", &format!("http://{user}:{password}@authproxy.lab.test:3128"))],
            Duration::from_secs(120),
        );
        assert!(run.status.success(), "{}", run.stderr);
        connects_to(&run, "authproxy.lab.test", "https_proxy");
        let build = only_build(&run.timeline);
        let tunnels: Vec<_> = spans(build, "http").into_iter().filter(|h| h["attrs"]["method"] == "CONNECT").collect();
        assert!(!tunnels.is_empty(), "{}", run.waterfall());
        for h in &tunnels {
            assert_eq!((h["role"].as_str(), h["attrs"]["target"].as_str()), (Some("https_proxy"), Some("proxy.lab.test:443")));
            assert_eq!(h["attrs"]["status"], 200);
        }
        // The TLS inside the tunnel is the module proxy's.
        assert!(spans(build, "tls").iter().all(|t| t["host"] == PROXY_NAME && t["role"] == "proxy"));
        assert_eq!(serious_kinds(&run), Vec::<String>::new(), "{}", run.waterfall());
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        assert_secret_absent(&run, password, &encoded);

        let wrong = "wr0ngPassw0rd";
        let run = lab.traced_download_env(
            &[("HTTPS_PROXY", &format!("http://{user}:{wrong}@authproxy.lab.test:3128"))],
            Duration::from_secs(120),
        );
        assert!(!run.status.success());
        let f = finding(&run, "http_proxy_failure");
        assert_eq!(f["severity"], "error");
        assert!(f["message"].as_str().unwrap().contains("407"), "{f:#}");
        assert_eq!(serious_kinds(&run), ["http_proxy_failure"]);
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{wrong}"));
        assert_secret_absent(&run, wrong, &encoded);
    });
}

