//! The terminal view. By default a build reads like a story: its header, the
//! findings (what went wrong, what it cost, what to do), then one line per
//! endpoint the build talked to, per name it looked up, per module it fetched and
//! per program it ran. `--verbose` adds every span (a waterfall on the build's
//! time axis) and every request as `go -x` prints it; `--only-failures` keeps only
//! what failed. Everything that came from outside (argv, host names, a server's
//! text) is printed through `terminal::printable`: it cannot drive the terminal.
use std::{collections::BTreeMap, fmt::Write as _};

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use crate::terminal::printable;

use crate::timeline::{Build, Outcome, Severity, Span, SpanKind, Timeline, parse_rfc3339};

/// How the text view is laid out.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    /// ANSI colours (a terminal, and NO_COLOR unset).
    pub color: bool,
    /// Columns available (a terminal's width); None: lines are not cut.
    pub width: Option<usize>,
    /// Every span, and every request as `go -x` prints it.
    pub verbose: bool,
    /// Only what failed: failing endpoints, lookups, modules, programs and spans.
    pub only_failures: bool,
}

/// Narrowest layout the view cuts lines to.
const MIN_WIDTH: usize = 60;
const BAR_WIDTH: usize = 32;

struct Painter {
    color: bool,
    width: Option<usize>,
}

impl Painter {
    /// `text` made printable, in `style` when colours are on.
    fn paint(&self, style: Style, text: &str) -> String {
        let text = printable(text);
        if self.color { format!("{style}{text}{style:#}") } else { text }
    }

