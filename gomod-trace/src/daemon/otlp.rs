//! Pushes every finished build to an OpenTelemetry endpoint as a trace, over
//! OTLP/HTTP (protobuf), from a task of its own: the correlator only offers a
//! build ([`Offer::offer`], a `try_send` into a bounded queue; a full queue drops
//! the build and counts it) and never waits for the network. Batches builds (by
//! count and by encoded size; a batch the endpoint finds too large is sent again
//! in halves), retries what may succeed later with backoff, and gives up after a
//! bounded time, counting what it dropped. Every wait is bounded, whatever the
//! endpoint answers (a Retry-After of 2^64 s, an endless body).
//!
//! Header values are credentials: never logged, never in an error message, and
//! redacted from an endpoint's answer before it is logged; the endpoint is shown
//! with its userinfo redacted, and a configuration error never quotes what it
//! refuses.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Request, StatusCode,
    body::Bytes,
    header::{self, HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use crate::{
    export::otlp::{ResourceInfo, trace_request},
    metrics::{OtlpDrop, OtlpFailure, OtlpMetrics},
    redact,
    timeline::Build,
};

/// Where builds go, and with which headers.
#[derive(Clone)]
pub struct OtlpConfig {
    endpoint: Endpoint,
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Clone)]
struct Endpoint {
    /// Host name or address, without IPv6 brackets: what is connected to.
    host: String,
    port: u16,
    /// The `Host` header: host[:port] as given.
    authority: String,
    /// Path and query of the POST.
    path: String,
    /// The URL, userinfo and query values redacted: what logs and errors show.
    shown: String,
}

/// The default path of OTLP/HTTP traces.
const TRACES_PATH: &str = "/v1/traces";

/// Whether [`TRACES_PATH`] is added to a URL's path.
#[derive(Clone, Copy, PartialEq)]
enum TracesPath {
    AsIs,
    /// When the URL has no path (or only `/`).
    IfNone,
    Append,
}

impl std::fmt::Debug for OtlpConfig {
    /// Header names only: their values are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig").field("endpoint", &self.endpoint.shown).field("headers", &self.header_names()).finish()
    }
}

impl OtlpConfig {
    /// The configuration from `--otlp-endpoint`/`--otlp-header` and the
    /// OpenTelemetry environment (`env` reads a variable), flags winning; `None`
    /// when no endpoint is given. The flag's URL and
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT are used as they are, except that a flag
    /// URL without a path gets `/v1/traces`; OTEL_EXPORTER_OTLP_ENDPOINT always
    /// gets `/v1/traces` appended (as the OTLP exporter specification says).
    /// Headers: OTEL_EXPORTER_OTLP_HEADERS, then OTEL_EXPORTER_OTLP_TRACES_HEADERS
    /// (`k=v,k2=v2`, values URL-encoded), then the flags (`NAME=VALUE`, or curl's
    /// `Name: value`, taken as they are), a later one replacing an earlier one of
    /// the same name.
    ///
    /// An error never quotes what it refuses (a URL with a password in it, a
    /// token given where a header name goes): it says which flag, variable or
    /// entry, and what is wrong.
    pub fn resolve(
        endpoint_flag: Option<&str>,
        header_flags: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpConfig>, String> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let (url, source, path) = if let Some(url) = endpoint_flag {
            (url.to_string(), "--otlp-endpoint", TracesPath::IfNone)
        } else if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            (url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", TracesPath::AsIs)
        } else if let Some(url) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (url, "OTEL_EXPORTER_OTLP_ENDPOINT", TracesPath::Append)
        } else {
            return Ok(None);
        };
        let (endpoint, userinfo) = Endpoint::parse(url.trim(), path).map_err(|e| format!("{source}: {e}"))?;
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let mut set = |(name, value): (HeaderName, HeaderValue)| {
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        };
        if let Some(userinfo) = userinfo {
            use base64::Engine as _;
            let credentials = base64::engine::general_purpose::STANDARD.encode(percent_decode(&userinfo));
            set((header::AUTHORIZATION, secret(&format!("Basic {credentials}")).map_err(|e| format!("{source}: the userinfo: {e}"))?));
        }
        for variable in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            let Some(list) = env(variable) else { continue };
            for (i, entry) in list.split(',').enumerate().filter(|(_, e)| !e.trim().is_empty()) {
                set(header(entry, HeaderForm::Environment).map_err(|e| format!("{variable}: entry #{}: {e}", i + 1))?);
            }
        }
        for (i, flag) in header_flags.iter().enumerate() {
            set(header(flag, HeaderForm::Flag).map_err(|e| format!("--otlp-header #{}: {e}", i + 1))?);
        }
        Ok(Some(OtlpConfig { endpoint, headers }))
    }

    /// The endpoint as logs show it (userinfo redacted).
    pub fn endpoint(&self) -> &str {
        &self.endpoint.shown
    }

    /// The names of the headers sent (their values are never shown).
    pub fn header_names(&self) -> Vec<String> {
        self.headers.iter().map(|(n, _)| n.to_string()).collect()
    }

    /// What an endpoint's answer must not show in a log: the header values
    /// sent (the Basic credentials decoded too), and each of their words.
    fn secrets(&self) -> Vec<String> {
        use base64::Engine as _;
        // Words that are no secret, however long: authentication schemes.
        const SCHEMES: [&str; 6] = ["basic", "bearer", "digest", "token", "apikey", "negotiate"];
        let mut secrets = Vec::new();
        for (_, value) in &self.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let mut words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
            if let [scheme, credentials] = words.as_slice()
                && scheme.eq_ignore_ascii_case("basic")
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials)
            {
                let decoded = String::from_utf8_lossy(&decoded).into_owned();
                words.extend(decoded.split(':').map(str::to_string));
                words.push(decoded);
            }
            secrets.extend(words.into_iter().filter(|w| w.len() >= 4 && !SCHEMES.contains(&w.to_ascii_lowercase().as_str())));
            secrets.push(value);
        }
        secrets.retain(|s| !s.is_empty());
        secrets
    }
}

