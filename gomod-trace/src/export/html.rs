//! The html export: one self-contained page (html/page.html, .css, .js) that can
//! never fetch anything (its Content-Security-Policy allows nothing but inline
//! style and its own script, by hash). The timeline JSON is embedded as data, escaped so
//! that no string in it (a server's text, an argv) can end the script element or
//! be read as markup; the page builds its DOM from it with textContent only.
use crate::timeline::Timeline;

const PAGE: &str = include_str!("html/page.html");
const CSS: &str = include_str!("html/page.css");
const JS: &str = include_str!("html/page.js");

pub fn render(timeline: &Timeline) -> String {
    let data = script_safe(&serde_json::to_string(timeline).expect("timelines serialize"));
    let version = env!("CARGO_PKG_VERSION");
    let script_hash = script_hash();
    let mut out = String::with_capacity(PAGE.len() + CSS.len() + JS.len() + data.len());
    let mut rest = PAGE;
    // In the template's order; what is inserted is never searched for markers.
    for (marker, value) in
        [("{{SCRIPT_HASH}}", script_hash.as_str()), ("{{VERSION}}", version), ("{{CSS}}", CSS), ("{{DATA}}", &data), ("{{JS}}", JS)]
    {
        let (before, after) = rest.split_once(marker).expect("page.html has every marker, in order");
        out.push_str(before);
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The Content-Security-Policy source that allows the page's own script and no
/// other: should an escaping mistake ever let data become a `<script>`, the
/// browser would not run it.
fn script_hash() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(JS.as_bytes())))
}

/// JSON that can sit inside `<script type="application/json">`: `<`, `>` and `&`
/// (so no `</script>`, `<!--` or `]]>`) and the JavaScript line terminators
/// U+2028/U+2029 are written as \u escapes. serde_json only emits them inside
/// strings, where the escapes mean the same characters.
fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::timeline::{Build, ConfigValue, Finding, Outcome, Role, Severity, Span, SpanKind};

    const OPEN: &str = r#"<script type="application/json" id="timeline">"#;

    const HOSTILE: &str = "</script><script>alert(1)</script> <!-- <img src=x onerror=alert(2)> ]]> \u{2028}\u{2029} </SCRIPT \"'&amp;";

    fn timeline(text: &str) -> Timeline {
        let span = |id, parent, kind, role, outcome, attrs: serde_json::Value| Span {
            id,
            parent,
            kind,
            start: "2026-11-22T01:19:28.80528706Z".into(),
            end: Some("2026-11-22T01:19:29.044613533Z".into()),
            duration_ms: Some(239.326),
            pid: 4242,
            role,
            host: Some(format!("proxy.example{text}")),
            addr: Some("10.0.0.5".into()),
            port: Some(443),
            outcome: Some(outcome),
            attrs: serde_json::from_value(attrs).unwrap(),
        };
        Timeline {
            schema_version: 1,
            builds: vec![Build {
                id: format!("1-2{text}"),
                command: vec!["go".into(), "mod".into(), "download".into(), text.into()],
                pid: 4242,
                started_at: "2026-11-22T01:19:28.80528706Z".into(),
                ended_at: Some("2026-11-22T01:19:29.044613533Z".into()),
                exit_code: Some(1),
                complete: false,
                state: None,
                config: BTreeMap::from([(
                    "GOPROXY".into(),
                    ConfigValue { value: format!("https://proxy.example{text},direct"), source: "env".into() },
                )]),
                notes: vec![format!("note {text}")],
                spans: vec![
                    span(1, None, SpanKind::Process, Role::Other, Outcome::Ok, json!({"argv": ["go", text]})),
                    span(2, Some(1), SpanKind::Http, Role::Proxy, Outcome::Error, json!({"error": text, "method": "GET", "target": text, "status": 404})),
                ],
                findings: vec![Finding {
                    kind: "http_error".into(),
                    severity: Severity::Info,
                    message: format!("answered {text}"),
                    remedy: text.into(),
                    cost_ms: 0.5,
                    spans: vec![2],
                }],
            }],
        }
    }

    /// The embedded data, as the page reads it.
    fn embedded(page: &str) -> &str {
        let start = page.find(OPEN).expect("the timeline is embedded") + OPEN.len();
        let len = page[start..].find("</script>").expect("the data element ends");
        &page[start..start + len]
    }

    /// The page without its data: what the browser reads as markup, style and code.
    fn markup(page: &str) -> String {
        page.replacen(embedded(page), "", 1)
    }

    #[test]
    fn embedded_json_round_trips() {
        for text in ["plain", HOSTILE] {
            let timeline = timeline(text);
            let page = render(&timeline);
            let back: Timeline = serde_json::from_str(embedded(&page)).unwrap();
            assert_eq!(back, timeline);
        }
        let page = render(&timeline("plain"));
        let code = markup(&page);
        assert!(!code.contains("{{") && !code.contains("}}"), "a marker of page.html is left");
        assert!(page.contains(&format!(r#"content="gomod-trace {}""#, env!("CARGO_PKG_VERSION"))));
        let empty = Timeline { schema_version: 1, builds: vec![] };
        assert_eq!(serde_json::from_str::<Timeline>(embedded(&render(&empty))).unwrap(), empty);
    }

    #[test]
    fn hostile_strings_cannot_break_out_of_the_data() {
        let page = render(&timeline(HOSTILE));
        let data = embedded(&page);
        for bad in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!data.contains(bad), "{bad:?} in the embedded data");
        }
        // Nothing of the hostile text reached the markup: one data element, one
        // style, one script, and no comment anywhere.
        assert!(!page.contains("<script>alert") && !page.contains("<img") && !page.contains("]]>"));
        assert!(!page.contains("<!--"));
        assert!(!page.contains("\u{2028}") && !page.contains("\u{2029}"));
        assert_eq!(page.to_ascii_lowercase().matches("<script").count(), 2);
        assert_eq!(page.to_ascii_lowercase().matches("</script").count(), 2);
        assert_eq!(page.matches("<style").count(), 1);
    }

    #[test]
    fn the_page_loads_nothing_from_anywhere() {
        let page = render(&timeline("see https://evil.example/x.js and http://evil.example/"));
        let head = &page[..page.find("<body").expect("a body")];
        let csp = format!(
            r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src {}; base-uri 'none'; form-action 'none'">"#,
            script_hash()
        );
        let csp_at = head.find(&csp).expect("the strict CSP");
        assert!(script_hash().starts_with("'sha256-") && script_hash().len() == "'sha256-'".len() + 44, "{}", script_hash());
        // The hash is of exactly the script element's text.
        let script = &page[page.rfind("<script>").unwrap() + "<script>".len()..page.rfind("</script>").unwrap()];
        assert_eq!(script, JS);
        // Before the CSP only the charset: nothing can load ahead of it.
        assert!(!head[..csp_at].contains("<link") && !head[..csp_at].contains("<script"));
        let code = markup(&page).to_ascii_lowercase();
        for forbidden in [
            "http://", "https://", "//cdn", "src=", "href=", "url(", "@import", "<link", "<img", "<iframe", "fetch(",
            "xmlhttprequest", "import(", "websocket", "eventsource", "sendbeacon", "innerhtml", "outerhtml",
            "insertadjacenthtml", "document.write", "eval(", "new function",
        ] {
            assert!(!code.contains(forbidden), "{forbidden:?} in the page's own markup/code");
        }
        // The assets cannot end their own elements early.
        for asset in [CSS, JS] {
            assert!(!asset.to_ascii_lowercase().contains("</s"), "an asset contains `</s`");
            assert!(!asset.contains("<!--"));
        }
    }
}
