//! Smoke tests of the lab's variants (README, "The lab"): each works for real, with
//! the real `go` (every toolchain of [`GO_TOOLCHAINS`]) under `gomod-trace run`.
//! They assert only what the lab guarantees (exit status, that the download worked
//! or failed, that a timeline was written, what the lab's own programs print),
//! never the tracer's findings: run_lab.rs does that. Needs root, like every lab
//! test; run one at a time: `cargo test -p gomod-trace-lab --test
//! lab_variants_smoke -- --test-threads=1` (add `--nocapture` to see what cmd/go
//! printed, how long each run took and which DNS queries each resolver got; with
//! LAB_SMOKE_WATERFALL=1 also each run's text waterfall).
use std::{process::Command, time::Duration};

use gomod_trace_lab::{
    EMPTY_AAAA_RESOLVER, GO_TOOLCHAINS, GONE_MODULE, GONE_NAME, H1_PROXY_NAME, Lab, PROXY_ALT_PORT, PROXY_NAME,
    REFUSE_AAAA_RESOLVER, SILENT_RESOLVER, SUMDB_NAME, TracedRun, lab_available,
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a scenario in one lab with each Go toolchain; the resolvers and firewalls
/// go back to the lab's defaults after each.
fn with_each_go(test: &str, mut scenario: impl FnMut(&mut Lab, &str)) {
    if !lab_available(test) {
        return;
    }
    let mut lab = Lab::start();
    for (go, dir) in GO_TOOLCHAINS {
        lab.use_go(dir);
        eprintln!("== {test} with Go {go}");
        scenario(&mut lab, go);
        lab.clear_firewalls();
        lab.default_resolvers();
    }
}

/// What a run left that a reader of this test's output wants: time, status, stderr.
fn show(what: &str, run: &TracedRun) {
    eprintln!("-- {what}: {:?} in {:.1} s\n{}", run.status, run.elapsed.as_secs_f64(), run.stderr.trim_end());
    if std::env::var_os("LAB_SMOKE_WATERFALL").is_some() {
        eprintln!("{}", run.waterfall());
    }
    assert!(run.timeline["builds"].is_array(), "the timeline has builds: {}", String::from_utf8_lossy(&run.json));
}

fn downloaded(what: &str, run: &TracedRun) {
    show(what, run);
    assert!(run.status.success(), "{what}: the download failed: {}", run.stderr);
}

fn failed(what: &str, run: &TracedRun) {
    show(what, run);
    assert!(!run.status.success(), "{what}: the download should fail");
}

/// labd's log lines about DNS queries since the last call (the log only grows).
fn dns_log(lab: &Lab, seen: &mut usize) -> Vec<String> {
    let log = std::fs::read_to_string(lab.path("lab-labd.out")).unwrap_or_default();
    let lines: Vec<String> = log.lines().filter(|l| l.contains(" dns ")).map(str::to_string).collect();
    let new = lines[(*seen).min(lines.len())..].to_vec();
    *seen = lines.len();
    new
}

fn nft_table(chain: &str, hook: &str, rules: &str) -> String {
    format!(
        "table inet gomod_trace_lab {{\n chain {chain} {{\n  type filter hook {hook} priority 0;\n  {rules}\n }}\n}}\n"
    )
}

#[test]
fn resolvers_that_refuse_or_empty_aaaa() {
    let mut seen = 0;
    with_each_go("resolvers_that_refuse_or_empty_aaaa", |lab, _go| {
        lab.require_modules(2);
        for resolver in [REFUSE_AAAA_RESOLVER, EMPTY_AAAA_RESOLVER] {
            lab.set_resolvers(&[lab.ip_of(resolver)]);
            let run = lab.traced_download(&format!("https://{PROXY_NAME}"), TIMEOUT);
            downloaded(resolver, &run);
            let queries = dns_log(lab, &mut seen);
            eprintln!("{}", queries.join("\n"));
            assert!(
                queries.iter().any(|q| q.contains(&format!("{PROXY_NAME} type 28"))),
                "an AAAA query reached {resolver}"
            );
        }
        // A name the lab does not have: NXDOMAIN, the download fails.
        lab.set_resolvers(&[lab.ip_of(REFUSE_AAAA_RESOLVER)]);
        let run = lab.traced_download("https://missing.lab.test", TIMEOUT);
        failed("unknown name through refuse-aaaa", &run);
        eprintln!("{}", dns_log(lab, &mut seen).join("\n"));
    });
}

#[test]
fn dead_resolver_before_a_good_one() {
    let mut seen = 0;
    with_each_go("dead_resolver_before_a_good_one", |lab, _go| {
        lab.require_modules(2);
        // One that never answers, then dnsmasq.
        lab.set_resolvers(&[lab.ip_of(SILENT_RESOLVER), lab.server_ip]);
        let run = lab.traced_download(&format!("https://{PROXY_NAME}"), TIMEOUT);
        downloaded("silent resolver first", &run);
        eprintln!("{}", dns_log(lab, &mut seen).join("\n"));
        // An address nobody has (no neighbour), then dnsmasq.
        lab.set_resolvers(&[lab.unused_ip(), lab.server_ip]);
        let run = lab.traced_download(&format!("https://{PROXY_NAME}"), TIMEOUT);
        downloaded("unused address first", &run);
        // The good one first: no delay.
        lab.set_resolvers(&[lab.server_ip, lab.ip_of(SILENT_RESOLVER)]);
        let run = lab.traced_download(&format!("https://{PROXY_NAME}"), TIMEOUT);
        downloaded("silent resolver second", &run);
        let queries = dns_log(lab, &mut seen);
        assert!(queries.is_empty(), "the second resolver was not asked: {queries:?}");
    });
}

#[test]
fn proxy_on_a_non_default_port_by_name_and_by_address() {
    with_each_go("proxy_on_a_non_default_port_by_name_and_by_address", |lab, _go| {
        lab.require_modules(2);
        let bare = format!("{PROXY_NAME}:{PROXY_ALT_PORT}");
        downloaded(&bare, &lab.traced_download(&bare, TIMEOUT));
        let literal = format!("https://{}:{PROXY_ALT_PORT}", lab.ip_of(PROXY_NAME));
        downloaded(&literal, &lab.traced_download(&literal, TIMEOUT));
        // Only the second port can answer: 443 is dropped.
        lab.server_firewall(&nft_table(
            "in",
            "input",
            &format!("ip daddr {} tcp dport 443 drop", lab.ip_of(PROXY_NAME)),
        ));
        downloaded("by name, 443 dropped", &lab.traced_download(&bare, TIMEOUT));
    });
}

#[test]
fn two_goproxy_entries_on_one_host() {
    with_each_go("two_goproxy_entries_on_one_host", |lab, _go| {
        lab.require_modules(2);
        let fall_through = "http://proxy.lab.test/gone,http://proxy.lab.test/a";
        downloaded(fall_through, &lab.traced_download(fall_through, TIMEOUT));
        let clean = "https://proxy.lab.test/a|https://proxy.lab.test/b";
        downloaded(clean, &lab.traced_download(clean, TIMEOUT));
        let gone = "https://proxy.lab.test/gone";
        failed(gone, &lab.traced_download(gone, TIMEOUT));
        // 503 stops a comma list and falls through a pipe.
        let stop = "https://proxy.lab.test/status-503,https://proxy.lab.test/a";
        failed(stop, &lab.traced_download(stop, TIMEOUT));
        let pipe = "https://proxy.lab.test/status-503|https://proxy.lab.test/a";
        downloaded(pipe, &lab.traced_download(pipe, TIMEOUT));

        // The checksum database under a prefix: through the mirror only (the
        // database itself is dropped)...
        let sumdb = lab.gosumdb();
        lab.server_firewall(&nft_table(
            "in",
            "input",
            &format!("ip daddr {} tcp dport 443 drop", lab.ip_of(SUMDB_NAME)),
        ));
        let run = lab.traced_download_env(
            &[("GOPROXY", "https://mirror.lab.test/a"), ("GOSUMDB", &sumdb), ("GONOSUMDB", "")],
            TIMEOUT,
        );
        downloaded("sumdb through mirror.lab.test/a", &run);
        lab.clear_firewalls();
        // ...and directly, after <proxy>/a/sumdb/<name>/supported answered 404.
        let run = lab.traced_download_env(
            &[("GOPROXY", "https://proxy.lab.test/a"), ("GOSUMDB", &sumdb), ("GONOSUMDB", "")],
            TIMEOUT,
        );
        downloaded("sumdb directly after proxy.lab.test/a", &run);
    });
}

/// Packets with FIN or RST from the client to `ip` the server namespace counted.
fn counted_fin_rst(lab: &Lab, ip: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.server_ns, "nft", "list", "ruleset"])
        .output()
        .expect("nft list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(ip) && l.contains("counter"))
        .map(|l| l.trim().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn stall_over_plain_http() {
    with_each_go("stall_over_plain_http", |lab, _go| {
        lab.require_modules(1);
        let ip = lab.ip_of("stall.lab.test").to_string();
        // Observation only: what the client's kernel sends once go is killed.
        lab.server_firewall(&nft_table(
            "in",
            "input",
            &format!("ip daddr {ip} tcp flags & fin == fin counter\n  ip daddr {ip} tcp flags & rst == rst counter"),
        ));
        lab.server_firewall(&nft_table(
            "out",
            "output",
            &format!("ip saddr {ip} tcp flags & fin == fin counter\n  ip saddr {ip} tcp flags & rst == rst counter"),
        ));
        for proxy in ["http://stall.lab.test", "https://stall.lab.test"] {
            let run = lab.traced(
                &["timeout", "-k", "2", "8", "go", "mod", "download"],
                &[("GOPROXY", proxy)],
                Duration::from_secs(60),
            );
            show(proxy, &run);
            assert_eq!(run.status.code(), Some(124), "{proxy}: the step timed out: {}", run.stderr);
            assert!(run.elapsed >= Duration::from_secs(8), "{proxy}: it stalled until the timeout");
            eprintln!("FIN/RST counted so far:\n{}", counted_fin_rst(lab, &ip));
        }
    });
}

#[test]
fn module_host_whose_discovery_is_refused() {
    with_each_go("module_host_whose_discovery_is_refused", |lab, _go| {
        // The control: GIT_TRACE shows that git ran when cmd/go falls back to git.
        lab.require_modules(1);
        let trace = lab.path("git-trace.log");
        let trace_env = trace.display().to_string();
        let _ = std::fs::remove_file(&trace);
        let run =
            lab.traced_download_env(&[("GOPROXY", "https://s404.lab.test,direct"), ("GIT_TRACE", &trace_env)], TIMEOUT);
        downloaded("control: mod01 from git", &run);
        assert!(trace.exists(), "git ran and wrote its trace");
        let _ = std::fs::remove_file(&trace);

        lab.require(&[GONE_MODULE]);
        let run =
            lab.traced_download_env(&[("GOPROXY", "https://s404.lab.test,direct"), ("GIT_TRACE", &trace_env)], TIMEOUT);
        failed(GONE_MODULE, &run);
        assert!(
            run.stderr.contains(&format!("https://{GONE_NAME}/x?go-get=1"))
                && run.stderr.contains("connection refused"),
            "discovery was refused: {}",
            run.stderr
        );
        assert!(!trace.exists(), "git never started");
    });
}

/// The protocol the server at `name`:443 selects (ALPN) when offered h2 and http/1.1.
fn negotiated_alpn(lab: &Lab, name: &str) -> Option<String> {
    let out = Command::new("timeout")
        .args(["10", "ip", "netns", "exec", &lab.client_ns, "openssl", "s_client", "-alpn", "h2,http/1.1"])
        .args(["-connect", &format!("{}:443", lab.ip_of(name)), "-servername", name, "-CAfile"])
        .arg(lab.path("ca.pem"))
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("ALPN protocol: ").map(str::to_string))
}

#[test]
fn http1_only_proxy() {
    let openssl = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    with_each_go("http1_only_proxy", |lab, _go| {
        if openssl {
            assert_eq!(negotiated_alpn(lab, H1_PROXY_NAME).as_deref(), Some("http/1.1"));
            assert_eq!(negotiated_alpn(lab, PROXY_NAME).as_deref(), Some("h2"), "the other TLS servers speak h2");
        } else {
            eprintln!("(openssl is not installed: ALPN not checked)");
        }
        lab.require_modules(2);
        let h1 = format!("https://{H1_PROXY_NAME}");
        downloaded(&h1, &lab.traced_download(&h1, TIMEOUT));
        let run = lab.traced_download_env(
            &[("GOPROXY", &format!("https://{PROXY_NAME}")), ("GODEBUG", "http2client=0")],
            TIMEOUT,
        );
        downloaded("GODEBUG=http2client=0", &run);
    });
}

#[test]
fn concurrent_connects_of_one_process_fail_each_their_own_way() {
    with_each_go("concurrent_connects_of_one_process_fail_each_their_own_way", |lab, _go| {
        let (refused, unreachable, fine) = (lab.ip_of(GONE_NAME), lab.ip_of(PROXY_NAME), lab.ip_of("mirror.lab.test"));
        let rule = format!("ip daddr {unreachable} tcp dport 443 reject with icmpx host-unreachable");
        lab.server_firewall(&nft_table("in", "input", &rule));
        // The last: an address nobody has (no neighbour answers ARP).
        let addrs = [
            format!("{refused}:443"),
            format!("{unreachable}:443"),
            format!("{fine}:443"),
            format!("{}:443", lab.unused_ip()),
        ];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let run = lab.traced_dialer(&addrs, &[], Duration::from_secs(60));
        show("lab-dialer", &run);
        eprintln!("{}", run.stdout);
        assert!(run.status.success(), "the dialer exits 0: {}", run.stderr);
        let lines: Vec<&str> = run.stdout.lines().filter(|l| l.contains('\t')).collect();
        assert_eq!(lines.len(), 4, "one line per address: {}", run.stdout);
        assert!(lines[0].starts_with(addrs[0]) && lines[0].contains("connection refused"), "{}", lines[0]);
        assert!(lines[1].starts_with(addrs[1]) && lines[1].contains("no route to host"), "{}", lines[1]);
        assert!(lines[3].starts_with(addrs[3]) && lines[3].contains("no route to host"), "{}", lines[3]);
        assert!(lines[2].starts_with(addrs[2]) && lines[2].contains("\tok\t"), "{}", lines[2]);
    });
}
