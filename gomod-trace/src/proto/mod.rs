//! Pure parsers for what the kernel copies of a build's traffic: DNS messages, TLS
//! handshake records, HTTP/1 first lines. Byte slices in, summaries out; any input
//! gives a value or an error, never a panic (fuzzed in `tests`).
pub mod dns;
pub mod http;
pub mod tls;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("not a DNS message: {0}")]
    Dns(String),
    #[error("not a TLS record")]
    NotTls,
    #[error("TLS record cut short: {0} bytes captured")]
    TlsTruncated(usize),
    #[error("malformed TLS record: {0}")]
    Tls(String),
    #[error("not an HTTP/1 message")]
    NotHttp,
}
