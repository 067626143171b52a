//! The daemon's two HTTP servers. On `--listen`, for Prometheus and probes:
//! `/metrics` (OpenMetrics), `/healthz`, `/readyz`. On `--api-listen` (a unix
//! socket or loopback by default; off-host only with a token): the builds API,
//! `/api/v1/builds` (newest first; `failed`, `since`, `kind`, `limit`, `page`),
//! `/api/v1/builds/{id}` (the timeline JSON of contract.md, with that one build,
//! finished or running), `/api/v1/running` (the builds still running, as they
//! stand): the command lines, Go configuration and hosts of every build.
//! Every error is a 4xx/5xx with a JSON body `{"error": "..."}`.
use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tokio::sync::watch;

use super::{Shared, auth::ApiToken, endpoint::ApiListener};
use crate::{
    history::{Filter, History},
    timeline::{FINDING_KINDS, SCHEMA_VERSION, Timeline},
};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// What `--listen` serves: metrics and health, nothing about any build.
pub fn metrics_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/{*rest}", get(|| async { ApiError(StatusCode::NOT_FOUND, NOT_HERE.into()) }))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported".into())
        })
        .with_state(shared)
}

/// The metrics listener's answer to a builds API path.
const NOT_HERE: &str = "the builds API is not served on the metrics listener: see the daemon's --api-listen";

/// What `--api-listen` serves: the builds, behind the token when there is one.
pub fn builds_router(shared: Arc<Shared>, token: Option<ApiToken>) -> Router {
    let router = Router::new()
        .route("/api/v1/builds", get(list))
        .route("/api/v1/running", get(running))
        .route("/api/v1/builds/{id}", get(one))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported".into())
        })
        .with_state(shared);
    match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(token, super::auth::require_token)),
        None => router,
    }
}

/// Serves the metrics listener until `stop`.
pub async fn serve_metrics(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    if let Err(e) = axum::serve(listener, metrics_router(shared)).with_graceful_shutdown(stopped(stop)).await {
        tracing::error!("the metrics server stopped: {e}");
    }
}

/// Serves the builds API until `stop`.
pub async fn serve_builds(listener: ApiListener, shared: Arc<Shared>, token: Option<ApiToken>, stop: watch::Receiver<bool>) {
    let router = builds_router(shared, token);
    let served = match listener {
        ApiListener::Tcp(listener) => axum::serve(listener, router).with_graceful_shutdown(stopped(stop)).await,
        // The socket file goes when the server is done.
        ApiListener::Unix(listener, _file) => axum::serve(listener, router).with_graceful_shutdown(stopped(stop)).await,
    };
    if let Err(e) = served {
        tracing::error!("the builds API server stopped: {e}");
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).encode();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// Alive: the event reader goes round its loop (a daemon whose reader hangs is
/// restarted).
async fn healthz(State(shared): State<Arc<Shared>>) -> Result<&'static str, ApiError> {
    match shared.health.alive(crate::probe::monotonic_ns()) {
        Ok(()) => Ok("ok\n"),
        Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

/// Ready: probes attached, the event reader going round, the history writable.
async fn readyz(State(shared): State<Arc<Shared>>) -> Result<&'static str, ApiError> {
    match shared.health.ready(crate::probe::monotonic_ns()) {
        Ok(()) => Ok("ready\n"),
        Err(problems) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, problems.join("; "))),
    }
}

/// Runs a history read on the blocking pool with a connection of its own.
async fn with_history<T: Send + 'static>(
    shared: &Shared,
    read: impl FnOnce(&History) -> Result<T, crate::history::HistoryError> + Send + 'static,
) -> Result<T, ApiError> {
    let dir = shared.data_dir.clone();
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    tokio::task::spawn_blocking(move || {
        let history = History::open(&dir).map_err(|e| e.to_string())?;
        read(&history).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(internal)
}

/// Parses the listing's query parameters; unknown ones are an error too.
pub fn parse_filter(query: &HashMap<String, String>, now_unix_ns: i128) -> Result<(Filter, u32), String> {
    let mut filter = Filter { limit: DEFAULT_LIMIT, ..Default::default() };
    let mut page = 1u32;
    for (name, value) in query {
        match name.as_str() {
            "failed" => {
                filter.failed = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("failed must be true or false, not {value:?}")),
                }
            }
            "since" => {
                let ago = humantime::parse_duration(value)
                    .map_err(|e| format!("since must be a duration such as 30m, 6h or 7d: {e}"))?;
                filter.since_unix_ns = Some(now_unix_ns - ago.as_nanos() as i128);
            }
            "kind" => {
                if !FINDING_KINDS.contains(&value.as_str()) {
                    return Err(format!("kind must be one of {}", FINDING_KINDS.join(", ")));
                }
                filter.finding_kind = Some(value.clone());
            }
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit must be a number from 1 to {MAX_LIMIT}"))?;
            }
            "page" => {
                page = value.parse().ok().filter(|&n| n >= 1).ok_or("page must be a number from 1 on")?;
            }
            other => return Err(format!("unknown parameter {other:?} (known: failed, since, kind, limit, page)")),
        }
    }
    filter.offset = (page - 1).saturating_mul(filter.limit);
    Ok((filter, page))
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (filter, page) = parse_filter(&query, super::wall_ns()).map_err(bad_request)?;
    let limit = filter.limit;
    let builds = with_history(&shared, move |h| h.list(&filter)).await?;
    Ok(Json(json!({ "builds": builds, "page": page, "limit": limit })))
}

/// The builds still running, each with `"state": "running"`, its spans so far and
/// the findings already true (a stall shows while it lasts).
async fn running(State(shared): State<Arc<Shared>>) -> Json<Timeline> {
    let builds = shared.running.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Json(Timeline { schema_version: SCHEMA_VERSION, builds })
}

/// Build ids are a pid and a start time: digits and a dash (letters allowed).
pub fn valid_build_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

async fn one(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Json<Timeline>, ApiError> {
    if !valid_build_id(&id) {
        return Err(bad_request("a build id is digits and dashes, as /api/v1/builds lists them"));
    }
    let live = shared.running.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|b| b.id == id).cloned();
    if let Some(build) = live {
        return Ok(Json(Timeline { schema_version: SCHEMA_VERSION, builds: vec![build] }));
    }
    let key = id.clone();
    match with_history(&shared, move |h| h.get(&key)).await? {
        Some(build) => Ok(Json(Timeline { schema_version: SCHEMA_VERSION, builds: vec![build] })),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no build {id} in the history"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn listing_parameters_are_validated() {
        let now = 10_000_000_000_000;
        let (f, page) = parse_filter(&query(&[]), now).unwrap();
        assert_eq!((f.limit, f.offset, page, f.failed), (DEFAULT_LIMIT, 0, 1, false));
        let (f, page) =
            parse_filter(&query(&[("failed", "true"), ("since", "1h"), ("kind", "firewall_drop"), ("limit", "10"), ("page", "3")]), now)
                .unwrap();
        assert_eq!((f.failed, f.since_unix_ns, f.limit, f.offset, page), (true, Some(now - 3_600_000_000_000), 10, 20, 3));
        assert_eq!(f.finding_kind.as_deref(), Some("firewall_drop"));
        for bad in [
            [("failed", "maybe")],
            [("since", "yesterday")],
            [("kind", "nope")],
            [("limit", "0")],
            [("limit", "5000")],
            [("page", "0")],
            [("color", "blue")],
        ] {
            assert!(parse_filter(&query(&bad), now).is_err(), "{bad:?}");
        }
    }
}
