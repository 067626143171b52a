//! Lab variants that break the lab's own assumptions (README, "The lab"), each
//! with the exact findings the tracer must give and, beside it, the variant that
//! must give none: a resolver that refuses or empties AAAA, a dead resolver
//! first, a proxy given as `host:port` and as an address, two GOPROXY entries on
//! one host, an HTTPS_PROXY that is down or given as an address, a direct fetch
//! that dies at its `?go-get=1` discovery with no git, a stall that nothing ends,
//! an HTTP/1.1-only proxy, and concurrent connects of one process that fail each
//! their own way. Every scenario runs with the real `go` of each of
//! [`GO_TOOLCHAINS`]. Needs root; run one at a time (`--test-threads=1`).
use std::{process::Command, time::Duration};

use gomod_trace_lab::{
    with_each_go,
    EMPTY_AAAA_RESOLVER, GONE_MODULE, GONE_NAME, H1_PROXY_NAME, Lab, PROXY_ALT_PORT, PROXY_NAME,
    REFUSE_AAAA_RESOLVER, SILENT_RESOLVER, SUMDB_NAME, TracedRun, only_build, serious_kinds, spans,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Asserts the exact set of error and warning finding kinds, with the waterfall
/// when it differs.
fn assert_findings(what: &str, run: &TracedRun, expected: &[&str]) {
    assert_eq!(serious_kinds(run), expected, "{what}: {}\n{}", run.stderr, run.waterfall());
}

fn finding<'a>(run: &'a TracedRun, kind: &str) -> &'a Value {
    only_build(&run.timeline)["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} finding:\n{}", run.waterfall()))
}

fn downloaded(what: &str, run: &TracedRun) {
    assert!(run.status.success(), "{what}: the download failed: {}", run.stderr);
}

fn failed(what: &str, run: &TracedRun) {
    assert!(!run.status.success(), "{what}: the download should fail");
}

fn nft_table(chain: &str, hook: &str, rules: &str) -> String {
    format!(
        "table inet gomod_trace_lab {{\n chain {chain} {{\n  type filter hook {hook} priority 0;\n  {rules}\n }}\n}}\n"
    )
}

/// Every connect of the run on `port`, which must exist.
fn connects_on(run: &TracedRun, port: u16) -> Vec<&Value> {
    let connects: Vec<&Value> =
        spans(only_build(&run.timeline), "connect").into_iter().filter(|c| c["port"] == port).collect();
    assert!(!connects.is_empty(), "no connect on port {port}:\n{}", run.waterfall());
    connects
}

#[test]
fn resolvers_that_refuse_or_empty_aaaa() {
    with_each_go("resolvers_that_refuse_or_empty_aaaa", |lab, _go| {
        lab.require_modules(2);
        for resolver in [REFUSE_AAAA_RESOLVER, EMPTY_AAAA_RESOLVER] {
            lab.set_resolvers(&[lab.ip_of(resolver)]);
            let run = lab.traced_download(&format!("https://{PROXY_NAME}"), TIMEOUT);
            downloaded(resolver, &run);
            assert_findings(resolver, &run, &[]);
            let build = only_build(&run.timeline);
            let aaaa: Vec<&Value> =
                spans(build, "dns").into_iter().filter(|d| d["attrs"]["qtype"] == "AAAA").collect();
            assert!(!aaaa.is_empty(), "{}", run.waterfall());
            for d in aaaa {
                assert_eq!(d["attrs"]["name_resolved"], true, "{resolver}: noted, not flagged: {d:#}");
                assert_eq!(d["attrs"]["rcode"], if resolver == REFUSE_AAAA_RESOLVER { "REFUSED" } else { "NOERROR" });
            }
            for c in connects_on(&run, 443) {
                assert_eq!((c["role"].as_str(), c["host"].as_str()), (Some("proxy"), Some(PROXY_NAME)));
            }
        }
        // A name nobody has: NXDOMAIN for A, REFUSED for AAAA: that is a failure.
        lab.set_resolvers(&[lab.ip_of(REFUSE_AAAA_RESOLVER)]);
        let run = lab.traced_download("https://missing.lab.test", TIMEOUT);
        failed("unknown name", &run);
        assert_findings("unknown name", &run, &["dns_failure"]);
        let f = finding(&run, "dns_failure");
        assert_eq!(f["severity"], "error");
        assert!(f["message"].as_str().unwrap().contains("missing.lab.test"), "{f:#}");
    });
}

