//! The terminal view of recorded lab builds (tests/fixtures): the default tells
//! the story in groups (findings first, one line per endpoint, name, module and
//! program), `--verbose` shows every span, `--only-failures` only what failed,
//! lines fit the width, and nothing from outside can drive the terminal.
use std::path::Path;

use gomod_trace::{
    correlate::{Correlator, Settings},
    export::{Format, View, render},
    record,
    timeline::{SpanKind, Timeline},
};

fn timeline(name: &str) -> Timeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(format!("{name}.jsonl"));
    Correlator::timeline(record::read(&path).expect("fixture reads"), Settings::default())
}

fn text(timeline: &Timeline, view: View) -> String {
    String::from_utf8(render(timeline, Format::Text, &view)).expect("UTF-8")
}

/// The lines of a section (`  endpoints`, `  modules (2)`…), without its heading
/// and column header.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&format!("  {heading}"))).skip(2);
    std::iter::from_fn(|| lines.next().filter(|l| !l.is_empty())).collect()
}

#[test]
fn findings_come_first_then_one_line_per_endpoint_name_module_and_program() {
    let t = timeline("fallback_to_git");
    let build = &t.builds[0];
    let out = text(&t, View::default());
    let at = |what: &str| out.find(what).unwrap_or_else(|| panic!("no {what:?} in\n{out}"));
    assert!(at("findings") < at("endpoints") && at("endpoints") < at("name lookups") && at("name lookups") < at("modules (2)"));
    assert!(at("WARNING fallback_to_direct") < at("info    http_error"), "by severity:\n{out}");

    let endpoints = section(&out, "endpoints");
    let hosts: Vec<&str> = endpoints.iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(hosts, ["s404.lab.test:80", "git.lab.test:443", "lab.test:443"], "{out}");
    let proxy = endpoints[0];
    let requests = build.spans.iter().filter(|s| s.kind == SpanKind::Http && s.host.as_deref() == Some("s404.lab.test")).count();
    assert!(proxy.contains(&format!("proxy      2         {requests}       {requests}")), "conns, requests, failed: {proxy}");
    assert!(proxy.ends_with(&format!("404×{requests}")), "{proxy}");

    let modules = section(&out, "modules (2)");
    assert_eq!(modules.len(), 2, "one line per module, not per file or request: {out}");
    assert!(modules[0].contains("lab.test/mod01@v1.0.0") && modules[0].contains("direct https://git.lab.test/mod01.git"));
    assert!(modules[0].contains("3 extracted") && modules[0].ends_with("ok"), "{}", modules[0]);

    let programs = section(&out, "programs");
    let git_runs = build.spans.iter().filter(|s| s.kind == SpanKind::Process && s.attrs.get("comm").is_some_and(|c| c == "git")).count();
    let git = programs.iter().find(|l| l.split_whitespace().next() == Some("git")).expect("a line for git");
    assert_eq!(git.split_whitespace().nth(1), Some(git_runs.to_string().as_str()), "{git}");
    assert!(out.lines().count() < build.spans.len() / 2, "grouped, not a line per span");
    assert!(!out.contains("requests of the go command"), "go -x lines are for --verbose");
}

#[test]
fn verbose_shows_every_span_and_only_failures_only_what_failed() {
    let t = timeline("fallback_to_git");
    let build = &t.builds[0];
    let verbose = text(&t, View { verbose: true, ..View::default() });
    let span_lines = section(&verbose, "spans");
    assert_eq!(span_lines.len(), build.spans.len(), "a line per span");

    let failures = text(&t, View { only_failures: true, ..View::default() });
    assert_eq!(section(&failures, "endpoints").len(), 1, "only the proxy that answered 404:\n{failures}");
    assert!(!failures.contains("name lookups") && !failures.contains("modules (") && !failures.contains("programs"), "{failures}");
    assert!(failures.contains("fallback_to_direct"), "findings stay:\n{failures}");

    let failed_spans = build.spans.iter().filter(|s| s.outcome.is_some_and(|o| o.is_failure())).count();
    let both = text(&t, View { verbose: true, only_failures: true, ..View::default() });
    assert_eq!(section(&both, "spans").len(), failed_spans, "{both}");
}

#[test]
fn lines_fit_the_width_colour_only_when_asked_and_outside_text_is_inert() {
    let mut t = timeline("firewall_drop");
    let width = 70;
    let narrow = text(&t, View { width: Some(width), ..View::default() });
    for line in section(&narrow, "endpoints").iter().chain(&section(&narrow, "name lookups")) {
        assert!(line.chars().count() <= width, "{line:?} is wider than {width}");
    }
    assert!(narrow.contains("allow TCP to proxy.lab.test (10.231.53.2:443) in this host's firewall"), "findings are never cut");
    assert!(!narrow.contains('\x1b'));
    assert!(text(&t, View { color: true, ..View::default() }).contains("\x1b[31m"), "errors in red on a terminal");

    t.builds[0].command.push("\x1b]0;owned\x07".into());
    t.builds[0].spans[1].host = Some("evil\x1b[2J.example".into());
    let out = text(&t, View::default());
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.contains("evil\u{fffd}[2J.example"), "shown, made harmless");
}
