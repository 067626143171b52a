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
    fn decode_never_panics(kind in 0u32..12, rest in proptest::collection::vec(any::<u8>(), 0..2200)) {
        let mut bytes = kind.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        let _ = decode(&bytes, &DecodeContext::default());
    }
}
