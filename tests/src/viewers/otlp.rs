//! Checks the otlp export: a small OTLP/HTTP receiver (protobuf, decoded with the
//! opentelemetry-proto crate's messages and prost, as a collector does) and a
//! check of an ExportTraceServiceRequest against the timeline JSON of the same
//! builds. The check is written from the OTLP and semantic-convention rules the
//! export promises, not from the exporter's code: it reads the timeline as JSON.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Bytes};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{KeyValue, any_value::Value as Any},
    trace::v1::Span,
};
use prost::Message as _;
use serde_json::Value;

/// The path OTLP/HTTP traces are posted to.
pub const TRACES_PATH: &str = "/v1/traces";

/// A request the receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Bytes of the request's body.
    pub body_len: usize,
    pub request: ExportTraceServiceRequest,
}

#[derive(Default)]
struct State {
    accepted: Vec<Received>,
    /// When each POST came, answered or not.
    attempts: Vec<Instant>,
    /// What is wrong with requests it could not take (path, type, body).
    refused: Vec<String>,
    /// Answers for the next requests before they are accepted: status and Retry-After.
    script: VecDeque<(u16, Option<String>)>,
    /// Bodies larger than this are answered 413, as a collector with a body
    /// limit does.
    max_body: Option<usize>,
}