impl Endpoint {
    /// An `http://` URL, and its userinfo if it has one: everything between
    /// `://` and the last `@`. What is wrong is said without showing the URL, or
    /// only from its host on.
    fn parse(url: &str, traces_path: TracesPath) -> Result<(Endpoint, Option<String>), String> {
        const EXPECTED: &str = "expected http://HOST:PORT, e.g. http://collector:4318";
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("not a URL ({EXPECTED}; the value is not shown)"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" => {}
            "https" => {
                return Err("https endpoints are not supported yet; send to an OpenTelemetry Collector over http \
                            (e.g. one on this host at http://127.0.0.1:4318) and let it forward over TLS"
                    .into());
            }
            "grpc" | "grpcs" => {
                return Err("OTLP/gRPC is not supported: give the collector's OTLP/HTTP endpoint, http://HOST:4318".into());
            }
            _ => return Err(format!("only http:// endpoints are supported ({EXPECTED}; the value is not shown)")),
        }
        // A password may hold an @ unencoded: the host starts after the last one.
        // Before it, a / ? or # makes the URL ambiguous (a password's, or the
        // path's and an @ in the path or query?): refused, not guessed.
        let (userinfo, rest) = match rest.rfind('@') {
            Some(at) if rest[..at].contains(['/', '?', '#']) => {
                return Err("the part before the last @ (taken as user:password, not shown) has a /, ? or #: \
                            in a user name or password write them %2F, %3F and %23; an @ in the path or query, %40"
                    .into());
            }
            Some(at) => (Some(rest[..at].to_string()), &rest[at + 1..]),
            None => (None, rest),
        };
        if rest.contains('#') {
            return Err("a URL fragment (#…) has no meaning here: remove it (the URL is not shown)".into());
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let (path, query) = path.split_at(path.find('?').unwrap_or(path.len()));
        let path = match traces_path {
            TracesPath::IfNone if path.is_empty() || path == "/" => TRACES_PATH.to_string(),
            TracesPath::Append => format!("{}{TRACES_PATH}", path.trim_end_matches('/')),
            _ => path.to_string(),
        };
        let path = format!("{path}{query}");
        // What errors from here on and logs show: no userinfo, no query value.
        let redacted = if userinfo.is_some() { format!("{}@", redact::REDACTED) } else { String::new() };
        let shown = redact::url_query(&format!("http://{redacted}{authority}{path}"));
        let uri: http::Uri = format!("http://{authority}{path}").parse().map_err(|e| format!("{shown}: not a valid URL ({e})"))?;
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| format!("{shown}: no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) if !p.is_empty() => format!("/{p}"),
            _ => "/".to_string(),
        };
        let shown = redact::url_query(&format!("http://{redacted}{authority}{path}"));
        // (http::Uri takes a port past 65535 as no port.)
        let port = match authority.rsplit_once(':').filter(|(_, p)| !p.contains(']')) {
            Some((_, "")) | None => 80,
            Some((_, port)) => port.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("{shown}: {port} is not a port"))?,
        };
        let endpoint = Endpoint { host, port, authority: authority.to_string(), path, shown };
        Ok((endpoint, userinfo))
    }
}

/// Where a header comes from, which decides how it is written.
#[derive(Clone, Copy)]
enum HeaderForm {
    /// An entry of OTEL_EXPORTER_OTLP_HEADERS: `name=value`, the value URL-encoded.
    Environment,
    /// `--otlp-header`: `NAME=VALUE` or curl's `Name: value`, taken as it is.
    Flag,
}

/// One header. Neither its name nor its value is in an error: what is given
/// where a name goes may be a token pasted without its name.
fn header(entry: &str, form: HeaderForm) -> Result<(HeaderName, HeaderValue), String> {
    let (separators, expected): (&[char], &str) = match form {
        HeaderForm::Environment => (&['='], "an entry is NAME=VALUE (VALUE URL-encoded)"),
        // (A name is a token: it has neither, so the first of them ends it.)
        HeaderForm::Flag => (&['=', ':'], "a header is NAME=VALUE (or curl's NAME: VALUE)"),
    };
    let Some(at) = entry.find(separators) else {
        return Err(format!("{expected}; this one has no {} (it is not shown)", if separators.len() == 1 { "=" } else { "= or :" }));
    };
    let name = HeaderName::from_bytes(entry[..at].trim().as_bytes())
        .map_err(|_| format!("{expected}, NAME a token (letters, digits, - _ . and the like, no space); this one's is not (not shown)"))?;
    let value = entry[at + 1..].trim();
    let value = match form {
        HeaderForm::Environment => String::from_utf8_lossy(&percent_decode(value)).trim().to_string(),
        HeaderForm::Flag => value.to_string(),
    };
    if value.is_empty() {
        return Err(format!("{expected}; this one's VALUE is empty (a token given without a name?)"));
    }
    Ok((name, secret(&value)?))
}

