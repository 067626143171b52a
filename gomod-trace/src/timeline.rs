//! The timeline model and its JSON contract (shared/docs/contract.md): what every
//! exporter renders and what users script against. Field names and enum spellings
//! here are the contract; change them only with a schema version bump.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub schema_version: u32,
    pub builds: Vec<Build>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigValue {
    pub value: String,
    /// `env`, `goenv_file`, `goroot_go_env` or `default`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub id: String,
    pub command: Vec<String>,
    pub pid: u32,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    /// False when events of this build were lost or tracing started late.
    pub complete: bool,
    /// `running` for a build the daemon shows before it ended (its spans so far);
    /// absent once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<BuildStatus>,
    pub config: BTreeMap<String, ConfigValue>,
    /// How the build was seen, where that limits what the timeline shows
    /// (`requests: not traced (go1.17.13 unsupported)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub spans: Vec<Span>,
    pub findings: Vec<Finding>,
}

impl Build {
    /// The build's start and end in ns since the Unix epoch, as far as they were
    /// seen: a build still running (or whose end was never seen) ends with the
    /// last thing seen of it; an unreadable start is its first span's.
    pub fn seen_ns(&self) -> (i128, i128) {
        let span_times = || self.spans.iter().flat_map(|s| [Some(s.start.as_str()), s.end.as_deref()]).flatten().filter_map(parse_rfc3339);
        let start = parse_rfc3339(&self.started_at).or_else(|| span_times().min()).unwrap_or(0);
        let end = self.ended_at.as_deref().and_then(parse_rfc3339).or_else(|| span_times().max()).unwrap_or(start);
        (start, end.max(start))
    }

    /// The transfers a `stalled_transfer` finding names: the connections stalled
    /// (for a running build: now), each once.
    pub fn stalled_transfers(&self) -> Vec<&Span> {
        let mut ids: Vec<u32> = self.findings.iter().filter(|f| f.kind == "stalled_transfer").flat_map(|f| f.spans.iter().copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        self.spans.iter().filter(|s| s.kind == SpanKind::Transfer && ids.binary_search(&s.id).is_ok()).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    Process,
    Dns,
    Connect,
    Tls,
    Http,
    Transfer,
    Module,
}

impl SpanKind {
    /// The contract's spelling (`connect`, `http`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Process => "process",
            SpanKind::Dns => "dns",
            SpanKind::Connect => "connect",
            SpanKind::Tls => "tls",
            SpanKind::Http => "http",
            SpanKind::Transfer => "transfer",
            SpanKind::Module => "module",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Proxy,
    Sumdb,
    Vcs,
    HttpsProxy,
    Dns,
    Other,
}

impl Role {
    /// The contract's spelling (`proxy`, `https_proxy`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            Role::Sumdb => "sumdb",
            Role::Vcs => "vcs",
            Role::HttpsProxy => "https_proxy",
            Role::Dns => "dns",
            Role::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Timeout,
    Refused,
    Unreachable,
    Dropped,
    Reset,
    Nxdomain,
    Servfail,
    Alert,
    Aborted,
    Error,
}

impl Outcome {
    pub fn is_failure(self) -> bool {
        self != Outcome::Ok
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::Dropped => "dropped",
            Outcome::Reset => "reset",
            Outcome::Nxdomain => "nxdomain",
            Outcome::Servfail => "servfail",
            Outcome::Alert => "alert",
            Outcome::Aborted => "aborted",
            Outcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub id: u32,
    pub parent: Option<u32>,
    pub kind: SpanKind,
    pub start: String,
    pub end: Option<String>,
    pub duration_ms: Option<f64>,
    pub pid: u32,
    pub role: Role,
    pub host: Option<String>,
    pub addr: Option<String>,
    pub port: Option<u16>,
    pub outcome: Option<Outcome>,
    pub attrs: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: String,
    pub severity: Severity,
    pub message: String,
    pub remedy: String,
    pub cost_ms: f64,
    pub spans: Vec<u32>,
}

/// Every finding kind of the contract (contract.md), in its order.
pub const FINDING_KINDS: [&str; 19] = [
    "firewall_drop",
    "connect_refused",
    "host_unreachable",
    "connect_timeout",
    "sumdb_unreachable",
    "fallback_to_direct",
    "proxy_fallthrough",
    "private_module_leak",
    "dns_failure",
    "tls_handshake_failure",
    "tls_timeout",
    "stalled_transfer",
    "slow_download",
    "dual_stack_delay",
    "checksum_verification_disabled",
    "http_proxy_failure",
    "http_error",
    "incomplete_trace",
    "transfer_reset",
];

/// Nanoseconds since the Unix epoch as RFC 3339 with nanoseconds, UTC.
pub fn rfc3339(unix_ns: i128) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(unix_ns)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix_ns}ns"))
}

/// An RFC 3339 time (as the timeline writes them, the inverse of [`rfc3339`]) as
/// nanoseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    use time::format_description::well_known::Rfc3339;
    // What `rfc3339` writes for a time it cannot format.
    if let Some(ns) = text.strip_prefix('@').and_then(|t| t.strip_suffix("ns")) {
        return ns.parse().ok();
    }
    time::OffsetDateTime::parse(text, &Rfc3339).ok().map(|t| t.unix_timestamp_nanos())
}

/// Milliseconds with microsecond precision: stable across runs and platforms.
pub fn millis(ns: u64) -> f64 {
    (ns / 1_000) as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_whose_end_was_not_seen_ends_with_what_was_seen() {
        let span = |start: &str, end: Option<&str>| Span {
            id: 1,
            parent: None,
            kind: SpanKind::Dns,
            start: start.into(),
            end: end.map(Into::into),
            duration_ms: None,
            pid: 1,
            role: Role::Dns,
            host: None,
            addr: None,
            port: None,
            outcome: None,
            attrs: BTreeMap::new(),
        };
        let mut build = Build {
            id: "1-1".into(),
            command: vec![],
            pid: 1,
            started_at: "2023-11-14T22:13:20Z".into(),
            ended_at: None,
            exit_code: None,
            complete: true,
            state: None,
            config: BTreeMap::new(),
            notes: vec![],
            spans: vec![span("2023-11-14T22:13:21Z", Some("2023-11-14T22:13:22Z")), span("2023-11-14T22:13:23Z", None)],
            findings: vec![],
        };
        let at = |s: i128| 1_700_000_000_000_000_000 + s * 1_000_000_000;
        assert_eq!(build.seen_ns(), (at(0), at(3)));
        build.ended_at = Some("2023-11-14T22:13:30Z".into());
        assert_eq!(build.seen_ns(), (at(0), at(10)));
        build.started_at = "garbage".into();
        assert_eq!(build.seen_ns(), (at(1), at(10)));
    }

    #[test]
    fn names_are_the_contracts_spelling() {
        use SpanKind::*;
        for kind in [Process, Dns, Connect, Tls, Http, Transfer, Module] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for role in [Role::Proxy, Role::Sumdb, Role::Vcs, Role::HttpsProxy, Role::Dns, Role::Other] {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        for outcome in [Outcome::Ok, Outcome::Timeout, Outcome::Dropped, Outcome::Nxdomain, Outcome::Error] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
    }

    #[test]
    fn formats_time_with_nanoseconds() {
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000_123_456_789));
        assert_eq!(millis(12_345_678), 12.345);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339(&rfc3339(i128::MAX)), Some(i128::MAX));
    }
}
