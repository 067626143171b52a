//! The one authority on secrets: every text that comes from outside (a build's
//! argv and environment, its Go configuration files, HTTP heads and URLs seen
//! in the kernel, an error's text) goes through here when its event is built
//! ([`event`], called by decode and by `replay` for older recordings), so that
//! recordings, the history, the API, every export format, metric labels and
//! logs are clean by construction.
//!
//! What is replaced by `REDACTED`:
//! - the userinfo (`user:password@`, `token@`) of every URL anywhere in a text,
//!   and of every element of a `,`/`|`/space separated list value (GOPROXY,
//!   HTTPS_PROXY, GONOSUMDB…), also without a scheme (`u:p@proxy:3128`);
//! - every query parameter's value but cmd/go's own `go-get` (a module proxy's
//!   URL carries no other query: one there came from configuration or a
//!   redirect, `?token=…`, signed CDN URLs);
//! - the value of credential headers (`Authorization`, `Proxy-Authorization`,
//!   `Cookie`, `Set-Cookie`, and any name that [names a secret](names_a_secret):
//!   `Private-Token`, `X-Api-Key`, `X-Auth-Token`…), in HTTP heads and in text;
//! - the value of every header given to a `-H`/`--header`/`--proxy-header` flag
//!   or to a setting whose name says header (`http.extraHeader=…`), whatever
//!   its name;
//! - the value of `--name=v`/`--name v` flags and of `NAME=v` settings whose
//!   name names a secret (`--token`, `--password`, `GITHUB_TOKEN=`,
//!   `API_KEY=`…), and of `-u`/`--user`/`--proxy-user` (curl's `user:password`);
//! - the `login`, `password` and `account` of `.netrc` lines
//!   (`machine h login u password p`);
//! - GOAUTH's arguments (`netrc`, `off`, `git DIR` and a command's name are
//!   kept; a command's arguments are not).
//!
//! What is kept, since it is what a user needs to see what went wrong: hosts,
//! ports, schemes, paths, header and parameter names, flag and variable names.
use crate::event::Event;

pub const REDACTED: &str = "REDACTED";

/// Does a variable, flag, header or parameter name say that its value is a
/// credential? Case-insensitive; the name's parts are split at anything not
/// alphanumeric (`GITHUB_TOKEN`, `--api-key`, `X-Auth-Token`, `Proxy-Authorization`).
pub fn names_a_secret(name: &str) -> bool {
    const INSIDE: [&str; 9] = [
        "bearer",
        "token",
        "secret",
        "passw",
        "credential",
        "cookie",
        "authorization",
        "apikey",
        "session",
    ];
    const PARTS: [&str; 5] = ["key", "auth", "pass", "pw", "sig"];
    let name = name.to_ascii_lowercase();
    INSIDE.iter().any(|word| name.contains(word))
        || name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|part| PARTS.contains(&part))
}

/// Replaces the `user[:password]@` part of a URL (or of a bare `user:pw@host`).
pub fn userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    // The authority ends at the first `/`, `?` or `#`; but a `?` or `#` before an
    // `@` (and no `/`) is taken as part of a sloppy password, on the safe side.
    let authority_end = match rest.find('/').map_or(rest, |slash| &rest[..slash]).rfind('@') {
        Some(at) => at + 1,
        None => rest.find(['/', '?', '#']).unwrap_or(rest.len()),
    };
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{REDACTED}{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Query parameters whose values are kept: cmd/go's own (`?go-get=1`).
const KNOWN_PARAMETERS: [&str; 1] = ["go-get"];

/// The value of every query parameter but cmd/go's own, redacted (`query` is
/// what follows the `?`, without the fragment).
fn query(query: &str) -> String {
    query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, value)) if !KNOWN_PARAMETERS.contains(&name) && value != REDACTED => {
                format!("{name}={REDACTED}")
            }
            _ => parameter.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Replaces the userinfo of a URL (or of a request target) and the value of
