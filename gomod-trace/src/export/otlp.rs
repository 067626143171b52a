//! The OpenTelemetry export: timelines as OTLP traces, built from the
//! opentelemetry-proto crate's generated messages (protobuf for the daemon's push,
//! the crate's serde for OTLP/JSON). One trace per build. It never changes a
//! timeline, does no I/O, and never hand-writes protobuf.
//!
//! Ids are derived, not random, so that exporting a build twice gives the same
//! trace and span ids, and different builds
//! differ: trace id = H(`gomod-trace/build/<build id>`), span id = the high 8
//! bytes of H(`gomod-trace/build/<build id>/span/<span id>`) (the build's own
//! span: `…/root`), where H is FNV-1a-128 with murmur3's 64-bit finalizer on each
//! half (FNV alone leaves ids of similar names looking alike). Never all zeros.
//!
//! Attributes follow the OpenTelemetry semantic conventions where one exists
//! (`server.address`, `http.request.method`, `tls.protocol.version`, …; see
//! [`semantic_key`]); every other timeline attribute is kept as
//! `gomod_trace.<attr>`.
use std::collections::BTreeMap;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span, status},
};
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::timeline::{Build, Outcome, Severity, Span, SpanKind, Timeline, parse_rfc3339};

/// What the resource of every exported trace says about the exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInfo {
    /// `service.version`.
    pub service_version: String,
    /// `host.name`: the host that traced (and exports) the builds.
    pub host_name: Option<String>,
}

impl ResourceInfo {
    /// This gomod-trace on this host.
    pub fn this_host() -> ResourceInfo {
        let host_name = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).filter(|h| !h.is_empty());
        ResourceInfo { service_version: env!("CARGO_PKG_VERSION").to_string(), host_name }
    }
}

/// The instrumentation scope of every span.
pub const SCOPE: &str = "gomod-trace";