    /// One line, made printable, cut to the terminal's width, painted as a whole.
    fn line(&self, out: &mut String, style: Option<Style>, text: &str) {
        let text = printable(text);
        let text = match self.width {
            Some(width) => cut(&text, width.max(MIN_WIDTH)),
            None => text,
        };
        let text = match style {
            Some(style) => self.paint(style, &text),
            None => text,
        };
        let _ = writeln!(out, "{}", text.trim_end());
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

/// `text` in at most `width` characters, `…` marking a cut.
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    text.chars().take(width.saturating_sub(1)).collect::<String>() + "…"
}


/// A duration the way people say it: 850µs, 12.3ms, 1.24s, 2m03s, 1h02m.
pub fn human_duration(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "?".into();
    }
    if ms < 1.0 {
        return format!("{:.0}µs", ms * 1000.0);
    }
    if ms < 100.0 {
        return format!("{ms:.1}ms");
    }
    if ms < 1000.0 {
        return format!("{ms:.0}ms");
    }
    let seconds = ms / 1000.0;
    if seconds < 60.0 {
        return format!("{seconds:.2}s");
    }
    let whole = seconds.round() as u64;
    if whole < 3600 { format!("{}m{:02}s", whole / 60, whole % 60) } else { format!("{}h{:02}m", whole / 3600, whole % 3600 / 60) }
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

fn failed(span: &Span) -> bool {
    span.outcome.is_some_and(Outcome::is_failure)
}

fn address(span: &Span) -> String {
    match (&span.addr, span.port) {
        (Some(a), Some(port)) if a.contains(':') => format!("[{a}]:{port}"),
        (Some(a), Some(port)) => format!("{a}:{port}"),
        (Some(a), None) => a.clone(),
        _ => String::new(),
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
    format!("# {method} {url}: {result} ({seconds})")
}

/// The host, or for a module fetch the module@version.
fn host_column(span: &Span) -> String {
    match (span.kind, attr(span, "module").and_then(Value::as_str), attr(span, "version").and_then(Value::as_str)) {
        (SpanKind::Module, Some(module), Some(version)) => format!("{module}@{version}"),
        _ => span.host.clone().unwrap_or_default(),
    }
}

fn bar(build_start: i128, total_ns: i128, span: &Span) -> String {
    let (Some(start), end) = (parse_rfc3339(&span.start), span.end.as_deref().and_then(parse_rfc3339)) else {
        return String::new();
    };
    let end = end.unwrap_or(start);
    let scale = |t: i128| -> usize {
        if total_ns <= 0 { 0 } else { (((t - build_start).max(0) * BAR_WIDTH as i128) / total_ns).min(BAR_WIDTH as i128 - 1) as usize }
    };
    let (a, b) = (scale(start), scale(end).max(scale(start)));
    format!("{}{}{}", " ".repeat(a), "━".repeat(b - a + 1), " ".repeat(BAR_WIDTH - 1 - b))
}

/// Counts of equal words, most frequent first: `200×46, 404×2`.
fn tally(words: impl IntoIterator<Item = String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for word in words {
        *counts.entry(word).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.iter().map(|(word, n)| if *n == 1 { word.clone() } else { format!("{word}×{n}") }).collect::<Vec<_>>().join(", ")
}

/// The time from the first span's start to the last one's end.
fn extent(spans: &[&Span]) -> Option<f64> {
    let starts = spans.iter().filter_map(|s| parse_rfc3339(&s.start));
    let ends = spans.iter().filter_map(|s| s.end.as_deref().and_then(parse_rfc3339));
    let (first, last) = (starts.min()?, ends.max()?);
    Some((last - first).max(0) as f64 / 1e6)
}

/// A remote end of the build: one role, one name (or address), one port.
#[derive(Default)]
struct Endpoint<'a> {
    addresses: Vec<String>,
    spans: Vec<&'a Span>,
}

impl Endpoint<'_> {
    fn count(&self, kind: SpanKind) -> usize {
        self.spans.iter().filter(|s| s.kind == kind).count()
    }

    fn failures(&self) -> usize {
        self.spans.iter().filter(|s| failed(s)).count()
    }

    /// Answers to the requests, and how the other spans failed.
    fn results(&self) -> String {
        tally(self.spans.iter().filter_map(|s| match (s.kind, attr(s, "status").and_then(Value::as_u64)) {
            (SpanKind::Http, Some(status)) => Some(status.to_string()),
            (_, _) if failed(s) => Some(format!("{}:{}", s.kind.as_str(), s.outcome.map_or("", |o| o.as_str()))),
            _ => None,
        }))
    }
}

/// A table whose first column is as wide as its widest entry (up to a bound).
struct Table {
    title: String,
    header: Vec<&'static str>,
    rows: Vec<(bool, Vec<String>)>,
}

impl Table {
    fn print(&self, out: &mut String, p: &Painter) {
        if self.rows.is_empty() {
            return;
        }
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for (_, row) in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns - 1) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        widths[0] = widths[0].min(48);
        let format_row = |cells: &[String]| -> String {
            let mut line = String::from("    ");
            for (i, cell) in cells.iter().enumerate() {
                let cell = if i + 1 < columns { cut(cell, widths[i]) } else { cell.clone() };
                let numeric = i > 0 && i + 1 < columns && cell.chars().next().is_some_and(|c| c.is_ascii_digit());
                if i + 1 == columns {
                    line.push_str(&cell);
                } else if numeric {
                    let _ = write!(line, "{cell:>width$}  ", width = widths[i]);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
                }
            }
            line
        };
        let _ = writeln!(out);
        p.line(out, Some(bold()), &format!("  {}", self.title));
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        p.line(out, Some(dim()), &format_row(&header));
        for (failed, row) in &self.rows {
            p.line(out, failed.then(red), &format_row(row));
        }
    }
}

