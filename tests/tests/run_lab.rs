//! `gomod-trace run -- go mod download` in the lab, one scenario per test: the
//! real Go command, real DNS, TLS and firewall rules. Needs root; under CI=true a
//! scenario that cannot run fails. Every scenario runs with each of
//! [`GO_TOOLCHAINS`] (Go 1.19 and 1.23). Run one at a time (`--test-threads=1`): they
//! share the kernel's tracing state and their timings matter.
use std::time::Duration;

use gomod_trace_lab::{
    GO_TOOLCHAINS, Lab, MODULES, PROXY_NAME, lab_available, only_build, serious_findings, spans,
};
use serde_json::Value;

/// Runs a scenario in one lab with each Go toolchain; skips (or, under CI=true,
/// fails) when the lab cannot run here.
fn with_each_go(test: &str, mut scenario: impl FnMut(&mut Lab, &str)) {
    if !lab_available(test) {
        return;
    }
    let mut lab = Lab::start();
    for (go, dir) in GO_TOOLCHAINS {
        lab.use_go(dir);
        eprintln!("{test} with Go {go}");
        scenario(&mut lab, go);
    }
}

fn outcome(span: &Value) -> &str {
    span["outcome"].as_str().unwrap_or("")
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
            serde_json::json!([lab.server_ip.to_string()])
        );

        let connects = spans(build, "connect");
        let to_proxy: Vec<_> = connects.iter().filter(|s| s["port"] == 443).collect();
        assert!(!to_proxy.is_empty(), "no connect to the proxy: {build:#}");
        for c in &to_proxy {
            assert_eq!(outcome(c), "ok");
            assert_eq!(c["role"], "proxy");
            assert_eq!(c["addr"], lab.server_ip.to_string());
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
            for part in ["info", "mod", "zip", "ziphash"] {
                assert!(
                    files.iter().any(|f| f == part),
                    "{name}: no {part} in {files:?}"
                );
            }
            assert_eq!(m["attrs"]["extracted"], true, "{m:#}");
        }
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
            lab.server_ip
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
