//! Property tests: the parsers and the record decoder return a value or an error
//! on any input, never panic.
use gomod_trace::{
    decode::{DecodeContext, decode},
    proto::{dns, http, tls},
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn dns_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = dns::parse(&bytes);
        let _ = dns::parse_tcp(&bytes);
    }

    #[test]
    fn tls_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = tls::parse_first_record(&bytes);
    }

    #[test]
    fn tls_with_a_record_header_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600), kind in 20u8..24) {
        let mut bytes = vec![kind, 3, 3, (body.len() >> 8) as u8, body.len() as u8];
        bytes.extend_from_slice(&body);
        let _ = tls::parse_first_record(&bytes);
    }

    #[test]
    fn http_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = http::parse_request(&bytes);
        let _ = http::parse_response(&bytes);
    }

    #[test]
    fn credential_scrubbing_never_panics_and_removes_the_value(
        method in "[A-Z]{1,8}", target in "[!-~]{1,40}", secret in "[A-Za-z0-9]{8,20}", tail in proptest::collection::vec(any::<u8>(), 0..100)
    ) {
        let mut message = format!("{method} {target} HTTP/1.1\r\nProxy-Authorization: Basic {secret}\r\n").into_bytes();
        message.extend_from_slice(&tail);
        let scrubbed = gomod_trace::redact::http_credentials(&message).expect("an HTTP head");
        let text = String::from_utf8_lossy(&scrubbed);
        let header = text.lines().nth(1).unwrap_or_default().to_string();
        prop_assert!(!header.contains(&secret), "{}", header);
        let _ = gomod_trace::redact::http_credentials(&tail);
    }

    #[test]
    fn decode_never_panics(kind in 0u32..12, rest in proptest::collection::vec(any::<u8>(), 0..2200)) {
        let mut bytes = kind.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        let _ = decode(&bytes, &DecodeContext::default());
    }
}