fn endpoints_table<'a>(build: &'a Build, only_failures: bool) -> Table {
    let mut endpoints: BTreeMap<(u8, String, u16), Endpoint<'a>> = BTreeMap::new();
    for span in &build.spans {
        if !matches!(span.kind, SpanKind::Connect | SpanKind::Tls | SpanKind::Http | SpanKind::Transfer) {
            continue;
        }
        let name = span.host.clone().or_else(|| span.addr.clone()).unwrap_or_else(|| "?".into());
        let role_order = span.role as u8;
        let endpoint = endpoints.entry((role_order, name, span.port.unwrap_or(0))).or_default();
        if let Some(addr) = &span.addr
            && !endpoint.addresses.contains(addr)
        {
            endpoint.addresses.push(addr.clone());
        }
        endpoint.spans.push(span);
    }
    let mut table = Table {
        title: "endpoints".into(),
        header: vec!["endpoint", "role", "conns", "requests", "failed", "time", "results"],
        rows: Vec::new(),
    };
    for ((_, name, port), endpoint) in endpoints {
        let failures = endpoint.failures();
        if only_failures && failures == 0 {
            continue;
        }
        let role = endpoint.spans[0].role;
        let mut addresses = endpoint.addresses.join(" ");
        if endpoint.addresses.len() > 2 {
            addresses = format!("{} +{}", endpoint.addresses[0], endpoint.addresses.len() - 1);
        }
        let named = match port {
            0 => printable(&name),
            _ if name.contains(':') => format!("[{}]:{port}", printable(&name)),
            _ => format!("{}:{port}", printable(&name)),
        };
        let shown_addresses = if endpoint.addresses.iter().all(|a| *a == name) { String::new() } else { format!(" ({addresses})") };
        table.rows.push((
            failures > 0,
            vec![
                format!("{named}{shown_addresses}"),
                role.as_str().into(),
                endpoint.count(SpanKind::Connect).to_string(),
                endpoint.count(SpanKind::Http).to_string(),
                failures.to_string(),
                extent(&endpoint.spans).map_or_else(|| "…".into(), human_duration),
                printable(&endpoint.results()),
            ],
        ));
    }
    table
}

/// A row for spans of one kind grouped under a name: how many, how many failed,
/// their time added up, and what they came to.
fn group_row(name: &str, spans: &[&Span], results: &str) -> (bool, Vec<String>) {
    let failures = spans.iter().filter(|s| failed(s)).count();
    let time = human_duration(spans.iter().filter_map(|s| s.duration_ms).sum::<f64>());
    (failures > 0, vec![printable(name), spans.len().to_string(), failures.to_string(), time, printable(results)])
}

fn lookups_table(build: &Build, only_failures: bool) -> Table {
    let mut names: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
    for span in build.spans.iter().filter(|s| s.kind == SpanKind::Dns) {
        names.entry(span.host.clone().unwrap_or_else(|| "?".into())).or_default().push(span);
    }
    let mut table = Table { title: "name lookups".into(), header: vec!["name", "lookups", "failed", "time", "answers"], rows: Vec::new() };
    for (name, spans) in names {
        let failures = spans.iter().filter(|s| failed(s)).count();
        if only_failures && failures == 0 {
            continue;
        }
        let mut answers: Vec<String> = Vec::new();
        for span in &spans {
            for answer in text_list(attr(span, "answers")).split(',').filter(|a| !a.is_empty()) {
                if !answers.iter().any(|a| a == answer) {
                    answers.push(answer.to_string());
                }
            }
        }
        let outcomes = tally(spans.iter().map(|s| {
            let qtype = text_list(attr(s, "qtype"));
            match (s.outcome, attr(s, "rcode").and_then(Value::as_str)) {
                (Some(Outcome::Ok), _) => qtype,
                (_, Some(rcode)) => format!("{qtype} {rcode}"),
                (Some(outcome), None) => format!("{qtype} {}", outcome.as_str()),
                (None, None) => format!("{qtype} (no answer)"),
            }
        }));
        let answered = if answers.is_empty() { outcomes } else { format!("{outcomes} → {}", answers.join(" ")) };
        table.rows.push(group_row(&name, &spans, &answered));
    }
    table
}

