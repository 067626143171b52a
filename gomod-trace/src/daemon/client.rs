//! A client of the daemon's builds API, for `builds` and `export`: one HTTP/1.1
//! GET (hyper) on the API's unix socket or wherever `--daemon` points, with the
//! bearer token when one is given.
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, body::Bytes, client::conn::http1::SendRequest, header};
use hyper_util::rt::TokioIo;

use super::endpoint::{self, ApiEndpoint, ApiStream};

/// How long one request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the endpoint.
    #[error("no gomod-trace daemon answers at {0}")]
    NotRunning(ApiEndpoint),
    #[error("asking the daemon at {endpoint}: {detail}")]
    Failed {
        endpoint: ApiEndpoint,
        detail: String,
    },
}

/// A status and body from the daemon.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON of type `T`, or the API's `{"error": …}` as an error.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &ApiEndpoint,
    ) -> Result<T, ClientError> {
        let failed = |detail: String| ClientError::Failed {
            endpoint: endpoint.clone(),
            detail,
        };
        if !(200..300).contains(&self.status) {
            let message = serde_json::from_slice::<serde_json::Value>(&self.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&self.body)
                        .trim()
                        .chars()
                        .take(200)
                        .collect()
                });
            return Err(failed(format!("HTTP {}: {}", self.status, crate::terminal::printable(&message))));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| failed(format!("not the answer of a gomod-trace daemon ({e})")))
    }
}

/// GETs `path` (with its query) from the daemon at `endpoint`, with
/// `Authorization: Bearer TOKEN` when a token is given.
pub async fn get(
    endpoint: &ApiEndpoint,
    path: &str,
    token: Option<&str>,
) -> Result<Answer, ClientError> {
    let failed = |detail: String| ClientError::Failed {
        endpoint: endpoint.clone(),
        detail,
    };
    let exchange = async {
        let stream = match endpoint::connect(endpoint).await {
            Ok(Some(stream)) => stream,
            Ok(None) => return Err(ClientError::NotRunning(endpoint.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(failed(format!(
                    "{e} (the API's socket is root's: run as root, or see --data-dir)"
                )));
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let host = match endpoint {
            ApiEndpoint::Tcp(addr) => addr.to_string(),
            ApiEndpoint::Unix(_) => "localhost".to_string(),
        };
        let mut request = Request::get(path)
            .header(header::HOST, host)
            .header(header::ACCEPT, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|_| failed("the request could not be made".into()))?;
        let mut sender = match stream {
            ApiStream::Unix(s) => handshake(s).await,
            ApiStream::Tcp(s) => handshake(s).await,
        }
        .map_err(|e| failed(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| failed(format!("no answer within {} s", TIMEOUT.as_secs())))?
}

/// An HTTP/1.1 connection over `stream`, driven by a task of its own.
async fn handshake<S>(stream: S) -> Result<SendRequest<Empty<Bytes>>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
