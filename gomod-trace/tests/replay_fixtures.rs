//! Recorded lab runs (tests/fixtures, refreshed with GOMOD_TRACE_SAVE_EVENTS=DIR)
//! replayed through the correlator without root: one fixture per lab scenario.
use std::path::{Path, PathBuf};

use gomod_trace::{
    correlate::{Correlator, Settings},
    event::{Event, LossReason},
    record,
    timeline::{Build, Outcome, Role, Severity, SpanKind, Timeline},
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(format!("{name}.jsonl"))
}

fn timeline(name: &str) -> Timeline {
    timeline_with(name, Settings::default())
}

fn timeline_with(name: &str, settings: Settings) -> Timeline {
    Correlator::timeline(record::read(&fixture(name)).expect("fixture reads"), settings)
}

/// The lab's stalls last about 9 s: judged with a 5 s threshold (the default is 30 s).
fn stall_settings() -> Settings {
    Settings { stall_threshold_ns: 5_000_000_000 }
}

fn only_build(t: &Timeline) -> &Build {
    assert_eq!(t.builds.len(), 1);
    &t.builds[0]
}

fn serious(b: &Build) -> Vec<&str> {
    b.findings.iter().filter(|f| f.severity >= Severity::Warning).map(|f| f.kind.as_str()).collect()
}

#[test]
fn clean_download_has_dns_connect_tls_and_no_findings() {
    let t = timeline("clean_download");
    let b = only_build(&t);
    assert_eq!(b.command, ["go", "mod", "download"]);
    assert_eq!((b.exit_code, b.complete), (Some(0), true));
    let of = |kind| b.spans.iter().filter(move |s| s.kind == kind);
    assert!(of(SpanKind::Dns).any(|s| s.host.as_deref() == Some("proxy.lab.test") && s.outcome == Some(Outcome::Ok)));
    assert!(of(SpanKind::Connect).all(|s| s.outcome == Some(Outcome::Ok) && s.host.as_deref() == Some("proxy.lab.test")));
    assert!(of(SpanKind::Connect).chain(of(SpanKind::Tls)).all(|s| s.role == Role::Proxy));
    assert!(of(SpanKind::Dns).all(|s| s.role == Role::Dns));
    assert_eq!((b.config["GOPROXY"].value.as_str(), b.config["GOPROXY"].source.as_str()), ("https://proxy.lab.test", "env"));
    assert_eq!(b.config["GOSUMDB"].source, "default");
    assert!(of(SpanKind::Tls).all(|s| s.attrs["sni"] == "proxy.lab.test" && s.outcome == Some(Outcome::Ok)));
    assert!(of(SpanKind::Tls).count() >= 1);
    assert!(serious(b).is_empty(), "{:?}", b.findings);
    let modules: Vec<_> = of(SpanKind::Module).collect();
    assert_eq!(modules.len(), 24);
    assert!(modules.iter().all(|m| m.outcome == Some(Outcome::Ok) && m.role == Role::Proxy && m.attrs["extracted"] == true));
    for span in &b.spans[1..] {
        let parent = span.parent.expect("every span but the root has a parent");
        assert!(b.spans.iter().any(|s| s.id == parent));
    }
}

#[test]
fn nxdomain_is_a_dns_failure() {
    let t = timeline("nxdomain");
    let b = only_build(&t);
    assert_eq!(b.exit_code, Some(1));
    let dns: Vec<_> = b.spans.iter().filter(|s| s.kind == SpanKind::Dns).collect();
    assert!(!dns.is_empty() && dns.iter().all(|s| s.outcome == Some(Outcome::Nxdomain)));
    // Nothing reached the module cache.
    assert_eq!(b.spans.iter().filter(|s| s.kind == SpanKind::Module).count(), 0);
    assert_eq!(serious(b), ["dns_failure"]);
    assert!(b.findings[0].message.contains("missing.lab.test"));
}

#[test]
fn refused_port_is_connect_refused() {
    let t = timeline("refused");
    let b = only_build(&t);
    let connects: Vec<_> = b.spans.iter().filter(|s| s.kind == SpanKind::Connect).collect();
    assert!(!connects.is_empty());
    assert!(connects.iter().all(|s| s.outcome == Some(Outcome::Refused) && s.port == Some(8443)));
    assert_eq!(serious(b), ["connect_refused"]);
    assert_eq!(b.findings[0].spans.len(), connects.len());
}