/// A header value that no Debug output shows.
fn secret(value: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(value).map_err(|_| "the value has characters a header cannot carry (not shown)".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// `%XX` escapes decoded; anything else kept.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// How the exporter batches, retries and gives up.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Builds the queue holds before the correlator's offers are dropped.
    pub queue: usize,
    /// At most this many builds per request.
    pub batch: usize,
    /// At most about this many bytes per request (each build is measured in a
    /// request of its own; a batch's body is no larger than their sum). A build
    /// larger than this alone is sent alone.
    pub batch_bytes: usize,
    /// How long the first build of a batch waits for more.
    pub linger: Duration,
    /// How long one request may take, connect to last byte.
    pub request_timeout: Duration,
    /// The first wait before a retry; it doubles up to `max_backoff` (each wait
    /// is a random time between half of it and all of it).
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// A batch still failing this long after its first try is dropped.
    pub give_up_after: Duration,
    /// Once stopping: how long what is queued may take to go out.
    pub flush: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            queue: 1024,
            batch: 64,
            batch_bytes: 4 << 20,
            linger: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            give_up_after: Duration::from_secs(120),
            flush: Duration::from_secs(5),
        }
    }
}

/// The most of an answer's body that is read: an OTLP answer is a few bytes (a
/// partial success, an error status).
const MAX_ANSWER: usize = 64 << 10;

/// The longest Retry-After taken as given; any longer is as long as this (much
/// longer than a batch is ever kept).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The correlator's end of the queue.
#[derive(Clone)]
pub struct Offer {
    queue: mpsc::Sender<Build>,
    metrics: OtlpMetrics,
    /// Whether the exporter's failure was logged.
    told: Arc<AtomicBool>,
}

impl Offer {
    /// Queues a finished build for export; never waits. A full queue (or an
    /// exporter that failed) drops it and counts the drop.
    pub fn offer(&self, build: Build) {
        match self.queue.try_send(build) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.dropped(OtlpDrop::QueueFull, 1),
            // The exporter ends only when every Offer is gone, stop or no stop:
            // a queue closed under an Offer is an exporter that failed.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                if !self.told.swap(true, Ordering::Relaxed) {
                    tracing::error!("the OTLP exporter is not running: finished builds are no longer exported (counted as dropped, reason exporter_failed)");
                }
                self.metrics.dropped(OtlpDrop::ExporterFailed, 1);
            }
        }
    }
}

/// Starts the exporter task. It ends when every [`Offer`] is dropped and the
/// queue is empty. Once `stop` turns true (or its sender is gone) it fills no
/// batch further than what is queued, and has `tuning.flush` from then on to
/// send; after that it drops (and counts) every build, without a request. A stop
/// is best given once the last build is offered: then it all gets the flush time.
///
/// The handle returned ends with the exporter; an exporter that fails (panics)
/// is logged at once, and counted in `gomod_trace_otlp_exporter_failures_total`.
pub fn spawn(
    config: OtlpConfig,
    tuning: Tuning,
    metrics: OtlpMetrics,
    resource: ResourceInfo,
    stop: watch::Receiver<bool>,
) -> (Offer, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(tuning.queue.max(1));
    let exporter = Exporter {
        client: Client::new(config),
        stop: Stop { signal: stop, flush: tuning.flush, deadline: None },
        tuning,
        metrics: metrics.clone(),
        resource,
        carried: None,
        late: 0,
    };
    let task = tokio::spawn(exporter.run(rx));
    let offer = Offer { queue: tx, metrics: metrics.clone(), told: Arc::default() };
    (offer, tokio::spawn(watch_over(task, metrics)))
}

/// Waits for the exporter task, to count and tell of a panic when it happens;
/// its end then ends this task, which the daemon supervises (it stops, to be
/// restarted).
async fn watch_over(task: tokio::task::JoinHandle<()>, metrics: OtlpMetrics) {
    let Err(e) = task.await else { return };
    if e.is_panic() {
        metrics.exporter_failed();
        let panic = e.into_panic();
        let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        tracing::error!(
            panic = what.as_deref().unwrap_or("?"),
            "the OTLP exporter failed: the daemon stops, to be restarted"
        );
    }
}

struct Exporter {
    client: Client,
    tuning: Tuning,
    metrics: OtlpMetrics,
    resource: ResourceInfo,
    stop: Stop,
    /// A build (and its size) that did not fit in the last batch: the next one's first.
    carried: Option<(Build, usize)>,
    /// Builds taken after the flush time, dropped.
    late: u64,
}

/// The stop signal, and the end of the flush time it starts.
struct Stop {
    signal: watch::Receiver<bool>,
    flush: Duration,
    /// Set when stopping: nothing is sent after it.
    deadline: Option<Instant>,
}

impl Stop {
    /// Whether stopping: the signal turned true, or its sender is gone (the
    /// daemon is going away). The flush time starts when this first sees it.
    fn check(&mut self) -> bool {
        if self.deadline.is_none() && (*self.signal.borrow() || self.signal.has_changed().is_err()) {
            self.deadline = Some(after(Instant::now(), self.flush));
        }
        self.deadline.is_some()
    }

    /// Ends when stopping starts; never, once it has. Cancel-safe.
    async fn stopped(&mut self) {
        if self.deadline.is_some() {
            return std::future::pending().await;
        }
        while !self.check() {
            let _ = self.signal.changed().await;
        }
    }

