//! The html export, checked in a real headless Chromium (tests/exports/check_html.mjs)
//! against the JSON timeline of the same build: recorded fixtures replayed
//! (no root needed), a synthesised build of 1,000+ spans (timed), hostile strings,
//! and pages the checker must reject.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use gomod_trace::{
    export::{Format, View, render},
    timeline::{Build, ConfigValue, Finding, Outcome, Role, Severity, Span, SpanKind, Timeline, rfc3339},
};
use gomod_trace_lab::{gomod_trace_bin, viewers::html};
use serde_json::json;

/// One Chromium at a time: the timings are measured, and there are two cores.
static CHROMIUM: Mutex<()> = Mutex::new(());

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.jsonl"))
}

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<this test>
    let exe = std::env::current_exe().expect("executable path");
    exe.ancestors().nth(3).expect("the target directory").to_path_buf()
}

/// `gomod-trace replay FIXTURE --format FORMAT` into `out`.
fn replay(name: &str, extra: &[&str], format: &str, out: &Path) {
    let status = Command::new(gomod_trace_bin())
        .arg("replay")
        .arg(fixture(name))
        .args(["--format", format, "--output"])
        .arg(out)
        .args(extra)
        .status()
        .expect("gomod-trace runs");
    assert!(status.success(), "replay {name} --format {format}: {status}");
}

fn check(page: &Path, json: &Path, screenshot: Option<&Path>) -> String {
    let _one = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    html::check(page, json, screenshot)
}

/// Writes `timeline` as JSON and as the html page (through the library, as
/// `gomod-trace --format html` would) into `dir`.
fn write_both(dir: &Path, name: &str, timeline: &Timeline) -> (PathBuf, PathBuf) {
    let (page, json) = (dir.join(format!("{name}.html")), dir.join(format!("{name}.json")));
    std::fs::write(&page, render(timeline, Format::Html, &View::default())).unwrap();
    std::fs::write(&json, render(timeline, Format::Json, &View::default())).unwrap();
    (page, json)
}

/// The number after `key=` in the checker's output.
fn timing(output: &str, key: &str) -> f64 {
    let at = output.find(&format!("{key}=")).unwrap_or_else(|| panic!("no {key} in:\n{output}")) + key.len() + 1;
    output[at..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Recorded builds with findings, failures and many spans: every finding and
/// span shown, clicks and zoom work, nothing fetched, no console error.
#[test]
fn fixtures_render_and_pass_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures: [(&str, &[&str]); 7] = [
        ("clean_download", &[]),
        ("firewall_drop", &[]),
        ("fallback_to_git", &[]),
        ("stalled_transfer", &["--stall-threshold", "5s"]),
        ("requests_clean_h2", &[]),
        ("outside_squid_denies_sumdb", &[]),
        ("private_module_leak", &[]),
    ];
    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, extra) in fixtures {
        let (page, json) = (dir.path().join(format!("{name}.html")), dir.path().join(format!("{name}.json")));
        replay(name, extra, "html", &page);
        replay(name, extra, "json", &json);
        let timeline: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert!(!timeline["builds"][0]["spans"].as_array().unwrap().is_empty(), "{name}: no spans");
        let shot = (name == "private_module_leak").then(|| shots.join("html-export.png"));
        let out = check(&page, &json, shot.as_deref());
        eprintln!("{name}: {}", out.lines().last().unwrap_or_default());
        if name == "stalled_transfer" {
            assert!(out.contains("stalled_transfer"), "the stall was not clicked:\n{out}");
        }
    }
    let png = shots.join("html-export.png");
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000, "{} is not a screenshot", png.display());
}

const T0: i128 = 1_795_000_000_000_000_000;

struct Synth {
    spans: Vec<Span>,
}

impl Synth {
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        parent: Option<u32>,
        kind: SpanKind,
        role: Role,
        host: Option<&str>,
        port: Option<u16>,
        start_us: i128,
        dur_us: i128,
        outcome: Outcome,
        attrs: serde_json::Value,
    ) -> u32 {
        let id = self.spans.len() as u32 + 1;
        self.spans.push(Span {
            id,
            parent,
            kind,
            start: rfc3339(T0 + start_us * 1000),
            end: Some(rfc3339(T0 + (start_us + dur_us) * 1000)),
            duration_ms: Some(dur_us as f64 / 1000.0),
            pid: 4000,
            role,
            host: host.map(str::to_string),
            addr: host.map(|_| "10.0.0.5".to_string()),
            port,
            outcome: Some(outcome),
            attrs: serde_json::from_value(attrs).unwrap(),
        });
        id
    }
}

