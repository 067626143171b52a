//! `run`'s live line on a terminal: while a long build runs, one line on stderr
//! says how long it has been going, how many modules are fetched, how many
//! connections are open and which of them are stalled now. It correlates what
//! has arrived so far on its own (the timeline at the end is built from all the
//! events, as without a terminal), and reads the open sockets' counters from the
//! kernel so that a stall shows while it lasts.
use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use crate::{
    correlate::{Correlator, Settings},
    event::Event,
    export::{cut, human_duration},
    probe::{self, Probe},
    timeline::{Build, Span, SpanKind},
};

/// Nothing is drawn for builds shorter than this.
const QUIET_FOR: Duration = Duration::from_secs(2);
/// How often the line is redrawn.
const EVERY: Duration = Duration::from_secs(1);
/// How long events wait to be put in time order across CPUs (as in the daemon).
const REORDER_NS: u64 = 250_000_000;

pub struct LiveLine {
    correlator: Correlator,
    /// Events of the run not yet given to the correlator (indices).
    pending: Vec<usize>,
    seen: usize,
    started: Instant,
    drawn_at: Option<Instant>,
}

impl LiveLine {
    pub fn new(settings: Settings) -> LiveLine {
        LiveLine { correlator: Correlator::new(settings), pending: Vec::new(), seen: 0, started: Instant::now(), drawn_at: None }
    }

    /// Takes what arrived since the last call and redraws the line when it is due.
    pub fn update(&mut self, events: &[Event], probe: &Probe) {
        let now = Instant::now();
        if now.duration_since(self.started) < QUIET_FOR || self.drawn_at.is_some_and(|at| now.duration_since(at) < EVERY) {
            return;
        }
        self.pending.extend(self.seen..events.len());
        self.seen = events.len();
        self.pending.sort_by_key(|&i| events[i].order());
        let watermark = probe::monotonic_ns().saturating_sub(REORDER_NS);
        let ready = self.pending.partition_point(|&i| matches!(events[i], Event::Clock { .. }) || events[i].ts_ns() < watermark);
        for i in self.pending.drain(..ready) {
            self.correlator.push(&events[i]);
        }
        // The open transfers' counters, read now: a silent socket sends nothing.
        if let Ok(sockets) = probe.socket_counters(&self.correlator.open_transfers()) {
            let ts_ns = probe::monotonic_ns();
            for (cookie, entry) in &sockets {
                self.correlator.push(&Event::Progress { ts_ns, cookie: *cookie, counters: crate::decode::counters(entry) });
            }
        }
        let running = self.correlator.running(probe::monotonic_ns());
        // One screen row: a wrapped line could not be cleared by the next redraw.
        let width = terminal_size::terminal_size_of(std::io::stderr()).map_or(80, |(w, _)| usize::from(w.0));
        let line = cut(&describe(now.duration_since(self.started), &running), width.saturating_sub(1).max(20));
        let mut stderr = std::io::stderr().lock();
        // Cleared first, and the cursor left at the start of the line: what the
        // command prints next writes over it.
        let _ = write!(stderr, "\r\x1b[2K{line}\r");
        let _ = stderr.flush();
        self.drawn_at = Some(now);
    }

    /// Removes the line (before the report is written).
    pub fn clear(&self) {
        if self.drawn_at.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// `gomod-trace: 12.00s  stalled: proxy.lab.test:443 (open 31.2s)  modules 14 done, 3 fetching  connections 2 open`:
/// what matters most first, since a narrow terminal cuts the end.
fn describe(elapsed: Duration, running: &[Build]) -> String {
    let mut line = format!("gomod-trace: {}", human_duration(elapsed.as_secs_f64().floor() * 1000.0));
    if running.is_empty() {
        line.push_str("  no Go build running");
        return line;
    }
    let stalled: Vec<String> = running
        .iter()
        .flat_map(Build::stalled_transfers)
        .map(|s| {
            let host = s.host.clone().or_else(|| s.addr.clone()).unwrap_or_default();
            let host = crate::terminal::printable(&host);
            let open_for = s.duration_ms.map_or_else(String::new, |ms| format!(" (open {})", human_duration(ms)));
            format!("{host}:{}{open_for}", s.port.unwrap_or(0))
        })
        .collect();
    if !stalled.is_empty() {
        line.push_str(&format!("  stalled: {}", stalled.join(", ")));
    }
    let spans = || running.iter().flat_map(|b| b.spans.iter());
    // A running build's open spans are closed at the time of the look, and say so.
    let open = |s: &&Span| s.attrs.get("unfinished").is_some_and(|v| *v == true);
    let modules = spans().filter(|s| s.kind == SpanKind::Module);
    let (done, fetching) = modules.fold((0, 0), |(d, f), s| if open(&s) { (d, f + 1) } else { (d + 1, f) });
    let open = spans().filter(|s| s.kind == SpanKind::Transfer && open(s)).count();
    line.push_str(&format!("  modules {done} done, {fetching} fetching  connections {open} open"));
    line
}