    /// Whether the flush time is over: nothing more is sent.
    fn over(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// What became of a request.
enum Sent {
    Accepted,
    /// 413: the body is too large for the endpoint.
    TooLarge,
    Dropped(OtlpDrop),
}

impl Exporter {
    async fn run(mut self, mut queue: mpsc::Receiver<Build>) {
        loop {
            let (first, size) = match self.carried.take() {
                Some(carried) => carried,
                None => {
                    let Some(build) = self.next(&mut queue, None).await else { break };
                    if self.stop.over() {
                        // Counted, not even converted.
                        self.late += 1;
                        self.metrics.dropped(OtlpDrop::Shutdown, 1);
                        continue;
                    }
                    let size = self.size(&build);
                    (build, size)
                }
            };
            let (mut batch, mut bytes) = (vec![first], size);
            let linger_until = after(Instant::now(), self.tuning.linger);
            while batch.len() < self.tuning.batch && !self.stop.over() {
                let Some(build) = self.next(&mut queue, Some(linger_until)).await else { break };
                let size = self.size(&build);
                if bytes.saturating_add(size) > self.tuning.batch_bytes {
                    self.carried = Some((build, size));
                    break;
                }
                batch.push(build);
                bytes += size;
            }
            self.deliver(batch).await;
        }
        if self.late > 0 {
            tracing::warn!(builds = self.late, "builds still queued after the OTLP flush time were not exported");
        }
    }

    /// The next build from the queue, waiting for one (until `until`, if
    /// given); once stopping, a batch being filled takes only what is queued.
    async fn next(&mut self, queue: &mut mpsc::Receiver<Build>, until: Option<Instant>) -> Option<Build> {
        loop {
            match (self.stop.check(), until) {
                (true, Some(_)) => return queue.try_recv().ok(),
                (true, None) => return queue.recv().await,
                (false, None) => tokio::select! {
                    build = queue.recv() => return build,
                    () = self.stop.stopped() => {}
                },
                (false, Some(until)) => tokio::select! {
                    build = tokio::time::timeout_at(until, queue.recv()) => return build.ok().flatten(),
                    () = self.stop.stopped() => {}
                },
            }
        }
    }

    /// A build's bytes in a request of its own.
    fn size(&self, build: &Build) -> usize {
        trace_request(std::slice::from_ref(build), &self.resource).encoded_len()
    }

    /// Sends a batch, and counts what became of each build: a batch the
    /// endpoint finds too large (413) is split in halves, each sent on its own;
    /// a single build still too large is dropped.
    async fn deliver(&mut self, batch: Vec<Build>) {
        // Parts still to send, the next on top.
        let mut parts = vec![batch];
        while let Some(mut part) = parts.pop() {
            let n = part.len() as u64;
            let reason = match self.send(&part).await {
                Sent::Accepted => {
                    self.metrics.exported(n);
                    continue;
                }
                Sent::TooLarge if part.len() > 1 => {
                    tracing::debug!(builds = n, "the OTLP endpoint found a request too large (413): sending it in halves");
                    let second = part.split_off(part.len() / 2);
                    parts.push(second);
                    parts.push(part);
                    continue;
                }
                Sent::TooLarge => OtlpDrop::TooLarge,
                Sent::Dropped(reason) => reason,
            };
            self.metrics.dropped(reason, n);
            tracing::warn!(
                endpoint = %self.client.config.endpoint.shown,
                builds = n,
                reason = reason.as_str(),
                "builds not exported over OTLP"
            );
        }
    }

    /// Sends one request, retrying what may succeed later, until it is
    /// accepted, refused, or out of time.
    async fn send(&mut self, builds: &[Build]) -> Sent {
        let bound = after(Instant::now(), self.tuning.give_up_after);
        // When to give up, and why then.
        let give_up = |stop: &Stop| match stop.deadline {
            Some(deadline) if deadline <= bound => (deadline, OtlpDrop::Shutdown),
            _ => (bound, OtlpDrop::RetriesExhausted),
        };
        self.stop.check();
        let (give_up_at, reason) = give_up(&self.stop);
        if Instant::now() >= give_up_at {
            // Not even encoded.
            return Sent::Dropped(reason);
        }
        let body = Bytes::from(trace_request(builds, &self.resource).encode_to_vec());
        let mut backoff = self.tuning.first_backoff;
        loop {
            self.stop.check();
            let (give_up_at, reason) = give_up(&self.stop);
            let now = Instant::now();
            if now >= give_up_at {
                return Sent::Dropped(reason);
            }
            let attempt_end = after(now, self.tuning.request_timeout).min(give_up_at);
            let answer = {
                let request = self.client.post(body.clone());
                tokio::pin!(request);
                loop {
                    // A stop meanwhile may end the attempt sooner.
                    let end = self.stop.deadline.map_or(attempt_end, |d| d.min(attempt_end));
                    tokio::select! {
                        answer = &mut request => break Some(answer),
                        () = tokio::time::sleep_until(end) => break None,
                        () = self.stop.stopped() => {}
                    }
                }
            };
            let (failure, retry_after) = match answer {
                Some(Ok(answer)) if answer.status.is_success() => {
                    if let Some(rejected) = answer.rejected_spans() {
                        tracing::warn!(endpoint = %self.client.config.endpoint.shown, rejected, "the OTLP endpoint rejected some spans");
                    }
                    return Sent::Accepted;
                }
                Some(Ok(answer)) if answer.status == StatusCode::PAYLOAD_TOO_LARGE => {
                    self.metrics.failed(OtlpFailure::TooLarge);
                    return Sent::TooLarge;
                }
                Some(Ok(answer)) => match answer.status.as_u16() {
                    429 => (OtlpFailure::Throttled, answer.retry_after),
                    502..=504 => (OtlpFailure::Unavailable, answer.retry_after),
                    status => {
                        self.metrics.failed(OtlpFailure::Rejected);
                        tracing::warn!(
                            endpoint = %self.client.config.endpoint.shown,
                            status,
                            answer_bytes = answer.body.len(),
                            answer = %answer.excerpt(&self.client.secrets),
                            "the OTLP endpoint refused a request; not retried"
                        );
                        return Sent::Dropped(OtlpDrop::Rejected);
                    }
                },
                Some(Err(e)) => {
                    tracing::debug!(endpoint = %self.client.config.endpoint.shown, "OTLP request failed: {e}");
                    (OtlpFailure::Connection, None)
                }
                None => {
                    self.client.connection = None;
                    (OtlpFailure::Timeout, None)
                }
            };
            self.metrics.failed(failure);
            // Retry-After is honoured, but never sooner than the backoff (a
            // Retry-After of 0 is no reason to hammer).
            let wait = jitter(backoff).max(retry_after.unwrap_or_default());
            backoff = backoff.saturating_mul(2).min(self.tuning.max_backoff);
            tracing::debug!(reason = failure.as_str(), wait_s = wait.as_secs_f64(), "OTLP request to be retried");
            let retry_at = after(Instant::now(), wait);
            loop {
                let (give_up_at, reason) = give_up(&self.stop);
                if retry_at >= give_up_at {
                    return Sent::Dropped(reason);
                }
                tokio::select! {
                    () = tokio::time::sleep_until(retry_at) => break,
                    // A stop shortens the time left.
                    () = self.stop.stopped() => {}
                }
            }
        }
    }
}

/// `instant + duration`, for any duration: one past what the clock can hold
/// (a Retry-After of 2^64 s) is a year from `instant`, which is later than
/// anything is waited for.
fn after(instant: Instant, duration: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
    instant.checked_add(duration.min(YEAR)).unwrap_or(instant)
}

/// A random time between half of `backoff` and all of it.
fn jitter(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    // std's RandomState is seeded randomly: enough randomness for a backoff.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let half = backoff / 2;
    half + Duration::from_nanos(random % u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1))
}

/// One HTTP/1.1 connection to the endpoint, opened when needed and kept.
struct Client {
    config: OtlpConfig,
    connection: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    /// What an answer logged must not show.
    secrets: Vec<String>,
}

struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    /// At most [`MAX_ANSWER`] bytes.
    body: Bytes,
}