/// The builds as one OTLP request: one resource (this gomod-trace), one scope,
/// and per build a trace of the build's own span and one span per timeline span.
pub fn trace_request(builds: &[Build], resource: &ResourceInfo) -> ExportTraceServiceRequest {
    let mut attributes = vec![string("service.name", "gomod-trace"), string("service.version", &resource.service_version)];
    if let Some(host) = &resource.host_name {
        attributes.push(string("host.name", host));
    }
    let spans = builds.iter().flat_map(build_spans).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes, ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE.into(),
                    version: resource.service_version.clone(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// OTLP/JSON (the OTLP specification's JSON encoding of an
/// ExportTraceServiceRequest) on one line: the file format the OpenTelemetry
/// Collector's `otlpjsonfile` receiver reads, and what an OTLP/HTTP endpoint
/// takes with `Content-Type: application/json`. Its resource is the host that
/// renders it (`host.name`): for `replay`, the machine replaying.
///
/// The crate's serde output was checked against the specification: lowerCamelCase
/// field names, trace and span ids as lowercase hex, 64-bit integers (times,
/// `intValue`) as decimal strings, enums (span kind, status code) as integers.
/// It also writes fields at their default values (`"traceState": ""`, an empty
/// `parentSpanId` on a trace's root), which the specification's receivers accept.
pub fn render_json(timeline: &Timeline) -> String {
    let request = trace_request(&timeline.builds, &ResourceInfo::this_host());
    let mut out = serde_json::to_string(&request).expect("OTLP messages serialize");
    out.push('\n');
    out
}

/// The trace id of a build.
pub fn trace_id(build_id: &str) -> [u8; 16] {
    nonzero(hash(format!("gomod-trace/build/{build_id}").as_bytes()).to_be_bytes())
}

/// The span id of a timeline span of a build, or of the build's own span (`None`).
pub fn span_id(build_id: &str, span: Option<u32>) -> [u8; 8] {
    let name = match span {
        Some(id) => format!("gomod-trace/build/{build_id}/span/{id}"),
        None => format!("gomod-trace/build/{build_id}/root"),
    };
    let hash = hash(name.as_bytes()).to_be_bytes();
    nonzero(hash[..8].try_into().expect("8 bytes"))
}

/// The ids' hash: FNV-1a-128, each half then mixed (a bijection) so that every
/// input bit moves every output bit.
fn hash(data: &[u8]) -> u128 {
    let h = fnv1a_128(data);
    let (hi, lo) = ((h >> 64) as u64, h as u64);
    let hi = fmix64(hi ^ lo.rotate_left(29));
    let lo = fmix64(lo ^ hi);
    (u128::from(hi) << 64) | u128::from(lo)
}

/// murmur3's 64-bit finalizer.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ceb9fe1a85ec53);
    k ^ (k >> 33)
}

/// FNV-1a, 128 bits: stable across versions and platforms (unlike std's hashers).
fn fnv1a_128(data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    data.iter().fold(OFFSET, |hash, &byte| (hash ^ byte as u128).wrapping_mul(PRIME))
}

/// All-zero ids are invalid in OTLP.
fn nonzero<const N: usize>(mut id: [u8; N]) -> [u8; N] {
    if id.iter().all(|&b| b == 0) {
        id[N - 1] = 1;
    }
    id
}

/// Nanoseconds since the Unix epoch of a timeline time (RFC 3339, or the
/// `@<ns>ns` a time out of RFC 3339's range is written as).
fn unix_ns(time: &str) -> Option<u64> {
    u64::try_from(parse_rfc3339(time)?).ok()
}

/// Times before 1970 (never seen) as 0.
fn nonnegative(ns: i128) -> u64 {
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

/// The build's own span's name: its command, as few words as say what it is
/// (`go mod download`, `go get`): the program's name and the plain words after
/// it, never a module path or a flag (span names must stay low-cardinality).
pub fn build_span_name(command: &[String]) -> String {
    let Some(program) = command.first() else { return "build".into() };
    let program = program.rsplit('/').next().unwrap_or(program);
    let words = command[1..].iter().take_while(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())).take(2);
    std::iter::once(program).chain(words.map(String::as_str)).collect::<Vec<_>>().join(" ")
}

/// A span's name: short and low-cardinality.
pub fn span_name(span: &Span) -> String {
    let attr = |key: &str| span.attrs.get(key).and_then(|v| v.as_str());
    match span.kind {
        SpanKind::Process => match attr("comm") {
            Some(comm) => format!("process {comm}"),
            None => "process".into(),
        },
        SpanKind::Dns => match attr("qtype") {
            Some(qtype) => format!("dns {qtype}"),
            None => "dns".into(),
        },
        SpanKind::Connect => "connect".into(),
        SpanKind::Tls => "tls handshake".into(),
        SpanKind::Http => attr("method").unwrap_or("HTTP").into(),
        SpanKind::Transfer => "transfer".into(),
        SpanKind::Module => "module download".into(),
    }
}

/// The semantic-convention key a timeline attribute of this span kind is
/// exported under, when its value is exported unchanged; other attributes are
/// `gomod_trace.<attr>`.
pub fn semantic_key(kind: SpanKind, attr: &str) -> Option<&'static str> {
    Some(match (kind, attr) {
        (SpanKind::Http, "method") => "http.request.method",
        (SpanKind::Http, "status") => "http.response.status_code",
        (SpanKind::Http, "url") => "url.full",
        (SpanKind::Tls, "sni") => "tls.client.server_name",
        (SpanKind::Tls, "alpn") => "tls.next_protocol",
        (SpanKind::Process, "argv") => "process.command_args",
        (SpanKind::Process, "comm") => "process.executable.name",
        (SpanKind::Process, "exit_code") => "process.exit.code",
        _ => return None,
    })
}

fn is_network(kind: SpanKind) -> bool {
    matches!(kind, SpanKind::Dns | SpanKind::Connect | SpanKind::Tls | SpanKind::Http | SpanKind::Transfer)
}

/// Attributes in the order they were set; a key set again replaces its value.
#[derive(Default)]
struct Attributes(Vec<KeyValue>);