#[test]
fn a_dead_resolver_before_a_good_one_costs_its_timeout() {
    with_each_go("a_dead_resolver_before_a_good_one_costs_its_timeout", |lab, _go| {
        lab.require_modules(2);
        for (what, dead) in [("a resolver that never answers", lab.ip_of(SILENT_RESOLVER)), ("an address nobody has", lab.unused_ip())] {
            lab.set_resolvers(&[dead, lab.server_ip]);
            let run = lab.traced_download(&format!("https://{PROXY_NAME}"), TIMEOUT);
            downloaded(what, &run);
            assert_findings(what, &run, &["dns_failure"]);
            let f = finding(&run, "dns_failure");
            assert_eq!(f["severity"], "warning", "the name resolved: {f:#}");
            assert!(f["message"].as_str().unwrap().contains(&format!("{dead}:53")), "{f:#}");
            let cost = f["cost_ms"].as_f64().unwrap();
            assert!((4_500.0..6_000.0).contains(&cost), "Go's 5 s per try: {f:#}");
        }
        // The good one first: the second is never asked, nothing is lost.
        lab.set_resolvers(&[lab.server_ip, lab.ip_of(SILENT_RESOLVER)]);
        let run = lab.traced_download(&format!("https://{PROXY_NAME}"), TIMEOUT);
        downloaded("good resolver first", &run);
        assert_findings("good resolver first", &run, &[]);
    });
}

#[test]
fn a_proxy_given_as_host_port_and_as_an_address() {
    with_each_go("a_proxy_given_as_host_port_and_as_an_address", |lab, _go| {
        lab.require_modules(2);
        let ip = lab.ip_of(PROXY_NAME);
        // 443 dropped: only the configured port can be what the build uses.
        lab.server_firewall(&nft_table("in", "input", &format!("ip daddr {ip} tcp dport 443 drop")));
        let bare = format!("{PROXY_NAME}:{PROXY_ALT_PORT}");
        let literal = format!("https://{ip}:{PROXY_ALT_PORT}");
        for (goproxy, entry) in [
            (bare.clone(), format!("GOPROXY[1] https://{bare}")),
            (literal.clone(), format!("GOPROXY[1] {literal}")),
        ] {
            let run = lab.traced_download(&goproxy, TIMEOUT);
            downloaded(&goproxy, &run);
            assert_findings(&goproxy, &run, &[]);
            for c in connects_on(&run, PROXY_ALT_PORT) {
                assert_eq!((c["role"].as_str(), c["attrs"]["entry"].as_str()), (Some("proxy"), Some(entry.as_str())), "{c:#}");
            }
        }
        lab.clear_firewalls();
        // An address-literal proxy that refuses: the refusal is the proxy's.
        let refused = format!("https://{ip}:8443");
        let run = lab.traced_download(&refused, TIMEOUT);
        failed(&refused, &run);
        assert_findings(&refused, &run, &["connect_refused"]);
        for c in connects_on(&run, 8443) {
            assert_eq!((c["role"].as_str(), c["outcome"].as_str()), (Some("proxy"), Some("refused")));
        }
    });
}

