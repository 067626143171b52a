//! The plaintext part of a TLS handshake: ClientHello (SNI, ALPN, versions),
//! ServerHello (version, ALPN in TLS 1.2), and alerts sent in the clear.
use serde::Serialize;
use tls_parser::{
    TlsExtension, TlsMessage, TlsMessageHandshake, TlsRecordType, TlsVersion, parse_tls_extensions,
    parse_tls_plaintext,
};

use super::ProtoError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientHello {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// Offered versions (supported_versions, else the legacy version).
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerHello {
    /// Negotiated version (supported_versions in TLS 1.3, else the legacy one).
    pub version: String,
    pub alpn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub fatal: bool,
    /// e.g. `BadCertificate`, `UnknownCa`, `HandshakeFailure`.
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TlsRecord {
    ClientHello(ClientHello),
    ServerHello(ServerHello),
    Alert(Alert),
    /// A handshake or application record we do not look into (encrypted, or later).
    Other { content_type: u8 },
}

/// True when the bytes start like a TLS record (type 20–23, major version 3).
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [20..=23, 3, 0..=4, ..])
}

fn version_name(v: TlsVersion) -> String {
    match v {
        TlsVersion::Tls10 => "TLS1.0".into(),
        TlsVersion::Tls11 => "TLS1.1".into(),
        TlsVersion::Tls12 => "TLS1.2".into(),
        TlsVersion::Tls13 => "TLS1.3".into(),
        other => format!("0x{:04x}", other.0),
    }
}

/// Length of a TLS 1.3 alert as an encrypted record: level and description,
/// the inner content type, and a 16-byte AEAD tag (every TLS 1.3 cipher suite).
const ENCRYPTED_ALERT_LEN: usize = 2 + 1 + 16;

/// True when a client's flight after the ServerHello holds nothing but an
/// optional ChangeCipherSpec and one encrypted record the size of an alert: the
/// client gave up on the handshake (in TLS 1.3, typically a certificate it does
/// not trust). A Finished message, the other thing a client sends there, is
/// never that short.
pub fn is_encrypted_alert(bytes: &[u8]) -> bool {
    let record = |b: &[u8]| -> Option<(u8, usize)> {
        match b {
            [kind @ 20..=23, 3, 1..=4, hi, lo, ..] => Some((*kind, usize::from(*hi) << 8 | usize::from(*lo))),
            _ => None,
        }
    };
    let mut rest = bytes;
    if let Some((20, len)) = record(rest) {
        rest = rest.get(5 + len..).unwrap_or_default();
    }
    matches!(record(rest), Some((23, ENCRYPTED_ALERT_LEN))) && rest.len() == 5 + ENCRYPTED_ALERT_LEN
}

