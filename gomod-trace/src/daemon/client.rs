//! A client of the daemon's API, for `builds` and `export`: one HTTP/1.1 GET
//! (hyper) on loopback or wherever `--daemon` points.
use std::{net::SocketAddr, time::Duration};

use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, body::Bytes, header};
use hyper_util::rt::TokioIo;

/// How long one request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the address.
    #[error("no gomod-trace daemon answers at {0}")]
    NotRunning(SocketAddr),
    #[error("asking the daemon at {addr}: {detail}")]
    Failed { addr: SocketAddr, detail: String },
}

/// A status and body from the daemon.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON of type `T`, or the API's `{"error": …}` as an error.
    pub fn json<T: serde::de::DeserializeOwned>(&self, addr: SocketAddr) -> Result<T, ClientError> {
        let failed = |detail: String| ClientError::Failed { addr, detail };
        if !(200..300).contains(&self.status) {
            let message = serde_json::from_slice::<serde_json::Value>(&self.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().chars().take(200).collect());
            return Err(failed(format!("HTTP {}: {}", self.status, crate::terminal::printable(&message))));
        }
        serde_json::from_slice(&self.body).map_err(|e| failed(format!("not the answer of a gomod-trace daemon ({e})")))
    }
}

/// GETs `path` (with its query) from the daemon at `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Answer, ClientError> {
    let failed = |detail: String| ClientError::Failed { addr, detail };
    let exchange = async {
        let stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(ClientError::NotRunning(addr)),
            Err(e) => return Err(failed(e.to_string())),
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(e.to_string()))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(header::HOST, addr.to_string())
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| failed(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| failed(e.to_string()))?.to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| failed(format!("no answer within {} s", TIMEOUT.as_secs())))?
}
