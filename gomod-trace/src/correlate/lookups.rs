//! DNS as Go judges it: the lookups of one name, taken together. Go asks for A
//! and AAAA in parallel, tries search-list expansions, retries and moves through
//! the nameservers of resolv.conf, and uses whatever answered with an address. A
//! name failed only when none of its queries gave an address; a refused or empty
//! AAAA beside a good A is how many resolvers work, not a failure.
use std::net::IpAddr;

use serde_json::Value;

use super::state::SpanState;
use crate::timeline::{Outcome, SpanKind};

/// The queries a build made for one name (and its search-list expansions).
#[derive(Debug, Clone, PartialEq)]
pub struct NameLookups {
    /// The name as asked: the shortest of the group.
    pub name: String,
    /// Every query span for it, in time order.
    pub queries: Vec<usize>,
    /// Addresses any query got.
    pub addresses: Vec<IpAddr>,
}

impl NameLookups {
    pub fn resolved(&self) -> bool {
        !self.addresses.is_empty()
    }
}

/// Is `expanded` the name `name` with a search domain appended (or the same)?
pub fn same_lookup(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long.eq_ignore_ascii_case(short)
        || long.len() > short.len() + 1
            && long.as_bytes()[short.len()] == b'.'
            && long[..short.len()].eq_ignore_ascii_case(short)
}

fn answers(span: &SpanState) -> Vec<IpAddr> {
    span.attrs
        .get("answers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The name a query asks for, before the resolver appended a search domain:
/// a name the configuration gives (`known`) or the shortest name the build asked
/// that it extends; else the query's own name. Several search domains
/// (`n.ns.svc.cluster.local`, `n.svc.cluster.local`, …) so fall under `n`.
fn base_name<'a>(query: &'a str, known: &'a [String], asked: &'a [&'a str]) -> &'a str {
    let extends = |base: &str| {
        query.len() > base.len() + 1
            && query.as_bytes()[base.len()] == b'.'
            && query[..base.len()].eq_ignore_ascii_case(base)
    };
    known
        .iter()
        .map(String::as_str)
        .chain(asked.iter().copied())
        .filter(|base| query.eq_ignore_ascii_case(base) || extends(base))
        .min_by_key(|base| base.len())
        .unwrap_or(query)
}

/// The build's DNS queries grouped by the name they ask for; `known` are the
/// host names of the build's configuration (GOPROXY, GOSUMDB, proxies).
pub fn by_name(spans: &[SpanState], known: &[String]) -> Vec<NameLookups> {
    let asked: Vec<&str> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Dns)
        .filter_map(|s| s.host.as_deref())
        .map(|n| n.trim_end_matches('.'))
        .collect();
    let mut groups: Vec<NameLookups> = Vec::new();
    for (index, span) in spans.iter().enumerate().filter(|(_, s)| s.kind == SpanKind::Dns) {
        let Some(name) = span.host.as_deref() else { continue };
        let name = base_name(name.trim_end_matches('.'), known, &asked).to_ascii_lowercase();
        let group = match groups.iter().position(|g| g.name == name) {
            Some(at) => &mut groups[at],
            None => {
                groups.push(NameLookups { name, queries: Vec::new(), addresses: Vec::new() });
                groups.last_mut().expect("just pushed")
            }
        };
        group.queries.push(index);
        if span.outcome == Some(Outcome::Ok) {
            for address in answers(span) {
                if !group.addresses.contains(&address) {
                    group.addresses.push(address);
                }
            }
        }
    }
    groups
}

/// Queries that gave no address: their outcome, or `no address` for an empty
/// NOERROR (a name without records of that type).
pub fn unanswered(span: &SpanState) -> Option<String> {
    match span.outcome? {
        Outcome::Ok if answers(span).is_empty() => Some("no address".into()),
        Outcome::Ok | Outcome::Aborted => None,
        // Other response codes by name (REFUSED, NOTIMP…).
        Outcome::Error => Some(span.attrs.get("rcode").and_then(Value::as_str).unwrap_or("error").to_ascii_lowercase()),
        other => Some(other.as_str().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_search_domains_fall_under_the_name_asked() {
        let known = vec!["rst.corp.example".to_string()];
        let asked = ["rst.corp.example.ns.svc.ci.internal", "rst.corp.example.svc.ci.internal", "rst.corp.example"];
        for q in asked {
            assert_eq!(base_name(q, &known, &asked), "rst.corp.example");
        }
        // Without the configured name, the shortest asked form is the base.
        let asked = ["git.x.example.svc.local", "git.x.example"];
        assert_eq!(base_name(asked[0], &[], &asked), "git.x.example");
        assert_eq!(base_name("other.example", &[], &asked), "other.example");
    }

    #[test]
    fn search_list_expansions_are_the_same_lookup() {
        assert!(same_lookup("proxy.corp", "proxy.corp"));
        assert!(same_lookup("proxy.corp", "proxy.corp.svc.cluster.local"));
        assert!(same_lookup("proxy.corp.svc.cluster.local", "PROXY.corp"));
        assert!(!same_lookup("proxy.corp", "proxy.corpx"));
        assert!(!same_lookup("corp", "proxy.corp"));
    }
}