impl Attributes {
    fn set(&mut self, key: &str, value: AnyValue) {
        match self.0.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = Some(value),
            None => self.0.push(KeyValue { key: key.into(), value: Some(value), ..Default::default() }),
        }
    }

    fn str(&mut self, key: &str, value: &str) {
        self.set(key, any(any_value::Value::StringValue(value.into())));
    }

    fn int(&mut self, key: &str, value: i64) {
        self.set(key, any(any_value::Value::IntValue(value)));
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.set(key, any(any_value::Value::BoolValue(value)));
    }

    fn json(&mut self, key: &str, value: &serde_json::Value) {
        if let Some(value) = json_value(value) {
            self.set(key, value);
        }
    }
}

fn any(value: any_value::Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.into(), value: Some(any(any_value::Value::StringValue(value.into()))), ..Default::default() }
}

/// A timeline attribute's JSON value as an OTLP value (`null` has none).
fn json_value(value: &serde_json::Value) -> Option<AnyValue> {
    use serde_json::Value;
    Some(any(match value {
        Value::Null => return None,
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => any_value::Value::IntValue(i),
            (None, Some(f)) if n.is_f64() && f.is_finite() => any_value::Value::DoubleValue(f),
            // A u64 past i64: keep its digits.
            _ => any_value::Value::StringValue(n.to_string()),
        },
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Array(items) => any_value::Value::ArrayValue(ArrayValue { values: items.iter().filter_map(json_value).collect() }),
        Value::Object(map) => any_value::Value::KvlistValue(KeyValueList {
            values: map
                .iter()
                .filter_map(|(k, v)| Some(KeyValue { key: k.clone(), value: Some(json_value(v)?), ..Default::default() }))
                .collect(),
        }),
    }))
}

/// The spans of one build: its own, then one per timeline span, in order.
fn build_spans(build: &Build) -> Vec<OtlpSpan> {
    let trace = trace_id(&build.id).to_vec();
    let root_id = span_id(&build.id, None).to_vec();
    // A build still running (or whose end was never seen) ends at the last thing seen of it.
    let (start, end) = build.seen_ns();
    let (start, end) = (nonnegative(start), nonnegative(end));
    let by_id: BTreeMap<u32, &Span> = build.spans.iter().map(|s| (s.id, s)).collect();

    // Findings become events of the span of their first referenced span.
    let mut events: BTreeMap<Option<u32>, Vec<span::Event>> = BTreeMap::new();
    for finding in &build.findings {
        let on = finding.spans.first().copied().filter(|id| by_id.contains_key(id));
        let time = on.and_then(|id| by_id[&id].end.as_deref().and_then(unix_ns)).unwrap_or(end);
        let mut attributes = Attributes::default();
        attributes.str("gomod_trace.finding.severity", severity_str(finding.severity));
        attributes.str("gomod_trace.finding.message", &finding.message);
        attributes.str("gomod_trace.finding.remedy", &finding.remedy);
        if finding.cost_ms.is_finite() {
            attributes.set("gomod_trace.finding.cost_ms", any(any_value::Value::DoubleValue(finding.cost_ms)));
        }
        let spans = finding.spans.iter().map(|&id| any(any_value::Value::IntValue(id.into()))).collect();
        attributes.set("gomod_trace.finding.spans", any(any_value::Value::ArrayValue(ArrayValue { values: spans })));
        events.entry(on).or_default().push(span::Event {
            time_unix_nano: time,
            name: finding.kind.clone(),
            attributes: attributes.0,
            dropped_attributes_count: 0,
        });
    }

    let mut out = Vec::with_capacity(build.spans.len() + 1);
    out.push(OtlpSpan {
        trace_id: trace.clone(),
        span_id: root_id.clone(),
        name: build_span_name(&build.command),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start),
        attributes: build_attributes(build),
        events: events.remove(&None).unwrap_or_default(),
        status: Some(build_status(build)),
        ..Default::default()
    });
    for s in &build.spans {
        let span_start = unix_ns(&s.start).unwrap_or(start);
        let span_end = s.end.as_deref().and_then(unix_ns);
        let mut attributes = span_attributes(s, &by_id);
        if span_end.is_none() {
            attributes.bool("gomod_trace.unfinished", true);
        }
        let parent = match s.parent {
            Some(p) if by_id.contains_key(&p) => span_id(&build.id, Some(p)).to_vec(),
            _ => root_id.clone(),
        };
        out.push(OtlpSpan {
            trace_id: trace.clone(),
            span_id: span_id(&build.id, Some(s.id)).to_vec(),
            parent_span_id: parent,
            name: span_name(s),
            kind: if is_network(s.kind) { span::SpanKind::Client } else { span::SpanKind::Internal } as i32,
            start_time_unix_nano: span_start,
            end_time_unix_nano: span_end.unwrap_or(end).max(span_start),
            attributes: attributes.0,
            events: events.remove(&Some(s.id)).unwrap_or_default(),
            status: Some(span_status(s)),
            ..Default::default()
        });
    }
    out
}

