//! `dns_failure`, judged per name as Go judges it (failure 8): a name failed when
//! none of its queries gave an address (NXDOMAIN, SERVFAIL, REFUSED, no answer,
//! an empty answer for every type) and the build did not reach it all the same. A name that resolved is not a failure for a
//! refused or empty AAAA beside a good A (many resolvers do that); only queries
//! that went unanswered cost time (Go waits 5 s per try), and those are reported.
use super::{address, covered_ns, seconds};
use crate::{
    correlate::{
        lookups::{self, NameLookups},
        state::{BuildState, SpanState},
    },
    timeline::{Finding, Outcome, Severity, SpanKind, millis},
};

fn servers(spans: &[&SpanState]) -> String {
    let mut servers: Vec<String> = spans.iter().map(|s| address(s)).collect();
    servers.dedup();
    servers.sort();
    servers.dedup();
    servers.join(", ")
}

fn ids(indexes: &[usize]) -> Vec<u32> {
    indexes.iter().map(|&i| i as u32 + 1).collect()
}

/// The finding for one name's lookups, if they failed or cost a wait.
pub fn judge(build: &BuildState, group: &NameLookups) -> Option<Finding> {
    let failed: Vec<usize> = group
        .queries
        .iter()
        .copied()
        .filter(|&q| lookups::unanswered(&build.spans[q]).is_some() && !build.spans[q].attrs.contains_key("unfinished"))
        .collect();
    let name = &group.name;
    if group.resolved() {
        // Only unanswered queries made the build wait.
        let waited: Vec<usize> =
            failed.into_iter().filter(|&q| build.spans[q].outcome == Some(Outcome::Timeout)).collect();
        let spans: Vec<&SpanState> = waited.iter().map(|&i| &build.spans[i]).collect();
        if spans.is_empty() {
            return None;
        }
        let cost = covered_ns(spans.iter().map(|s| (s.start_ns, s.end_ns.unwrap_or(s.start_ns))).collect());
        let servers = servers(&spans);
        let mut qtypes: Vec<&str> = spans.iter().filter_map(|s| s.attrs.get("qtype").and_then(|v| v.as_str())).collect();
        qtypes.sort_unstable();
        qtypes.dedup();
        let qtypes = qtypes.join(", ");
        return Some(Finding {
            kind: "dns_failure".into(),
            severity: Severity::Warning,
            message: format!(
                "{} quer{} ({qtypes}) for {name} got no answer from {servers} (Go waits out each try: resolv.conf's timeout, 5 s by default) before the name resolved through another query; {} lost",
                spans.len(),
                if spans.len() == 1 { "y" } else { "ies" },
                seconds(cost)
            ),
            remedy: format!(
                "check the DNS server(s) {servers} in this agent's resolv.conf: one that does not answer (or drops {qtypes} queries) costs every lookup its timeout"
            ),
            cost_ms: millis(cost),
            spans: ids(&waited),
        });
    }
    let spans: Vec<&SpanState> = failed.iter().map(|&i| &build.spans[i]).collect();
    if spans.is_empty() {
        return None;
    }
    let mut outcomes: Vec<String> = spans.iter().filter_map(|s| lookups::unanswered(s)).collect();
    outcomes.sort_unstable();
    outcomes.dedup();
    // Reached all the same (an answer the kernel did not see, /etc/hosts, an
    // HTTP proxy that resolves for the build): then it did not fail.
    let reached = build.spans.iter().any(|s| {
        matches!(s.kind, SpanKind::Connect | SpanKind::Tls | SpanKind::Http)
            && s.outcome == Some(Outcome::Ok)
            && s.host.as_deref().is_some_and(|h| lookups::same_lookup(h, name))
    });
    if reached {
        return None;
    }
    let cost = covered_ns(spans.iter().map(|s| (s.start_ns, s.end_ns.unwrap_or(s.start_ns))).collect());
    let n = spans.len();
    let servers = servers(&spans);
    Some(Finding {
        kind: "dns_failure".into(),
        severity: Severity::Error,
        message: format!(
            "looking up {name} failed ({}) at DNS server {servers}; {n} attempt{}, {} lost",
            outcomes.join(", "),
            if n == 1 { "" } else { "s" },
            seconds(cost)
        ),
        remedy: format!(
            "check that {name} is spelled right in GOPROXY/GOSUMDB and that the agent's DNS server ({servers}) can resolve it"
        ),
        cost_ms: millis(cost),
        spans: ids(&failed),
    })
}