#[test]
fn firewall_drop_costs_the_dial_timeout() {
    let t = timeline("firewall_drop");
    let b = only_build(&t);
    let connect = b.spans.iter().find(|s| s.kind == SpanKind::Connect).expect("connect");
    assert_eq!(connect.outcome, Some(Outcome::Dropped));
    assert_eq!(connect.attrs["drop_reason"], "NETFILTER_DROP");
    let finding = &b.findings[0];
    assert_eq!((finding.kind.as_str(), finding.severity), ("firewall_drop", Severity::Error));
    assert!((29_000.0..31_000.0).contains(&finding.cost_ms), "{}", finding.cost_ms);
    assert_eq!(finding.spans, [connect.id]);
}

#[test]
fn events_out_of_order_across_cpus_give_the_same_timeline() {
    let events = record::read(&fixture("clean_download")).unwrap();
    let expected = serde_json::to_string(&Correlator::timeline(events.clone(), Settings::default())).unwrap();
    let mut shuffled = events;
    shuffled.reverse();
    shuffled.rotate_left(7);
    assert_eq!(serde_json::to_string(&Correlator::timeline(shuffled, Settings::default())).unwrap(), expected);
}

#[test]
fn lost_events_make_the_build_incomplete() {
    let mut events = record::read(&fixture("clean_download")).unwrap();
    let middle = events[events.len() / 2].ts_ns();
    events.push(Event::Lost { ts_ns: middle, count: 3, reason: LossReason::RingBufferFull });
    let t = Correlator::timeline(events, Settings::default());
    let b = only_build(&t);
    assert!(!b.complete);
    let finding = b.findings.iter().find(|f| f.kind == "incomplete_trace").expect("incomplete_trace");
    assert!(finding.message.contains("3 kernel events were lost"));
}

fn shift(event: Event, by: u64) -> Event {
    let mut value = serde_json::to_value(event).unwrap();
    let ts = value["ts_ns"].as_u64().unwrap();
    value["ts_ns"] = (ts + by).into();
    serde_json::from_value(value).unwrap()
}

#[test]
fn pid_reuse_starts_a_new_build() {
    // The same recording again a minute later: the root pid is reused.
    let first = record::read(&fixture("nxdomain")).unwrap();
    let mut events = first.clone();
    events.extend(first.into_iter().skip(1).map(|e| shift(e, 60_000_000_000)));
    let t = Correlator::timeline(events, Settings::default());
    assert_eq!(t.builds.len(), 2);
    assert_eq!(t.builds[0].pid, t.builds[1].pid);
    assert_ne!(t.builds[0].id, t.builds[1].id);
    assert_eq!(t.builds[0].spans.len(), t.builds[1].spans.len());
}

#[test]
fn malformed_recordings_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("gomod-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"event\":\"clock\",\"monotonic_ns\":1,\"realtime_ns\":2}\n{\"event\":\"exec\",\"ts_ns\":\"x\"}\n").unwrap();
    let err = record::read(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2"), "{err}");
    std::fs::write(&bad, "").unwrap();
    assert!(record::read(&bad).unwrap_err().to_string().contains("empty recording"));
    let _ = std::fs::remove_dir_all(dir);
}

/// The error and warning finding kinds of a fixture's build, sorted.
fn serious_kinds(b: &Build) -> Vec<&str> {
    let mut kinds = serious(b);
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

fn finding<'a>(b: &'a Build, kind: &str) -> &'a gomod_trace::timeline::Finding {
    b.findings.iter().find(|f| f.kind == kind).unwrap_or_else(|| panic!("no {kind}: {:#?}", b.findings))
}

