//! Findings that need the build's Go configuration and its module fetches
//! (failure-modes.md rows 4–7, 11–13, 16, and HTTP errors): the checksum database
//! out of reach, fetches that went to the VCS or to the next proxy, private module
//! paths sent out, stalled and slow downloads, IPv6 that costs every connect its
//! fallback delay, HTTP proxies that refuse to tunnel, and HTTP error statuses.
//! Who a span talks to comes from the endpoint table (its role and the
//! configuration entries it reaches), never from comparing host names.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use serde_json::Value;

use super::{Settings, address, covered_ns, destination, seconds};
use crate::{
    correlate::{
        endpoints::{EndpointTable, Host},
        lookups::NameLookups,
        state::{BuildState, SpanState, is_vcs_command},
    },
    goenv::{self, ProxyEntry},
    timeline::{Finding, Outcome, Role, Severity, SpanKind, millis},
};

/// A zip that takes this long to arrive is a slow download.
const SLOW_ZIP_NS: u64 = 2_000_000_000;
/// Below this rate a host that delivered slow zips is itself slow.
const SLOW_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0;
/// Go starts the second address family 300 ms after the first; allow for slack.
const DUAL_STACK_WINDOW_NS: u64 = 1_000_000_000;

pub fn findings(build: &BuildState, table: &EndpointTable, names: &[NameLookups], settings: &Settings) -> Vec<Finding> {
    let fetch = Fetch::new(build, table, names, settings);
    let mut out = Vec::new();
    out.extend(fetch.sumdb_unreachable());
    out.extend(fetch.fallback_to_direct());
    out.extend(fetch.proxy_fallthrough());
    out.extend(fetch.private_module_leak());
    out.extend(fetch.stalled_transfers());
    out.extend(fetch.reset_transfers());
    out.extend(fetch.slow_downloads());
    out.extend(fetch.dual_stack_delays());
    out.extend(fetch.http_proxy_failures());
    out.extend(fetch.http_errors());
    out
}

/// A build with what its configuration says, for the rules below.
struct Fetch<'a> {
    build: &'a BuildState,
    table: &'a EndpointTable,
    settings: &'a Settings,
    failed: bool,
    noproxy: String,
    nosumdb: String,
    lookups: &'a [NameLookups],
    /// Process name by pid.
    comms: HashMap<u32, &'a str>,
}

fn config<'a>(build: &'a BuildState, name: &str) -> &'a str {
    build.config.get(name).map(|v| v.value.as_str()).unwrap_or_default()
}

fn str_attr<'a>(span: &'a SpanState, name: &str) -> Option<&'a str> {
    span.attrs.get(name).and_then(Value::as_str)
}

fn num_attr(span: &SpanState, name: &str) -> Option<f64> {
    span.attrs.get(name).and_then(Value::as_f64)
}

fn ids(indexes: impl IntoIterator<Item = usize>) -> Vec<u32> {
    let mut ids: Vec<u32> = indexes.into_iter().map(|i| i as u32 + 1).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn interval(span: &SpanState) -> (u64, u64) {
    (span.start_ns, span.end_ns.unwrap_or(span.start_ns))
}

/// A short list of names: the first few and how many more.
fn listing(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_private() || a.is_loopback() || a.is_link_local(),
        IpAddr::V6(a) => a.is_loopback() || a.is_unique_local() || a.is_unicast_link_local(),
    }
}

/// Failures of a connect, lookup or handshake (not a dial the build itself gave up).
fn failed(span: &SpanState) -> bool {
    matches!(span.kind, SpanKind::Connect | SpanKind::Dns | SpanKind::Tls)
        && span.outcome.is_some_and(|o| !matches!(o, Outcome::Ok | Outcome::Aborted))
        && !span.attrs.contains_key("unfinished")
}

fn is_connect_request(span: &SpanState) -> bool {
    str_attr(span, "method") == Some("CONNECT")
}

/// What a span finally talks to: the target of an HTTP proxy's tunnel, or its peer.
fn reaches(span: &SpanState) -> (Option<Role>, &[usize]) {
    match span.target_role {
        Some(role) => (Some(role), &span.target_endpoints),
        None => (Some(span.role), &span.endpoints),
    }
}

fn talks_to(span: &SpanState, role: Role) -> bool {
    reaches(span).0 == Some(role)
}

/// A request for the checksum database through a proxy (`<proxy>/sumdb/<name>/…`).
fn is_sumdb_request(span: &SpanState) -> bool {
    str_attr(span, "target").is_some_and(|t| t.contains("/sumdb/"))
}

/// cmd/go asking a proxy whether it serves the checksum database
/// (`/sumdb/<name>/supported`): 404 or 410 is the protocol's "no", not an error.
fn is_sumdb_support_probe(span: &SpanState) -> bool {
    is_sumdb_request(span) && str_attr(span, "target").is_some_and(|t| t.split('?').next().unwrap_or(t).ends_with("/supported"))
}

