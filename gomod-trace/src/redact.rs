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

#[cfg(test)]
mod tests {
    use super::*;

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
