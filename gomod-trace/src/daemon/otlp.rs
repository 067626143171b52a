//! Pushes every finished build to an OpenTelemetry endpoint as a trace, over
//! OTLP/HTTP (protobuf), from a task of its own: the correlator only offers a
//! build ([`Offer::offer`], a `try_send` into a bounded queue; a full queue drops
//! the build and counts it) and never waits for the network. Batches builds,
//! retries what may succeed later with backoff, and gives up after a bounded
//! time, counting what it dropped. Header values are credentials: never logged,
//! never in an error message; the endpoint is shown with its userinfo redacted.
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
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
    /// When the daemon stops: how long what is queued may take to go out.
    pub flush: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            queue: 1024,
            batch: 64,
            linger: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            give_up_after: Duration::from_secs(120),
            flush: Duration::from_secs(5),
        }
    }
}

/// The correlator's end of the queue.
#[derive(Clone)]
pub struct Offer {
    queue: mpsc::Sender<Build>,
    metrics: OtlpMetrics,
}

impl Offer {
    /// Queues a finished build for export; never waits. A full queue (or an
    /// exporter that stopped) drops it and counts the drop.
    pub fn offer(&self, build: Build) {
        match self.queue.try_send(build) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.dropped(OtlpDrop::QueueFull, 1),
            Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.dropped(OtlpDrop::Shutdown, 1),
        }
    }
}

/// Starts the exporter task. It ends when every [`Offer`] is dropped and the
/// queue is empty; once `stop` turns true it has `tuning.flush` left to send what
/// is queued, and drops (and counts) the rest.
pub fn spawn(
    config: OtlpConfig,
    tuning: Tuning,
    metrics: OtlpMetrics,
    resource: ResourceInfo,
    stop: watch::Receiver<bool>,
) -> (Offer, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(tuning.queue.max(1));
    let exporter = Exporter { client: Client { config, connection: None }, tuning, metrics: metrics.clone(), resource, stop, deadline: None };
    (Offer { queue: tx, metrics }, tokio::spawn(exporter.run(rx)))
}

struct Exporter {
    client: Client,
    tuning: Tuning,
    metrics: OtlpMetrics,
    resource: ResourceInfo,
    stop: watch::Receiver<bool>,
    /// Set when stopping: nothing is sent after it.
    deadline: Option<Instant>,
}

/// What became of a batch.
enum Delivery {
    Accepted,
    Dropped(OtlpDrop),
}

