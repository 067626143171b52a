//! Where the builds API is served and asked: a unix socket (the default, only
//! root's) or a TCP address. The daemon binds it ([`bind`]); `builds` and
//! `export` connect to it ([`connect`]).
use std::{
    fmt,
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    str::FromStr,
};

/// The default endpoint of the builds API.
pub const DEFAULT_API_SOCKET: &str = "/run/gomod-trace/api.sock";
/// The socket's mode: root's, and its group's when an administrator gives the
/// directory a group (setgid) for the users who may read builds.
const SOCKET_MODE: u32 = 0o660;
/// The socket's directory, when the daemon creates it.
const DIR_MODE: u32 = 0o750;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiEndpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl ApiEndpoint {
    pub fn default_socket() -> ApiEndpoint {
        ApiEndpoint::Unix(PathBuf::from(DEFAULT_API_SOCKET))
    }

    /// Whether only this host can reach it.
    pub fn on_host(&self) -> bool {
        match self {
            ApiEndpoint::Unix(_) => true,
            ApiEndpoint::Tcp(addr) => addr.ip().is_loopback(),
        }
    }
}

impl FromStr for ApiEndpoint {
    type Err = String;

    /// `unix:PATH`, an absolute PATH, or HOST:PORT (an IP address and a port).
    fn from_str(s: &str) -> Result<ApiEndpoint, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("unix:{path}: the socket's path must be absolute"));
            }
            return Ok(ApiEndpoint::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(ApiEndpoint::Unix(PathBuf::from(s)));
        }
        s.parse().map(ApiEndpoint::Tcp).map_err(|_| {
            format!("{s:?} is neither unix:/PATH nor an IP address and port (e.g. unix:{DEFAULT_API_SOCKET}, 127.0.0.1:9465)")
        })
    }
}

impl fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiEndpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            ApiEndpoint::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// A bound endpoint, ready for `axum::serve`.
#[derive(Debug)]
pub enum ApiListener {
    /// The socket's path is removed when this is dropped.
    Unix(tokio::net::UnixListener, SocketFile),
    Tcp(tokio::net::TcpListener),
}

/// A socket file the daemon created; removed on drop.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the endpoint. A unix socket's directory is created (0750) if missing;
/// a socket file left by a daemon that died is replaced, one that answers or
/// anything that is not a socket is not.
pub async fn bind(endpoint: &ApiEndpoint) -> Result<ApiListener, String> {
    match endpoint {
        ApiEndpoint::Tcp(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(ApiListener::Tcp)
            .map_err(|e| format!("cannot listen on {addr} for the builds API: {e}")),
        ApiEndpoint::Unix(path) => bind_unix(path).await,
    }
}

async fn bind_unix(path: &Path) -> Result<ApiListener, String> {
    let cannot = |what: &str, e: std::io::Error| {
        format!("cannot {what} for the builds API ({}): {e}", path.display())
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| cannot("create its directory", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(format!(
                    "another daemon serves the builds API on {}; stop it first",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(|e| cannot("remove the stale socket", e))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket: not replaced",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(cannot("look at the socket", e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| cannot("listen", e))?;
    let file = SocketFile(path.to_path_buf());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| cannot("set the mode", e))?;
    Ok(ApiListener::Unix(listener, file))
}

/// A connection to the endpoint, for one HTTP exchange.
pub enum ApiStream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// Connects; `Ok(None)` when nothing listens there (no socket, or refused).
pub async fn connect(endpoint: &ApiEndpoint) -> std::io::Result<Option<ApiStream>> {
    let connected = match endpoint {
        ApiEndpoint::Unix(path) => tokio::net::UnixStream::connect(path)
            .await
            .map(ApiStream::Unix),
        ApiEndpoint::Tcp(addr) => tokio::net::TcpStream::connect(addr)
            .await
            .map(ApiStream::Tcp),
    };
    match connected {
        Ok(stream) => Ok(Some(stream)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_say_whether_they_leave_the_host() {
        let unix: ApiEndpoint = "unix:/run/x/api.sock".parse().unwrap();
        assert_eq!(unix, ApiEndpoint::Unix("/run/x/api.sock".into()));
        assert_eq!("/run/x/api.sock".parse::<ApiEndpoint>().unwrap(), unix);
        assert_eq!(unix.to_string(), "unix:/run/x/api.sock");
        assert!(unix.on_host());
        assert!("127.0.0.1:9465".parse::<ApiEndpoint>().unwrap().on_host());
        assert!("[::1]:9465".parse::<ApiEndpoint>().unwrap().on_host());
        assert!(!"0.0.0.0:9465".parse::<ApiEndpoint>().unwrap().on_host());
        assert!(!"10.1.2.3:9465".parse::<ApiEndpoint>().unwrap().on_host());
        for bad in ["unix:run/api.sock", "localhost:9465", "9465", ""] {
            assert!(bad.parse::<ApiEndpoint>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_socket_is_created_private_replaces_a_dead_one_and_not_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/api.sock");
        let endpoint = ApiEndpoint::Unix(path.clone());
        let first = bind(&endpoint).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), SOCKET_MODE);
        assert_eq!(mode(path.parent().unwrap()), DIR_MODE);
        assert!(
            bind(&endpoint)
                .await
                .unwrap_err()
                .contains("another daemon")
        );
        // A socket nobody listens on any more (the daemon was killed).
        let ApiListener::Unix(listener, file) = first else {
            panic!()
        };
        drop(listener);
        std::mem::forget(file);
        assert!(path.exists());
        assert!(matches!(connect(&endpoint).await, Ok(None)));
        let second = bind(&endpoint).await.unwrap();
        drop(second);
        assert!(!path.exists(), "removed when the daemon stops");
        std::fs::write(&path, "not a socket").unwrap();
        assert!(bind(&endpoint).await.unwrap_err().contains("not a socket"));
    }
}
