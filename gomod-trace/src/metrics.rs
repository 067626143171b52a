//! Prometheus metrics of the daemon (OpenMetrics text via prometheus-client).
//! Labels are bounded: role, outcome, rcode, finding kind, module source,
//! direction, program name, and on connects the host when a build's GOPROXY or
//! GOSUMDB names it (at most [`MAX_HOST_LABELS`] of them). Never a module path, an
//! address or a pid.
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{
    event::LossReason,
    timeline::{Build, FINDING_KINDS, Outcome, Role, Span, SpanKind},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RcodeLabels {
    rcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectLabels {
    role: String,
    /// A host named in the build's GOPROXY or GOSUMDB, else empty.
    host: String,
    outcome: String,
}

/// Distinct `host` label values the daemon hands out; hosts past that count
/// share the value `other`, so that no configuration can grow the series
/// without bound.
pub const MAX_HOST_LABELS: usize = 32;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleDirectionLabels {
    role: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcomeLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabels {
    what: String,
}

/// The `what` values of `gomod_trace_dropped_total`: the correlator's limits
/// (see `correlate::Dropped`), and builds the history writer could not take.
pub const DROPPED_WHAT: [&str; 5] = ["spans", "builds", "connections", "processes", "history_writes"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabels {
    program: String,
}

/// Why a build was not exported over OTLP (`gomod_trace_otlp_dropped_builds_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpDrop {
    /// The exporter's queue was full: the endpoint is slower than builds finish.
    QueueFull,
    /// The endpoint refused the request for good (a 4xx other than 429).
    Rejected,
    /// Still failing when the retry time ran out.
    RetriesExhausted,
    /// Still queued (or being retried) when the daemon's stop allowed no more time.
    Shutdown,
    /// Too large for the endpoint (413) even alone in its request.
    TooLarge,
    /// Offered after the exporter failed (see `otlp_exporter_failures`).
    ExporterFailed,
}

impl OtlpDrop {
    pub const ALL: [OtlpDrop; 6] = [
        OtlpDrop::QueueFull,
        OtlpDrop::Rejected,
        OtlpDrop::RetriesExhausted,
        OtlpDrop::Shutdown,
        OtlpDrop::TooLarge,
        OtlpDrop::ExporterFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OtlpDrop::QueueFull => "queue_full",
            OtlpDrop::Rejected => "rejected",
            OtlpDrop::RetriesExhausted => "retries_exhausted",
            OtlpDrop::Shutdown => "shutdown",
            OtlpDrop::TooLarge => "too_large",
            OtlpDrop::ExporterFailed => "exporter_failed",
        }
    }
}

/// Why one OTLP request failed (`gomod_trace_otlp_failed_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpFailure {
    /// HTTP 429: retried.
    Throttled,
    /// HTTP 502, 503 or 504: retried.
    Unavailable,
    /// HTTP 413: the request is sent again in halves.
    TooLarge,
    /// Any other status that is not a success: not retried.
    Rejected,
    /// No connection, or it broke: retried.
    Connection,
    /// No answer in time: retried.
    Timeout,
}

impl OtlpFailure {
    pub const ALL: [OtlpFailure; 6] = [
        OtlpFailure::Throttled,
        OtlpFailure::Unavailable,
        OtlpFailure::TooLarge,
        OtlpFailure::Rejected,
        OtlpFailure::Connection,
        OtlpFailure::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OtlpFailure::Throttled => "throttled",
            OtlpFailure::Unavailable => "unavailable",
            OtlpFailure::TooLarge => "too_large",
            OtlpFailure::Rejected => "rejected",
            OtlpFailure::Connection => "connection",
            OtlpFailure::Timeout => "timeout",
        }
    }
}

/// The OTLP exporter's counters: handles it keeps (no lock), registered in
/// [`Metrics`].
#[derive(Clone, Default)]
pub struct OtlpMetrics {
    exported: Counter,
    dropped: Family<ReasonLabels, Counter>,
    failed_requests: Family<ReasonLabels, Counter>,
    exporter_failures: Counter,
}