/// A `go mod download` of `modules` modules through one proxy over four
/// connections (three requests each), checksum lookups, a dropped mirror and
/// a few 404s: about 4 spans per module.
fn big_build(modules: usize, text: &str) -> Build {
    let mut s = Synth { spans: Vec::new() };
    let total_us = 2_000 + modules as i128 * 900 + 3_100_000;
    let root = s.span(None, SpanKind::Process, Role::Other, None, None, 0, total_us, Outcome::Ok, json!({"argv": ["go", "mod", "download", text], "comm": "go", "exit_code": 1}));
    let proxy = format!("proxy{text}.example");
    for q in ["A", "AAAA"] {
        s.span(Some(root), SpanKind::Dns, Role::Dns, Some(&proxy), Some(53), 100, 300, Outcome::Ok, json!({"qtype": q, "rcode": "NOERROR", "answers": ["10.0.0.5"]}));
    }
    let mut conns = Vec::new();
    for c in 0..4 {
        let connect = s.span(Some(root), SpanKind::Connect, Role::Proxy, Some(&proxy), Some(443), 500 + c * 20, 60, Outcome::Ok, json!({"entry": "GOPROXY[1] https://proxy.example", "syn_retransmits": 0}));
        s.span(Some(connect), SpanKind::Tls, Role::Proxy, Some(&proxy), Some(443), 560 + c * 20, 400, Outcome::Ok, json!({"sni": proxy, "version": "TLS1.3", "alpn": "h2"}));
        s.span(Some(connect), SpanKind::Transfer, Role::Proxy, Some(&proxy), Some(443), 560 + c * 20, modules as i128 * 900, Outcome::Ok, json!({"bytes_sent": 1000 * modules, "bytes_received": 90_000 * modules}));
        conns.push(connect);
    }
    let (mut not_found, mut lookups) = (Vec::new(), Vec::new());
    let sumdb = s.span(Some(root), SpanKind::Connect, Role::Sumdb, Some("sum.example"), Some(443), 900, 80, Outcome::Ok, json!({"entry": "GOSUMDB sum.example"}));
    for m in 0..modules {
        let t = 1_000 + m as i128 * 900;
        let module = format!("example.com/{text}m{m:04}");
        let conn = conns[m % 4];
        let mut ids = Vec::new();
        for (k, file) in ["info", "mod", "zip"].iter().enumerate() {
            let missing = *file == "zip" && m % 37 == 5;
            let (outcome, status) = if missing { (Outcome::Error, 404) } else { (Outcome::Ok, 200) };
            let id = s.span(Some(conn), SpanKind::Http, Role::Proxy, Some(&proxy), Some(443), t + k as i128 * 150, 120 + (m as i128 * 37) % 300, outcome, json!({"method": "GET", "status": status, "proto": "HTTP/2.0", "target": format!("/{module}/@v/v1.0.0.{file}")}));
            ids.push(id);
            if missing {
                not_found.push(id);
            }
        }
        if m % 10 == 0 {
            lookups.push(s.span(Some(sumdb), SpanKind::Http, Role::Sumdb, Some("sum.example"), Some(443), t + 500, 200, Outcome::Ok, json!({"method": "GET", "status": 200, "target": format!("/lookup/{module}@v1.0.0")})));
        }
        s.span(Some(root), SpanKind::Module, Role::Proxy, None, None, t, 800, Outcome::Ok, json!({"module": module, "version": "v1.0.0", "source": "proxy", "files": ["info", "mod", "zip"]}));
    }
    assert_eq!(lookups.len(), modules.div_ceil(10));
    let dropped = s.span(Some(root), SpanKind::Connect, Role::Proxy, Some("mirror.example"), Some(443), total_us - 3_050_000, 3_000_000, Outcome::Dropped, json!({"syn_retransmits": 2, "drop_reason": "nft drop", "entry": format!("GOPROXY[2] https://mirror.example{text}")}));
    Build {
        id: format!("4000-{text}synthetic"),
        command: ["go", "mod", "download", text].into_iter().filter(|w| !w.is_empty()).map(String::from).collect(),
        pid: 4000,
        started_at: rfc3339(T0),
        ended_at: Some(rfc3339(T0 + total_us * 1000)),
        exit_code: Some(1),
        complete: false,
        state: None,
        config: BTreeMap::from([
            ("GOPROXY".into(), ConfigValue { value: format!("https://proxy.example,https://mirror.example{text}"), source: "env".into() }),
            ("GOSUMDB".into(), ConfigValue { value: "sum.example".into(), source: "env".into() }),
            ("GOFLAGS".into(), ConfigValue { value: format!("-mod=mod {text}"), source: "goenv_file".into() }),
        ]),
        notes: vec![format!("synthesised for the html export's test {text}")],
        findings: vec![
            Finding {
                kind: "http_error".into(),
                severity: Severity::Info,
                message: format!("proxy.example answered HTTP 404 to {} request(s) {text}", not_found.len()),
                remedy: format!("check the module path {text}"),
                cost_ms: not_found.len() as f64 * 0.2,
                spans: not_found,
            },
            Finding {
                kind: "firewall_drop".into(),
                severity: Severity::Error,
                message: format!("connections to mirror.example:443 were silently dropped {text}"),
                remedy: format!("allow mirror.example:443 {text}"),
                cost_ms: 3000.0,
                spans: vec![dropped],
            },
            Finding {
                kind: "incomplete_trace".into(),
                severity: Severity::Warning,
                message: "the kernel dropped events".into(),
                remedy: String::new(),
                cost_ms: 0.0,
                spans: vec![],
            },
        ],
        spans: s.spans,
    }
}