impl<'a> Fetch<'a> {
    fn new(build: &'a BuildState, table: &'a EndpointTable, names: &'a [NameLookups], settings: &'a Settings) -> Fetch<'a> {
        let private = config(build, "GOPRIVATE");
        let or_private = |name: &str| {
            let value = config(build, name);
            if value.is_empty() { private.to_string() } else { value.to_string() }
        };
        let comms = build
            .spans
            .iter()
            .filter(|s| s.kind == SpanKind::Process)
            .filter_map(|s| Some((s.pid, str_attr(s, "comm")?)))
            .collect();
        Fetch {
            build,
            table,
            settings,
            failed: build.exit_code.is_some_and(|c| c != 0),
            noproxy: or_private("GONOPROXY"),
            nosumdb: or_private("GONOSUMDB"),
            lookups: names,
            comms,
        }
    }

    fn spans(&self) -> impl Iterator<Item = (usize, &'a SpanState)> + 'a {
        self.build.spans.iter().enumerate()
    }

    fn severity_if_failed(&self) -> Severity {
        if self.failed { Severity::Error } else { Severity::Warning }
    }

    fn is_vcs_process(&self, pid: u32) -> bool {
        self.comms.get(&pid).is_some_and(|c| is_vcs_command(c))
    }

    /// Module spans fetched directly from a VCS.
    fn direct_modules(&self) -> Vec<(usize, &'a SpanState)> {
        self.spans().filter(|(_, s)| s.kind == SpanKind::Module && str_attr(s, "source") == Some("direct")).collect()
    }

    fn module_name(span: &SpanState) -> String {
        format!("{}@{}", str_attr(span, "module").unwrap_or("?"), str_attr(span, "version").unwrap_or("?"))
    }

    /// Processes cmd/go ran for direct fetches (git…), and every connection to
    /// and request of a version control host (cmd/go's own `?go-get=1`
    /// discovery included).
    fn vcs_spans(&self) -> Vec<usize> {
        self.spans()
            .filter(|(_, s)| {
                talks_to(s, Role::Vcs) && matches!(s.kind, SpanKind::Connect | SpanKind::Tls | SpanKind::Http)
                    || s.kind == SpanKind::Process && str_attr(s, "comm").is_some_and(is_vcs_command)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Transfers to a proxy or VCS host (directly or through a tunnel) that were
    /// open at some time in [start, end].
    fn fetch_transfers(&self, start: u64, end: u64) -> impl Iterator<Item = (usize, &'a SpanState)> + 'a {
        self.spans().filter(move |(_, s)| {
            s.kind == SpanKind::Transfer
                && (talks_to(s, Role::Proxy) || talks_to(s, Role::Vcs))
                && s.start_ns <= end
                && s.end_ns.is_none_or(|e| e >= start)
        })
    }

    /// Spans that reach GOPROXY entry `entry` and no other (entries on one host
    /// and port are told apart only by the paths of plaintext requests).
    fn entry_spans(&self, entry: usize) -> impl Iterator<Item = (usize, &'a SpanState)> + '_ {
        self.spans().filter(move |(_, s)| {
            let (role, endpoints) = reaches(s);
            role == Some(Role::Proxy)
                && !endpoints.is_empty()
                && endpoints.iter().all(|&e| self.table.endpoints[e].proxy_index() == Some(entry))
                && matches!(s.kind, SpanKind::Connect | SpanKind::Tls | SpanKind::Http)
        })
    }

    /// Is the checksum database asked in this build (lookups in the module cache,
    /// or its own connections)?
    fn sumdb_in_use(&self) -> bool {
        self.spans().any(|(_, s)| {
            s.kind == SpanKind::Module && s.attrs.contains_key("sumdb_lookup") || talks_to(s, Role::Sumdb)
        })
    }

    /// The lookups of names that are the checksum database's host.
    fn sumdb_lookups(&self, sumdb: usize) -> impl Iterator<Item = &NameLookups> + '_ {
        self.lookups.iter().filter(move |g| self.table.named(&g.name).contains(&sumdb))
    }

    /// Failure 4: the checksum database could not be reached. cmd/go has no
    /// fallback for it, so the build fails even when the proxy works.
    fn sumdb_unreachable(&self) -> Option<Finding> {
        let (sumdb, name) = self.table.sumdb()?;
        let reached = self.spans().any(|(_, s)| {
            talks_to(s, Role::Sumdb)
                && s.outcome == Some(Outcome::Ok)
                && (s.kind == SpanKind::Connect && s.target_role.is_none() || s.kind == SpanKind::Tls)
        });
        // Its own failures, and an HTTP proxy refusing to tunnel to it.
        let mut evidence: Vec<usize> = self
            .spans()
            .filter(|(_, s)| {
                talks_to(s, Role::Sumdb) && (failed(s) || is_connect_request(s) && s.status.is_some_and(|st| st >= 300))
            })
            .map(|(i, _)| i)
            .collect();
        for group in self.sumdb_lookups(sumdb).filter(|g| !g.resolved()) {
            evidence.extend(group.queries.iter().copied().filter(|&q| failed(&self.build.spans[q])));
        }
        if reached || evidence.is_empty() {
            return None;
        }
        let spans: Vec<&SpanState> = evidence.iter().map(|&i| &self.build.spans[i]).collect();
        let mut outcomes: Vec<String> = spans
            .iter()
            .filter_map(|s| match s.status.filter(|_| is_connect_request(s)) {
                Some(status) => Some(format!("the HTTP proxy answered {status} to CONNECT")),
                None => s.outcome.map(|o| o.as_str().to_string()),
            })
            .collect();
        outcomes.sort_unstable();
        outcomes.dedup();
        let fetched = self
            .spans()
            .filter(|(_, s)| s.kind == SpanKind::Module && s.outcome == Some(Outcome::Ok))
            .count();
        let cost = covered_ns(spans.iter().map(|s| interval(s)).collect());
        let consequence = if self.failed {
            "cmd/go has no fallback for the checksum database, so the build failed"
        } else {
            "cmd/go has no fallback for the checksum database"
        };
        let although = if fetched > 0 { format!(" although {fetched} module(s) came from the proxy") } else { String::new() };
        let endpoint = &self.table.endpoints[sumdb];
        let host = match &endpoint.host {
            Host::Name(n) => n.clone(),
            Host::Addr(a) => a.to_string(),
        };
        let addr = spans
            .iter()
            .find(|s| s.kind == SpanKind::Connect && s.target_role.is_none())
            .map_or_else(|| format!("{host}:{}", endpoint.port), |s| address(s));
        Some(Finding {
            kind: "sumdb_unreachable".into(),
            severity: self.severity_if_failed(),
            message: format!(
                "the checksum database {name} ({addr}) could not be reached ({}){although}; {consequence}; {} lost",
                outcomes.join(", "),
                seconds(cost)
            ),
            remedy: format!(
                "allow {host}:{} from this agent, or use a GOPROXY that serves /sumdb/{name}/; list only private modules in GONOSUMDB/GOPRIVATE",
                endpoint.port
            ),
            cost_ms: millis(cost),
            spans: ids(evidence),
        })
    }

    /// How people read a GOPROXY entry: its URL (redacted) and position.
    fn entry_text(&self, entry: usize) -> String {
        match self.table.proxy_entry(entry).next() {
            Some(e) => self.table.endpoints[e].url.clone(),
            None => format!("entry {}", entry + 1),
        }
    }

    /// What a proxy entry answered, as far as the timeline shows: HTTP statuses of
    /// its plaintext module requests, else what the separator after it implies.
    fn proxy_answer(&self, entry: usize, any_error: bool) -> (String, Vec<usize>) {
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        let mut evidence = Vec::new();
        for (i, s) in self.entry_spans(entry) {
            if let Some(status) = s.status.filter(|&st| st >= 400)
                && !is_sumdb_request(s)
            {
                *statuses.entry(status).or_default() += 1;
                evidence.push(i);
            }
        }
        // Never reached: no TCP connection (or handshake) to it succeeded.
        let reached = self.entry_spans(entry).any(|(_, s)| {
            matches!(s.kind, SpanKind::Connect | SpanKind::Tls) && s.outcome == Some(Outcome::Ok)
        });
        let mut failures: Vec<&str> = self
            .entry_spans(entry)
            .filter(|(_, s)| failed(s))
            .filter_map(|(_, s)| s.outcome.map(Outcome::as_str))
            .collect();
        failures.sort_unstable();
        failures.dedup();
        // Errors the go command's client got from it (request uprobes).
        let mut errors: Vec<&str> = Vec::new();
        for (i, s) in self.entry_spans(entry).filter(|(_, s)| s.kind == SpanKind::Http) {
            if let Some(error) = str_attr(s, "error") {
                if !errors.contains(&error) {
                    errors.push(error);
                }
                evidence.push(i);
            }
        }
        // Never reached: the connection's failure says more than the error type
        // the client got for it.
        let answer = if statuses.is_empty() && !reached && !failures.is_empty() {
            format!("could not be reached ({})", failures.join(", "))
        } else if statuses.is_empty() && !errors.is_empty() {
            format!("failed: {}", errors.join("; "))
        } else if statuses.is_empty() {
            // No request data: what the configuration implies, said as such.
            match (self.build.requests_complete(), any_error) {
                (true, _) => "answered no error status in the requests traced".to_string(),
                (false, true) => "failed (inferred: the requests were not all traced and TLS hides the error)".to_string(),
                (false, false) => {
                    "answered 404 or 410 (inferred: after `,` nothing else moves cmd/go on; the requests were not all traced and TLS hides the status)".to_string()
                }
            }
        } else {
            let list: Vec<String> = statuses.iter().map(|(st, n)| format!("{st} ×{n}")).collect();
            let first = &self.build.spans[evidence[0]];
            let example = match (str_attr(first, "method"), str_attr(first, "target")) {
                (Some(method), Some(target)) => format!(" (e.g. {method} {target})"),
                _ => String::new(),
            };
            format!("answered HTTP {}{example}", list.join(", "))
        };
        (answer, evidence)
    }

    /// Failure 5: cmd/go went to version control although GOPROXY lists a proxy
    /// first, because the proxy did not have the module (or failed, after `|`).
    /// Seen from cmd/go's own first direct contact (its `?go-get=1` discovery, or
    /// the VCS command it ran), whether or not a module arrived.
    fn fallback_to_direct(&self) -> Option<Finding> {
        let direct_index = self.table.proxies.iter().position(|e| *e == ProxyEntry::Direct)?;
        let (entry, any_error) = self.table.proxies[..direct_index].iter().enumerate().rev().find_map(|(i, e)| match e {
            ProxyEntry::Url { any_error, .. } => Some((i, *any_error)),
            _ => None,
        })?;
        let vcs = self.vcs_spans();
        let modules = self.direct_modules();
        let first_direct = vcs
            .iter()
            .map(|&i| self.build.spans[i].start_ns)
            .chain(modules.iter().map(|(_, s)| s.start_ns))
            .min()?;
        // A proxy entry before `direct` was asked first.
        let asked = (0..direct_index).any(|e| self.entry_spans(e).any(|(_, s)| s.start_ns <= first_direct));
        if !asked {
            return None;
        }
        // Modules GONOPROXY/GOPRIVATE send direct on purpose are not a fallback.
        let unintended: Vec<(usize, &SpanState)> = modules
            .iter()
            .copied()
            .filter(|(_, s)| !goenv::match_prefix_patterns(&self.noproxy, str_attr(s, "module").unwrap_or("")))
            .collect();
        if !modules.is_empty() && unintended.is_empty() {
            return None;
        }
        // Without a module in the cache (the direct fetch failed), the hosts tell:
        // cmd/go's own discovery requests name the module path's host.
        // (A discovery request on a connection the proxy's requests share
        // shows only as the request.)
        let connects: Vec<&SpanState> = vcs
            .iter()
            .map(|&i| &self.build.spans[i])
            .filter(|s| matches!(s.kind, SpanKind::Connect | SpanKind::Http))
            .collect();
        let discovery: Vec<&SpanState> = connects.iter().copied().filter(|s| !self.is_vcs_process(s.pid)).collect();
        let host_of = |s: &SpanState| -> Option<String> {
            match (&s.target_role, str_attr(s, "target")) {
                (Some(_), Some(target)) => goenv::url_host(target).map(|(h, _)| h),
                _ => s.host.clone().or_else(|| s.addr.map(|a| a.to_string())),
            }
        };
        let mut hosts: Vec<String> =
            if discovery.is_empty() { &connects } else { &discovery }.iter().filter_map(|s| host_of(s)).collect();
        hosts.sort();
        hosts.dedup();
        if modules.is_empty() && !self.noproxy.is_empty() && hosts.iter().all(|h| goenv::patterns_may_cover_host(&self.noproxy, h)) {
            return None;
        }
        let (answer, mut evidence) = self.proxy_answer(entry, any_error);
        let cost = covered_ns(
            vcs.iter().map(|&i| interval(&self.build.spans[i])).chain(unintended.iter().map(|(_, s)| interval(s))).collect(),
        );
        let mut names: Vec<String> = unintended
            .iter()
            .map(|(_, s)| match str_attr(s, "vcs_url") {
                Some(url) => format!("{} from {url}", Self::module_name(s)),
                None => Self::module_name(s),
            })
            .collect();
        if names.is_empty() {
            names = self.build.vcs_urls().iter().map(|url| format!("the module from {url}")).collect();
        }
        if names.is_empty() {
            names = hosts.iter().map(|h| format!("a module of {h} (cmd/go's ?go-get=1 discovery; no VCS command ran)")).collect();
        }
        evidence.extend(unintended.iter().map(|(i, _)| *i));
        evidence.extend(vcs);
        let proxy = self.entry_text(entry);
        Some(Finding {
            kind: "fallback_to_direct".into(),
            severity: Severity::Warning,
            message: format!(
                "cmd/go went directly to version control for {} module(s) instead of the proxy {proxy} (GOPROXY entry {}), which {answer}: {}; the direct fetches took {}",
                names.len(),
                entry + 1,
                listing(&names),
                seconds(cost)
            ),
            remedy: format!(
                "make the modules available on {proxy}; if they are private, list them in GOPRIVATE/GONOPROXY so that going direct is intended; drop `,direct` from GOPROXY to make a module missing from the proxy an error"
            ),
            cost_ms: millis(cost),
            spans: ids(evidence),
        })
    }

    /// Failure 6: a proxy failed and cmd/go moved on to the next GOPROXY entry.
    fn proxy_fallthrough(&self) -> Option<Finding> {
        let entries: Vec<(usize, bool)> = self
            .table
            .proxies
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                ProxyEntry::Url { any_error, .. } => Some((i, *any_error)),
                _ => None,
            })
            .collect();
        let first_use = |entry: usize| self.entry_spans(entry).map(|(_, s)| s.start_ns).min();
        for (pos, &(from, any_error)) in entries.iter().enumerate() {
            let Some(from_start) = first_use(from) else { continue };
            let Some(to) = entries[pos + 1..]
                .iter()
                .map(|&(e, _)| e)
                .find(|&e| first_use(e).is_some_and(|t| t >= from_start))
            else {
                continue;
            };
            // Requests to the next entry that were all for the checksum
            // database: cmd/go asking for /sumdb/<name>/supported, not a fall-through.
            let to_requests: Vec<&SpanState> = self.entry_spans(to).filter(|(_, s)| s.kind == SpanKind::Http).map(|(_, s)| s).collect();
            if !to_requests.is_empty() && to_requests.iter().all(|s| is_sumdb_request(s)) {
                continue;
            }
            let (answer, mut evidence) = self.proxy_answer(from, any_error);
            let seen = !evidence.is_empty();
            let from_spans: Vec<usize> = self.entry_spans(from).map(|(i, _)| i).collect();
            let cost = covered_ns(from_spans.iter().map(|&i| interval(&self.build.spans[i])).collect());
            evidence.extend(from_spans);
            evidence.extend(self.entry_spans(to).filter(|(_, s)| s.kind == SpanKind::Connect).map(|(i, _)| i));
            let (from_text, to_text) = (self.entry_text(from), self.entry_text(to));
            // Inside TLS, with the checksum database in use, a contact with the next
            // entry may be cmd/go asking it for /sumdb/<name>/supported after the
            // first answered 404 there: that is not a failure, so say only what is seen.
            if !seen && self.sumdb_in_use() && !self.build.requests_complete() {
                return Some(Finding {
                    kind: "proxy_fallthrough".into(),
                    severity: Severity::Info,
                    message: format!(
                        "the build contacted {to_text} (GOPROXY entry {}) after {from_text} (entry {}); TLS hides whether module requests fell through or cmd/go only asked {to_text} whether it serves the checksum database (/sumdb/<name>/supported)",
                        to + 1,
                        from + 1
                    ),
                    remedy: format!("if private module paths must never reach {to_text}, list them in GOPRIVATE/GONOPROXY"),
                    cost_ms: 0.0,
                    spans: ids(evidence),
                });
            }
            let remedy = if any_error {
                format!(
                    "fix {from_text}; `|` after it sends every request on to {to_text} on any error: if private modules must never reach {to_text}, use `,` (only 404/410 move on) and list them in GOPRIVATE/GONOPROXY"
                )
            } else {
                format!("publish the modules on {from_text}, and list private modules in GOPRIVATE/GONOPROXY so that their paths are never sent to {to_text}")
            };
            return Some(Finding {
                kind: "proxy_fallthrough".into(),
                severity: Severity::Warning,
                message: format!(
                    "requests fell through from the proxy {from_text} (GOPROXY entry {}), which {answer}, to {to_text} (entry {}): every module path asked of {from_text} was then sent to {to_text}",
                    from + 1,
                    to + 1
                ),
                remedy,
                cost_ms: millis(cost),
                spans: ids(evidence),
            });
        }
        None
    }

    /// Failure 7: a module fetched from a private VCS host that GOPRIVATE and
    /// GONOSUMDB do not cover, so its path went to the checksum database.
    fn private_module_leak(&self) -> Option<Finding> {
        let (sumdb, name) = self.table.sumdb()?;
        let vcs_connects: Vec<(usize, &SpanState)> = self
            .spans()
            .filter(|(_, s)| {
                s.kind == SpanKind::Connect && s.role == Role::Vcs && s.target_role.is_none() && s.addr.is_some_and(is_private)
            })
            .collect();
        let (_, vcs) = *vcs_connects.first()?;
        let direct = self.direct_modules();
        let exposed: Vec<(usize, &SpanState)> = direct
            .iter()
            .filter(|(_, s)| !goenv::match_prefix_patterns(&self.nosumdb, str_attr(s, "module").unwrap_or("")))
            .copied()
            .collect();
        if !direct.is_empty() && exposed.is_empty() {
            return None;
        }
        // The database was asked once the private fetch had begun.
        let mut asked: Vec<usize> = self
            .spans()
            .filter(|(_, s)| {
                talks_to(s, Role::Sumdb) && matches!(s.kind, SpanKind::Connect | SpanKind::Tls) && s.start_ns >= vcs.start_ns
            })
            .map(|(i, _)| i)
            .collect();
        for group in self.sumdb_lookups(sumdb) {
            asked.extend(group.queries.iter().copied().filter(|&q| self.build.spans[q].start_ns >= vcs.start_ns));
        }
        // The lookups themselves, where the go command's requests are traced.
        let lookups: Vec<(usize, &SpanState)> = self
            .spans()
            .filter(|(_, s)| {
                s.kind == SpanKind::Http && talks_to(s, Role::Sumdb) && s.start_ns >= vcs.start_ns
                    && str_attr(s, "target").is_some_and(|t| t.contains("/lookup/"))
            })
            .collect();
        asked.extend(lookups.iter().map(|(i, _)| *i));
        let looked_up = exposed.iter().any(|(_, s)| s.attrs.contains_key("sumdb_lookup"));
        if asked.is_empty() && !looked_up {
            return None;
        }
        // cmd/go checks a module's go.mod with the database before it writes it to
        // the module cache: a module that fails the check leaves no module span,
        // only its repository in the VCS command lines.
        let what = if exposed.is_empty() {
            format!("the module from {}", listing(&self.build.vcs_urls()))
        } else {
            listing(&exposed.iter().map(|(_, s)| Self::module_name(s)).collect::<Vec<_>>())
        };
        // The module path's host: from the module, else the host cmd/go asked for
        // the import path (`?go-get=1`) before it ran the VCS.
        let prefix = exposed
            .first()
            .and_then(|(_, s)| str_attr(s, "module"))
            .and_then(|m| m.split('/').next())
            .map(str::to_string)
            .or_else(|| {
                self.spans()
                    .filter(|(_, s)| s.kind == SpanKind::Connect && s.role == Role::Vcs && !self.is_vcs_process(s.pid))
                    .find_map(|(_, s)| s.host.clone())
            })
            .unwrap_or_else(|| "<module path prefix>".into());
        let answer = lookups.first().map_or(String::new(), |(_, s)| {
            let target = str_attr(s, "target").unwrap_or("");
            match (s.status, str_attr(s, "error")) {
                (Some(status), _) => format!(" (GET {target}: HTTP {status})"),
                (None, Some(error)) => format!(" (GET {target}: {error})"),
                (None, None) => format!(" (GET {target})"),
            }
        });
        let outcome = if self.failed {
            "; the database does not know private modules, so verification failed and so did the build"
        } else {
            ""
        };
        let mut evidence: Vec<usize> = exposed.iter().map(|(i, _)| *i).collect();
        evidence.extend(vcs_connects.iter().map(|(i, _)| *i));
        evidence.extend(asked);
        Some(Finding {
            kind: "private_module_leak".into(),
            severity: self.severity_if_failed(),
            message: format!(
                "{what} came from a private host ({}) but GOPRIVATE/GONOSUMDB do not cover it, so cmd/go asked the checksum database {name} about it{answer}: the private module path left the network{outcome}",
                destination(vcs)
            ),
            remedy: format!(
                "add the private modules to GOPRIVATE (for example GOPRIVATE={prefix}); it implies GONOPROXY and GONOSUMDB"
            ),
            cost_ms: 0.0,
            spans: ids(evidence),
        })
    }

    /// Failure 11: a module's zip stopped arriving and never finished; cmd/go has no
    /// response timeout, so the build hangs until something kills it. The silence
    /// is the connection's longest gap between arrivals, or the time from its last
    /// arrival to its close (or the build's end) when nothing came after it.
    fn stalled_transfers(&self) -> Vec<Finding> {
        let threshold = self.settings.stall_threshold_ns as f64 / 1e6;
        let mut out = Vec::new();
        for (index, module) in self.spans().filter(|(_, s)| s.kind == SpanKind::Module) {
            if str_attr(module, "incomplete_part") != Some("zip") {
                continue;
            }
            let (start, end) = interval(module);
            let stalled = self
                .fetch_transfers(start, end)
                .filter_map(|(i, s)| {
                    let (silence_ms, until_close) = stall_of(s, start, end)?;
                    (silence_ms >= threshold).then_some((i, s, silence_ms, until_close))
                })
                .max_by(|a, b| a.2.total_cmp(&b.2));
            let Some((transfer_index, transfer, idle_ms, until_close)) = stalled else { continue };
            let received = transfer.attrs.get("bytes_received").and_then(Value::as_u64).unwrap_or(0);
            let ending = match (until_close, self.build.live, self.failed) {
                (true, true, _) => "is still waiting",
                (true, false, true) => "waited until it was stopped",
                (true, false, false) => "waited until the connection closed",
                (false, _, _) => "waited until data flowed again",
            };
            out.push(Finding {
                kind: "stalled_transfer".into(),
                severity: Severity::Error,
                message: format!(
                    "the download of {} from {} stalled: nothing arrived for {:.1} s after {received} bytes; cmd/go (which has no response timeout) {ending}",
                    Self::module_name(module),
                    destination(transfer),
                    idle_ms / 1000.0
                ),
                remedy: format!(
                    "check {}: a proxy that stops sending mid-body, or a middlebox that silently drops the connection; bound the CI step with a timeout and retry",
                    transfer.host.as_deref().unwrap_or("the server")
                ),
                cost_ms: idle_ms,
                spans: ids([index, transfer_index]),
            });
        }
        out
    }

    /// A module's zip was cut off: the connection carrying it was reset (by the
    /// server or a middlebox) while the zip arrived, and it never finished. cmd/go
    /// fails the module with `connection reset by peer`.
    fn reset_transfers(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for (index, module) in self.spans().filter(|(_, s)| s.kind == SpanKind::Module) {
            if str_attr(module, "incomplete_part") != Some("zip") {
                continue;
            }
            let (start, end) = interval(module);
            let Some((transfer_index, transfer)) = self.fetch_transfers(start, end).find(|(_, s)| {
                s.outcome == Some(Outcome::Reset) && s.end_ns.is_some_and(|close| close >= start)
            }) else {
                continue;
            };
            let received = transfer.attrs.get("bytes_received").and_then(Value::as_u64).unwrap_or(0);
            let cost = end.saturating_sub(start);
            out.push(Finding {
                kind: "transfer_reset".into(),
                severity: self.severity_if_failed(),
                message: format!(
                    "the download of {} from {} was cut off: the connection was reset after {received} bytes, before the zip was complete",
                    Self::module_name(module),
                    destination(transfer),
                ),
                remedy: format!(
                    "check {} and what is between: a server that drops connections mid-response, or a middlebox (proxy, load balancer, IDS) that resets long downloads",
                    transfer.host.as_deref().unwrap_or("the server")
                ),
                cost_ms: millis(cost),
                spans: ids([index, transfer_index]),
            });
        }
        out
    }

    /// Failure 12: module zips that took long to arrive, with the rate their host
    /// delivered at.
    fn slow_downloads(&self) -> Vec<Finding> {
        /// Module spans and their zips' (start, end).
        type SlowZips = (Vec<usize>, Vec<(u64, u64)>);
        let mut by_host: BTreeMap<String, SlowZips> = BTreeMap::new();
        for (&module, &(started, done)) in &self.build.zip_phase {
            let Some(done) = done.filter(|d| d.saturating_sub(started) >= SLOW_ZIP_NS) else { continue };
            // The connection that received the most while the zip arrived.
            let host = self
                .fetch_transfers(started, done)
                .max_by_key(|(_, s)| s.attrs.get("bytes_received").and_then(Value::as_u64).unwrap_or(0))
                .map(|(_, s)| s.host.clone().unwrap_or_else(|| destination(s)));
            let entry = by_host.entry(host.unwrap_or_else(|| "an unknown host".into())).or_default();
            entry.0.push(module);
            entry.1.push((started, done));
        }
        by_host
            .into_iter()
            .map(|(host, (mut modules, zips))| {
                modules.sort_unstable();
                let (bytes, busy_ms) = self
                    .spans()
                    .filter(|(_, s)| s.kind == SpanKind::Transfer && s.host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(&host)))
                    .fold((0u64, 0f64), |(b, t), (_, s)| {
                        (
                            b + s.attrs.get("bytes_received").and_then(Value::as_u64).unwrap_or(0),
                            t + num_attr(s, "receiving_ms").unwrap_or(0.0),
                        )
                    });
                let rate = if busy_ms > 0.0 { bytes as f64 / (busy_ms / 1000.0) } else { f64::INFINITY };
                let names: Vec<String> = modules
                    .iter()
                    .map(|&m| {
                        let s = &self.build.spans[m];
                        format!("{} ({:.1} s)", Self::module_name(s), num_attr(s, "zip_ms").unwrap_or(0.0) / 1000.0)
                    })
                    .collect();
                let slow_host = rate < SLOW_BYTES_PER_SECOND;
                let rate_text = if rate.is_finite() {
                    format!("; {host} delivered {} KiB at {:.0} KiB/s", bytes / 1024, rate / 1024.0)
                } else {
                    String::new()
                };
                let cost = covered_ns(zips);
                Finding {
                    kind: "slow_download".into(),
                    severity: if slow_host { Severity::Warning } else { Severity::Info },
                    message: format!(
                        "{} module zip(s) took {} s or more to arrive: {}{rate_text}",
                        modules.len(),
                        SLOW_ZIP_NS / 1_000_000_000,
                        listing(&names)
                    ),
                    remedy: if slow_host {
                        format!("{host} or the link to it is slow: use a closer proxy or mirror, or keep GOMODCACHE between builds")
                    } else {
                        "these modules are large: keep GOMODCACHE between builds so they are fetched once".into()
                    },
                    cost_ms: millis(cost),
                    spans: ids(modules),
                }
            })
            .collect()
    }

    /// Failure 13: IPv6 connects that never answer, each costing the wait before
    /// Go's dialer tries IPv4.
    fn dual_stack_delays(&self) -> Vec<Finding> {
        let mut by_host: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for (v6_index, v6) in self.spans() {
            if v6.kind != SpanKind::Connect
                || !v6.addr.is_some_and(|a| a.is_ipv6())
                || v6.outcome == Some(Outcome::Ok)
            {
                continue;
            }
            let fallback = self.spans().find(|(_, v4)| {
                v4.kind == SpanKind::Connect
                    && v4.pid == v6.pid
                    && v4.addr.is_some_and(|a| a.is_ipv4())
                    && v4.outcome == Some(Outcome::Ok)
                    && v4.host.is_some()
                    && v4.host == v6.host
                    && v4.start_ns >= v6.start_ns
                    && v4.start_ns <= v6.end_ns.unwrap_or(v6.start_ns) + DUAL_STACK_WINDOW_NS
            });
            if let Some((v4_index, _)) = fallback {
                by_host.entry(v6.host.clone().unwrap_or_default()).or_default().push((v6_index, v4_index));
            }
        }
        by_host
            .into_iter()
            .map(|(host, pairs)| {
                let spans = &self.build.spans;
                let cost = covered_ns(pairs.iter().map(|&(a, b)| (spans[a].start_ns, spans[b].start_ns)).collect());
                let waits: Vec<u64> = pairs.iter().map(|&(a, b)| spans[b].start_ns - spans[a].start_ns).collect();
                let average_ms = waits.iter().sum::<u64>() as f64 / waits.len() as f64 / 1e6;
                let v6 = &spans[pairs[0].0];
                Finding {
                    kind: "dual_stack_delay".into(),
                    severity: Severity::Warning,
                    message: format!(
                        "{} connect(s) to {host} tried IPv6 first ({}, {}) and went to IPv4 after {average_ms:.0} ms on average; {} lost",
                        pairs.len(),
                        destination(v6),
                        v6.outcome.map_or("no answer", |o| if o == Outcome::Aborted { "no answer" } else { o.as_str() }),
                        seconds(cost)
                    ),
                    remedy: format!(
                        "fix IPv6 from this agent to {host} (routes, firewall), or disable IPv6 on the agent if it has none; a host that does not serve IPv6 should not publish AAAA"
                    ),
                    cost_ms: millis(cost),
                    spans: ids(pairs.iter().flat_map(|&(a, b)| [a, b])),
                }
            })
            .collect()
    }

    /// Failure 16: the HTTPS_PROXY in the way: it refused the tunnel, or could not
    /// be reached.
    fn http_proxy_failures(&self) -> Vec<Finding> {
        let mut by_proxy: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, s) in self.spans() {
            let refused = is_connect_request(s) && s.status.is_some_and(|st| st >= 300);
            let unreachable = s.role == Role::HttpsProxy && s.kind == SpanKind::Connect && failed(s);
            if refused || unreachable {
                by_proxy.entry(destination(s)).or_default().push(i);
            }
        }
        by_proxy
            .into_iter()
            .map(|(proxy, evidence)| {
                let spans: Vec<&SpanState> = evidence.iter().map(|&i| &self.build.spans[i]).collect();
                let status = spans.iter().find_map(|s| s.status);
                let target = spans.iter().find_map(|s| str_attr(s, "target")).unwrap_or("its target");
                let (what, remedy) = match status {
                    Some(407) => (
                        format!("refused to tunnel to {target}: 407 Proxy Authentication Required (the credentials in HTTPS_PROXY are missing or wrong; they are not shown)"),
                        "check the user and password in HTTPS_PROXY/HTTP_PROXY for this agent".to_string(),
                    ),
                    Some(403) => (
                        format!("refused to tunnel to {target}: 403 Forbidden"),
                        format!("have {target} allowed by the proxy's rules, or add the host to NO_PROXY if it is reachable directly"),
                    ),
                    Some(other) => (
                        format!("answered {other} to CONNECT {target}"),
                        "check the HTTP proxy's logs for this agent's requests".to_string(),
                    ),
                    None => (
                        format!("could not be reached ({})", spans[0].outcome.map_or("error", Outcome::as_str)),
                        "check HTTPS_PROXY: the proxy's address and port, and that it runs".to_string(),
                    ),
                };
                // Recovered when every target refused was tunnelled to later on,
                // and a proxy that could not be reached was reached later.
                let recovered = spans.iter().all(|failed| match str_attr(failed, "target").filter(|_| is_connect_request(failed)) {
                    Some(target) => self.spans().any(|(_, s)| {
                        is_connect_request(s) && s.status == Some(200) && str_attr(s, "target") == Some(target)
                    }),
                    None => self.spans().any(|(_, s)| {
                        s.kind == SpanKind::Connect && s.outcome == Some(Outcome::Ok) && s.endpoints == failed.endpoints
                    }),
                });
                Finding {
                    kind: "http_proxy_failure".into(),
                    severity: if recovered { Severity::Warning } else { Severity::Error },
                    message: format!("the HTTP proxy {proxy} {what}; {} attempt(s)", spans.len()),
                    remedy,
                    cost_ms: millis(covered_ns(spans.iter().map(|s| interval(s)).collect())),
                    spans: ids(evidence),
                }
            })
            .collect()
    }

    /// HTTP error statuses from servers, one finding per host and status: every
    /// request of the go command when its requests are traced (uprobes), else
    /// plaintext HTTP only (inside TLS nothing else shows them).
    fn http_errors(&self) -> Vec<Finding> {
        let mut groups: BTreeMap<(String, u16), Vec<usize>> = BTreeMap::new();
        for (i, s) in self.spans() {
            if let Some(status) = s.status.filter(|&st| st >= 400)
                && !is_connect_request(s)
                && !(is_sumdb_support_probe(s) && matches!(status, 404 | 410))
            {
                groups.entry((s.host.clone().unwrap_or_else(|| destination(s)), status)).or_default().push(i);
            }
        }
        groups
            .into_iter()
            .map(|((host, status), evidence)| {
                let first = &self.build.spans[evidence[0]];
                let request = format!(
                    "{} {}",
                    str_attr(first, "method").unwrap_or("GET"),
                    str_attr(first, "target").unwrap_or("/")
                );
                // A 404/410 from a GOPROXY entry that another entry follows is the
                // protocol's "not here": cmd/go moves on, and what it did next is
                // the finding that matters.
                let moved_on = matches!(status, 404 | 410)
                    && evidence.iter().all(|&i| {
                        let s = &self.build.spans[i];
                        let (_, endpoints) = reaches(s);
                        !endpoints.is_empty()
                            && endpoints.iter().all(|&e| {
                                self.table.endpoints[e].proxy_index().is_some_and(|p| p + 1 < self.table.proxies.len())
                            })
                    });
                let severity = if moved_on || !self.failed && matches!(status, 404 | 410) {
                    Severity::Info
                } else if self.failed {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let remedy = match status {
                    401 | 403 => format!("check the credentials this agent uses for {host} (GOPROXY userinfo or .netrc; never shown here) and the access rules on {host}"),
                    404 | 410 => format!("{host} does not have it: check the module path and version, or whether the module is private (GOPRIVATE)"),
                    500.. => format!("{host} has a server-side problem: check its health and its upstream"),
                    _ => format!("check what {host} expects of this request"),
                };
                Finding {
                    kind: "http_error".into(),
                    severity,
                    message: format!("{host} answered HTTP {status} to {} request(s), for example {request}", evidence.len()),
                    remedy,
                    cost_ms: millis(covered_ns(evidence.iter().map(|&i| interval(&self.build.spans[i])).collect())),
                    spans: ids(evidence),
                }
            })
            .collect()
    }
}

/// The silence of a transfer that began while a zip was arriving in [start,
/// end]: (milliseconds, whether it lasted until the connection closed or the
/// build ended). A silence that began before the zip did is some other
/// connection's rest (an idle keep-alive connection), not this zip's stall.
fn stall_of(transfer: &SpanState, start: u64, end: u64) -> Option<(f64, bool)> {
    let mut best: Option<(f64, bool)> = None;
    // The longest gap between two arrivals, if it began during the zip.
    if let (Some(ms), Some(after)) = (num_attr(transfer, "longest_silence_ms"), num_attr(transfer, "longest_silence_after_ms")) {
        let from = transfer.start_ns + (after * 1e6) as u64;
        if from >= start && from <= end {
            best = Some((ms, false));
        }
    }
    // Nothing arrived, and nothing was sent, from the connection's last activity
    // to its close: a stall that never ended (the process was killed, or the
    // build ended with it). A request sent after the zip began and never
    // answered counts from the request.
    if let Some(received) = num_attr(transfer, "idle_at_close_ms") {
        let idle = num_attr(transfer, "sent_idle_at_close_ms").map_or(received, |sent| received.min(sent));
        let close = transfer.end_ns.unwrap_or(transfer.start_ns);
        let last = close.saturating_sub((idle * 1e6) as u64);
        if last >= start && last <= end && best.is_none_or(|(ms, _)| idle > ms) {
            best = Some((idle, true));
        }
    }
    best
}
