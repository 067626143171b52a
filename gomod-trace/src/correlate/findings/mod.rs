//! Findings: what went wrong in a build, in plain words, with the spans that show
//! it, the time it cost and what to change. One finding per kind and destination;
//! the cost is the wall time covered by its spans (parallel attempts count once).
//! This module has the network findings (connects, DNS, TLS); `fetch` has those
//! that need the build's Go configuration and module fetches.
mod dns;
mod fetch;

use std::collections::BTreeMap;

pub use super::Settings;
use super::{
    endpoints::EndpointTable,
    lookups::NameLookups,
    state::{BuildState, SpanState},
};
use crate::timeline::{Finding, Outcome, Role, Severity, SpanKind, millis};

/// Wall time covered by a set of intervals, in nanoseconds.
pub(super) fn covered_ns(mut intervals: Vec<(u64, u64)>) -> u64 {
    intervals.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in intervals {
        match current {
            Some((s, e)) if start <= e => current = Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                current = Some((start, end));
            }
            None => current = Some((start, end)),
        }
    }
    total + current.map_or(0, |(s, e)| e - s)
}

pub(super) fn seconds(ns: u64) -> String {
    format!("{:.1} s", ns as f64 / 1e9)
}

pub(super) fn address(span: &SpanState) -> String {
    match (span.addr, span.port) {
        (Some(a), Some(p)) if a.is_ipv6() => format!("[{a}]:{p}"),
        (Some(a), Some(p)) => format!("{a}:{p}"),
        _ => "an unknown address".into(),
    }
}

pub(super) fn destination(span: &SpanState) -> String {
    let addr = address(span);
    match &span.host {
        Some(host) => format!("{host} ({addr})"),
        None => addr,
    }
}

/// Did another attempt at the same peer succeed? The same configuration
/// endpoints (any of a name's addresses, IPv6 or IPv4), else the same address.
/// A failed GOPROXY entry of a build that succeeded through a later entry
/// recovered too: cmd/go moved on (`proxy_fallthrough` says so).
fn recovered(build: &BuildState, failed: &SpanState) -> bool {
    let same_peer = build.spans.iter().any(|s| {
        s.kind == failed.kind
            && s.outcome == Some(Outcome::Ok)
            && s.port == failed.port
            && if failed.endpoints.is_empty() {
                s.addr == failed.addr || s.host.is_some() && s.host == failed.host
            } else {
                s.endpoints == failed.endpoints
            }
    });
    let moved_on = build.exit_code == Some(0)
        && failed.role == Role::Proxy
        && !failed.endpoints.is_empty()
        && build.spans.iter().any(|s| {
            s.kind == failed.kind
                && s.role == Role::Proxy
                && s.outcome == Some(Outcome::Ok)
                && !s.endpoints.is_empty()
                && s.endpoints.iter().all(|e| !failed.endpoints.contains(e))
        });
    same_peer || moved_on
}

struct Group {
    spans: Vec<usize>,
    recovered: bool,
}