impl Answer {
    /// Spans the endpoint says it rejected (an OTLP partial success), if any.
    fn rejected_spans(&self) -> Option<i64> {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
        let response = ExportTraceServiceResponse::decode(self.body.as_ref()).ok()?;
        response.partial_success.map(|p| p.rejected_spans).filter(|&n| n > 0)
    }

    /// The start of the answer, for a log line: the endpoint's own text, which
    /// may quote the request (a proxy's "invalid token …"): the credentials sent
    /// and any URL's userinfo are redacted.
    fn excerpt(&self, secrets: &[String]) -> String {
        // Redacted while its lines are lines (a header's value ends with its line).
        let text = redact::known_secrets(&redact::text(&String::from_utf8_lossy(&self.body)), secrets);
        let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        text.chars().take(200).collect()
    }
}

impl Client {
    fn new(config: OtlpConfig) -> Client {
        let secrets = config.secrets();
        Client { config, connection: None, secrets }
    }

    /// Posts one request. A kept connection the endpoint closed meanwhile (an
    /// idle timeout) is replaced at once, not counted as a failure.
    async fn post(&mut self, body: Bytes) -> Result<Answer, String> {
        if let Some(sender) = self.connection.take().filter(|c| !c.is_closed())
            && let Ok(answer) = self.send(sender, body.clone()).await
        {
            return Ok(answer);
        }
        let sender = self.connect().await?;
        self.send(sender, body).await
    }

    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
        let endpoint = &self.config.endpoint;
        let stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", endpoint.shown))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn send(&mut self, mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>, body: Bytes) -> Result<Answer, String> {
        let endpoint = &self.config.endpoint;
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut request = Request::post(endpoint.path.as_str())
            .header(header::HOST, endpoint.authority.as_str())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::USER_AGENT, concat!("gomod-trace/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        for (name, value) in &self.config.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| retry_after(v.to_str().ok()?));
        // The status is the answer: a body longer than MAX_ANSWER, or cut
        // short, is not read further (and its connection not kept), and leaves
        // the status as it is: a success is not sent again.
        let body = match Limited::new(response.into_body(), MAX_ANSWER).collect().await {
            Ok(body) => {
                self.connection = Some(sender);
                body.to_bytes()
            }
            Err(e) => {
                tracing::debug!(endpoint = %endpoint.shown, status = status.as_u16(), "the OTLP endpoint's answer not read: {e}");
                Bytes::new()
            }
        };
        Ok(Answer { status, retry_after, body })
    }
}