/// One recorded lab run (Go 1.23) per failure of the catalogue, with the findings
/// it must give: the rules are exercised without root.
#[test]
fn every_recorded_failure_gives_its_findings() {
    for (fixture, expected) in [
        ("host_unreachable", &["host_unreachable"][..]),
        ("sumdb_dropped_remote", &["firewall_drop", "sumdb_unreachable"]),
        ("fallback_to_git", &["fallback_to_direct"]),
        ("fallthrough_tls", &["proxy_fallthrough"]),
        ("private_module_leak", &["fallback_to_direct", "private_module_leak"]),
        ("dns_no_answer", &["dns_failure"]),
        ("untrusted_ca", &["tls_handshake_failure"]),
        ("tls_timeout", &["tls_timeout"]),
        ("stalled_transfer", &["stalled_transfer"]),
        ("slow_proxy", &["slow_download"]),
        ("dual_stack", &["dual_stack_delay"]),
        ("https_proxy_407", &["http_proxy_failure"]),
    ] {
        let t = timeline_with(fixture, stall_settings());
        let b = only_build(&t);
        assert_eq!(serious_kinds(b), expected, "{fixture}: {:#?}", b.findings);
        for f in &b.findings {
            assert!(!f.message.is_empty() && !f.remedy.is_empty(), "{fixture}: {f:?}");
            for id in &f.spans {
                assert!(b.spans.iter().any(|s| s.id == *id), "{fixture}: evidence span {id} exists");
            }
        }
    }
}

#[test]
fn host_unreachable_comes_from_the_errno_the_process_saw() {
    let t = timeline("host_unreachable");
    let b = only_build(&t);
    let connect = b.spans.iter().find(|s| s.kind == SpanKind::Connect && s.port == Some(443)).unwrap();
    assert_eq!((connect.outcome, connect.attrs["error"].as_str()), (Some(Outcome::Unreachable), Some("EHOSTUNREACH")));
}

#[test]
fn fallback_names_the_modules_their_repositories_and_the_404s() {
    let t = timeline("fallback_to_git");
    let b = only_build(&t);
    let f = finding(b, "fallback_to_direct");
    assert!(f.message.contains("lab.test/mod01@v1.0.0 from https://git.lab.test/mod01.git"), "{}", f.message);
    assert!(f.message.contains("answered HTTP 404"), "{}", f.message);
    assert!(f.cost_ms > 0.0);
    assert_eq!(finding(b, "http_error").severity, Severity::Info, "a 404 the build recovered from");
    let modules: Vec<_> = b.spans.iter().filter(|s| s.kind == SpanKind::Module).collect();
    assert!(modules.iter().all(|m| m.role == Role::Vcs && m.attrs["source"] == "direct"));
}

#[test]
fn stall_and_slow_downloads_name_module_host_and_time() {
    let t = timeline_with("stalled_transfer", stall_settings());
    let f = finding(only_build(&t), "stalled_transfer");
    assert!(f.message.contains("lab.test/mod01@v1.0.0") && f.message.contains("stall.lab.test"), "{}", f.message);
    assert!(f.cost_ms > 7_000.0, "{}", f.cost_ms);
    // The threshold is the user's: a 9 s silence is no stall at the default 30 s.
    let t = timeline("stalled_transfer");
    assert!(only_build(&t).findings.iter().all(|f| f.kind != "stalled_transfer"), "{:#?}", only_build(&t).findings);

    let t = timeline("slow_proxy");
    let f = finding(only_build(&t), "slow_download");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("slow.lab.test delivered"), "{}", f.message);
    assert!(f.cost_ms > 2_000.0);
}

#[test]
fn dual_stack_delay_costs_the_fallback_wait() {
    let t = timeline("dual_stack");
    let f = finding(only_build(&t), "dual_stack_delay");
    assert!((250.0..1_000.0).contains(&f.cost_ms), "{}", f.cost_ms);
}

