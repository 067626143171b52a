//! Redaction: every function of `redact` (and GOPROXY-style list redaction) on
//! any text returns, never panics; and a credential planted where each one
//! promises to remove it (a URL's userinfo in any element of a `,`/`|`/space
//! list, a query value, an `Authorization`-style header, a URL quoted in an error
//! text, a known secret) is not in its output.
//!
//! Input: byte 0 picks separators and header names; the rest, split at 0xFF, is
//! the secret, then the other pieces of text. The secret is marked with `~`,
//! which the pieces around it never hold, so that finding it in an output can
//! only mean it leaked.
#![no_main]
use gomod_trace::redact;
use libfuzzer_sys::fuzz_target;

/// Characters a host, a user or a path piece keeps (none that ends a URL's
/// authority early or starts a new one).
fn word(bytes: &[u8], extra: &[u8]) -> String {
    let kept: String = bytes
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || extra.contains(b))
        .map(|&b| b as char)
        .collect();
    if kept.is_empty() { "x".into() } else { kept }
}

fuzz_target!(|input: &[u8]| {
    // Anything at all: no panic.
    let text = String::from_utf8_lossy(input);
    let _ = redact::userinfo(&text);
    let _ = redact::url_query(&text);
    let _ = redact::text(&text);
    let _ = redact::cut(&text);
    let _ = redact::header(&text);
    let _ = redact::goauth(&text);
    let _ = redact::argv(&text.split(' ').map(String::from).collect::<Vec<_>>());
    let _ = redact::known_secrets(&text, &[text.chars().take(4).collect(), String::new()]);
    let _ = redact::http_credentials(input);
    let _ = redact::value("GOPROXY", &text);

    let Some((&choice, rest)) = input.split_first() else { return };
    let mut pieces = rest.split(|&b| b == 0xff);
    let secret = format!("~{}", word(pieces.next().unwrap_or_default(), b""));
    let mut piece = |extra: &[u8]| word(pieces.next().unwrap_or_default(), extra);
    let (user, host, path, other) = (piece(b""), piece(b".-"), piece(b"/.-"), piece(b".-"));
    let url = format!("https://{user}:{secret}@{host}/{path}");

    // A list value (GOPROXY, GONOSUMDB…): the URL in every position.
    let separator = [',', '|', ' '][usize::from(choice % 3)];
    for list in [
        url.clone(),
        format!("https://{other}{separator}{url}{separator}direct"),
        format!("{url}{separator}https://{other}"),
    ] {
        let kept = redact::value("GOPROXY", &list);
        assert!(!kept.contains(&secret), "list {list:?} kept as {kept:?}");
        // The same list in a command line (`go env -w GOPROXY=…`, `env GOPROXY=…`).
        let args = ["go".to_string(), "env".into(), "-w".into(), format!("GOPROXY={list}")];
        let kept = redact::argv(&args).join(" ");
        assert!(!kept.contains(&secret), "argv {args:?} kept as {kept:?}");
    }
    let kept = redact::userinfo(&url);
    assert!(!kept.contains(&secret), "{url:?} kept as {kept:?}");

    // A query value (a signed or token URL from a redirect or the configuration),
    // under any name but cmd/go's own `go-get`, whose value is kept by design.
    let name = if other == "go-get" { "token" } else { other.as_str() };
    let token_url = format!("https://{host}/{path}?{name}={secret}&go-get=1");
    let kept = redact::url_query(&token_url);
    assert!(!kept.contains(&secret), "{token_url:?} kept as {kept:?}");

    // A URL quoted in an error text.
    for quote in ["\"", "'", "`", " "] {
        let message = format!("proxyconnect tcp: dial {quote}{url}{quote}: {other}");
        let kept = redact::text(&message);
        assert!(!kept.contains(&secret), "{message:?} kept as {kept:?}");
    }

    // A credential header of an HTTP/1 head.
    let header = ["Authorization", "proxy-authorization", "Cookie", "SET-COOKIE"][usize::from(choice / 3 % 4)];
    let head = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n{header}: Basic {secret}\r\nUser-Agent: {other}\r\n\r\n");
    let kept = redact::http_credentials(head.as_bytes()).expect("an HTTP/1 request head");
    assert!(
        !String::from_utf8_lossy(&kept).contains(&secret),
        "{head:?} kept as {:?}",
        String::from_utf8_lossy(&kept)
    );

    // A secret this process sent, quoted back in any text (without the marker,
    // which could join the `REDA…` of a replacement into a false leak).
    let quoted = format!("{other}{secret}{}{secret}", text.replace('~', ""));
    let kept = redact::known_secrets(&quoted, std::slice::from_ref(&secret));
    assert!(!kept.contains(&secret), "{quoted:?} kept as {kept:?}");
});
