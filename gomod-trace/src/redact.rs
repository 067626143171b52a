//! Secrets never leave the process: credentials in URLs (GOPROXY entries, proxy
//! request targets, HTTPS_PROXY) are replaced before anything stores, prints or
//! exports them.
pub const REDACTED: &str = "REDACTED";

/// Replaces the `user[:password]@` part of a URL (or of a bare `user:pw@host`).
pub fn userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{REDACTED}{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Query parameters whose values are kept: cmd/go's own (`?go-get=1`).
const KNOWN_PARAMETERS: [&str; 1] = ["go-get"];

/// Replaces the userinfo of a URL and the value of every query parameter but
/// cmd/go's own: a module proxy's URL carries no other query, so one there came
/// from the configuration or a redirect (`?token=…`, signed CDN URLs) and may be
/// a credential whatever its name.
pub fn url_query(url: &str) -> String {
    let url = userinfo(url);
    let Some((head, query)) = url.split_once('?') else { return url };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if !KNOWN_PARAMETERS.contains(&name) => format!("{name}={REDACTED}"),
            _ => parameter.to_string(),
        })
        .collect();
    let mut out = format!("{head}?{}", parameters.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Replaces the userinfo of every URL inside a text (an error message that
/// quotes a proxy URL, `invalid proxy address "http://user:pw@…"`).
pub fn urls_in_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after.find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace()).unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push_str(REDACTED);
                out.push_str(&authority[i..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces every occurrence of each of `secrets` (credentials this process
/// sent, which an answer may quote back), the longest first.
pub fn known_secrets(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&str> = secrets.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_string();
    for secret in secrets {
        if text.contains(secret) {
            text = text.replace(secret, REDACTED);
        }
    }
    text
}

/// Header fields whose values are credentials.
const SECRET_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// Scrubs an HTTP/1 message prefix, byte-wise (a captured prefix may end in the
/// middle of anything): credential header values and userinfo in the request
/// target become `REDACTED`. Returns `None` for what is not an HTTP/1 head.
pub fn http_credentials(data: &[u8]) -> Option<Vec<u8>> {
    let first_end = find(data, b"\r\n").unwrap_or(data.len());
    let first = &data[..first_end];
    let mut words = first.splitn(3, |&b| b == b' ');
    let (word, target) = (words.next()?, words.next());
    let is_response = word.starts_with(b"HTTP/");
    let is_request = (1..=16).contains(&word.len()) && word.iter().all(u8::is_ascii_uppercase) && target.is_some();
    if !is_request && !is_response {
        return None;
    }
    let head_end = find(data, b"\r\n\r\n").map_or(data.len(), |i| i + 4);
    let mut out = Vec::with_capacity(data.len() + 16);
    match target.filter(|_| is_request) {
        Some(target) => {
            out.extend_from_slice(word);
            out.push(b' ');
            out.extend_from_slice(userinfo(&String::from_utf8_lossy(target)).as_bytes());
            if let Some(rest) = words.next() {
                out.push(b' ');
                out.extend_from_slice(rest);
            }
        }
        None => out.extend_from_slice(first),
    }
    // Header lines, each starting with the CRLF that ends the line before it.
    let mut rest = &data[first_end..head_end];
    while !rest.is_empty() {
        let next = find(&rest[2.min(rest.len())..], b"\r\n").map_or(rest.len(), |i| i + 2);
        let line = &rest[..next];
        rest = &rest[next..];
        let field = line.strip_prefix(b"\r\n").unwrap_or(line);
        let secret = field
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| SECRET_HEADERS.iter().any(|h| field[..colon].trim_ascii().eq_ignore_ascii_case(h.as_bytes())));
        if secret {
            let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
            out.extend_from_slice(&line[..line.len() - field.len() + colon + 1]);
            out.extend_from_slice(b" ");
            out.extend_from_slice(REDACTED.as_bytes());
        } else {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&data[head_end..]);
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_query_value_but_go_get() {
        assert_eq!(
            url_query("https://u:p@proxy/x/@v/list?token=abc&go-get=1&X-Amz-Signature=f00#frag"),
            "https://REDACTED@proxy/x/@v/list?token=REDACTED&go-get=1&X-Amz-Signature=REDACTED#frag"
        );
        assert_eq!(url_query("https://cdn/a?__token__=1&hdnts=exp~2"), "https://cdn/a?__token__=REDACTED&hdnts=REDACTED");
        assert_eq!(url_query("https://proxy/golang.org/x/mod/@v/v0.1.0.zip"), "https://proxy/golang.org/x/mod/@v/v0.1.0.zip");
    }

    #[test]
    fn scrubs_urls_inside_text() {
        assert_eq!(
            urls_in_text(r#"invalid proxy address "http://alice:p%zz@proxy:3128": parse error"#),
            r#"invalid proxy address "http://REDACTED@proxy:3128": parse error"#
        );
        assert_eq!(urls_in_text("dial https://a@b/c and ftp://x:y@z"), "dial https://REDACTED@b/c and ftp://REDACTED@z");
        assert_eq!(urls_in_text("no url here: user@host"), "no url here: user@host");
    }

    #[test]
    fn scrubs_http_credentials() {
        let request = b"CONNECT proxy.golang.org:443 HTTP/1.1\r\nHost: proxy.golang.org:443\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n";
        let out = String::from_utf8(http_credentials(request).unwrap()).unwrap();
        assert!(!out.contains("YWxpY2U6czNjcmV0"), "{out}");
        assert!(out.contains("Proxy-Authorization: REDACTED\r\n\r\n"), "{out:?}");
        assert!(out.starts_with("CONNECT proxy.golang.org:443 HTTP/1.1\r\nHost: proxy.golang.org:443\r\n"));

        let cut = b"GET http://u:pw@proxy.corp/m/@v/list HTTP/1.1\r\nAuthorization: Bearer tok";
        let out = String::from_utf8(http_credentials(cut).unwrap()).unwrap();
        assert!(!out.contains("pw@") && !out.contains("tok"), "{out}");
        assert!(out.starts_with("GET http://REDACTED@proxy.corp/m/@v/list HTTP/1.1\r\n"));

        let binary = b"GET /m HTTP/1.1\r\nCookie: a=b\xff\xfe\r\nX: \xe2\x82";
        let out = http_credentials(binary).unwrap();
        assert!(!out.windows(3).any(|w| w == b"a=b"));
        assert!(out.ends_with(b"X: \xe2\x82"));
        assert_eq!(http_credentials(b"\x16\x03\x01\x02\x00"), None);
        assert_eq!(http_credentials(b"garbage without spaces"), None);
    }

    #[test]
    fn scrubs_known_secrets() {
        let secrets = ["Bearer tok3n-abc".to_string(), "tok3n-abc".to_string(), String::new()];
        assert_eq!(
            known_secrets("401: bad Authorization Bearer tok3n-abc (tok3n-abc expired)", &secrets),
            "401: bad Authorization REDACTED (REDACTED expired)"
        );
        assert_eq!(known_secrets("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn redacts_userinfo_only() {
        assert_eq!(userinfo("https://u:p@proxy.corp/go"), "https://REDACTED@proxy.corp/go");
        assert_eq!(userinfo("https://tok@proxy.corp"), "https://REDACTED@proxy.corp");
        assert_eq!(userinfo("u:p@proxy.corp:8080"), "REDACTED@proxy.corp:8080");
        assert_eq!(userinfo("https://proxy.corp/a@b"), "https://proxy.corp/a@b");
        assert_eq!(userinfo("/example.test/mod/@v/list"), "/example.test/mod/@v/list");
        assert_eq!(userinfo("direct"), "direct");
    }
}