/// Recorded runs of the lab's variants (tests/tests/variants_lab.rs, Go 1.23):
/// the networks built differently from the lab's defaults, each with the exact
/// error and warning findings it must give, without root.
#[test]
fn every_recorded_variant_gives_its_findings() {
    for (fixture, expected) in [
        ("variant_resolver_refuses_aaaa", &[][..]),
        ("variant_resolver_empty_aaaa", &[]),
        ("variant_dead_resolver_first", &["dns_failure"]),
        ("variant_proxy_ip_literal", &[]),
        ("variant_proxy_ip_literal_refused", &["connect_refused"]),
        ("variant_entries_on_one_host_plain", &["proxy_fallthrough"]),
        ("variant_entries_on_one_host_tls", &[]),
        ("variant_sumdb_via_second_entry", &[]),
        ("variant_https_proxy_by_address", &[]),
        ("variant_https_proxy_down", &["http_proxy_failure"]),
        ("variant_discovery_refused", &["connect_refused", "fallback_to_direct"]),
        ("variant_discovery_refused_goprivate", &["connect_refused"]),
        ("variant_stall_plain_killed", &["stalled_transfer"]),
        ("variant_http1_proxy", &[]),
        ("variant_concurrent_connects", &["connect_refused", "host_unreachable"]),
    ] {
        let t = timeline_with(fixture, stall_settings());
        let b = only_build(&t);
        assert_eq!(serious_kinds(b), expected, "{fixture}: {:#?}", b.findings);
    }
}

#[test]
fn variant_roles_come_from_the_endpoint_table() {
    let connects = |fixture: &str| -> Vec<gomod_trace::timeline::Span> {
        let t = timeline(fixture);
        only_build(&t).spans.iter().filter(|s| s.kind == SpanKind::Connect).cloned().collect()
    };
    // An IP-literal GOPROXY on its own port: the proxy, with its entry.
    let c = connects("variant_proxy_ip_literal");
    assert!(c.iter().filter(|s| s.port == Some(9443)).all(|s| s.role == Role::Proxy
        && s.attrs["entry"].as_str().is_some_and(|e| e.starts_with("GOPROXY[1] https://10."))));
    // An HTTPS_PROXY given as an address: the proxy's connections keep its
    // address, with the tunnel's target role.
    let c = connects("variant_https_proxy_by_address");
    assert!(c.iter().filter(|s| s.port == Some(3128)).all(|s| s.role == Role::HttpsProxy
        && s.host.is_none()
        && s.attrs["target_role"] == "proxy"));
    // cmd/go's own discovery request to a host no entry names: version control.
    let c = connects("variant_discovery_refused");
    assert!(c.iter().any(|s| s.host.as_deref() == Some("gone.lab.test") && s.role == Role::Vcs));
    // Four concurrent connects of one process: each its own outcome.
    let mut outcomes: Vec<Option<Outcome>> = connects("variant_concurrent_connects").iter().map(|s| s.outcome).collect();
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [Some(Outcome::Ok), Some(Outcome::Refused), Some(Outcome::Unreachable), Some(Outcome::Unreachable)]);
}

#[test]
fn a_refused_aaaa_is_noted_and_a_dead_resolver_costs_its_wait() {
    let t = timeline("variant_resolver_refuses_aaaa");
    let b = only_build(&t);
    let aaaa: Vec<_> = b.spans.iter().filter(|s| s.kind == SpanKind::Dns && s.attrs["qtype"] == "AAAA").collect();
    assert!(!aaaa.is_empty() && aaaa.iter().all(|s| s.attrs["rcode"] == "REFUSED" && s.attrs["name_resolved"] == true));
    let t = timeline("variant_dead_resolver_first");
    let f = finding(only_build(&t), "dns_failure");
    assert_eq!(f.severity, Severity::Warning);
    assert!((4_500.0..6_000.0).contains(&f.cost_ms), "{f:?}");
}

/// Recordings from a lab built by someone else (its own dnsmasq with a
/// Kubernetes-like search list, nginx proxies with a redirect to a CDN, squid,
/// Python servers that stall or reset), Go 1.23: networks our lab did not
/// imagine, with the exact error and warning findings each must give.
#[test]
fn recordings_from_another_lab_give_their_findings() {
    for (fixture, expected) in [
        ("outside_first_nameserver_refused", &[][..]),
        ("outside_proxy_redirects_to_cdn", &[]),
        ("outside_direct_git_refused", &["connect_refused", "fallback_to_direct"]),
        ("outside_ip_literal_entry_refused", &["connect_refused", "proxy_fallthrough"]),
        ("outside_search_list_refused_proxy", &["connect_refused"]),
        ("outside_search_list_nxdomain", &["dns_failure"]),
        ("outside_squid_denies_cdn", &["http_proxy_failure"]),
        ("outside_squid_denies_sumdb", &["http_proxy_failure", "sumdb_unreachable"]),
        ("outside_reset_mid_zip", &["transfer_reset"]),
    ] {
        let t = timeline(fixture);
        let b = only_build(&t);
        assert_eq!(serious_kinds(b), expected, "{fixture}: {:#?}", b.findings);
    }
    // A refused proxy entry is named as refused, not as something inside TLS.
    let t = timeline("outside_ip_literal_entry_refused");
    assert!(finding(only_build(&t), "proxy_fallthrough").message.contains("could not be reached (refused)"));
    // The host a proxy redirects to is no version control host.
    let t = timeline("outside_proxy_redirects_to_cdn");
    assert!(only_build(&t).spans.iter().filter(|s| s.kind == SpanKind::Connect).all(|s| s.role != Role::Vcs));
    // A failed build's refused tunnel is an error.
    let t = timeline("outside_squid_denies_cdn");
    assert_eq!(finding(only_build(&t), "http_proxy_failure").severity, Severity::Error);
}

