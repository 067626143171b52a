//! HTTP/1 first lines: requests (with Host), `CONNECT` to proxies, status lines.
//! Only the method, target, Host and status are kept: header values that may
//! carry credentials (Authorization, Proxy-Authorization, Cookie) are never read.
use serde::Serialize;

use super::ProtoError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub method: String,
    /// Request target with any `user:password@` replaced.
    pub target: String,
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    pub status: u16,
    pub reason: String,
}

const MAX_HEADERS: usize = 32;

pub fn parse_request(bytes: &[u8]) -> Result<Request, ProtoError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    // A prefix is fine: the first line is all we need, Host when it is there.
    let _ = request.parse(bytes);
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(ProtoError::NotHttp);
    };
    let host = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned());
    Ok(Request { method: method.to_string(), target: crate::redact::userinfo(target), host })
}

pub fn parse_response(bytes: &[u8]) -> Result<Response, ProtoError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let _ = response.parse(bytes);
    let Some(status) = response.code else { return Err(ProtoError::NotHttp) };
    Ok(Response { status, reason: response.reason.unwrap_or_default().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_with_host_from_a_prefix() {
        let r = parse_request(b"GET /example.test/mod/@v/list HTTP/1.1\r\nHost: proxy.lab.test\r\nUser-Ag").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/example.test/mod/@v/list");
        assert_eq!(r.host.as_deref(), Some("proxy.lab.test"));
    }

    #[test]
    fn parses_connect_and_redacts_userinfo() {
        let r = parse_request(b"CONNECT proxy.golang.org:443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str()), ("CONNECT", "proxy.golang.org:443"));
        let r = parse_request(b"GET http://alice:s3cret@proxy.corp/x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.target, "http://REDACTED@proxy.corp/x");
    }

    #[test]
    fn parses_status_and_rejects_garbage() {
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Le").unwrap();
        assert_eq!((r.status, r.reason.as_str()), (404, "Not Found"));
        assert!(parse_response(b"\x16\x03\x01garbage").is_err());
        assert!(parse_request(b"").is_err());
        assert!(parse_request(b"GET").is_err());
    }
}
