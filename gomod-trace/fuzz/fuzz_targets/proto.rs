//! The payload parsers: DNS (UDP and TCP framing), TLS records and HTTP/1 heads,
//! on any bytes a peer or a build sends, return a value or an error, never panic.
//! Each parser sees the same bytes, as the correlator tries them on a payload.
#![no_main]
use gomod_trace::{
    proto::{dns, http, tls},
    redact,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let _ = dns::parse(payload);
    let _ = dns::parse_tcp(payload);
    let _ = tls::looks_like_tls(payload);
    let _ = tls::is_encrypted_alert(payload);
    let _ = tls::parse_first_record(payload);
    let _ = http::parse_request(payload);
    let _ = http::parse_response(payload);
    // The decode boundary scrubs HTTP heads before anything else sees them.
    if let Some(scrubbed) = redact::http_credentials(payload) {
        let _ = http::parse_request(&scrubbed);
        let _ = http::parse_response(&scrubbed);
    }
});