/// `names` are the build's DNS lookups by name (`lookups::by_name`).
pub fn findings(build: &BuildState, table: &EndpointTable, names: &[NameLookups], complete: bool, settings: &Settings) -> Vec<Finding> {
    // (kind, destination) → spans, in a stable order.
    let mut groups: BTreeMap<(&'static str, String), Group> = BTreeMap::new();
    for (index, span) in build.spans.iter().enumerate() {
        let Some(outcome) = span.outcome else { continue };
        // An HTTP proxy that cannot be reached is `http_proxy_failure` (fetch).
        if span.role == Role::HttpsProxy && span.kind == SpanKind::Connect {
            continue;
        }
        let kind = match (span.kind, outcome) {
            (SpanKind::Connect, Outcome::Dropped) => "firewall_drop",
            (SpanKind::Connect, Outcome::Refused) => "connect_refused",
            (SpanKind::Connect, Outcome::Unreachable) => "host_unreachable",
            // SYNs that got no answer at all: dropped on the way.
            (SpanKind::Connect, Outcome::Timeout)
                if span.attrs.get("syn_retransmits").and_then(|v| v.as_u64()).unwrap_or(0) > 0 =>
            {
                "firewall_drop"
            }
            (SpanKind::Connect, Outcome::Timeout) => "connect_timeout",
            (SpanKind::Tls, Outcome::Alert | Outcome::Aborted) => "tls_handshake_failure",
            (SpanKind::Tls, Outcome::Timeout) => "tls_timeout",
            _ => continue,
        };
        if span.attrs.contains_key("unfinished") {
            continue;
        }
        let group = groups.entry((kind, destination(span))).or_insert(Group { spans: Vec::new(), recovered: true });
        group.spans.push(index);
        group.recovered &= recovered(build, span);
    }

    let mut findings: Vec<Finding> = groups
        .into_iter()
        .map(|((kind, key), group)| describe(build, kind, &key, &group))
        .collect();
    findings.extend(names.iter().filter_map(|group| dns::judge(build, group)));
    findings.extend(checksum_verification(build));
    findings.extend(fetch::findings(build, table, names, settings));
    if !complete {
        findings.push(Finding {
            kind: "incomplete_trace".into(),
            severity: Severity::Warning,
            message: if build.dropped.any() {
                "the daemon's limits dropped part of this build (too many spans, connections or processes; see its notes): spans and findings are missing".into()
            } else if build.end_unseen {
                "this build's end was never seen (its root process did not exit while traced, or the exit was lost): it was closed as it stood".into()
            } else if build.started_late {
                "tracing started after this build did: its first events are missing, so findings may be incomplete".into()
            } else {
                format!(
                    "{} kernel events were lost while this build ran (ring buffer full): spans and findings may be missing",
                    build.lost
                )
            },
            remedy: "rerun the build under gomod-trace; if events are lost again, the host is too busy for the ring buffer (report it)".into(),
            cost_ms: 0.0,
            spans: Vec::new(),
        });
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.cost_ms.total_cmp(&a.cost_ms)));
    findings
}

/// Failure 14: the configuration turns module checksum verification off (a
/// security warning, not an error; it costs no time).
fn checksum_verification(build: &BuildState) -> Option<Finding> {
    let get = |name: &str| build.config.get(name).map(|v| (v.value.as_str(), v.source.as_str()));
    let mut causes = Vec::new();
    if let Some(("off", source)) = get("GOSUMDB") {
        causes.push(format!("GOSUMDB=off (from {source})"));
    }
    if let Some((patterns, source)) = get("GONOSUMDB")
        && crate::goenv::match_prefix_patterns(patterns, "any.host/any/module")
    {
        causes.push(format!("GONOSUMDB={patterns} matches every module (from {source})"));
    }
    if let Some((flags, source)) = get("GOFLAGS")
        && flags.split_whitespace().any(|f| f == "-insecure" || f.starts_with("-insecure="))
    {
        causes.push(format!("GOFLAGS has -insecure (from {source})"));
    }
    if let Some((patterns, source)) = get("GOINSECURE").filter(|(v, _)| !v.is_empty()) {
        causes.push(format!("GOINSECURE={patterns} allows plain HTTP and unverified TLS for direct fetches (from {source})"));
    }
    (!causes.is_empty()).then(|| Finding {
        kind: "checksum_verification_disabled".into(),
        severity: Severity::Warning,
        message: format!("module checksum verification is weakened: {}", causes.join("; ")),
        remedy: "let cmd/go verify modules against the checksum database: list only private modules in GONOSUMDB/GOPRIVATE, and remove GOSUMDB=off, -insecure and GOINSECURE".into(),
        cost_ms: 0.0,
        spans: Vec::new(),
    })
}