/// Parses the first record of a TLS stream.
pub fn parse_first_record(bytes: &[u8]) -> Result<TlsRecord, ProtoError> {
    if !looks_like_tls(bytes) {
        return Err(ProtoError::NotTls);
    }
    let (_, plaintext) = parse_tls_plaintext(bytes).map_err(|e| match e {
        tls_parser::Err::Incomplete(_) => ProtoError::TlsTruncated(bytes.len()),
        other => ProtoError::Tls(other.to_string()),
    })?;
    if plaintext.hdr.record_type == TlsRecordType::ApplicationData
        || plaintext.hdr.record_type == TlsRecordType::ChangeCipherSpec
    {
        return Ok(TlsRecord::Other { content_type: plaintext.hdr.record_type.0 });
    }
    for message in plaintext.msg {
        match message {
            TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) => {
                let extensions = hello.ext.and_then(|e| parse_tls_extensions(e).ok()).map(|(_, e)| e);
                let mut client = ClientHello { sni: None, alpn: Vec::new(), versions: Vec::new() };
                for extension in extensions.unwrap_or_default() {
                    match extension {
                        TlsExtension::SNI(names) => {
                            client.sni = names
                                .first()
                                .map(|(_, name)| String::from_utf8_lossy(name).into_owned());
                        }
                        TlsExtension::ALPN(protocols) => {
                            client.alpn = protocols
                                .iter()
                                .map(|p| String::from_utf8_lossy(p).into_owned())
                                .collect();
                        }
                        TlsExtension::SupportedVersions(versions) => {
                            client.versions = versions
                                .into_iter()
                                .filter(|v| (0x0300..=0x0304).contains(&v.0))
                                .map(version_name)
                                .collect();
                        }
                        _ => {}
                    }
                }
                if client.versions.is_empty() {
                    client.versions.push(version_name(hello.version));
                }
                return Ok(TlsRecord::ClientHello(client));
            }
            TlsMessage::Handshake(TlsMessageHandshake::ServerHello(hello)) => {
                let mut server = ServerHello { version: version_name(hello.version), alpn: None };
                let extensions = hello.ext.and_then(|e| parse_tls_extensions(e).ok()).map(|(_, e)| e);
                for extension in extensions.unwrap_or_default() {
                    match extension {
                        TlsExtension::SupportedVersions(v) if !v.is_empty() => server.version = version_name(v[0]),
                        TlsExtension::ALPN(p) if !p.is_empty() => {
                            server.alpn = Some(String::from_utf8_lossy(p[0]).into_owned());
                        }
                        _ => {}
                    }
                }
                return Ok(TlsRecord::ServerHello(server));
            }
            TlsMessage::Alert(alert) => {
                return Ok(TlsRecord::Alert(Alert {
                    fatal: alert.severity.0 == 2,
                    description: alert.code.to_string(),
                }));
            }
            _ => {}
        }
    }
    Ok(TlsRecord::Other { content_type: plaintext.hdr.record_type.0 })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn recognises_an_encrypted_client_alert() {
        // As Go sent it to a server whose CA it did not trust (lab recording).
        let ccs = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
        let mut alert = ccs.to_vec();
        alert.extend([0x17, 0x03, 0x03, 0x00, 0x13]);
        alert.extend([0xaa; 19]);
        assert!(is_encrypted_alert(&alert));
        assert!(is_encrypted_alert(&alert[6..]));
        // Finished (SHA-256: 32 + 4 + 1 + 16 bytes) followed by a request.
        let mut finished = ccs.to_vec();
        finished.extend([0x17, 0x03, 0x03, 0x00, 53]);
        finished.extend([0xbb; 53]);
        assert!(!is_encrypted_alert(&finished));
        alert.extend([0x17, 0x03, 0x03, 0x00, 0x20]);
        assert!(!is_encrypted_alert(&alert), "more follows the short record");
        assert!(!is_encrypted_alert(&ccs));
        assert!(!is_encrypted_alert(b""));
    }

    fn client_hello() -> Vec<u8> {
        client_hello_for("proxy.lab.test")
    }

    /// A minimal TLS 1.2-style ClientHello with this SNI and ALPN h2.
    pub(crate) fn client_hello_for(sni_name: &str) -> Vec<u8> {
        let sni_name = sni_name.as_bytes();
        let mut sni = vec![0u8, 0]; // server_name extension type
        let list_len = 3 + sni_name.len();
        sni.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        sni.extend_from_slice(&(list_len as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(sni_name.len() as u16).to_be_bytes());
        sni.extend_from_slice(sni_name);
        let alpn = [0u8, 16, 0, 5, 0, 3, 2, b'h', b'2'];
        let mut ext = sni;
        ext.extend_from_slice(&alpn);

        let mut body = vec![3, 3];
        body.extend_from_slice(&[0u8; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // ciphers
        body.extend_from_slice(&[1, 0]); // compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);

        let mut hs = vec![1u8];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut record = vec![22u8, 3, 1];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn parses_client_hello_sni_and_alpn() {
        let TlsRecord::ClientHello(hello) = parse_first_record(&client_hello()).unwrap() else { panic!() };
        assert_eq!(hello.sni.as_deref(), Some("proxy.lab.test"));
        assert_eq!(hello.alpn, vec!["h2"]);
        assert_eq!(hello.versions, vec!["TLS1.2"]);
    }

    #[test]
    fn parses_plaintext_alert() {
        let alert = [21u8, 3, 3, 0, 2, 2, 48];
        let TlsRecord::Alert(a) = parse_first_record(&alert).unwrap() else { panic!() };
        assert!(a.fatal);
        assert_eq!(a.description, "UnknownCa");
    }

    #[test]
    fn truncated_and_foreign_input_are_errors() {
        let hello = client_hello();
        assert_eq!(parse_first_record(&hello[..20]), Err(ProtoError::TlsTruncated(20)));
        assert_eq!(parse_first_record(b"GET / HTTP/1.1\r\n"), Err(ProtoError::NotTls));
        assert_eq!(parse_first_record(&[]), Err(ProtoError::NotTls));
    }
}