/// An OTLP/HTTP receiver on a loopback (or lab-reachable) address, serving from
/// a thread of its own until dropped. POST /v1/traces with protobuf bodies only.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `addr` (e.g. `127.0.0.1:0`).
    pub fn start(addr: &str) -> Receiver {
        let listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("receiver cannot listen on {addr}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let (shutdown, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("receiver runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => break,
                    };
                    let state = shared.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| answer(state.clone(), request));
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
            });
        });
        Receiver { addr, state, shutdown: Some(shutdown), thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`: what `--otlp-endpoint` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next requests with these statuses (and Retry-After values)
    /// before accepting again.
    pub fn answer_first(&self, answers: &[(u16, Option<&str>)]) {
        self.lock().script.extend(answers.iter().map(|(s, r)| (*s, r.map(str::to_string))));
    }

    /// Answers 413 (Payload Too Large) to any body larger than `bytes`, from now on.
    pub fn refuse_bodies_over(&self, bytes: usize) {
        self.lock().max_body = Some(bytes);
    }

    /// The requests accepted so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.lock().accepted.clone()
    }

    /// Every POST so far, accepted or not.
    pub fn attempts(&self) -> usize {
        self.lock().attempts.len()
    }

    /// When each POST came.
    pub fn attempt_times(&self) -> Vec<Instant> {
        self.lock().attempts.clone()
    }

    /// Requests it could not take, and why.
    pub fn refused(&self) -> Vec<String> {
        self.lock().refused.clone()
    }

    /// Waits until `done` holds for the accepted requests; panics after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted();
            if done(&accepted) {
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {} accepted, {} attempts, refused: {:?}",
                accepted.len(),
                self.attempts(),
                self.refused()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn answer(state: Arc<Mutex<State>>, request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let reply = |status: u16, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
        response
    };
    let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let method = request.method().clone();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let content_type = headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.clone()).unwrap_or_default();
    let body = request.into_body().collect().await?.to_bytes();
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    if method != hyper::Method::POST || path != TRACES_PATH {
        state.refused.push(format!("{method} {path}"));
        return Ok(reply(404, Vec::new()));
    }
    state.attempts.push(Instant::now());
    if content_type != "application/x-protobuf" {
        state.refused.push(format!("content-type {content_type:?}"));
        return Ok(reply(415, Vec::new()));
    }
    if state.max_body.is_some_and(|max| body.len() > max) {
        return Ok(reply(413, b"request body too large".to_vec()));
    }
    if let Some((status, retry_after)) = state.script.pop_front() {
        let mut response = reply(status, format!("scripted {status}").into_bytes());
        if let Some(retry_after) = retry_after {
            response.headers_mut().insert("retry-after", retry_after.parse().expect("header value"));
        }
        return Ok(response);
    }
    match ExportTraceServiceRequest::decode(body.as_ref()) {
        Ok(decoded) => {
            state.accepted.push(Received { path, content_type, headers, body_len: body.len(), request: decoded });
            let mut response = reply(200, ExportTraceServiceResponse::default().encode_to_vec());
            response.headers_mut().insert("content-type", "application/x-protobuf".parse().expect("header value"));
            Ok(response)
        }
        Err(e) => {
            state.refused.push(format!("not an ExportTraceServiceRequest: {e}"));
            Ok(reply(400, Vec::new()))
        }
    }
}

/// The spans of one build's trace (found by its `gomod_trace.build.id`) out of
/// the requests, with the first request's resource: what a backend shows as
/// that build, whatever else was sent with it.
pub fn only_build(requests: &[ExportTraceServiceRequest], build_id: &str) -> ExportTraceServiceRequest {
    let mut out: Option<ExportTraceServiceRequest> = None;
    let roots: Vec<&Span> = all_spans(requests.iter()).filter(|s| s.parent_span_id.is_empty() && string(s, "gomod_trace.build.id") == Some(build_id)).collect();
    let trace: Option<Vec<u8>> = roots.first().map(|s| s.trace_id.clone());
    for request in requests {
        for resource_spans in &request.resource_spans {
            for scope_spans in &resource_spans.scope_spans {
                let spans: Vec<Span> = scope_spans.spans.iter().filter(|s| Some(&s.trace_id) == trace.as_ref()).cloned().collect();
                if spans.is_empty() {
                    continue;
                }
                let out = out.get_or_insert_with(|| {
                    let mut first = request.clone();
                    first.resource_spans.truncate(1);
                    first.resource_spans[0] = resource_spans.clone();
                    first.resource_spans[0].scope_spans = vec![scope_spans.clone()];
                    first.resource_spans[0].scope_spans[0].spans.clear();
                    first
                });
                out.resource_spans[0].scope_spans[0].spans.extend(spans);
            }
        }
    }
    out.unwrap_or_default()
}

fn all_spans<'a>(requests: impl Iterator<Item = &'a ExportTraceServiceRequest>) -> impl Iterator<Item = &'a Span> {
    requests.flat_map(|r| r.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter())))
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn string<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(&span.attributes, key) {
        Some(Any::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Whether an OTLP value says what a timeline JSON value says.
fn same(value: &Any, json: &Value) -> bool {
    match (value, json) {
        (Any::StringValue(s), Value::String(j)) => s == j,
        (Any::BoolValue(b), Value::Bool(j)) => b == j,
        (Any::IntValue(i), Value::Number(n)) => n.as_i64() == Some(*i),
        (Any::DoubleValue(d), Value::Number(n)) => n.as_f64().is_some_and(|j| (d - j).abs() <= 1e-9 * j.abs().max(1.0)),
        (Any::ArrayValue(a), Value::Array(j)) => {
            a.values.len() == j.len() && a.values.iter().zip(j).all(|(v, j)| v.value.as_ref().is_some_and(|v| same(v, j)))
        }
        _ => false,
    }
}

/// Nanoseconds since the epoch of a timeline time.
fn unix_ns(time: &Value) -> Option<u64> {
    let parsed = time::OffsetDateTime::parse(time.as_str()?, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(parsed.unix_timestamp_nanos()).ok()
}

/// Timeline attributes exported under a semantic-convention key, value unchanged.
const CONVENTIONS: [(&str, &str, &str); 8] = [
    ("http", "method", "http.request.method"),
    ("http", "status", "http.response.status_code"),
    ("http", "url", "url.full"),
    ("tls", "sni", "tls.client.server_name"),
    ("tls", "alpn", "tls.next_protocol"),
    ("process", "argv", "process.command_args"),
    ("process", "comm", "process.executable.name"),
    ("process", "exit_code", "process.exit.code"),
];

const NETWORK_KINDS: [&str; 5] = ["dns", "connect", "tls", "http", "transfer"];
const KIND_INTERNAL: i32 = 1;
const KIND_CLIENT: i32 = 3;
const STATUS_ERROR: i32 = 2;

/// What is wrong with `request` as the OTLP export of the builds of `timeline`
/// (timeline JSON, contract.md); empty when nothing is.
pub fn problems(request: &ExportTraceServiceRequest, timeline: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(text);
    match request.resource_spans.first().and_then(|r| r.resource.as_ref()) {
        None => problem("no resource".into()),
        Some(resource) => {
            let value = |key: &str| match attr(&resource.attributes, key) {
                Some(Any::StringValue(s)) => s.clone(),
                _ => String::new(),
            };
            if value("service.name") != "gomod-trace" {
                problem(format!("resource service.name is {:?}, not gomod-trace", value("service.name")));
            }
            for key in ["service.version", "host.name"] {
                if value(key).is_empty() {
                    problem(format!("resource has no {key}"));
                }
            }
        }
    }
    let spans: Vec<&Span> = all_spans(std::iter::once(request)).collect();
    let builds = timeline["builds"].as_array().cloned().unwrap_or_default();
    let mut traces = HashSet::new();
    for build in &builds {
        let id = build["id"].as_str().unwrap_or_default();
        let roots: Vec<&&Span> = spans.iter().filter(|s| s.parent_span_id.is_empty() && string(s, "gomod_trace.build.id") == Some(id)).collect();
        let [root] = roots.as_slice() else {
            problem(format!("build {id}: {} root spans with gomod_trace.build.id, not 1", roots.len()));
            continue;
        };
        if !traces.insert(root.trace_id.clone()) {
            problem(format!("build {id}: its trace id is another build's"));
        }
        let trace: Vec<&Span> = spans.iter().copied().filter(|s| s.trace_id == root.trace_id).collect();
        for p in check_build(build, root, &trace) {
            problem(format!("build {id}: {p}"));
        }
    }
    if spans.len() != builds.iter().map(|b| b["spans"].as_array().map_or(0, Vec::len) + 1).sum::<usize>() {
        problem(format!("{} spans in the request for {} builds", spans.len(), builds.len()));
    }
    problems
}

fn check_build(build: &Value, root: &Span, trace: &[&Span]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(text);
    let timeline_spans = build["spans"].as_array().cloned().unwrap_or_default();
    if trace.len() != timeline_spans.len() + 1 {
        problem(format!("{} spans in its trace, expected {} (the build's own and one per timeline span)", trace.len(), timeline_spans.len() + 1));
    }
    if root.trace_id.len() != 16 || root.trace_id.iter().all(|&b| b == 0) {
        problem(format!("trace id {:02x?} is not 16 bytes, not all zero", root.trace_id));
    }
    let mut ids = HashSet::new();
    for span in trace {
        if span.span_id.len() != 8 || span.span_id.iter().all(|&b| b == 0) || !ids.insert(span.span_id.clone()) {
            problem(format!("span {:?}: span id {:02x?} is not 8 bytes, unique and non-zero", span.name, span.span_id));
        }
    }

    // The build's own span.
    let command: Vec<&str> = build["command"].as_array().map(|c| c.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let words: Vec<&str> = root.name.split(' ').collect();
    let program = command.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    if words.first().copied() != program || words.len() > command.len() || words[1..] != command[1..words.len().min(command.len())] {
        problem(format!("root span name {:?} is not the start of the command {command:?}", root.name));
    }
    if root.kind != KIND_INTERNAL {
        problem(format!("root span kind {} is not INTERNAL", root.kind));
    }
    let build_start = unix_ns(&build["started_at"]);
    let build_end = unix_ns(&build["ended_at"]);
    if Some(root.start_time_unix_nano) != build_start {
        problem(format!("root starts at {}, the build at {:?}", root.start_time_unix_nano, build["started_at"]));
    }
    if build_end.is_some_and(|end| end != root.end_time_unix_nano) {
        problem(format!("root ends at {}, the build at {:?}", root.end_time_unix_nano, build["ended_at"]));
    }
    let findings = build["findings"].as_array().cloned().unwrap_or_default();
    let failed = build["exit_code"].as_i64().is_some_and(|c| c != 0) || findings.iter().any(|f| f["severity"] == "error");
    let root_error = root.status.as_ref().is_some_and(|s| s.code == STATUS_ERROR);
    if failed != root_error {
        problem(format!("root status error is {root_error}, the build failed: {failed}"));
    }
    let mut expected = vec![
        ("gomod_trace.build.complete", build["complete"].clone()),
        ("process.pid", build["pid"].clone()),
        ("process.command_args", build["command"].clone()),
    ];
    if build["exit_code"].is_i64() {
        expected.push(("process.exit.code", build["exit_code"].clone()));
    }
    let config_keys: Vec<(String, Value)> = build["config"]
        .as_object()
        .map(|c| c.iter().map(|(k, v)| (format!("gomod_trace.config.{}", k.to_ascii_lowercase()), v["value"].clone())).collect())
        .unwrap_or_default();
    for (key, value) in expected.iter().map(|(k, v)| (k.to_string(), v.clone())).chain(config_keys) {
        if !attr(&root.attributes, &key).is_some_and(|a| same(a, &value)) {
            problem(format!("root attribute {key} is {:?}, expected {value}", attr(&root.attributes, &key)));
        }
    }

    // One span per timeline span, with its parent, name, kind, times, attributes.
    let by_timeline_id: HashMap<i64, &Span> = trace
        .iter()
        .filter_map(|s| match attr(&s.attributes, "gomod_trace.span_id") {
            Some(Any::IntValue(id)) => Some((*id, *s)),
            _ => None,
        })
        .collect();
    for s in &timeline_spans {
        let id = s["id"].as_i64().unwrap_or(-1);
        let kind = s["kind"].as_str().unwrap_or_default();
        let Some(span) = by_timeline_id.get(&id) else {
            problem(format!("timeline span {id} ({kind}) is not exported"));
            continue;
        };
        let parent = match s["parent"].as_i64() {
            Some(p) => by_timeline_id.get(&p).map(|p| p.span_id.clone()),
            None => Some(root.span_id.clone()),
        };
        if Some(&span.parent_span_id) != parent.as_ref() {
            problem(format!("span {id} ({kind}): parent span id {:02x?}, expected that of {}", span.parent_span_id, s["parent"]));
        }
        let attrs = &s["attrs"];
        let expected_name = match kind {
            "process" => attrs["comm"].as_str().map_or("process".to_string(), |c| format!("process {c}")),
            "dns" => attrs["qtype"].as_str().map_or("dns".to_string(), |q| format!("dns {q}")),
            "connect" => "connect".into(),
            "tls" => "tls handshake".into(),
            "http" => attrs["method"].as_str().unwrap_or("HTTP").into(),
            "transfer" => "transfer".into(),
            "module" => "module download".into(),
            other => format!("(unknown kind {other})"),
        };
        if span.name != expected_name {
            problem(format!("span {id} ({kind}): name {:?}, expected {expected_name:?}", span.name));
        }
        let expected_kind = if NETWORK_KINDS.contains(&kind) { KIND_CLIENT } else { KIND_INTERNAL };
        if span.kind != expected_kind {
            problem(format!("span {id} ({kind}): span kind {}, expected {expected_kind}", span.kind));
        }
        if Some(span.start_time_unix_nano) != unix_ns(&s["start"]) {
            problem(format!("span {id} ({kind}): starts at {}, the timeline says {}", span.start_time_unix_nano, s["start"]));
        }
        match unix_ns(&s["end"]) {
            Some(end) if end != span.end_time_unix_nano => {
                problem(format!("span {id} ({kind}): ends at {}, the timeline says {}", span.end_time_unix_nano, s["end"]))
            }
            Some(_) => {}
            None => {
                if span.end_time_unix_nano != root.end_time_unix_nano || attr(&span.attributes, "gomod_trace.unfinished") != Some(&Any::BoolValue(true)) {
                    problem(format!("span {id} ({kind}): unfinished, but not ended with the build and marked gomod_trace.unfinished"));
                }
            }
        }
        let mut expected: Vec<(String, Value)> = vec![
            ("gomod_trace.role".into(), s["role"].clone()),
            ("process.pid".into(), s["pid"].clone()),
        ];
        if !s["outcome"].is_null() {
            expected.push(("gomod_trace.outcome".into(), s["outcome"].clone()));
        }
        if !s["host"].is_null() {
            expected.push((if kind == "dns" { "dns.question.name" } else { "server.address" }.into(), s["host"].clone()));
        }
        if !s["addr"].is_null() {
            expected.push(("network.peer.address".into(), s["addr"].clone()));
            if kind == "dns" {
                expected.push(("server.address".into(), s["addr"].clone()));
            }
        }
        if !s["port"].is_null() {
            expected.push(("network.peer.port".into(), s["port"].clone()));
            expected.push(("server.port".into(), s["port"].clone()));
        }
        if let Some(map) = attrs.as_object() {
            for (key, value) in map.iter().filter(|(_, v)| !v.is_null()) {
                let convention = CONVENTIONS.iter().find(|(k, a, _)| *k == kind && a == key).map(|(_, _, c)| c.to_string());
                expected.push((convention.unwrap_or_else(|| format!("gomod_trace.{key}")), value.clone()));
            }
        }
        for (key, value) in &expected {
            if !attr(&span.attributes, key).is_some_and(|a| same(a, value)) {
                problem(format!("span {id} ({kind}): attribute {key} is {:?}, expected {value}", attr(&span.attributes, key)));
            }
        }
        if kind == "http" {
            let url = match attr(&span.attributes, "url.full") {
                Some(Any::StringValue(u)) => Some(u.as_str()),
                _ => None,
            };
            let target = attrs["target"].as_str().filter(|t| t.starts_with('/') && attrs["method"] != "CONNECT");
            if let Some(target) = target
                && !url.is_some_and(|u| u.starts_with("http") && u.ends_with(target))
            {
                problem(format!("span {id} (http): url.full {url:?} is not the URL of target {target}"));
            }
            if attrs["proto"].is_string() && string(span, "network.protocol.version").is_none() {
                problem(format!("span {id} (http): no network.protocol.version for {}", attrs["proto"]));
            }
        }
        let failed = s["outcome"].as_str().is_some_and(|o| o != "ok");
        let error = span.status.as_ref().is_some_and(|st| st.code == STATUS_ERROR && !st.message.is_empty());
        let error_type = attr(&span.attributes, "error.type").is_some();
        if failed != error || failed != error_type {
            problem(format!("span {id} ({kind}): outcome {}, but status error {error} and error.type {error_type}", s["outcome"]));
        }
    }

    // Findings: events on the span of their first span (or the root).
    let events: usize = trace.iter().map(|s| s.events.len()).sum();
    if events != findings.len() {
        problem(format!("{events} span events for {} findings", findings.len()));
    }
    for finding in &findings {
        let kind = finding["kind"].as_str().unwrap_or_default();
        let on = finding["spans"].as_array().and_then(|s| s.first()).and_then(Value::as_i64).and_then(|id| by_timeline_id.get(&id)).copied().unwrap_or(root);
        let event = on.events.iter().find(|e| {
            e.name == kind
                && [("message", &finding["message"]), ("severity", &finding["severity"]), ("remedy", &finding["remedy"]), ("cost_ms", &finding["cost_ms"])]
                    .iter()
                    .all(|(k, v)| attr(&e.attributes, &format!("gomod_trace.finding.{k}")).is_some_and(|a| same(a, v)))
        });
        if event.is_none() {
            problem(format!("finding {kind}: no event with its message, severity, remedy and cost on span {:?}", on.name));
        }
    }
    problems
}

/// Panics with every problem of `request` against `timeline`.
pub fn check(request: &ExportTraceServiceRequest, timeline: &Value) {
    let problems = problems(request, timeline);
    assert!(problems.is_empty(), "the OTLP export does not match the timeline:\n  {}", problems.join("\n  "));
}

/// What is wrong with an OTLP/JSON text: its shape against the OTLP/JSON
/// encoding (lowerCamelCase keys, hex ids, 64-bit integers as strings, enums as
/// integers), then, read with the crate's serde, [`problems`].
pub fn json_problems(otlp_json: &str, timeline: &Value) -> Vec<String> {
    let raw: Value = match serde_json::from_str(otlp_json) {
        Ok(raw) => raw,
        Err(e) => return vec![format!("not JSON: {e}")],
    };
    let mut problems = Vec::new();
    shape(&raw, "$", &mut problems);
    let hex = |v: &Value, len: usize| v.as_str().is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let spans = raw["resourceSpans"].as_array().into_iter().flatten().flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten()).flat_map(|s| s["spans"].as_array().into_iter().flatten());
    for span in spans {
        let name = &span["name"];
        if !hex(&span["traceId"], 32) || !hex(&span["spanId"], 16) {
            problems.push(format!("span {name}: traceId/spanId not lowercase hex of 16/8 bytes"));
        }
        if !(span["parentSpanId"].is_null() || span["parentSpanId"] == "" || hex(&span["parentSpanId"], 16)) {
            problems.push(format!("span {name}: parentSpanId not hex"));
        }
        for key in ["startTimeUnixNano", "endTimeUnixNano"] {
            if span[key].as_str().is_none_or(|t| t.parse::<u64>().is_err()) {
                problems.push(format!("span {name}: {key} is not a decimal string"));
            }
        }
        if !span["kind"].is_u64() || !span["status"]["code"].is_u64() {
            problems.push(format!("span {name}: kind or status.code is not an integer"));
        }
    }
    match serde_json::from_value::<ExportTraceServiceRequest>(raw) {
        Ok(request) => problems.extend(self::problems(&request, timeline)),
        Err(e) => problems.push(format!("not an ExportTraceServiceRequest: {e}")),
    }
    problems
}

/// Object keys in lowerCamelCase (attribute keys are values, not keys), and
/// every `intValue` a string.
fn shape(value: &Value, at: &str, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key.contains('_') || key.starts_with(|c: char| c.is_ascii_uppercase()) {
                    problems.push(format!("{at}.{key}: not lowerCamelCase"));
                }
                if key == "intValue" && v.as_str().is_none_or(|s| s.parse::<i64>().is_err()) {
                    problems.push(format!("{at}.intValue: {v} is not an int64 as a string"));
                }
                shape(v, &format!("{at}.{key}"), problems);
            }
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| shape(v, &format!("{at}[{i}]"), problems)),
        _ => {}
    }
}

/// Checks an OTLP/JSON file (`--format otlp`) against the timeline JSON file of
/// the same builds (`--format json`); panics with every problem.
pub fn check_json(otlp_json: &Path, timeline_json: &Path) {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let timeline: Value = serde_json::from_str(&read(timeline_json)).expect("the timeline is JSON");
    let problems = json_problems(&read(otlp_json), &timeline);
    assert!(problems.is_empty(), "{} does not match {}:\n  {}", otlp_json.display(), timeline_json.display(), problems.join("\n  "));
}
