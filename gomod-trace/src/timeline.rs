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

/// An RFC 3339 time (as the timeline writes them) as nanoseconds since the Unix
/// epoch.
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    use time::format_description::well_known::Rfc3339;
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
    fn formats_time_with_nanoseconds() {
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000_123_456_789));
        assert_eq!(millis(12_345_678), 12.345);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