impl Exporter {
    async fn run(mut self, mut queue: mpsc::Receiver<Build>) {
        loop {
            self.check_stop();
            let first = if self.deadline.is_some() {
                queue.recv().await
            } else {
                tokio::select! {
                    build = queue.recv() => build,
                    changed = self.stop.changed() => {
                        self.stop_signalled(changed.is_err());
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let linger_until = Instant::now() + self.tuning.linger;
            while batch.len() < self.tuning.batch {
                // Stopping: what is queued now, without waiting for more.
                let next = if self.deadline.is_some() {
                    queue.try_recv().ok()
                } else {
                    tokio::time::timeout_at(linger_until, queue.recv()).await.ok().flatten()
                };
                match next {
                    Some(build) => batch.push(build),
                    None => break,
                }
            }
            let n = batch.len() as u64;
            match self.deliver(&batch).await {
                Delivery::Accepted => self.metrics.exported(n),
                Delivery::Dropped(reason) => {
                    self.metrics.dropped(reason, n);
                    tracing::warn!(
                        endpoint = %self.client.config.endpoint.shown,
                        builds = n,
                        reason = reason.as_str(),
                        "builds not exported over OTLP"
                    );
                }
            }
        }
    }

    fn check_stop(&mut self) {
        let stopping = *self.stop.borrow();
        self.stop_signalled(stopping);
    }

    /// Starts the flush time if `stopping` (the stop signal turned true, or its
    /// sender is gone: the daemon is going away).
    fn stop_signalled(&mut self, stopping: bool) {
        if stopping && self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.tuning.flush);
        }
    }

    /// Sends one batch, retrying what may succeed later, until it is accepted,
    /// refused for good, or out of time.
    async fn deliver(&mut self, batch: &[Build]) -> Delivery {
        let body = Bytes::from(trace_request(batch, &self.resource).encode_to_vec());
        let started = Instant::now();
        let mut backoff = self.tuning.first_backoff;
        loop {
            self.check_stop();
            let give_up_at = match self.deadline {
                Some(deadline) => deadline.min(started + self.tuning.give_up_after),
                None => started + self.tuning.give_up_after,
            };
            let out_of_time = || match self.deadline {
                Some(deadline) if give_up_at >= deadline => OtlpDrop::Shutdown,
                _ => OtlpDrop::RetriesExhausted,
            };
            let now = Instant::now();
            if now >= give_up_at {
                return Delivery::Dropped(out_of_time());
            }
            let attempt = self.tuning.request_timeout.min(give_up_at - now);
            let failure = match tokio::time::timeout(attempt, self.client.post(body.clone())).await {
                Ok(Ok(answer)) if answer.status.is_success() => {
                    if let Some(rejected) = answer.rejected_spans() {
                        tracing::warn!(endpoint = %self.client.config.endpoint.shown, rejected, "the OTLP endpoint rejected some spans");
                    }
                    return Delivery::Accepted;
                }
                Ok(Ok(answer)) => {
                    let retryable = match answer.status.as_u16() {
                        429 => Some(OtlpFailure::Throttled),
                        502..=504 => Some(OtlpFailure::Unavailable),
                        _ => None,
                    };
                    let Some(failure) = retryable else {
                        self.metrics.failed(OtlpFailure::Rejected);
                        tracing::warn!(
                            endpoint = %self.client.config.endpoint.shown,
                            status = answer.status.as_u16(),
                            answer = %answer.excerpt(),
                            "the OTLP endpoint refused a request; not retried"
                        );
                        return Delivery::Dropped(OtlpDrop::Rejected);
                    };
                    (failure, answer.retry_after)
                }
                Ok(Err(e)) => {
                    tracing::debug!(endpoint = %self.client.config.endpoint.shown, "OTLP request failed: {e}");
                    (OtlpFailure::Connection, None)
                }
                Err(_) => {
                    self.client.connection = None;
                    (OtlpFailure::Timeout, None)
                }
            };
            let (failure, retry_after) = failure;
            self.metrics.failed(failure);
            let wait = retry_after.unwrap_or_else(|| jitter(backoff));
            backoff = (backoff * 2).min(self.tuning.max_backoff);
            tracing::debug!(reason = failure.as_str(), wait_ms = wait.as_millis() as u64, "OTLP request to be retried");
            if Instant::now() + wait >= give_up_at {
                return Delivery::Dropped(out_of_time());
            }
            if self.deadline.is_some() {
                tokio::time::sleep(wait).await;
            } else {
                // A stop while waiting shortens the time left.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    changed = self.stop.changed() => self.stop_signalled(changed.is_err()),
                }
            }
        }
    }
}

/// A random time between half of `backoff` and all of it.
fn jitter(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    // std's RandomState is seeded randomly: enough randomness for a backoff.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let half = backoff / 2;
    half + Duration::from_nanos(random % (half.as_nanos() as u64).max(1))
}

/// One HTTP/1.1 connection to the endpoint, opened when needed and kept.
struct Client {
    config: OtlpConfig,
    connection: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl Answer {
    /// Spans the endpoint says it rejected (an OTLP partial success), if any.
    fn rejected_spans(&self) -> Option<i64> {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
        let response = ExportTraceServiceResponse::decode(self.body.as_ref()).ok()?;
        response.partial_success.map(|p| p.rejected_spans).filter(|&n| n > 0)
    }

    /// The start of the answer, for a log line (an endpoint's own text).
    fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body).chars().filter(|c| !c.is_control()).take(200).collect()
    }
}

impl Client {
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
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        self.connection = Some(sender);
        Ok(Answer { status, retry_after, body })
    }
}

/// A Retry-After value: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = date - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
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
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        let backoff = Duration::from_millis(400);
        let waits: Vec<Duration> = (0..50).map(|_| jitter(backoff)).collect();
        assert!(waits.iter().all(|w| *w >= backoff / 2 && *w < backoff), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "random");
    }
}