#[test]
fn two_goproxy_entries_on_one_host() {
    with_each_go("two_goproxy_entries_on_one_host", |lab, _go| {
        lab.require_modules(2);
        // Plain HTTP: the paths tell the entries apart, and the 404s show.
        let through = "http://proxy.lab.test/gone,http://proxy.lab.test/a";
        let run = lab.traced_download(through, TIMEOUT);
        downloaded(through, &run);
        assert_findings(through, &run, &["proxy_fallthrough"]);
        let message = finding(&run, "proxy_fallthrough")["message"].as_str().unwrap().to_string();
        assert!(message.contains("HTTP 404") && message.contains("/gone (GOPROXY entry 1)") && message.contains("/a (entry 2)"), "{message}");
        let http = spans(only_build(&run.timeline), "http");
        assert!(http.iter().any(|h| h["attrs"]["entry"] == "GOPROXY[1] http://proxy.lab.test/gone" && h["attrs"]["status"] == 404));
        assert!(http.iter().any(|h| h["attrs"]["entry"] == "GOPROXY[2] http://proxy.lab.test/a" && h["attrs"]["status"] == 200));
        // TLS: one host and port serve both entries; nothing tells them apart, so
        // a clean build is not called a fall-through.
        let clean = "https://proxy.lab.test/a|https://proxy.lab.test/b";
        let run = lab.traced_download(clean, TIMEOUT);
        downloaded(clean, &run);
        assert_findings(clean, &run, &[]);
        assert!(connects_on(&run, 443).iter().all(|c| c["role"] == "proxy" && c["attrs"]["entry_candidates"].is_array()));

        // With the checksum database in use, cmd/go asks each entry whether it
        // serves it (/sumdb/<name>/supported): the second entry is contacted
        // although the first had every module. Not a fall-through.
        let sumdb = lab.gosumdb();
        let run = lab.traced_download_env(
            &[("GOPROXY", "https://proxy.lab.test/a,https://mirror.lab.test/a"), ("GOSUMDB", &sumdb), ("GONOSUMDB", "")],
            TIMEOUT,
        );
        downloaded("sumdb through the second entry", &run);
        assert_findings("sumdb through the second entry", &run, &[]);
        // The database under a prefix, directly after <proxy>/a/sumdb/… said 404.
        let run = lab.traced_download_env(&[("GOPROXY", "https://proxy.lab.test/a"), ("GOSUMDB", &sumdb), ("GONOSUMDB", "")], TIMEOUT);
        downloaded("sumdb directly", &run);
        assert_findings("sumdb directly", &run, &[]);
        assert!(spans(only_build(&run.timeline), "connect").iter().any(|c| c["host"] == SUMDB_NAME && c["role"] == "sumdb"));
    });
}

#[test]
fn https_proxy_down_or_given_as_an_address() {
    with_each_go("https_proxy_down_or_given_as_an_address", |lab, _go| {
        lab.require_modules(2);
        let web = lab.ip_of("webproxy.lab.test");
        // Given as an address (no DNS name to go by), it works: clean.
        let by_address = format!("http://{web}:3128");
        let run = lab.traced_download_env(&[("HTTPS_PROXY", &by_address)], TIMEOUT);
        downloaded(&by_address, &run);
        assert_findings(&by_address, &run, &[]);
        for c in connects_on(&run, 3128) {
            assert_eq!((c["role"].as_str(), c["attrs"]["target_role"].as_str()), (Some("https_proxy"), Some("proxy")), "{c:#}");
            assert_eq!(c["host"], Value::Null, "the proxy's address is not named after the tunnel's target: {c:#}");
        }
        assert!(spans(only_build(&run.timeline), "tls").iter().all(|t| t["role"] == "proxy" && t["host"] == PROXY_NAME));
        // Down (nothing listens on its port): an HTTP proxy failure, not a refused proxy.
        let down = format!("http://{web}:3129");
        let run = lab.traced_download_env(&[("HTTPS_PROXY", &down)], TIMEOUT);
        failed(&down, &run);
        assert_findings(&down, &run, &["http_proxy_failure"]);
        assert!(finding(&run, "http_proxy_failure")["message"].as_str().unwrap().contains("could not be reached (refused)"));
        for c in connects_on(&run, 3129) {
            assert_eq!(c["role"], "https_proxy");
        }
    });
}

#[test]
fn a_direct_fetch_that_dies_at_discovery_with_no_git() {
    with_each_go("a_direct_fetch_that_dies_at_discovery_with_no_git", |lab, _go| {
        lab.require(&[GONE_MODULE]);
        let trace = lab.path("git-trace.log");
        let _ = std::fs::remove_file(&trace);
        let run = lab.traced_download_env(
            &[("GOPROXY", "https://s404.lab.test,direct"), ("GIT_TRACE", &trace.display().to_string())],
            TIMEOUT,
        );
        failed(GONE_MODULE, &run);
        assert!(run.stderr.contains(&format!("https://{GONE_NAME}/x?go-get=1")), "{}", run.stderr);
        assert!(!trace.exists(), "git never started");
        assert_findings(GONE_MODULE, &run, &["connect_refused", "fallback_to_direct"]);
        let build = only_build(&run.timeline);
        assert!(spans(build, "process").iter().all(|p| p["attrs"]["comm"] == "go"), "no VCS process");
        let discovery: Vec<&Value> = spans(build, "connect").into_iter().filter(|c| c["host"] == GONE_NAME).collect();
        assert!(!discovery.is_empty() && discovery.iter().all(|c| c["role"] == "vcs"), "{}", run.waterfall());
        let f = finding(&run, "fallback_to_direct");
        assert!(f["message"].as_str().unwrap().contains(GONE_NAME), "{f:#}");
        // The same module with GOPRIVATE covering it goes direct on purpose: no fallback.
        let run = lab.traced_download_env(&[("GOPROXY", "https://s404.lab.test,direct"), ("GOPRIVATE", GONE_NAME)], TIMEOUT);
        failed("GOPRIVATE", &run);
        assert_findings("GOPRIVATE", &run, &["connect_refused"]);
    });
}