fn modules_table(build: &Build, only_failures: bool) -> Table {
    let modules: Vec<&Span> = build.spans.iter().filter(|s| s.kind == SpanKind::Module).collect();
    let mut table = Table {
        title: format!("modules ({})", modules.len()),
        header: vec!["module", "source", "time", "files", "outcome"],
        rows: Vec::new(),
    };
    for span in modules {
        if only_failures && !failed(span) {
            continue;
        }
        let files = match attr(span, "files_extracted").and_then(Value::as_u64) {
            Some(n) => format!("{n} extracted"),
            None => text_list(attr(span, "files")),
        };
        let source = match attr(span, "vcs_url").and_then(Value::as_str) {
            Some(url) => format!("{} {url}", text_list(attr(span, "source"))),
            None => text_list(attr(span, "source")),
        };
        table.rows.push((
            failed(span),
            vec![
                printable(&host_column(span)),
                printable(&source),
                span.duration_ms.map_or_else(|| "…".into(), human_duration),
                files,
                span.outcome.map_or("…", Outcome::as_str).to_string(),
            ],
        ));
    }
    table
}

fn programs_table(build: &Build, only_failures: bool) -> Table {
    let mut programs: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
    for span in build.spans.iter().filter(|s| s.kind == SpanKind::Process) {
        let name = attr(span, "comm").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| text_list(attr(span, "argv")));
        programs.entry(name).or_default().push(span);
    }
    let mut table = Table { title: "programs".into(), header: vec!["program", "runs", "failed", "time", "exits"], rows: Vec::new() };
    for (name, spans) in programs {
        let failures = spans.iter().filter(|s| failed(s)).count();
        if only_failures && failures == 0 {
            continue;
        }
        let exits = tally(spans.iter().map(|s| match attr(s, "exit_code").and_then(Value::as_i64) {
            Some(code) => format!("exit {code}"),
            None => "running".into(),
        }));
        table.rows.push(group_row(&name, &spans, &exits));
    }
    table
}

fn waterfall(out: &mut String, build: &Build, p: &Painter, only_failures: bool) {
    let (start, end) = build.seen_ns();
    let total = (end - start).max(1);
    let _ = writeln!(out);
    p.line(out, Some(bold()), "  spans");
    let header = format!(
        "  {:>9} {:>9}  {:<8} {:<28} {:<22} {:<11} {:<32} {}",
        "start", "duration", "what", "host", "address", "outcome", "detail", "timeline"
    );
    p.line(out, Some(dim()), &header);
    for span in build.spans.iter().filter(|s| !only_failures || failed(s)) {
        let offset = parse_rfc3339(&span.start).map_or(0.0, |s| (s - start) as f64 / 1e9);
        let line = format!(
            "  {:>+8.3}s {:>9}  {:<8} {:<28} {:<22} {:<11} {:<32} {}",
            offset,
            span.duration_ms.map(human_duration).unwrap_or_else(|| "…".into()),
            span.kind.as_str(),
            printable(&host_column(span)),
            address(span),
            span.outcome.map_or("", |o| o.as_str()),
            cut(&printable(&detail(span)), 32),
            bar(start, total, span),
        );
        p.line(out, failed(span).then(red), &line);
    }
    let requests: Vec<&Span> = build
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Http && attr(s, "url").is_some() && (!only_failures || failed(s)))
        .collect();
    if !requests.is_empty() {
        let _ = writeln!(out);
        p.line(out, Some(bold()), "  requests of the go command (as `go -x` prints them)");
    }
    for span in requests {
        // Not cut: these lines are for copying and comparing with go's own.
        let _ = writeln!(out, "  {}", printable(&go_x_line(span)));
    }
}

/// The spans a finding names, the first few of them (`--verbose` shows them all).
fn span_ids(ids: &[u32]) -> String {
    const SHOWN: usize = 8;
    let first: Vec<String> = ids.iter().take(SHOWN).map(u32::to_string).collect();
    match ids.len() {
        1 => format!("span {}", first[0]),
        n if n > SHOWN => format!("spans {} … ({n} in all)", first.join(", ")),
        _ => format!("spans {}", first.join(", ")),
    }
}

