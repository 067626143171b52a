//! The terminal waterfall: one line per span, relative start, duration, what, where,
//! outcome and a bar on the build's time axis; findings below, failures first.
use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use crate::timeline::{Build, Severity, Span, SpanKind, Timeline, parse_ns};

const BAR_WIDTH: usize = 32;

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, style: Style, text: &str) -> String {
        if self.color { format!("{style}{text}{style:#}") } else { text.to_string() }
    }
}

fn red() -> Style {
    Style::new().fg_color(Some(AnsiColor::Red.into())).bold()
}
fn yellow() -> Style {
    Style::new().fg_color(Some(AnsiColor::Yellow.into()))
}
fn dim() -> Style {
    Style::new().dimmed()
}
fn bold() -> Style {
    Style::new().bold()
}

fn duration(ms: f64) -> String {
    if ms >= 1000.0 { format!("{:.3}s", ms / 1000.0) } else { format!("{ms:.1}ms") }
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attrs.get(key)
}

fn text_list(value: Option<&Value>) -> String {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn detail(span: &Span) -> String {
    let get = |k| attr(span, k);
    match span.kind {
        SpanKind::Process => text_list(get("argv")).replace(',', " "),
        SpanKind::Dns => {
            let qtype = text_list(get("qtype"));
            let answers = text_list(get("answers"));
            match get("rcode").and_then(Value::as_str) {
                Some("NOERROR") if !answers.is_empty() => format!("{qtype} → {answers}"),
                Some(rcode) => format!("{qtype} {rcode}"),
                None => format!("{qtype} (no answer)"),
            }
        }
        SpanKind::Connect => {
            let mut parts = Vec::new();
            if let Some(n) = get("syn_retransmits").and_then(Value::as_u64).filter(|&n| n > 0) {
                parts.push(format!("{n} SYN retransmits"));
            }
            if let Some(r) = get("drop_reason").and_then(Value::as_str) {
                parts.push(format!("dropped: {r}"));
            }
            if let Some(e) = get("error").and_then(Value::as_str) {
                parts.push(e.to_string());
            }
            parts.join(", ")
        }
        SpanKind::Tls => {
            let sni = text_list(get("sni"));
            match (get("alert").and_then(Value::as_str), get("version").and_then(Value::as_str)) {
                (Some(alert), _) => format!("sni={sni} alert {alert}"),
                (None, Some(version)) => {
                    let alpn = text_list(get("alpn"));
                    if alpn.is_empty() { format!("sni={sni} {version}") } else { format!("sni={sni} {version} {alpn}") }
                }
                _ => format!("sni={sni}"),
            }
        }
        SpanKind::Http => {
            let status = get("status").map(|s| format!(" → {s}")).unwrap_or_default();
            format!("{} {}{status}", text_list(get("method")), text_list(get("target")))
        }
        SpanKind::Transfer => {
            let sent = get("bytes_sent").and_then(Value::as_u64).unwrap_or(0);
            let received = get("bytes_received").and_then(Value::as_u64).unwrap_or(0);
            format!("↑{sent} B ↓{received} B")
        }
        SpanKind::Module => {
            let extracted = if get("extracted").is_some_and(|v| v == true) { " extracted" } else { "" };
            format!("via {} {}{extracted}", text_list(get("source")), text_list(get("files")))
        }
    }
}

/// A request the way cmd/go's `-x` flag prints it: `# get URL: 200 OK (0.031s)`
/// (cmd/go only sends GETs; another method is printed as itself).
fn go_x_line(span: &Span) -> String {
    let url = text_list(attr(span, "url"));
    let seconds = span.duration_ms.map_or_else(|| "…".to_string(), |ms| format!("{:.3}s", ms / 1000.0));
    let result = match (attr(span, "status").and_then(Value::as_u64), attr(span, "error").and_then(Value::as_str)) {
        (Some(status), _) => {
            let reason = u16::try_from(status).ok().and_then(|s| http::StatusCode::from_u16(s).ok()).and_then(|s| s.canonical_reason());
            format!("{status} {}", reason.unwrap_or_default()).trim_end().to_string()
        }
        (None, Some(error)) => error.to_string(),
        (None, None) => "no answer (still waiting when the trace ended)".to_string(),
    };
    let method = text_list(attr(span, "method")).to_ascii_lowercase();
    // A server's text (a redirect's path, an error) must not drive the terminal.
    let printable = |text: &str| text.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect::<String>();
    format!("# {method} {}: {} ({seconds})", printable(&url), printable(&result))
}

/// The host, or for a module fetch the module@version.
fn host_column(span: &Span) -> String {
    match (span.kind, attr(span, "module").and_then(Value::as_str), attr(span, "version").and_then(Value::as_str)) {
        (SpanKind::Module, Some(module), Some(version)) => format!("{module}@{version}"),
        _ => span.host.clone().unwrap_or_default(),
    }
}

fn bar(build_start: i128, total_ns: i128, span: &Span) -> String {
    let (Some(start), end) = (parse_ns(&span.start), span.end.as_deref().and_then(parse_ns)) else {
        return String::new();
    };
    let end = end.unwrap_or(start);
    let scale = |t: i128| -> usize {
        if total_ns <= 0 { 0 } else { (((t - build_start).max(0) * BAR_WIDTH as i128) / total_ns).min(BAR_WIDTH as i128 - 1) as usize }
    };
    let (a, b) = (scale(start), scale(end).max(scale(start)));
    format!("{}{}{}", " ".repeat(a), "━".repeat(b - a + 1), " ".repeat(BAR_WIDTH - 1 - b))
}

fn render_build(out: &mut String, build: &Build, p: &Painter) {
    let start = parse_ns(&build.started_at).unwrap_or(0);
    let end = build.ended_at.as_deref().and_then(parse_ns).unwrap_or(start);
    let total = (end - start).max(1);
    let exit = match build.exit_code {
        Some(0) => "exit 0".to_string(),
        Some(code) => p.paint(red(), &format!("exit {code}")),
        None => "still running".into(),
    };
    let complete = if build.complete { "complete".to_string() } else { p.paint(yellow(), "INCOMPLETE") };
    let _ = writeln!(out, "{}  {}", p.paint(bold(), &format!("build {}", build.id)), build.command.join(" "));
    let _ = writeln!(
        out,
        "  started {}  took {}  {exit}  {complete}  pid {}\n",
        build.started_at,
        duration(total as f64 / 1e6),
        build.pid
    );
    let header = format!(
        "  {:>9} {:>9}  {:<8} {:<28} {:<22} {:<11} {:<32} {}",
        "start", "duration", "what", "host", "address", "outcome", "detail", "timeline"
    );
    let _ = writeln!(out, "{}", p.paint(dim(), &header));
    for span in &build.spans {
        let offset = parse_ns(&span.start).map_or(0.0, |s| (s - start) as f64 / 1e9);
        let address = match (&span.addr, span.port) {
            (Some(a), Some(port)) if a.contains(':') => format!("[{a}]:{port}"),
            (Some(a), Some(port)) => format!("{a}:{port}"),
            _ => String::new(),
        };
        let outcome = span.outcome.map_or("", |o| o.as_str());
        let failed = span.outcome.is_some_and(|o| o.is_failure());
        let mut detail = detail(span);
        if detail.chars().count() > 32 {
            detail = detail.chars().take(31).collect::<String>() + "…";
        }
        let kind = format!("{:?}", span.kind).to_lowercase();
        let line = format!(
            "  {:>+8.3}s {:>9}  {:<8} {:<28} {:<22} {:<11} {:<32} {}",
            offset,
            span.duration_ms.map(duration).unwrap_or_else(|| "…".into()),
            kind,
            host_column(span),
            address,
            outcome,
            detail,
            bar(start, total, span),
        );
        let _ = writeln!(out, "{}", if failed { p.paint(red(), &line) } else { line });
    }
    let requests: Vec<&Span> = build.spans.iter().filter(|s| s.kind == SpanKind::Http && attr(s, "url").is_some()).collect();
    if !requests.is_empty() {
        let _ = writeln!(out, "\n  requests of the go command (as `go -x` prints them)");
    }
    for span in requests {
        let _ = writeln!(out, "  {}", go_x_line(span));
    }
    for note in &build.notes {
        let _ = writeln!(out, "\n  {}", p.paint(yellow(), &format!("note: {note}")));
    }
    if build.findings.is_empty() {
        let _ = writeln!(out, "\n  no findings");
    } else {
        let _ = writeln!(out, "\n  findings");
    }
    for finding in &build.findings {
        let (label, style) = match finding.severity {
            Severity::Error => ("ERROR  ", red()),
            Severity::Warning => ("WARNING", yellow()),
            Severity::Info => ("info   ", dim()),
        };
        let _ = writeln!(
            out,
            "  {} {}  {}  (cost {}, spans {:?})",
            p.paint(style, label),
            finding.kind,
            finding.message,
            duration(finding.cost_ms),
            finding.spans
        );
        if !finding.remedy.is_empty() {
            let _ = writeln!(out, "          → {}", finding.remedy);
        }
    }
    let _ = writeln!(out);
}

/// How the text view is laid out.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    /// ANSI colours (a terminal, and NO_COLOR unset).
    pub color: bool,
    /// Columns available (a terminal's width); None: unlimited.
    pub width: Option<usize>,
    /// Every span, not one line per endpoint and per module.
    pub verbose: bool,
    /// Only what failed: failing endpoints, modules and spans, and the findings.
    pub only_failures: bool,
}

pub fn render(timeline: &Timeline, view: &View) -> String {
    let p = Painter { color: view.color };
    let mut out = String::new();
    if timeline.builds.is_empty() {
        out.push_str("gomod-trace: no Go build ran (no process executed the Go command)\n");
    }
    for build in &timeline.builds {
        render_build(&mut out, build, &p);
    }
    out
}