fn severity_str(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

fn build_attributes(build: &Build) -> Vec<KeyValue> {
    let mut a = Attributes::default();
    a.str("gomod_trace.build.id", &build.id);
    a.bool("gomod_trace.build.complete", build.complete);
    a.int("process.pid", build.pid.into());
    a.json("process.command_args", &serde_json::json!(build.command));
    if let Some(code) = build.exit_code {
        a.int("process.exit.code", code.into());
    }
    if build.state.is_some() {
        a.str("gomod_trace.build.state", "running");
    }
    if !build.notes.is_empty() {
        a.json("gomod_trace.build.notes", &serde_json::json!(build.notes));
    }
    for (name, config) in &build.config {
        let name = name.to_ascii_lowercase();
        a.str(&format!("gomod_trace.config.{name}"), &config.value);
        a.str(&format!("gomod_trace.config_source.{name}"), &config.source);
    }
    a.0
}

fn build_status(build: &Build) -> Status {
    let failed_finding = build.findings.iter().find(|f| f.severity == Severity::Error);
    let message = match (build.exit_code, failed_finding) {
        (Some(code), _) if code != 0 => match failed_finding {
            Some(f) => format!("exit status {code}: {}", f.kind),
            None => format!("exit status {code}"),
        },
        (_, Some(f)) => f.kind.clone(),
        _ => return Status::default(),
    };
    Status { message, code: status::StatusCode::Error as i32 }
}

fn span_status(s: &Span) -> Status {
    match s.outcome {
        Some(outcome) if outcome.is_failure() => {
            let attr = |key: &str| s.attrs.get(key);
            let message = match (attr("error").and_then(|v| v.as_str()), attr("status").and_then(|v| v.as_u64())) {
                (Some(error), _) => error.to_string(),
                (None, Some(status)) => format!("HTTP {status}"),
                (None, None) => format!("{} {}", s.kind.as_str(), outcome.as_str()),
            };
            Status { message, code: status::StatusCode::Error as i32 }
        }
        _ => Status::default(),
    }
}

fn span_attributes(s: &Span, by_id: &BTreeMap<u32, &Span>) -> Attributes {
    let mut a = Attributes::default();
    a.int("gomod_trace.span_id", s.id.into());
    a.str("gomod_trace.kind", s.kind.as_str());
    a.str("gomod_trace.role", s.role.as_str());
    if let Some(outcome) = s.outcome {
        a.str("gomod_trace.outcome", outcome.as_str());
    }
    a.int("process.pid", s.pid.into());
    // The remote end: for a DNS query the name asked about is not the server's.
    let server = if s.kind == SpanKind::Dns {
        if let Some(host) = &s.host {
            a.str("dns.question.name", host);
        }
        s.addr.as_deref()
    } else {
        s.host.as_deref().or(s.addr.as_deref())
    };
    if let Some(server) = server {
        a.str("server.address", server);
        if let Some(port) = s.port {
            a.int("server.port", port.into());
        }
    }
    if let Some(addr) = &s.addr {
        a.str("network.peer.address", addr);
        if let Some(port) = s.port {
            a.int("network.peer.port", port.into());
        }
        if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
            a.str("network.type", if ip.is_ipv4() { "ipv4" } else { "ipv6" });
        }
    }
    if matches!(s.kind, SpanKind::Connect | SpanKind::Tls | SpanKind::Http | SpanKind::Transfer) {
        a.str("network.transport", "tcp");
    }
    for (key, value) in &s.attrs {
        match semantic_key(s.kind, key) {
            Some(semantic) => a.json(semantic, value),
            None => a.json(&format!("gomod_trace.{key}"), value),
        }
    }
    let attr = |key: &str| s.attrs.get(key).and_then(|v| v.as_str());
    match s.kind {
        SpanKind::Http => {
            if let Some((name, version)) = attr("proto").and_then(|p| p.split_once('/')) {
                a.str("network.protocol.name", &name.to_ascii_lowercase());
                a.str("network.protocol.version", version.strip_suffix(".0").unwrap_or(version));
            }
            if attr("url").is_none()
                && let Some(url) = request_url(s, by_id)
            {
                a.str("url.full", &url);
            }
        }
        SpanKind::Tls => {
            if let Some(version) = attr("version").and_then(|v| v.strip_prefix("TLS")) {
                a.str("tls.protocol.name", "tls");
                a.str("tls.protocol.version", version);
            }
            if let Some(outcome) = s.outcome {
                a.bool("tls.established", outcome == Outcome::Ok);
            }
        }
        _ => {}
    }
    if let Some(outcome) = s.outcome.filter(|o| o.is_failure()) {
        // HTTP semantic conventions: an error status is its own error type.
        let status = s.attrs.get("status").and_then(|v| v.as_u64()).filter(|&c| c >= 400);
        match status {
            Some(status) if s.kind == SpanKind::Http && attr("error").is_none() => a.str("error.type", &status.to_string()),
            _ => a.str("error.type", outcome.as_str()),
        }
    }
    a
}