impl OtlpMetrics {
    pub fn exported(&self, builds: u64) {
        self.exported.inc_by(builds);
    }

    pub fn dropped(&self, reason: OtlpDrop, builds: u64) {
        self.dropped.get_or_create(&ReasonLabels { reason: reason.as_str().into() }).inc_by(builds);
    }

    pub fn failed(&self, reason: OtlpFailure) {
        self.failed_requests.get_or_create(&ReasonLabels { reason: reason.as_str().into() }).inc();
    }

    /// The exporter task ended by a panic.
    pub fn exporter_failed(&self) {
        self.exporter_failures.inc();
    }
}

fn latency_buckets() -> Histogram {
    // 1 ms … ~33 s: DNS answers, connects, handshakes, and the timeouts behind them.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16))
}

fn serialize<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub struct Metrics {
    registry: Registry,
    builds: Family<OutcomeLabels, Counter>,
    build_duration: Histogram,
    dns_queries: Family<RcodeLabels, Counter>,
    dns_latency: Histogram,
    connects: Family<ConnectLabels, Counter>,
    connect_latency: Family<RoleLabels, Histogram>,
    tls_handshake: Family<RoleLabels, Histogram>,
    bytes: Family<RoleDirectionLabels, Counter>,
    module_fetches: Family<SourceOutcomeLabels, Counter>,
    findings: Family<KindLabels, Counter>,
    pub events_processed: Counter,
    events_lost: Family<ReasonLabels, Counter>,
    pub open_builds: Gauge,
    dropped: Family<WhatLabels, Counter>,
    /// Failed writes to the history database (a build insert or a write check).
    pub store_failures: Counter,
    pub stalled_connections: Gauge,
    pub queue_fill: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub ring_fill: Gauge<f64, std::sync::atomic::AtomicU64>,
    program_runs: Family<ProgramLabels, Counter>,
    program_run_time: Family<ProgramLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// The OTLP exporter's counters (zero when it is not enabled).
    pub otlp: OtlpMetrics,
    /// Last kernel totals per program, to turn them into counter increments.
    program_totals: std::collections::HashMap<String, (u64, f64)>,
    /// The `host` label values handed out so far.
    host_labels: std::collections::HashSet<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gomod_trace");
        let builds = Family::<OutcomeLabels, Counter>::default();
        registry.register("builds", "Go builds traced to their end, by outcome (ok, failed, incomplete)", builds.clone());
        let build_duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.1, 2.0, 14));
        registry.register_with_unit("build_duration", "Wall time of traced Go builds", Unit::Seconds, build_duration.clone());
        let dns_queries = Family::<RcodeLabels, Counter>::default();
        registry.register("dns_queries", "DNS queries of builds, by answer code (timeout: no answer)", dns_queries.clone());
        let dns_latency = latency_buckets();
        registry.register_with_unit("dns_latency", "Time from a DNS query to its answer", Unit::Seconds, dns_latency.clone());
        let connects = Family::<ConnectLabels, Counter>::default();
        registry.register(
            "connects",
            "TCP connects of builds, by role of the remote end, host (when GOPROXY or GOSUMDB names it) and outcome",
            connects.clone(),
        );
        let connect_latency = Family::<RoleLabels, Histogram>::new_with_constructor(latency_buckets);
        registry.register_with_unit("connect_duration", "Time from SYN to established or failed", Unit::Seconds, connect_latency.clone());
        let tls_handshake = Family::<RoleLabels, Histogram>::new_with_constructor(latency_buckets);
        registry.register_with_unit("tls_handshake_duration", "Time from ClientHello to ServerHello (or failure)", Unit::Seconds, tls_handshake.clone());
        let bytes = Family::<RoleDirectionLabels, Counter>::default();
        registry.register_with_unit("transfer", "Payload bytes of build connections, by role and direction", Unit::Bytes, bytes.clone());
        let module_fetches = Family::<SourceOutcomeLabels, Counter>::default();
        registry.register("module_fetches", "Module fetches seen in the module cache, by source (proxy, direct) and outcome", module_fetches.clone());
        let findings = Family::<KindLabels, Counter>::default();
        registry.register("findings", "Findings of severity error or warning, by kind", findings.clone());
        // Every kind from the start: an alert on increase() sees the first one.
        for kind in FINDING_KINDS {
            let _ = findings.get_or_create(&KindLabels { kind: kind.into() });
        }
        let events_processed = Counter::default();
        registry.register("events_processed", "Kernel events decoded and correlated", events_processed.clone());
        let events_lost = Family::<ReasonLabels, Counter>::default();
        registry.register("events_lost", "Events lost: kernel ring buffer full, daemon queue full, undecodable", events_lost.clone());
        // Every reason from the start, so that an alert on a rise sees the zero.
        for reason in [LossReason::RingBufferFull, LossReason::QueueFull, LossReason::Undecodable] {
            let _ = events_lost.get_or_create(&ReasonLabels { reason: serialize(&reason) });
        }
        let open_builds = Gauge::default();
        registry.register("open_builds", "Builds started and not yet finished", open_builds.clone());
        let dropped = Family::<WhatLabels, Counter>::default();
        registry.register(
            "dropped",
            "What the daemon's limits refused (spans: events of a build at its span limit; builds, connections, processes: not tracked past their limit; history_writes: builds the history writer's queue could not take)",
            dropped.clone(),
        );
        for what in DROPPED_WHAT {
            let _ = dropped.get_or_create(&WhatLabels { what: what.into() });
        }
        let store_failures = Counter::default();
        registry.register(
            "store_failures",
            "Failed writes to the history database (builds are kept in memory and written again while it fails, up to a limit)",
            store_failures.clone(),
        );
        let stalled_connections = Gauge::default();
        registry.register(
            "stalled_connections",
            "Connections of running builds that have received nothing for longer than the stall threshold while a module was arriving",
            stalled_connections.clone(),
        );
        let queue_fill = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("event_queue_fill_ratio", "How full the daemon's queue between ring-buffer reader and correlator is (0 to 1)", queue_fill.clone());
        let ring_fill = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "ring_buffer_fill_ratio",
            "Highest fill of the kernel ring buffer (0 to 1) the reader found on waking in the last statistics interval (5 s)",
            ring_fill.clone(),
        );
        let program_runs = Family::<ProgramLabels, Counter>::default();
        registry.register("bpf_program_runs", "Runs of each eBPF program (kernel BPF statistics)", program_runs.clone());
        let program_run_time = Family::<ProgramLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit("bpf_program_run_time", "Time spent in each eBPF program (kernel BPF statistics)", Unit::Seconds, program_run_time.clone());
        let otlp = OtlpMetrics::default();
        registry.register("otlp_exported_builds", "Builds pushed to the OTLP endpoint and accepted by it", otlp.exported.clone());
        registry.register(
            "otlp_dropped_builds",
            "Builds never pushed to the OTLP endpoint, by reason (queue_full, rejected, retries_exhausted, shutdown, too_large, exporter_failed)",
            otlp.dropped.clone(),
        );
        registry.register(
            "otlp_failed_requests",
            "OTLP requests that failed, by reason (throttled, unavailable, too_large, rejected, connection, timeout); most are retried",
            otlp.failed_requests.clone(),
        );
        registry.register(
            "otlp_exporter_failures",
            "Times the OTLP exporter failed (a bug): builds are no longer exported until the daemon restarts",
            otlp.exporter_failures.clone(),
        );
        // Every reason from the start, so that an alert on a rise sees the zero.
        for reason in OtlpDrop::ALL {
            otlp.dropped(reason, 0);
        }
        for reason in OtlpFailure::ALL {
            let _ = otlp.failed_requests.get_or_create(&ReasonLabels { reason: reason.as_str().into() });
        }
        Metrics {
            registry,
            builds,
            build_duration,
            dns_queries,
            dns_latency,
            connects,
            connect_latency,
            tls_handshake,
            bytes,
            module_fetches,
            findings,
            events_processed,
            events_lost,
            open_builds,
            dropped,
            store_failures,
            stalled_connections,
            queue_fill,
            ring_fill,
            program_runs,
            program_run_time,
            otlp,
            program_totals: Default::default(),
            host_labels: Default::default(),
        }
    }

    /// Counts lost events.
    pub fn lost(&self, reason: LossReason, count: u64) {
        self.events_lost.get_or_create(&ReasonLabels { reason: serialize(&reason) }).inc_by(count);
    }

    /// Counts what a limit refused (`what`: one of [`DROPPED_WHAT`]).
    pub fn dropped(&self, what: &str, count: u64) {
        if count > 0 {
            self.dropped.get_or_create(&WhatLabels { what: what.into() }).inc_by(count);
        }
    }

    /// Adds the kernel's current totals for one program.
    pub fn program_stats(&mut self, program: &str, runs: u64, run_time_s: f64) {
        let labels = ProgramLabels { program: program.into() };
        let (last_runs, last_time) = self.program_totals.get(program).copied().unwrap_or((0, 0.0));
        if runs >= last_runs && run_time_s >= last_time {
            self.program_runs.get_or_create(&labels).inc_by(runs - last_runs);
            self.program_run_time.get_or_create(&labels).inc_by(run_time_s - last_time);
        }
        self.program_totals.insert(program.into(), (runs, run_time_s));
    }

    /// The `host` label of a connect: its host when it is a GOPROXY entry or the
    /// checksum database of the build's configuration (the span's role and
    /// `entry`, from the endpoint table) and a name, not an address; else empty.
    fn host_label(&mut self, span: &Span) -> String {
        let configured = matches!(span.role, Role::Proxy | Role::Sumdb)
            && (span.attrs.contains_key("entry") || span.attrs.contains_key("entry_candidates"));
        let Some(host) = span.host.as_deref().filter(|h| configured && h.parse::<std::net::IpAddr>().is_err()) else {
            return String::new();
        };
        let host = host.to_ascii_lowercase();
        if self.host_labels.contains(&host) || self.host_labels.len() < MAX_HOST_LABELS {
            self.host_labels.insert(host.clone());
            host
        } else {
            "other".into()
        }
    }

    /// Accounts one finished build.
    pub fn observe(&mut self, build: &Build) {
        let outcome = match (build.complete, build.exit_code) {
            (false, _) => "incomplete",
            (true, Some(0)) => "ok",
            (true, _) => "failed",
        };
        self.builds.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
        if let Some(end) = build.spans.first().and_then(|s| s.duration_ms) {
            self.build_duration.observe(end / 1000.0);
        }
        for span in &build.spans {
            let role = serialize(&span.role);
            let outcome = span.outcome.map(|o| o.as_str().to_string()).unwrap_or_else(|| "unknown".into());
            let seconds = span.duration_ms.unwrap_or(0.0) / 1000.0;
            match span.kind {
                SpanKind::Dns => {
                    let rcode = match span.outcome {
                        Some(Outcome::Timeout) => "timeout".to_string(),
                        _ => span.attrs.get("rcode").and_then(|v| v.as_str()).unwrap_or("unknown").to_string(),
                    };
                    self.dns_queries.get_or_create(&RcodeLabels { rcode }).inc();
                    if span.outcome != Some(Outcome::Timeout) {
                        self.dns_latency.observe(seconds);
                    }
                }
                SpanKind::Connect => {
                    let host = self.host_label(span);
                    self.connects.get_or_create(&ConnectLabels { role: role.clone(), host, outcome }).inc();
                    self.connect_latency.get_or_create(&RoleLabels { role }).observe(seconds);
                }
                SpanKind::Tls => self.tls_handshake.get_or_create(&RoleLabels { role }).observe(seconds),
                SpanKind::Transfer => {
                    for (direction, attr) in [("sent", "bytes_sent"), ("received", "bytes_received")] {
                        let n = span.attrs.get(attr).and_then(|v| v.as_u64()).unwrap_or(0);
                        self.bytes.get_or_create(&RoleDirectionLabels { role: role.clone(), direction: direction.into() }).inc_by(n);
                    }
                }
                SpanKind::Module => {
                    let source = span.attrs.get("source").and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
                    self.module_fetches.get_or_create(&SourceOutcomeLabels { source, outcome }).inc();
                }
                SpanKind::Process | SpanKind::Http => {}
            }
        }
        for finding in &build.findings {
            if finding.severity >= crate::timeline::Severity::Warning {
                self.findings.get_or_create(&KindLabels { kind: finding.kind.clone() }).inc();
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{correlate::Correlator, record};

    fn fixture(name: &str) -> Build {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(format!("{name}.jsonl"));
        Correlator::timeline(record::read(&path).unwrap(), Default::default()).builds.remove(0)
    }

    #[test]
    fn builds_become_bounded_series() {
        let mut metrics = Metrics::new();
        metrics.observe(&fixture("clean_download"));
        metrics.observe(&fixture("sumdb_dropped_remote"));
        let text = metrics.encode();
        for line in [
            "gomod_trace_builds_total{outcome=\"ok\"} 1",
            "gomod_trace_builds_total{outcome=\"failed\"} 1",
            "gomod_trace_findings_total{kind=\"sumdb_unreachable\"} 1",
            "gomod_trace_connects_total{role=\"sumdb\",host=\"sum.lab.test\",outcome=\"timeout\"} 1",
            "gomod_trace_module_fetches_total{source=\"proxy\",outcome=\"ok\"} 24",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.contains("# TYPE gomod_trace_dns_latency_seconds histogram"));
        for line in [
            "gomod_trace_otlp_exported_builds_total 0",
            "gomod_trace_otlp_dropped_builds_total{reason=\"queue_full\"} 0",
            "gomod_trace_otlp_failed_requests_total{reason=\"unavailable\"} 0",
            "gomod_trace_otlp_dropped_builds_total{reason=\"too_large\"} 0",
            "gomod_trace_otlp_exporter_failures_total 0",
            "gomod_trace_dropped_total{what=\"connections\"} 0",
            "gomod_trace_dropped_total{what=\"history_writes\"} 0",
            "gomod_trace_store_failures_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // No addresses, module paths or pids in any label.
        for forbidden in ["10.231.", "lab.test/mod", "pid="] {
            assert!(!text.contains(forbidden), "{forbidden} in metrics");
        }
    }

    #[test]
    fn host_labels_only_for_hosts_the_configuration_names_and_bounded() {
        let mut metrics = Metrics::new();
        let span = |role: Role, host: Option<&str>, entry: bool| Span {
            id: 1,
            parent: None,
            kind: SpanKind::Connect,
            start: String::new(),
            end: None,
            duration_ms: None,
            pid: 1,
            role,
            host: host.map(str::to_string),
            addr: None,
            port: Some(443),
            outcome: None,
            attrs: if entry { [("entry".to_string(), "GOPROXY[1] https://x".into())].into() } else { Default::default() },
        };
        assert_eq!(metrics.host_label(&span(Role::Proxy, Some("Proxy.Example"), true)), "proxy.example");
        assert_eq!(metrics.host_label(&span(Role::Sumdb, Some("sum.example"), true)), "sum.example");
        for unnamed in [
            span(Role::HttpsProxy, Some("webproxy.example"), true),
            span(Role::Other, Some("elsewhere.example"), false),
            span(Role::Proxy, Some("10.0.0.1"), true),
            span(Role::Proxy, None, true),
            span(Role::Vcs, Some("git.example"), false),
        ] {
            assert_eq!(metrics.host_label(&unnamed), "", "{unnamed:?}");
        }
        // Past the limit, new hosts share one value; those already out keep theirs.
        let labels: Vec<String> =
            (0..40).map(|i| metrics.host_label(&span(Role::Proxy, Some(&format!("p{i}.example")), true))).collect();
        assert_eq!(labels.iter().filter(|l| *l == "other").count(), 40 - (MAX_HOST_LABELS - 2));
        assert_eq!(metrics.host_label(&span(Role::Sumdb, Some("sum.example"), true)), "sum.example");
    }
}