fn describe(build: &BuildState, kind: &'static str, key: &str, group: &Group) -> Finding {
    let spans: Vec<&SpanState> = group.spans.iter().map(|&i| &build.spans[i]).collect();
    let cost = covered_ns(spans.iter().map(|s| (s.start_ns, s.end_ns.unwrap_or(s.start_ns))).collect());
    let n = spans.len();
    let (attempts, were) = if n == 1 { ("1 attempt".to_string(), "was") } else { (format!("{n} attempts"), "were") };
    let first = spans[0];
    let retransmits: u64 = spans
        .iter()
        .filter_map(|s| s.attrs.get("syn_retransmits").and_then(|v| v.as_u64()))
        .sum();
    let (message, remedy) = match kind {
        "firewall_drop" if !first.attrs.contains_key("drop_reason") => (
            format!(
                "{attempts} to connect to {key} got no answer ({retransmits} SYN retransmits, no local drop): a firewall on the way drops the packets (or the host is down); the build waited {}",
                seconds(cost)
            ),
            format!("have TCP from this agent to {key} allowed by the firewalls on the way, or use a proxy that is reachable"),
        ),
        "firewall_drop" => {
            let reason = first.attrs.get("drop_reason").and_then(|v| v.as_str()).unwrap_or("a drop");
            (
                format!(
                    "{attempts} to connect to {key} {were} dropped by a firewall on this host ({reason}, {retransmits} SYN retransmits); the build waited {}",
                    seconds(cost)
                ),
                format!("allow TCP to {key} in this host's firewall (nftables/iptables), or use a proxy that is reachable"),
            )
        }
        "connect_timeout" => (
            format!(
                "{attempts} to connect to {key} got no answer ({retransmits} SYN retransmits): packets are silently dropped on the way (a firewall) or the host is down; the build waited {}",
                seconds(cost)
            ),
            format!("check the network path to {key}: a firewall between this agent and the host, or the host itself"),
        ),
        "connect_refused" => (
            format!("{attempts} to connect to {key} {were} refused (nothing listens there, or a firewall rejects with a reset)"),
            format!("check that the service behind {key} is running and that the port in GOPROXY/GOSUMDB is right"),
        ),
        "host_unreachable" => {
            let error = first.attrs.get("error").and_then(|v| v.as_str()).unwrap_or("unreachable");
            (
                format!("{attempts} to connect to {key} failed: {error} (no route, or an ICMP reject from a firewall)"),
                format!("check routes and firewall rules between this agent and {key}"),
            )
        }
        "tls_handshake_failure" => {
            let alert = first.attrs.get("alert").and_then(|v| v.as_str());
            let how = match alert {
                Some("encrypted") => "with an encrypted alert from the client (in TLS 1.3: it rejected the server's certificate)".to_string(),
                Some(a) => format!("with alert {a}"),
                None => "before the handshake completed".into(),
            };
            (
                format!("{attempts} to set up TLS with {key} ended {how}: often a middlebox that intercepts TLS with a certificate Go does not trust"),
                "trust the interception CA (SSL_CERT_FILE/SSL_CERT_DIR) or exempt the Go proxy and checksum database hosts from interception".into(),
            )
        }
        "tls_timeout" => (
            format!("{attempts} to set up TLS with {key} got no server answer within Go's 10 s TLS handshake timeout"),
            format!("check what sits between this agent and {key}: a proxy or middlebox that accepts TCP but never answers TLS"),
        ),
        other => (format!("{other} at {key}"), String::new()),
    };
    Finding {
        kind: kind.to_string(),
        severity: if group.recovered { Severity::Warning } else { Severity::Error },
        message,
        remedy,
        cost_ms: millis(cost),
        spans: group.spans.iter().map(|&i| i as u32 + 1).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::covered_ns;

    #[test]
    fn parallel_attempts_count_once() {
        assert_eq!(covered_ns(vec![(0, 10), (5, 15), (20, 30)]), 25);
        assert_eq!(covered_ns(vec![]), 0);
        assert_eq!(covered_ns(vec![(3, 3)]), 0);
    }
}