/// The lab's stall lasts until `timeout` kills the build 9 s in; judged with a
/// 5 s threshold (the default is 30 s).
const STALL: [&str; 2] = ["--stall-threshold", "5s"];

#[test]
fn a_stall_that_nothing_ends() {
    with_each_go("a_stall_that_nothing_ends", |lab, _go| {
        lab.require_modules(1);
        // Over plain HTTP nothing at all arrives after the stall; over TLS the
        // server's close_notify may. Either way the silence is the stall.
        for proxy in ["http://stall.lab.test", "https://stall.lab.test"] {
            let run = lab.traced_with(
                &["timeout", "-k", "2", "9", "go", "mod", "download"],
                &[("GOPROXY", proxy)],
                &STALL,
                Duration::from_secs(60),
            );
            assert_eq!(run.status.code(), Some(124), "{proxy}: the step timed out: {}", run.stderr);
            assert_findings(proxy, &run, &["stalled_transfer"]);
            let f = finding(&run, "stalled_transfer");
            let message = f["message"].as_str().unwrap();
            assert!(message.contains("lab.test/mod01@v1.0.0") && message.contains("stall.lab.test"), "{f:#}");
            assert!(f["cost_ms"].as_f64().unwrap() >= 7_000.0, "{f:#}");
        }
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
fn http2_and_http1_proxies_are_clean() {
    let openssl = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    with_each_go("http2_and_http1_proxies_are_clean", |lab, _go| {
        if openssl {
            assert_eq!(negotiated_alpn(lab, H1_PROXY_NAME).as_deref(), Some("http/1.1"));
            assert_eq!(negotiated_alpn(lab, PROXY_NAME).as_deref(), Some("h2"), "the other TLS servers speak h2");
        }
        lab.require_modules(2);
        for (what, overrides) in [
            ("HTTP/2", vec![("GOPROXY", format!("https://{PROXY_NAME}"))]),
            ("HTTP/1.1-only proxy", vec![("GOPROXY", format!("https://{H1_PROXY_NAME}"))]),
            ("GODEBUG=http2client=0", vec![("GOPROXY", format!("https://{PROXY_NAME}")), ("GODEBUG", "http2client=0".into())]),
        ] {
            let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let run = lab.traced_download_env(&overrides, TIMEOUT);
            downloaded(what, &run);
            assert_findings(what, &run, &[]);
            assert!(connects_on(&run, 443).iter().all(|c| c["role"] == "proxy"));
        }
    });
}

#[test]
fn concurrent_connects_of_one_process_fail_each_their_own_way() {
    with_each_go("concurrent_connects_of_one_process_fail_each_their_own_way", |lab, _go| {
        let (refused, unreachable, fine) = (lab.ip_of(GONE_NAME), lab.ip_of(PROXY_NAME), lab.ip_of("mirror.lab.test"));
        let rule = format!("ip daddr {unreachable} tcp dport 443 reject with icmpx host-unreachable");
        lab.server_firewall(&nft_table("in", "input", &rule));
        // The last: an address nobody has (no neighbour answers ARP).
        let unused = lab.unused_ip();
        let addrs = [format!("{refused}:443"), format!("{unreachable}:443"), format!("{fine}:443"), format!("{unused}:443")];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let run = lab.traced_dialer(&addrs, &[], Duration::from_secs(60));
        assert!(run.status.success(), "the dialer exits 0: {}", run.stderr);
        let connects = spans(only_build(&run.timeline), "connect");
        let outcome = |ip: std::net::Ipv4Addr| -> Vec<&str> {
            connects.iter().filter(|c| c["addr"] == ip.to_string()).filter_map(|c| c["outcome"].as_str()).collect()
        };
        assert_eq!(outcome(refused), ["refused"], "{}", run.waterfall());
        assert_eq!(outcome(unreachable), ["unreachable"], "{}", run.waterfall());
        assert_eq!(outcome(fine), ["ok"], "{}", run.waterfall());
        assert_eq!(outcome(unused), ["unreachable"], "{}", run.waterfall());
        assert_findings("dialer", &run, &["connect_refused", "host_unreachable"]);
    });
}