fn findings(out: &mut String, build: &Build, p: &Painter) {
    let _ = writeln!(out);
    if build.findings.is_empty() {
        p.line(out, None, "  no findings");
        return;
    }
    p.line(out, Some(bold()), "  findings");
    let mut ordered: Vec<_> = build.findings.iter().collect();
    ordered.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.cost_ms.total_cmp(&a.cost_ms)));
    for finding in ordered {
        let (label, style) = match finding.severity {
            Severity::Error => ("ERROR  ", red()),
            Severity::Warning => ("WARNING", yellow()),
            Severity::Info => ("info   ", dim()),
        };
        let cost = if finding.cost_ms > 0.0 { format!("  (cost {})", human_duration(finding.cost_ms)) } else { String::new() };
        // Findings are not cut: they are the answer.
        let _ = writeln!(out, "    {} {}{cost}", p.paint(style, label), p.paint(bold(), &finding.kind));
        let _ = writeln!(out, "            {}", printable(&finding.message));
        if !finding.remedy.is_empty() {
            let _ = writeln!(out, "            → {}", printable(&finding.remedy));
        }
        let _ = writeln!(out, "            {}", p.paint(dim(), &span_ids(&finding.spans)));
    }
}

fn render_build(out: &mut String, build: &Build, p: &Painter, view: &View) {
    let (start, end) = build.seen_ns();
    let took = human_duration((end - start) as f64 / 1e6);
    let took = if build.ended_at.is_some() { took } else { format!("{took} so far") };
    let exit = match build.exit_code {
        Some(0) => "exit 0".to_string(),
        Some(code) => p.paint(red(), &format!("exit {code}")),
        None => p.paint(yellow(), "still running"),
    };
    let complete = if build.complete { "complete".to_string() } else { p.paint(yellow(), "INCOMPLETE") };
    let _ = writeln!(out, "{}  {}", p.paint(bold(), &format!("build {}", build.id)), printable(&build.command.join(" ")));
    let _ = writeln!(
        out,
        "  started {}  took {}  {exit}  {complete}  pid {}",
        printable(&build.started_at),
        took,
        build.pid
    );
    let config: Vec<String> = ["GOPROXY", "GOSUMDB", "GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GOFLAGS"]
        .iter()
        .filter_map(|key| build.config.get(*key).filter(|v| !v.value.is_empty()).map(|v| format!("{key}={}", printable(&v.value))))
        .collect();
    if !config.is_empty() {
        p.line(out, Some(dim()), &format!("  {}", config.join("  ")));
    }
    for note in &build.notes {
        p.line(out, Some(yellow()), &format!("  note: {}", printable(note)));
    }
    findings(out, build, p);
    if view.verbose {
        waterfall(out, build, p, view.only_failures);
    } else {
        for table in [
            endpoints_table(build, view.only_failures),
            lookups_table(build, view.only_failures),
            modules_table(build, view.only_failures),
            programs_table(build, view.only_failures),
        ] {
            table.print(out, p);
        }
    }
    let _ = writeln!(out);
}

pub fn render(timeline: &Timeline, view: &View) -> String {
    let p = Painter { color: view.color, width: view.width };
    let mut out = String::new();
    if timeline.builds.is_empty() {
        out.push_str("gomod-trace: no Go build ran (no process executed the Go command)\n");
    }
    for build in &timeline.builds {
        render_build(&mut out, build, &p, view);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(human_duration(0.85), "850µs");
        assert_eq!(human_duration(12.34), "12.3ms");
        assert_eq!(human_duration(412.0), "412ms");
        assert_eq!(human_duration(1240.0), "1.24s");
        assert_eq!(human_duration(123_000.0), "2m03s");
        assert_eq!(human_duration(3_720_000.0), "1h02m");
    }

    #[test]
    fn lines_are_cut_to_the_width_and_control_characters_never_reach_the_terminal() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(tally(["200", "404", "200"].map(String::from)), "200×2, 404");
    }
}