/// The go command's requests as the uprobes recorded them (`go mod download
/// -x` over HTTP/2 on Go 1.19): one `http` span per request, under the TLS
/// handshake of the connection that carried it, each with its status.
#[test]
fn requests_inside_tls_are_spans_under_their_connection() {
    let t = timeline("requests_clean_h2");
    let b = only_build(&t);
    assert!(b.notes.is_empty(), "{:?}", b.notes);
    let requests: Vec<_> = b.spans.iter().filter(|s| s.kind == SpanKind::Http && s.attrs.contains_key("url")).collect();
    assert_eq!(requests.len(), 9, "3 modules × (.mod, .info, .zip)");
    for r in &requests {
        let parent = b.spans.iter().find(|s| Some(s.id) == r.parent).expect("parent");
        assert_eq!((parent.kind, parent.host.as_deref()), (SpanKind::Tls, Some("proxy.lab.test")));
        assert_eq!((r.role, r.attrs["status"].as_u64(), r.attrs["proto"].as_str()), (Role::Proxy, Some(200), Some("HTTP/2.0")));
        assert_eq!(r.attrs["entry"], "GOPROXY[1] https://proxy.lab.test");
    }
    assert!(serious(b).is_empty(), "{:?}", b.findings);
}

/// A proxy's 404 to `/sumdb/<name>/supported` is its "no", not an error; the
/// entry uprobe that fired twice for one call (the function re-entered after
/// growing its stack) is one request; the lookup that could not connect ended
/// with the error's type.
#[test]
fn requests_of_a_build_whose_checksum_database_is_dropped() {
    let t = timeline("requests_sumdb_dropped");
    let b = only_build(&t);
    assert_eq!(serious(b), ["firewall_drop", "sumdb_unreachable"], "{:#?}", b.findings);
    let requests: Vec<_> = b.spans.iter().filter(|s| s.kind == SpanKind::Http && s.attrs.contains_key("url")).collect();
    let targets: Vec<&str> = requests.iter().map(|r| r.attrs["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["/lab.test/mod01/@v/v1.0.0.mod", "/sumdb/sum.lab.test/supported", "/lookup/lab.test/mod01@v1.0.0"]);
    assert_eq!(requests[1].attrs["status"], 404);
    assert_eq!((requests[2].role, requests[2].attrs["error"].as_str()), (Role::Sumdb, Some("*net.OpError")));
}

/// The checksum database's 404 for a private module, inside TLS, is quoted.
#[test]
fn requests_show_the_checksum_databases_answer_to_a_private_module() {
    let t = timeline("requests_private_module_leak");
    let b = only_build(&t);
    assert_eq!(serious(b), ["http_error", "private_module_leak", "fallback_to_direct"], "{:#?}", b.findings);
    let leak = b.findings.iter().find(|f| f.kind == "private_module_leak").unwrap();
    assert!(leak.message.contains("(GET /lookup/lab.test/private@v1.0.0: HTTP 404)"), "{}", leak.message);
    let fallback = b.findings.iter().find(|f| f.kind == "fallback_to_direct").unwrap();
    assert!(fallback.message.contains("which answered HTTP 404 ×1 (e.g. GET /lab.test/private/@v/v1.0.0.mod)"), "{}", fallback.message);
}