/// every query parameter but cmd/go's own.
pub fn url_query(url: &str) -> String {
    let url = userinfo(url);
    let Some((head, rest)) = url.split_once('?') else {
        return url;
    };
    match rest.split_once('#') {
        Some((q, fragment)) => format!("{head}?{}#{fragment}", query(q)),
        None => format!("{head}?{}", query(rest)),
    }
}

/// Where a URL inside a text ends.
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | '<' | '>' | ',' | '|' | '(' | ')' | '[' | ']' | '{' | '}' | '\\'
        )
}

/// Every URL inside a text (`…://…`): userinfo and query values redacted.
fn urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the path, query or fragment; `[` `]` belong to an IPv6 literal.
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || (ends_url(c) && c != '[' && c != ']'))
            .unwrap_or(after.len());
        let end = authority_end
            + after[authority_end..]
                .find(ends_url)
                .unwrap_or(after.len() - authority_end);
        out.push_str(&url_query(&format!("x://{}", &after[..end]))[4..]);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Bare `user:password@host` words (no scheme: `HTTPS_PROXY=u:p@proxy:3128`):
/// a word whose part before its last `@` holds a `:` and no `/`. (`git@host:path`
/// has no `:` before its `@`, and is kept.)
fn bare_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match word.rfind('@') {
            Some(at)
                if !word.contains("://")
                    && word[..at].contains(':')
                    && !word[..at].contains('/')
                    && &word[..at] != REDACTED =>
            {
                out.push_str(REDACTED);
                out.push_str(&word[at..]);
            }
            _ => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if ends_url(c) || matches!(c, '=' | ';') {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A header value as `Name: value` with the value redacted (the name is kept);
/// a text without a `:` is all value.
pub fn header(field: &str) -> String {
    match field.split_once(':') {
        Some((name, value)) if value.trim() == REDACTED => format!("{name}:{value}"),
        Some((name, _)) => format!("{name}: {REDACTED}"),
        None if field.is_empty() => String::new(),
        None => REDACTED.to_string(),
    }
}

/// GOAUTH (`netrc; git DIR; off; COMMAND ARGS…`, `;` separated): what is kept
/// names how credentials are found, a command's arguments may be credentials.
pub fn goauth(value: &str) -> String {
    value
        .split(';')
        .map(|item| {
            let words: Vec<&str> = item.split_whitespace().collect();
            match words.as_slice() {
                [] | ["netrc"] | ["off"] | ["git", _] => item.to_string(),
                [command, ..] => {
                    let lead = &item[..item.len() - item.trim_start().len()];
                    format!("{lead}{command} {REDACTED}")
                }
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Is `c` part of a name (variable, flag, header, parameter)?
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `Name: value` (to the end of the line) and `name=value` (to the end of the
/// word) where the name names a secret; `GOAUTH=…` to the end of the line.
fn named_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let at_boundary = i == 0 || !text[..i].ends_with(name_char);
        let name_len = rest.find(|c: char| !name_char(c)).unwrap_or(rest.len());
        if !at_boundary || name_len == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let name = &rest[..name_len];
        let after = &rest[name_len..];
        // (Only found when consumed: the scan stays linear.)
        let line_end = || after.find(['\r', '\n']).unwrap_or(after.len());
        let bare_name = name.trim_start_matches('-');
        // `Name: value` or `Name:value`, and not `host.example:443` nor `scheme://`
        // (only names that say secret are taken: `Authorization:Bearer x`).
        let field = after.starts_with(':') && !after.starts_with("://") && !name.contains('.');
        if field && names_a_secret(bare_name) {
            // A header field: its value is the rest of the line.
            out.push_str(name);
            let end = line_end();
            out.push_str(&header(&after[..end]));
            i += name_len + end;
        } else if after.starts_with('=') && bare_name.eq_ignore_ascii_case("GOAUTH") {
            out.push_str(name);
            out.push('=');
            let end = line_end();
            out.push_str(&goauth(&after[1..end]));
            i += name_len + end;
        } else if after.starts_with('=') && names_a_secret(bare_name) {
            let value_end = after[1..]
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '&' | ';'))
                .map_or(after.len(), |e| e + 1);
            out.push_str(name);
            out.push('=');
            if value_end > 1 {
                out.push_str(REDACTED);
            }
            i += name_len + value_end;
        } else {
            out.push_str(name);
            i += name_len;
        }
    }
    out
}

/// `.netrc` lines (those with a `machine` or `default` word): the word after
/// `login`, `password` and `account` is redacted.
fn netrc(text: &str) -> String {
    // Words are compared without quotes: `printf 'machine h login u …'`.
    let keyword = |word: &str| word.trim_matches(['\'', '"', '`']).to_string();
    // An entry may span lines (`machine h`, then `  login u`, `  password p`).
    if !text
        .split_whitespace()
        .any(|w| matches!(keyword(w).as_str(), "machine" | "default"))
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut secret_next = false;
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        if word.is_empty() {
            out.push_str(piece);
            continue;
        }
        if secret_next {
            out.push_str(REDACTED);
            out.push_str(&piece[word.len()..]);
        } else {
            out.push_str(piece);
        }
        secret_next = matches!(keyword(word).as_str(), "login" | "password" | "account");
    }
    out
}

/// Any text from outside (an argument, an error's text, a server's words):
/// URLs, bare `user:pw@host`, credential headers, secret-named values and
/// `.netrc` lines redacted; the rest kept.
pub fn text(text: &str) -> String {
    netrc(&named_values(&bare_userinfo(&urls(text))))
}

/// A text the kernel cut short: its last word may be the start of a credential
/// that no rule can recognise yet (`https://user:pa`, `u:pa` before their `@`).
/// A last word that is an unfinished URL authority, or holds a `:` and no `/`,
/// is replaced (a finished authority is kept: a cut path or query is redacted
/// by the rules for whole texts).
pub fn cut(text: &str) -> String {
    let ends_word = |c: char| ends_url(c) || matches!(c, '=' | ';');
    let start = text.rfind(ends_word).map_or(0, |i| {
        i + text[i..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &text[start..];
    let replace_from = match word.find("://") {
        Some(i) if !word[i + 3..].contains(['/', '?', '#']) => Some(start + i + 3),
        Some(_) => None,
        None if word.contains(':') && !word.contains('/') => Some(start),
        None => None,
    };
    match replace_from {
        Some(at) if at < text.len() => format!("{}{REDACTED}", &text[..at]),
        _ => text.to_string(),
    }
}

/// A `NAME=value` setting (process environment, GOENV file, `go env -w`, an
/// `env NAME=value` argument).
pub fn value(name: &str, value: &str) -> String {
    if names_a_secret(name) {
        return if value.is_empty() {
            String::new()
        } else {
            REDACTED.to_string()
        };
    }
    if name.eq_ignore_ascii_case("GOAUTH") {
        return goauth(value);
    }
    if name.to_ascii_lowercase().contains("header") {
        return header(value);
    }
    // Each element of a list, also without a scheme (`tok@proxy:3128`).
    let mut out = String::with_capacity(value.len());
    for piece in value.split_inclusive([',', '|', ' ']) {
        let element = piece.trim_end_matches([',', '|', ' ']);
        out.push_str(&userinfo(element));
        out.push_str(&piece[element.len()..]);
    }
    text(&out)
}

/// What the argument after a flag is.
#[derive(Clone, Copy, PartialEq)]
enum Next {
    Any,
    Header,
    Secret,
    /// After `-u`/`-U`: curl's `user:password`, but `go get -u` takes no value,
    /// so only an argument with a `:` is one.
    User,
}

/// Flags whose value is a header (curl, wget, httpie style).
const HEADER_FLAGS: [&str; 3] = ["-H", "--header", "--proxy-header"];
/// Flags whose value is `user:password` (curl).
const USER_FLAGS: [&str; 2] = ["--user", "--proxy-user"];
const SHORT_USER_FLAGS: [&str; 2] = ["-u", "-U"];

/// A process's arguments: each as [`text`], and what flags say about the next
/// (`-H 'Authorization: Bearer x'`, `--token x`), `--name=value` and `NAME=value`
/// arguments by their name, `.netrc` words given as arguments.
pub fn argv(args: &[String]) -> Vec<String> {
    let mut next = Next::Any;
    let netrc_words = args.iter().any(|a| a == "machine" || a == "default");
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let this = std::mem::replace(&mut next, Next::Any);
        let shown = match this {
            Next::Header => header(arg),
            Next::Secret => REDACTED.to_string(),
            Next::User if arg.contains(':') && !arg.starts_with('-') => REDACTED.to_string(),
            Next::User | Next::Any => flag_or_setting(arg, &mut next),
        };
        if netrc_words && matches!(arg.as_str(), "login" | "password" | "account") {
            next = Next::Secret;
        }
        out.push(text(&shown));
    }
    out
}

/// One argument that is not a flag's value; sets what the next one is.
fn flag_or_setting(arg: &str, next: &mut Next) -> String {
    if let Some((flag, value)) = arg.split_once('=')
        && flag.starts_with('-')
    {
        return if HEADER_FLAGS.contains(&flag) {
            format!("{flag}={}", header(value))
        } else if USER_FLAGS.contains(&flag)
            || SHORT_USER_FLAGS.contains(&flag)
            || names_a_secret(flag.trim_start_matches('-'))
        {
            format!("{flag}={REDACTED}")
        } else {
            arg.to_string()
        };
    }
    if HEADER_FLAGS.contains(&arg) {
        *next = Next::Header;
        return arg.to_string();
    }
    if USER_FLAGS.contains(&arg) || (arg.starts_with("--") && names_a_secret(&arg[2..])) {
        *next = Next::Secret;
        return arg.to_string();
    }
    if SHORT_USER_FLAGS.contains(&arg) {
        *next = Next::User;
        return arg.to_string();
    }
    // `-HName: value`, `-uuser:pw` (short flags with their value attached).
    if let Some(field) = arg.strip_prefix("-H").filter(|f| f.contains(':')) {
        return format!("-H{}", header(field));
    }
    if arg.starts_with("-u") && arg.contains(':') {
        return format!("-u{REDACTED}");
    }
    // `NAME=value` (`env TOKEN=x go …`, `go env -w GOPROXY=…`).
    if let Some((name, setting)) = arg.split_once('=')
        && !name.is_empty()
        && name.chars().all(name_char)
    {
        return format!("{name}={}", value(name, setting));
    }
    arg.to_string()
}

/// Header fields whose values are credentials: [`names_a_secret`] (which covers
/// Authorization, Proxy-Authorization, Cookie, Set-Cookie and `*-Token`, `*-Key`).
fn credential_header(name: &[u8]) -> bool {
    names_a_secret(&String::from_utf8_lossy(name.trim_ascii()))
}

/// Scrubs an HTTP/1 message prefix, byte-wise (a captured prefix may end in the
/// middle of anything): credential header values, and userinfo and query values
/// in the request target, become `REDACTED`. Returns `None` for what is not an
/// HTTP/1 head.
pub fn http_credentials(data: &[u8]) -> Option<Vec<u8>> {
    let first_end = find(data, b"\r\n").unwrap_or(data.len());
    let first = &data[..first_end];
    let mut words = first.splitn(3, |&b| b == b' ');
    let (word, target) = (words.next()?, words.next());
    // A request line cut before its version: the target may end inside a credential.
    let target_cut = first_end == data.len() && !first.ends_with(b"\r");
    let is_response = word.starts_with(b"HTTP/");
    let is_request = (1..=16).contains(&word.len())
        && word.iter().all(u8::is_ascii_uppercase)
        && target.is_some();
    if !is_request && !is_response {
        return None;
    }
    let head_end = find(data, b"\r\n\r\n").map_or(data.len(), |i| i + 4);
    let mut out = Vec::with_capacity(data.len() + 16);
    match target.filter(|_| is_request) {
        Some(target) => {
            out.extend_from_slice(word);
            out.push(b' ');
            let target = String::from_utf8_lossy(target);
            let version = words.next();
            let target = if target_cut && version.is_none() {
                cut(&target)
            } else {
                target.into_owned()
            };
            out.extend_from_slice(url_query(&target).as_bytes());
            if let Some(rest) = version {
                out.push(b' ');
                out.extend_from_slice(rest);
            }
        }
        // A status line's reason is the server's text.
        None => match std::str::from_utf8(first) {
            Ok(line) => out.extend_from_slice(text(line).as_bytes()),
            Err(_) => out.extend_from_slice(first),
        },
    }
    // Header lines, each starting with the CRLF that ends the line before it.
    let mut rest = &data[first_end..head_end];
    while !rest.is_empty() {
        let next = find(&rest[2.min(rest.len())..], b"\r\n").map_or(rest.len(), |i| i + 2);
        let line = &rest[..next];
        rest = &rest[next..];
        let field = line.strip_prefix(b"\r\n").unwrap_or(line);
        match field.iter().position(|&b| b == b':') {
            Some(colon) if credential_header(&field[..colon]) => {
                out.extend_from_slice(&line[..line.len() - field.len() + colon + 1]);
                out.extend_from_slice(b" ");
                out.extend_from_slice(REDACTED.as_bytes());
            }
            _ => out.extend_from_slice(line),
        }
    }
    out.extend_from_slice(&data[head_end..]);
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replaces every occurrence of each of `secrets` (credentials this process
/// sent, which an answer may quote back), the longest first.
pub fn known_secrets(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_string();
    for secret in secrets {
        if text.contains(secret) {
            text = text.replace(secret, REDACTED);
        }
    }
    text
}

/// Redacts every text of an event that came from outside, in place. Decode
/// calls it on every event it builds, `replay` on every event it reads (a
/// recording made by an older version may hold what is redacted now). Applying
/// it twice changes nothing.
pub fn event(event: &mut Event) {
    match event {
        Event::Exec { argv: args, .. } => *args = argv(args),
        Event::Environment { vars, .. } => {
            for (name, v) in vars.iter_mut() {
                *v = value(name, v);
            }
        }
        Event::ConfigFiles {
            goenv_file,
            goroot_go_env,
            ..
        } => {
            for file in [goenv_file, goroot_go_env].into_iter().flatten() {
                for (name, v) in file.vars.iter_mut() {
                    *v = value(name, v);
                }
            }
        }
        Event::Payload { data, .. } => {
            if let Some(scrubbed) = http_credentials(data) {
                *data = scrubbed.into();
            }
        }
        Event::HttpRequest { url, .. } => *url = text(&url_query(url)),
        Event::HttpResponse {
            error: Some(error), ..
        } => *error = text(error),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        argv(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    /// Found in review: a header without a space after its colon, a bearer
    /// flag, and a .netrc entry over several lines.
    #[test]
    fn headers_without_a_space_bearer_flags_and_netrc_over_lines() {
        let kept = text("curl -H 'Authorization:Bearer tok1' https://h/x; echo PRIVATE-TOKEN:glpat2");
        assert!(!kept.contains("tok1") && !kept.contains("glpat2"), "{kept}");
        let kept = argv(&["curl".into(), "--oauth2-bearer".into(), "tok3".into()]).join(" ");
        assert!(!kept.contains("tok3"), "{kept}");
        let kept = text("machine h.example\n  login u4\n  password p5\n");
        assert!(!kept.contains("u4") && !kept.contains("p5") && kept.contains("h.example"), "{kept}");
        // Not headers: a port, a scheme.
        assert_eq!(text("dial tcp h.example:443 and token://x"), "dial tcp h.example:443 and token://x");
    }

    /// Found by the goenv fuzz target: a `#` in a password hid the `@` from the
    /// URL rule, another rule redacted around it, and a second pass changed the
    /// value again (a stored value must be final).
    #[test]
    fn a_sloppy_password_is_redacted_at_once() {
        for (given, redacted) in [
            ("https://u:p#ss@corp.example/go", "https://REDACTED@corp.example/go"),
            ("https://u:p?ss@corp.example", "https://REDACTED@corp.example"),
            ("X=hu:p#@pr/x,https://a.example", "REDACTED@pr/x,https://a.example"),
        ] {
            let once = super::value("GOPROXY", given);
            assert_eq!(once, redacted);
            assert_eq!(super::value("GOPROXY", &once), once);
        }
    }

    #[test]
    fn scrubs_every_query_value_but_go_get() {
        assert_eq!(
            url_query("https://u:p@proxy/x/@v/list?token=abc&go-get=1&X-Amz-Signature=f00#frag"),
            "https://REDACTED@proxy/x/@v/list?token=REDACTED&go-get=1&X-Amz-Signature=REDACTED#frag"
        );
        assert_eq!(
            url_query("https://cdn/a?__token__=1&hdnts=exp~2"),
            "https://cdn/a?__token__=REDACTED&hdnts=REDACTED"
        );
        assert_eq!(
            url_query("https://proxy/golang.org/x/mod/@v/v0.1.0.zip"),
            "https://proxy/golang.org/x/mod/@v/v0.1.0.zip"
        );
    }

    #[test]
    fn scrubs_urls_inside_text() {
        assert_eq!(
            text(r#"invalid proxy address "http://alice:p%zz@proxy:3128": parse error"#),
            r#"invalid proxy address "http://REDACTED@proxy:3128": parse error"#
        );
        assert_eq!(
            text("dial https://a@b/c and ftp://x:y@z"),
            "dial https://REDACTED@b/c and ftp://REDACTED@z"
        );
        assert_eq!(
            text("no url here: user@host, git@github.com:o/r"),
            "no url here: user@host, git@github.com:o/r"
        );
        assert_eq!(
            text("GET https://h/x?sig=abc&go-get=1 failed"),
            "GET https://h/x?sig=REDACTED&go-get=1 failed"
        );
        assert_eq!(text("http://[::1]:8080/x"), "http://[::1]:8080/x");
    }

    #[test]
    fn scrubs_every_url_of_a_list() {
        let list = "https://proxy,https://user:S3cretPw@corp.example/go,direct|http://tok@third";
        assert_eq!(
            value("GOPROXY", list),
            "https://proxy,https://REDACTED@corp.example/go,direct|http://REDACTED@third"
        );
        assert_eq!(
            text(&format!("GOPROXY={list}")),
            "GOPROXY=https://proxy,https://REDACTED@corp.example/go,direct|http://REDACTED@third"
        );
        assert_eq!(
            value("HTTPS_PROXY", "u:p@proxy:3128"),
            "REDACTED@proxy:3128"
        );
        assert_eq!(
            value("HTTPS_PROXY", "tok@proxy:3128"),
            "REDACTED@proxy:3128"
        );
        assert_eq!(
            value("GOPRIVATE", "corp.example/*,*.internal"),
            "corp.example/*,*.internal"
        );
        assert_eq!(
            value("GOFLAGS", "-mod=mod -modcacherw"),
            "-mod=mod -modcacherw"
        );
    }

    #[test]
    fn scrubs_headers_flags_and_settings_in_argv() {
        assert_eq!(
            args(&[
                "curl",
                "-H",
                "Authorization: Bearer abc",
                "--header=X-Custom: v1",
                "-HCookie: c=1",
                "-u",
                "me:pw",
                "https://h/x"
            ]),
            [
                "curl",
                "-H",
                "Authorization: REDACTED",
                "--header=X-Custom: REDACTED",
                "-HCookie: REDACTED",
                "-u",
                "REDACTED",
                "https://h/x"
            ]
        );
        assert_eq!(
            args(&["tool", "--token", "t0k", "--api-key=k3y", "--verbose", "x"]),
            [
                "tool",
                "--token",
                "REDACTED",
                "--api-key=REDACTED",
                "--verbose",
                "x"
            ]
        );
        assert_eq!(
            args(&[
                "env",
                "GITHUB_TOKEN=ghp_x",
                "DB_PASSWORD=pw",
                "GOPROXY=https://a,https://u:p@b/go,direct",
                "go",
                "mod",
                "download"
            ]),
            [
                "env",
                "GITHUB_TOKEN=REDACTED",
                "DB_PASSWORD=REDACTED",
                "GOPROXY=https://a,https://REDACTED@b/go,direct",
                "go",
                "mod",
                "download"
            ]
        );
        assert_eq!(
            args(&[
                "git",
                "-c",
                "http.extraHeader=Authorization: Basic eHg=",
                "fetch"
            ]),
            [
                "git",
                "-c",
                "http.extraHeader=Authorization: REDACTED",
                "fetch"
            ]
        );
        assert_eq!(
            args(&[
                "go",
                "env",
                "-w",
                "GOAUTH=netrc;git /src;helper --token abc"
            ]),
            ["go", "env", "-w", "GOAUTH=netrc;git /src;helper REDACTED"]
        );
        assert_eq!(
            args(&["go", "build", "-ldflags=-X main.apiKey=abc", "./..."]),
            ["go", "build", "-ldflags=-X main.apiKey=REDACTED", "./..."]
        );
        assert_eq!(
            args(&["go", "mod", "download", "-json", "-x"]),
            ["go", "mod", "download", "-json", "-x"]
        );
        assert_eq!(
            args(&["go", "get", "-u", "example.com/m@v1.2.0"]),
            ["go", "get", "-u", "example.com/m@v1.2.0"]
        );
        assert_eq!(
            text("dial tcp token.example.com:443: i/o timeout"),
            "dial tcp token.example.com:443: i/o timeout"
        );
    }

    #[test]
    fn a_cut_text_loses_a_last_word_that_may_start_a_credential() {
        assert_eq!(
            cut("GOPROXY=https://proxy,https://user:S3cr"),
            "GOPROXY=https://proxy,https://REDACTED"
        );
        assert_eq!(cut("HTTPS_PROXY=u:S3c"), "HTTPS_PROXY=REDACTED");
        assert_eq!(
            cut("Get \"https://proxy.example/github.com/x/@v/li"),
            "Get \"https://proxy.example/github.com/x/@v/li"
        );
        assert_eq!(
            cut("net/http: timeout awaiting resp"),
            "net/http: timeout awaiting resp"
        );
        assert_eq!(cut("https://"), "https://");
        let line = b"GET http://user:S3cr";
        assert_eq!(http_credentials(line).unwrap(), b"GET http://REDACTED");
    }

    #[test]
    fn scrubs_netrc_lines_and_words() {
        assert_eq!(
            text(
                "machine corp.example login alice password p4ss\ndefault login anonymous password x\nlogin failed\n"
            ),
            // The last line is read as a .netrc would: a login (entries span lines).
            "machine corp.example login REDACTED password REDACTED\ndefault login REDACTED password REDACTED\nlogin REDACTED\n"
        );
        assert_eq!(
            args(&["printf", "machine", "h", "login", "u", "password", "p"]),
            [
                "printf", "machine", "h", "login", "REDACTED", "password", "REDACTED"
            ]
        );
    }

    #[test]
    fn names_that_say_secret() {
        for name in [
            "GITHUB_TOKEN",
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "set-cookie",
            "Private-Token",
            "X-Api-Key",
            "AWS_SECRET_ACCESS_KEY",
            "NPM_AUTH",
            "DB_PW",
            "sig",
            "--password",
        ] {
            assert!(names_a_secret(name), "{name}");
        }
        for name in [
            "GOPROXY",
            "GOPRIVATE",
            "HOME",
            "PWD",
            "Host",
            "User-Agent",
            "Keep-Alive",
            "go-get",
            "GOFLAGS",
            "Content-Type",
            "monkey",
        ] {
            assert!(!names_a_secret(name), "{name}");
        }
    }

    #[test]
    fn redaction_is_idempotent() {
        for sample in [
            "https://u:p@h/x?token=1,https://REDACTED@h",
            "Authorization: Bearer x",
            "machine h login u password p",
            "GOAUTH=cmd arg",
            "TOKEN=x y",
        ] {
            let once = text(sample);
            assert_eq!(text(&once), once, "{sample}");
        }
        let once = args(&["-H", "X: y", "--token", "t"]);
        assert_eq!(argv(&once), once);
    }

    #[test]
    fn scrubs_http_credentials() {
        let request = b"CONNECT proxy.golang.org:443 HTTP/1.1\r\nHost: proxy.golang.org:443\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n";
        let out = String::from_utf8(http_credentials(request).unwrap()).unwrap();
        assert!(!out.contains("YWxpY2U6czNjcmV0"), "{out}");
        assert!(
            out.contains("Proxy-Authorization: REDACTED\r\n\r\n"),
            "{out:?}"
        );
        assert!(out.starts_with(
            "CONNECT proxy.golang.org:443 HTTP/1.1\r\nHost: proxy.golang.org:443\r\n"
        ));

        let cut = b"GET http://u:pw@proxy.corp/m/@v/list?token=t0k HTTP/1.1\r\nPrivate-Token: pt\r\nAuthorization: Bearer tok";
        let out = String::from_utf8(http_credentials(cut).unwrap()).unwrap();
        assert!(
            !out.contains("pw@")
                && !out.contains("t0k")
                && !out.contains("Bearer")
                && !out.contains(": pt"),
            "{out}"
        );
        assert!(
            out.starts_with("GET http://REDACTED@proxy.corp/m/@v/list?token=REDACTED HTTP/1.1\r\n"),
            "{out}"
        );

        let binary = b"GET /m HTTP/1.1\r\nCookie: a=b\xff\xfe\r\nX: \xe2\x82";
        let out = http_credentials(binary).unwrap();
        assert!(!out.windows(3).any(|w| w == b"a=b"));
        assert!(out.ends_with(b"X: \xe2\x82"));
        assert_eq!(http_credentials(b"\x16\x03\x01\x02\x00"), None);
        assert_eq!(http_credentials(b"garbage without spaces"), None);
    }

    #[test]
    fn scrubs_known_secrets() {
        let secrets = [
            "Bearer tok3n-abc".to_string(),
            "tok3n-abc".to_string(),
            String::new(),
        ];
        assert_eq!(
            known_secrets(
                "401: bad Authorization Bearer tok3n-abc (tok3n-abc expired)",
                &secrets
            ),
            "401: bad Authorization REDACTED (REDACTED expired)"
        );
        assert_eq!(known_secrets("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn redacts_userinfo_only() {
        assert_eq!(
            userinfo("https://u:p@proxy.corp/go"),
            "https://REDACTED@proxy.corp/go"
        );
        assert_eq!(
            userinfo("https://tok@proxy.corp"),
            "https://REDACTED@proxy.corp"
        );
        assert_eq!(userinfo("u:p@proxy.corp:8080"), "REDACTED@proxy.corp:8080");
        assert_eq!(userinfo("https://proxy.corp/a@b"), "https://proxy.corp/a@b");
        assert_eq!(
            userinfo("/example.test/mod/@v/list"),
            "/example.test/mod/@v/list"
        );
        assert_eq!(userinfo("direct"), "direct");
    }
}