/// 1,000+ spans in one build (and a recorded build beside it): loads and draws
/// well under 3 s, every span reachable, clicking still works once zoomed in.
#[test]
fn a_thousand_spans_load_fast_and_stay_clickable() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("recorded.json");
    replay("fallback_to_git", &[], "json", &json);
    let recorded: Timeline = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let big = big_build(300, "");
    assert!(big.spans.len() >= 1000, "{} spans", big.spans.len());
    let timeline = Timeline { schema_version: 1, builds: vec![big, recorded.builds[0].clone()] };
    let (page, json) = write_both(dir.path(), "big", &timeline);
    let out = check(&page, &json, None);
    eprintln!("{out}");
    assert!(out.contains("(zoomed in): clicked span"), "no click after zooming:\n{out}");
    let ready = timing(&out, "ready_ms");
    assert!(ready < 3000.0, "the page took {ready} ms to load and draw");
    let zoom = timing(&out, "zoom_ms");
    assert!(zoom < 500.0, "a zoom step took {zoom} ms");
}

/// A server's text, argv and messages with markup, script ends, comments and
/// line separators: shown as text, nothing runs, nothing breaks.
#[test]
fn hostile_strings_are_shown_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "</script><script>document.title='pwned'</script><!-- <img src=x onerror=alert(1)>\u{2028}\u{2029}'\"&amp;";
    let timeline = Timeline { schema_version: 1, builds: vec![big_build(12, hostile)] };
    let (page, json) = write_both(dir.path(), "hostile", &timeline);
    let out = check(&page, &json, None);
    assert!(out.contains("check_html: OK"), "{out}");
}

/// An empty timeline (no Go build ran) is a page that says so.
#[test]
fn an_empty_timeline_says_no_build_ran() {
    let dir = tempfile::tempdir().unwrap();
    let (page, json) = write_both(dir.path(), "empty", &Timeline { schema_version: 1, builds: vec![] });
    check(&page, &json, None);
}

/// The checker fails a page that misses a finding, one that fetches something,
/// and one whose script breaks.
#[test]
fn the_checker_rejects_broken_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (page, json) = (dir.path().join("good.html"), dir.path().join("good.json"));
    replay("outside_squid_denies_sumdb", &[], "html", &page);
    replay("outside_squid_denies_sumdb", &[], "json", &json);
    let good = std::fs::read_to_string(&page).unwrap();
    let mut timeline: Timeline = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();

    // The page of a timeline with one finding less, checked against the full JSON.
    let missing = timeline.builds[0].findings.pop().expect("the fixture has findings");
    let fewer = dir.path().join("fewer.html");
    std::fs::write(&fewer, render(&timeline, Format::Html, &View::default())).unwrap();
    let image = r#"<body><img src="https://example.invalid/pixel.png">"#;
    let csp_at = good.find(r#"<meta http-equiv="Content-Security-Policy""#).expect("the page has a CSP");
    let csp_end = csp_at + good[csp_at..].find('>').unwrap() + 1;
    let without_csp = format!("{}{}", &good[..csp_at], &good[csp_end..]).replacen("<body>", image, 1);
    // The page's script is allowed by its hash: a changed script runs only with the
    // hash taken out of the policy.
    let hash_at = good.find("script-src 'sha256-").expect("the CSP allows the script by hash") + "script-src ".len();
    let hash_end = hash_at + good[hash_at..].find(';').unwrap();
    let unhashed = format!("{}'unsafe-inline'{}", &good[..hash_at], &good[hash_end..]);
    let injected = r#"<body><script>document.title = "injected";</script>"#;
    let broken: [(&str, PathBuf, &str); 6] = [
        ("a finding missing", fewer, missing.kind.as_str()),
        // Data that became a script (an escaping mistake) is not run: the CSP...
        ("an injected script", write(dir.path(), "injected.html", &good.replacen("<body>", injected, 1)), "violates the following Content Security Policy directive"),
        // ...and the page's own script, changed, is refused as well.
        ("a changed script", write(dir.path(), "changed.html", &good.replacen("'use strict';", "'use strict'; ", 1)), "violates the following Content Security Policy directive"),
        // Refused by the CSP (a console error)...
        ("a remote image", write(dir.path(), "remote.html", &good.replacen("<body>", image, 1)), "example.invalid"),
        // ...and without it, refused by the checker's route (a request).
        ("a remote image and no CSP", write(dir.path(), "no-csp.html", &without_csp), "request(s) besides itself: https://example.invalid/pixel.png"),
        ("a script error", write(dir.path(), "error.html", &unhashed.replacen("'use strict';", "'use strict'; null.x;", 1)), "page error"),
    ];
    for (what, bad, expect) in broken {
        let _one = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
        match html::try_check(&bad, &json, None) {
            Ok(out) => panic!("the checker passed a page with {what}:\n{out}"),
            Err(out) => assert!(out.contains(expect) && out.contains("FAIL"), "{what}: the failure does not name {expect:?}:\n{out}"),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