/// A Retry-After value: delay-seconds, or an HTTP date in its only current
/// form (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`); the obsolete forms (RFC
/// 850, asctime) are not read, and the backoff applies. At most
/// [`MAX_RETRY_AFTER`]: digits past what a u64 holds are a very long wait, not
/// none.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let date = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
        Duration::try_from(date - time::OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn resolve(flag: Option<&str>, headers: &[&str], vars: &[(&str, &str)]) -> Result<Option<OtlpConfig>, String> {
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        OtlpConfig::resolve(flag, &headers, env(vars))
    }

    fn target(config: &OtlpConfig) -> (String, u16, String, String) {
        let e = &config.endpoint;
        (e.host.clone(), e.port, e.authority.clone(), e.path.clone())
    }

    #[test]
    fn endpoints_from_the_flag_and_the_environment() {
        assert!(resolve(None, &[], &[]).unwrap().is_none(), "nothing given: no export");
        let c = resolve(Some("http://collector:4318"), &[], &[]).unwrap().unwrap();
        assert_eq!(target(&c), ("collector".into(), 4318, "collector:4318".into(), "/v1/traces".into()));
        let c = resolve(Some("http://collector:4318/"), &[], &[]).unwrap().unwrap();
        assert_eq!(c.endpoint.path, "/v1/traces");
        let c = resolve(Some("http://gw/otlp/traces?tenant=a"), &[], &[]).unwrap().unwrap();
        assert_eq!(target(&c), ("gw".into(), 80, "gw".into(), "/otlp/traces?tenant=a".into()), "a path is used as it is");
        let c = resolve(Some("http://gw:4318?tenant=a"), &[], &[]).unwrap().unwrap();
        assert_eq!((c.endpoint.path.as_str(), c.endpoint()), ("/v1/traces?tenant=a", "http://gw:4318/v1/traces?tenant=REDACTED"));
        let c = resolve(Some("http://[::1]:4318"), &[], &[]).unwrap().unwrap();
        assert_eq!((c.endpoint.host.as_str(), c.endpoint.authority.as_str()), ("::1", "[::1]:4318"));

        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318/prefix/"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")];
        assert_eq!(resolve(None, &[], &vars).unwrap().unwrap().endpoint.path, "/prefix/v1/traces");
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/t")];
        assert_eq!(target(&resolve(None, &[], &vars).unwrap().unwrap()).3, "/t", "the traces endpoint is used as it is");
        let c = resolve(Some("http://flag:1"), &[], &vars).unwrap().unwrap();
        assert_eq!(c.endpoint.host, "flag", "the flag wins");
    }

    #[test]
    fn bad_endpoints_are_refused_with_the_reason_and_no_secret() {
        for (url, expected) in [
            ("https://u:hunter2@otlp.example", "https endpoints are not supported"),
            ("collector:4318", "not a URL"),
            ("grpc://collector:4317", "OTLP/gRPC is not supported"),
            ("ftp://collector", "only http:// endpoints"),
            ("http://:4318", "http://:4318/v1/traces: no host"),
            ("http://collector:99999", "http://collector:99999/v1/traces: 99999 is not a port"),
            ("http://u:hunter2@collector:99999", "http://REDACTED@collector:99999/v1/traces: 99999 is not a port"),
            ("http://collector:4318/v1/traces#x", "a URL fragment"),
            ("http://u:hunter2/x@collector:4318", "the part before the last @"),
            ("http://collector:4318/a@b", "an @ in the path or query, %40"),
            ("http://u:hunter2@[::1:4318", "http://REDACTED@[::1:4318/v1/traces: not a valid URL"),
        ] {
            let e = resolve(Some(url), &[], &[]).unwrap_err();
            assert!(e.contains(expected), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.starts_with("--otlp-endpoint: "), "{e}");
        }
        let e = resolve(None, &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x")]).unwrap_err();
        assert!(e.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT: "), "{e}");
        // An @ unencoded in a password: the host is after the last one.
        let c = resolve(Some("http://u:p@ss@collector:4318"), &[], &[]).unwrap().unwrap();
        assert_eq!((c.endpoint.host.as_str(), c.endpoint()), ("collector", "http://REDACTED@collector:4318/v1/traces"));
        use base64::Engine as _;
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u:p@ss"));
        assert_eq!(c.headers[0].1.to_str().unwrap(), basic);
    }

    #[test]
    fn headers_are_decoded_merged_and_never_shown() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%3Dt%2C1, x-scope-orgid=tenant1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-scope-orgid=tenant2"),
        ];
        let c = resolve(Some("http://u%40corp:pa%3Ass@collector:4318"), &["X-Scope-OrgID=tenant3", "extra= v=1 "], &vars).unwrap().unwrap();
        let value = |name: &str| c.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(value("api-key").as_deref(), Some("s3cr=t,1"), "URL-decoded");
        assert_eq!(value("x-scope-orgid").as_deref(), Some("tenant3"), "the flag wins");
        assert_eq!(value("extra").as_deref(), Some("v=1"));
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("u@corp:pa:ss");
        assert_eq!(value("authorization"), Some(format!("Basic {basic}")), "userinfo becomes basic authentication");
        assert_eq!(c.endpoint.authority, "collector:4318");
        assert_eq!(c.endpoint(), "http://REDACTED@collector:4318/v1/traces");
        let shown = format!("{c:?}");
        for secret in ["s3cr", "tenant3", "pa%3Ass", &basic] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("api-key") && shown.contains("REDACTED@collector"), "{shown}");

        let e = resolve(Some("http://c"), &[], &[("OTEL_EXPORTER_OTLP_HEADERS", "a=1,token-without-equals-hunter2")]).unwrap_err();
        assert_eq!(e, "OTEL_EXPORTER_OTLP_HEADERS: entry #2: an entry is NAME=VALUE (VALUE URL-encoded); this one has no = (it is not shown)");
        let e = resolve(Some("http://c"), &["x=1", "authorization=Bearer a\nb"], &[]).unwrap_err();
        assert_eq!(e, "--otlp-header #2: the value has characters a header cannot carry (not shown)");
        let e = resolve(Some("http://c"), &["bad name=1"], &[]).unwrap_err();
        assert!(e.starts_with("--otlp-header #1: a header is NAME=VALUE (or curl's NAME: VALUE), NAME a token"), "{e}");
        let e = resolve(Some("http://c"), &["dG9rZW4="], &[]).unwrap_err();
        assert!(e.starts_with("--otlp-header #1: ") && e.contains("VALUE is empty"), "{e}");
    }

    #[test]
    fn a_header_flag_may_be_written_as_curl_writes_it() {
        let c = resolve(Some("http://c"), &["Authorization: Basic dXNlcjpwYXNz=", "X-Scope-OrgID:a=b"], &[]).unwrap().unwrap();
        let value = |name: &str| c.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(value("authorization").as_deref(), Some("Basic dXNlcjpwYXNz="));
        assert_eq!(value("x-scope-orgid").as_deref(), Some("a=b"), "the first of = and : ends the name");
        let c = resolve(Some("http://c"), &["x-key=a:b"], &[]).unwrap().unwrap();
        assert_eq!(c.headers[0].1.to_str().unwrap(), "a:b");
        // Not in the environment: its form is the specification's, name=value.
        assert!(resolve(Some("http://c"), &[], &[("OTEL_EXPORTER_OTLP_HEADERS", "Authorization: Basic x")]).is_err());
    }

    #[test]
    fn an_answer_logged_shows_none_of_the_credentials_sent() {
        let vars = [("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k3y-S3CRET")];
        let config = resolve(Some("http://alice:pw-S3CRET@c:4318"), &["x-auth=Bearer tok-S3CRET"], &vars).unwrap().unwrap();
        let secrets = config.secrets();
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:pw-S3CRET");
        // An endpoint (or a proxy before it) that quotes the request back.
        let body = format!(
            "401 Unauthorized: token tok-S3CRET rejected\r\nx-auth: Bearer tok-S3CRET\nx-api-key: k3y-S3CRET\n\
             Basic {basic} (alice:pw-S3CRET; password pw-S3CRET) from http://alice:other-S3CRET@proxy/"
        );
        let answer = Answer { status: StatusCode::UNAUTHORIZED, retry_after: None, body: Bytes::from(body.repeat(3)) };
        let excerpt = answer.excerpt(&secrets);
        assert!(!excerpt.contains("S3CRET") && !excerpt.contains(&basic[..8]), "{excerpt}");
        assert!(excerpt.starts_with("401 Unauthorized: token REDACTED rejected  x-auth: REDACTED x-api-key: REDACTED"), "{excerpt}");
        assert!(!excerpt.chars().any(char::is_control) && excerpt.chars().count() == 200, "{excerpt}");
        // (The user name is part of the credentials too.)
        assert!(!excerpt.contains("alice") && excerpt.contains("x-api-key: REDACTED REDACTED (REDACTED; password REDACTED)"), "{excerpt}");
    }

    /// Everything resolve() lets out about a configuration: its error, or what
    /// the daemon logs and prints of it.
    /// (Lowercase: header names are lowercased.)
    fn shown(result: Result<Option<OtlpConfig>, String>) -> String {
        let text = match result {
            Ok(Some(c)) => format!("{} {:?} {c:?}", c.endpoint(), c.header_names()),
            Ok(None) => String::new(),
            Err(e) => e,
        };
        text.to_lowercase()
    }

    #[test]
    fn no_secret_in_any_error_or_log_of_the_configuration() {
        // Userinfo with characters a password may hold unencoded (# / ? @), in
        // every form the endpoint comes in, and every way it can be refused.
        let urls = [
            "http://u:hunter2#S3CRET@c:4318",
            "http://u:hunter2/S3CRET@c:4318",
            "http://u:hunter2?S3CRET@c:4318",
            "http://u:hunter2@S3CRET@c:4318",
            "http://u:hunter2/S3CRET@c:4318/v1/traces",
            "http://hunter2:S3CRET@c:99999",
            "http://hunter2:S3CRET@:4318",
            "http://hunter2:S3CRET@c:4318#fragment",
            "http://hunter2:S3CRET@c:4318/v1/traces?api_key=S3CRET",
            "http://hunter2:S3CRET@[::1:4318",
            "http://hunter2:S3CRET@c:4318/a b",
            "https://hunter2:S3CRET@c:4318",
            "grpc://hunter2:S3CRET@c:4317",
            "hunter2:S3CRET@c:4318",
            "http//hunter2:S3CRET@c:4318",
            "hunter2S3CRET://c:4318",
        ];
        let mut leaks = Vec::new();
        for url in urls {
            for (flag, var) in [(Some(url), ""), (None, "OTEL_EXPORTER_OTLP_ENDPOINT"), (None, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")] {
                let text = shown(resolve(flag, &[], &[(var, url)]));
                if text.contains("hunter2") || text.contains("s3cret") {
                    leaks.push(format!("{url} ({var}): {text}"));
                }
            }
        }
        // Header credentials where a name is expected: curl style, a bare
        // token (base64 ends in =), a value that cannot be sent.
        let flags = [
            "Authorization: Basic aHVudGVyMjpTM0NSRVQ=",
            "Authorization Bearer hunter2S3CRET",
            "Bearer hunter2S3CRET=",
            "aHVudGVyMjpTM0NSRVQ=",
            "hunter2S3CRET=",
            "x-api-key=hunter2\u{1}S3CRET",
            "x-api-key: hunter2\nS3CRET",
        ];
        for flag in flags {
            let text = shown(resolve(Some("http://c:4318"), &[flag], &[]));
            if ["hunter2", "s3cret", "ahvudgvymjptm0nsrvq"].iter().any(|s| text.contains(s)) {
                leaks.push(format!("--otlp-header {flag:?}: {text}"));
            }
        }
        let entries = [
            "Authorization: Bearer hunter2S3CRET",
            "api-key hunter2S3CRET=1",
            "aHVudGVyMjpTM0NSRVQ=",
            "api-key=hunter2%0AS3CRET",
            "a=1,Bearer hunter2S3CRET",
        ];
        for entry in entries {
            for var in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
                let text = shown(resolve(Some("http://c:4318"), &[], &[(var, entry)]));
                if ["hunter2", "s3cret", "ahvudgvymjptm0nsrvq"].iter().any(|s| text.contains(s)) {
                    leaks.push(format!("{var}={entry:?}: {text}"));
                }
            }
        }
        assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a date past");
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(90);
        let date = later.format(&time::format_description::well_known::Rfc2822).unwrap();
        let wait = retry_after(&date).unwrap();
        assert!(wait > Duration::from_secs(80) && wait <= Duration::from_secs(90), "{date}: {wait:?}");
        assert_eq!(retry_after("soon"), None);
        // Bounded, whatever is said: no wait past MAX_RETRY_AFTER, no overflow.
        assert_eq!(retry_after("18446744073709551615"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("99999999999999999999999999"), Some(MAX_RETRY_AFTER), "past u64: very long, not none");
        assert_eq!(retry_after("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(" 5 "), Some(Duration::from_secs(5)));
        for ignored in ["-1", "1.5", "", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(retry_after(ignored), None, "{ignored:?}: the backoff applies");
        }
    }

    #[test]
    fn any_wait_is_an_instant_without_overflow() {
        let now = Instant::now();
        for wait in [Duration::MAX, Duration::from_secs(u64::MAX), MAX_RETRY_AFTER] {
            assert!(after(now, wait) > now + Duration::from_secs(3600), "{wait:?}");
        }
        assert_eq!(after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
        let waits = [jitter(Duration::MAX), jitter(Duration::ZERO)];
        assert!(waits[0] >= Duration::MAX / 2 && waits[1] == Duration::ZERO, "{waits:?}");
    }

    #[tokio::test]
    async fn an_endless_answer_is_read_no_further_than_its_limit_and_its_status_stands() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A 200 whose body never ends.
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = stream.read(&mut request).await;
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n").await.unwrap();
            let chunk = vec![b'x'; 1 << 16];
            let mut sent = 0usize;
            while stream.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let config = resolve(Some(&format!("http://{addr}")), &[], &[]).unwrap().unwrap();
        let mut client = Client::new(config);
        let answer = tokio::time::timeout(Duration::from_secs(5), client.post(Bytes::from_static(b"x")))
            .await
            .expect("the answer is not read for ever")
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "accepted: not to be sent again");
        assert!(answer.body.is_empty());
        assert!(client.connection.is_none(), "a connection left mid-answer is not kept");
        drop(client);
        let sent = tokio::time::timeout(Duration::from_secs(5), server).await.expect("the connection closed").unwrap();
        // What the server wrote before the connection closed: the limit, plus
        // what the sockets' buffers hold.
        assert!(sent < 32 << 20, "{sent}");
    }

    #[tokio::test]
    async fn an_exporter_that_failed_is_logged_counted_and_its_offers_dropped() {
        let metrics = crate::metrics::Metrics::new();
        let text = || metrics.encode();
        // A panicking task, watched as the exporter is.
        let task = tokio::spawn(async { panic!("a bug") });
        watch_over(task, metrics.otlp.clone()).await;
        assert!(text().contains("gomod_trace_otlp_exporter_failures_total 1"), "{}", text());
        // Its queue is closed under the offers: each later build is counted.
        let (tx, rx) = mpsc::channel(4);
        drop(rx);
        let offer = Offer { queue: tx, metrics: metrics.otlp.clone(), told: Arc::default() };
        let build = crate::timeline::Build {
            id: "b".into(),
            command: vec![],
            pid: 1,
            started_at: String::new(),
            ended_at: None,
            exit_code: None,
            complete: true,
            state: None,
            config: Default::default(),
            notes: vec![],
            spans: vec![],
            findings: vec![],
        };
        offer.offer(build.clone());
        offer.clone().offer(build);
        assert!(offer.told.load(Ordering::Relaxed), "logged (once)");
        assert!(text().contains("gomod_trace_otlp_dropped_builds_total{reason=\"exporter_failed\"} 2"), "{}", text());
        assert!(text().contains("gomod_trace_otlp_dropped_builds_total{reason=\"shutdown\"} 0"), "{}", text());
        // An exporter that ended as it should is not counted.
        watch_over(tokio::spawn(async {}), metrics.otlp.clone()).await;
        assert!(text().contains("gomod_trace_otlp_exporter_failures_total 1"), "{}", text());
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        let backoff = Duration::from_millis(400);
        let waits: Vec<Duration> = (0..50).map(|_| jitter(backoff)).collect();
        assert!(waits.iter().all(|w| *w >= backoff / 2 && *w < backoff), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "random");
    }
}