/// The full URL of a request the timeline gives only as a target: `https` when
/// it went inside TLS (a TLS span above it), the host, the port when not the
/// scheme's own, the target. A target in absolute form (to an HTTP proxy) is its
/// own URL; a CONNECT has none.
fn request_url(s: &Span, by_id: &BTreeMap<u32, &Span>) -> Option<String> {
    let target = s.attrs.get("target")?.as_str()?;
    if target.starts_with("http://") || target.starts_with("https://") {
        return Some(target.to_string());
    }
    if !target.starts_with('/') || s.attrs.get("method").and_then(|m| m.as_str()) == Some("CONNECT") {
        return None;
    }
    let mut tls = false;
    let mut parent = s.parent;
    for _ in 0..by_id.len() {
        let Some(p) = parent.and_then(|p| by_id.get(&p)) else { break };
        tls |= p.kind == SpanKind::Tls;
        parent = p.parent;
    }
    let (scheme, default_port) = if tls { ("https", 443) } else { ("http", 80) };
    let host = s.host.clone().or_else(|| {
        s.addr.as_ref().map(|a| if a.contains(':') { format!("[{a}]") } else { a.clone() })
    })?;
    let port = s.port.filter(|&p| p != default_port).map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{scheme}://{host}{port}{target}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{correlate::Correlator, record};

    fn fixture(name: &str) -> Timeline {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(format!("{name}.jsonl"));
        Correlator::timeline(record::read(&path).unwrap(), Default::default())
    }

    fn resource() -> ResourceInfo {
        ResourceInfo { service_version: "9.9.9".into(), host_name: Some("builder-1".into()) }
    }

    fn attr<'a>(span: &'a OtlpSpan, key: &str) -> Option<&'a any_value::Value> {
        span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn str_attr<'a>(span: &'a OtlpSpan, key: &str) -> Option<&'a str> {
        match attr(span, key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn int_attr(span: &OtlpSpan, key: &str) -> Option<i64> {
        match attr(span, key) {
            Some(any_value::Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    fn spans(request: &ExportTraceServiceRequest) -> &[OtlpSpan] {
        &request.resource_spans[0].scope_spans[0].spans
    }

    #[test]
    fn one_trace_per_build_with_the_timeline_s_parents() {
        let mut timeline = fixture("requests_clean_h2");
        let mut second = fixture("firewall_drop");
        timeline.builds.append(&mut second.builds);
        let request = trace_request(&timeline.builds, &resource());
        let spans = spans(&request);
        assert_eq!(spans.len(), timeline.builds.iter().map(|b| b.spans.len() + 1).sum::<usize>());
        let traces: std::collections::BTreeSet<&[u8]> = spans.iter().map(|s| s.trace_id.as_slice()).collect();
        assert_eq!(traces.len(), 2, "one trace per build");
        for build in &timeline.builds {
            let trace = trace_id(&build.id);
            let ours: Vec<&OtlpSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
            assert_eq!(ours.len(), build.spans.len() + 1);
            let root = ours.iter().find(|s| s.parent_span_id.is_empty()).expect("a root");
            assert_eq!(root.span_id, span_id(&build.id, None));
            assert_eq!(str_attr(root, "gomod_trace.build.id"), Some(build.id.as_str()));
            assert_eq!(ours.iter().filter(|s| s.parent_span_id.is_empty()).count(), 1);
            let ids: std::collections::BTreeSet<&[u8]> = ours.iter().map(|s| s.span_id.as_slice()).collect();
            assert_eq!(ids.len(), ours.len(), "span ids are unique");
            for s in &build.spans {
                let exported = ours.iter().find(|o| int_attr(o, "gomod_trace.span_id") == Some(s.id.into())).unwrap();
                let parent = s.parent.map_or(root.span_id.clone(), |p| span_id(&build.id, Some(p)).to_vec());
                assert_eq!(exported.parent_span_id, parent, "span {}", s.id);
                assert!(exported.start_time_unix_nano <= exported.end_time_unix_nano);
            }
        }
        // Stable: the same ids again; a different build differs.
        assert_eq!(trace_request(&timeline.builds, &resource()), request);
        assert_ne!(trace_id("1-2"), trace_id("1-3"));
        assert_ne!(span_id("1-2", Some(1)), span_id("1-3", Some(1)));
        assert_ne!(span_id("1-2", Some(1)), span_id("1-2", None));
        // Pinned: a change of the derivation would change every exported id.
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(&trace_id("8950-10695254691931")), "c373a1693f417404206c3deac00402ef");
        assert_eq!(hex(&span_id("8950-10695254691931", Some(1))), "130e08a85331726c");
    }

    #[test]
    fn fnv1a_128_matches_its_reference_values() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
        assert_eq!(fnv1a_128(b"foobar"), 0x343e1662793c64bf6f0d3597ba446f18);
    }

    #[test]
    fn semantic_conventions_for_requests_connections_and_builds() {
        let timeline = fixture("requests_clean_h2");
        let build = &timeline.builds[0];
        let request = trace_request(&timeline.builds, &resource());
        let spans = spans(&request);
        let resource_attrs = &request.resource_spans[0].resource.as_ref().unwrap().attributes;
        let keys: Vec<(&str, String)> = resource_attrs
            .iter()
            .map(|kv| (kv.key.as_str(), format!("{:?}", kv.value.as_ref().unwrap().value.as_ref().unwrap())))
            .collect();
        assert_eq!(keys[0], ("service.name", "StringValue(\"gomod-trace\")".into()));
        assert!(keys.iter().any(|(k, v)| *k == "host.name" && v.contains("builder-1")), "{keys:?}");

        let root = &spans[0];
        assert_eq!(root.name, "go mod download");
        assert_eq!(root.kind, span::SpanKind::Internal as i32);
        assert_eq!(str_attr(root, "gomod_trace.config.goproxy"), Some("https://proxy.lab.test"));
        assert_eq!(str_attr(root, "gomod_trace.config_source.goproxy"), Some("env"));
        assert_eq!(int_attr(root, "process.exit.code"), Some(0));
        assert_eq!(root.status.as_ref().unwrap().code, status::StatusCode::Unset as i32);

        let http = spans.iter().find(|s| str_attr(s, "gomod_trace.kind") == Some("http")).unwrap();
        assert_eq!(http.name, "GET");
        assert_eq!(http.kind, span::SpanKind::Client as i32);
        assert_eq!(str_attr(http, "http.request.method"), Some("GET"));
        assert_eq!(int_attr(http, "http.response.status_code"), Some(200));
        assert_eq!(str_attr(http, "server.address"), Some("proxy.lab.test"));
        assert_eq!(int_attr(http, "server.port"), Some(443));
        assert_eq!(str_attr(http, "network.protocol.name"), Some("http"));
        assert_eq!(str_attr(http, "network.protocol.version"), Some("2"));
        assert!(str_attr(http, "url.full").unwrap().starts_with("https://proxy.lab.test/lab.test/mod0"));
        assert_eq!(str_attr(http, "gomod_trace.role"), Some("proxy"));
        assert_eq!(attr(http, "http.method"), None, "no deprecated keys");
        assert_eq!(attr(http, "gomod_trace.method"), None, "a key moved to its convention is not repeated");
        assert_eq!(str_attr(http, "gomod_trace.target").map(|t| t.starts_with("/lab.test/")), Some(true));

        let dns = spans.iter().find(|s| str_attr(s, "gomod_trace.kind") == Some("dns")).unwrap();
        let timeline_dns = build.spans.iter().find(|s| s.kind == SpanKind::Dns).unwrap();
        assert_eq!(dns.name, format!("dns {}", timeline_dns.attrs["qtype"].as_str().unwrap()));
        assert_eq!(str_attr(dns, "dns.question.name"), Some("proxy.lab.test"));
        assert_eq!(str_attr(dns, "server.address"), timeline_dns.addr.as_deref(), "the resolver is the server");
        assert_eq!(int_attr(dns, "server.port"), Some(53));

        let tls = spans.iter().find(|s| s.name == "tls handshake").unwrap();
        assert_eq!(str_attr(tls, "tls.client.server_name"), Some("proxy.lab.test"));
        assert_eq!((str_attr(tls, "tls.protocol.name"), str_attr(tls, "tls.protocol.version")), (Some("tls"), Some("1.3")));
        assert_eq!(attr(tls, "tls.established"), Some(&any_value::Value::BoolValue(true)));

        let process = spans.iter().find(|s| str_attr(s, "gomod_trace.kind") == Some("process")).unwrap();
        assert_eq!(process.name, "process go");
        assert!(matches!(attr(process, "process.command_args"), Some(any_value::Value::ArrayValue(a)) if a.values.len() == 4));
        assert_eq!(int_attr(process, "process.pid"), Some(build.pid.into()));
        let module = spans.iter().find(|s| str_attr(s, "gomod_trace.kind") == Some("module")).unwrap();
        assert_eq!((module.name.as_str(), module.kind), ("module download", span::SpanKind::Internal as i32));
        assert_eq!(str_attr(module, "gomod_trace.module"), Some("lab.test/mod01"));
        assert!(matches!(attr(module, "gomod_trace.zip_ms"), Some(any_value::Value::DoubleValue(_))));
    }

    #[test]
    fn failures_are_errors_with_their_findings_as_events() {
        let timeline = fixture("firewall_drop");
        let build = &timeline.builds[0];
        let request = trace_request(&timeline.builds, &resource());
        let spans = spans(&request);
        let root = &spans[0];
        let status = root.status.as_ref().unwrap();
        assert_eq!(status.code, status::StatusCode::Error as i32);
        assert_eq!(status.message, "exit status 1: firewall_drop");
        let finding = &build.findings[0];
        let on = spans.iter().find(|s| int_attr(s, "gomod_trace.span_id") == Some(finding.spans[0].into())).unwrap();
        assert_eq!(on.events.len(), 1);
        let event = &on.events[0];
        assert_eq!(event.name, "firewall_drop");
        let event_attr = |key: &str| event.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()?.value);
        assert_eq!(event_attr("gomod_trace.finding.severity"), Some(any_value::Value::StringValue("error".into())));
        assert_eq!(event_attr("gomod_trace.finding.message"), Some(any_value::Value::StringValue(finding.message.clone())));
        assert_eq!(event_attr("gomod_trace.finding.cost_ms"), Some(any_value::Value::DoubleValue(finding.cost_ms)));
        let connect = spans.iter().find(|s| s.name == "connect").unwrap();
        assert_eq!(connect.status.as_ref().unwrap().code, status::StatusCode::Error as i32);
        let outcome = str_attr(connect, "gomod_trace.outcome").unwrap();
        assert_ne!(outcome, "ok");
        assert_eq!(str_attr(connect, "error.type"), Some(outcome));
        assert_eq!(connect.status.as_ref().unwrap().message, format!("connect {outcome}"));
    }

    #[test]
    fn unfinished_spans_end_with_the_build() {
        let mut timeline = fixture("clean_download");
        let build = &mut timeline.builds[0];
        build.ended_at = None;
        build.state = Some(crate::timeline::BuildStatus::Running);
        let last = build.spans.len() - 1;
        build.spans[last].end = None;
        build.spans[last].outcome = None;
        let latest = build.spans.iter().flat_map(|s| [Some(&s.start), s.end.as_ref()]).flatten().filter_map(|t| unix_ns(t)).max().unwrap();
        let request = trace_request(&timeline.builds, &resource());
        let spans = spans(&request);
        let open = spans.last().unwrap();
        assert_eq!(attr(open, "gomod_trace.unfinished"), Some(&any_value::Value::BoolValue(true)));
        assert_eq!(open.end_time_unix_nano, latest);
        assert_eq!(spans[0].end_time_unix_nano, latest);
        assert_eq!(str_attr(&spans[0], "gomod_trace.build.state"), Some("running"));
    }

    #[test]
    fn plaintext_requests_get_their_url_built() {
        let timeline = fixture("fallback_to_git");
        let request = trace_request(&timeline.builds, &resource());
        let http = spans(&request).iter().find(|s| str_attr(s, "gomod_trace.kind") == Some("http")).unwrap();
        assert_eq!(str_attr(http, "url.full").map(|u| u.starts_with("http://s404.lab.test/lab.test/mod0")), Some(true), "{http:?}");
        assert_eq!(int_attr(http, "http.response.status_code"), Some(404));
        assert_eq!(str_attr(http, "error.type"), Some("404"));
        assert_eq!(http.status.as_ref().unwrap().message, "HTTP 404");
    }

    #[test]
    fn build_names_stay_low_cardinality() {
        let name = |argv: &[&str]| build_span_name(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(name(&["go", "mod", "download", "-x"]), "go mod download");
        assert_eq!(name(&["/usr/lib/go-1.23/bin/go", "get", "example.com/m@v1.2.3"]), "go get");
        assert_eq!(name(&["go", "build", "./..."]), "go build");
        assert_eq!(name(&[]), "build");
    }

    #[test]
    fn json_is_spec_otlp_json() {
        let text = render_json(&fixture("firewall_drop"));
        assert!(text.ends_with('\n') && text.trim_end().lines().count() == 1, "one line");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][1];
        let hex = |v: &serde_json::Value, len: usize| {
            v.as_str().is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        };
        assert!(hex(&span["traceId"], 32) && hex(&span["spanId"], 16) && hex(&span["parentSpanId"], 16), "{span:#}");
        assert!(span["startTimeUnixNano"].as_str().is_some_and(|t| t.parse::<u64>().is_ok()), "int64 as a string: {span:#}");
        assert!(span["kind"].is_u64() && span["status"]["code"].is_u64(), "enums as integers: {span:#}");
        let pid = span["attributes"].as_array().unwrap().iter().find(|kv| kv["key"] == "process.pid").unwrap();
        assert!(pid["value"]["intValue"].is_string(), "{pid}");
        assert!(json["resourceSpans"][0]["resource"]["attributes"].is_array());
        assert!(!text.contains("resource_spans") && !text.contains("trace_id"), "camelCase only");
        // And back: the crate's serde reads what it wrote.
        let back: ExportTraceServiceRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, trace_request(&fixture("firewall_drop").builds, &ResourceInfo::this_host()));
    }
}
