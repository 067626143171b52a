//! The correlator fed any event sequence, the way the daemon feeds it: events
//! arrive in batches, are put in time order behind a watermark, finished builds
//! are taken and rendered (history, API, exporters), running ones snapshotted.
//! Nothing panics, and what the correlator holds stays proportional to what it
//! was given (no unbounded growth): measured with a counting allocator.
//!
//! Input: event lines as `--record` writes them (JSON), so the recorded lab runs
//! (tests/fixtures) are the seeds; a line that is not an event is skipped.
#![no_main]
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use gomod_trace::{
    correlate::{Correlator, Settings},
    event::{Event, sort_events},
    export::{self, Format, View},
    timeline::{SCHEMA_VERSION, Timeline},
};
use libfuzzer_sys::fuzz_target;

/// Bytes allocated and not yet freed, by this process's Rust code.
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; only the
// sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The daemon's reorder window and settle time (daemon/mod.rs), and an idle
/// timeout short enough for sequences to reach it.
const REORDER_NS: u64 = 250_000_000;
const SETTLE_NS: u64 = 500_000_000;
const IDLE_NS: u64 = 60_000_000_000;
/// Events that arrive between two ticks of the daemon.
const BATCH: usize = 8;
/// What the correlator may hold per byte of input, and beyond it: a span with
/// its attributes costs a few hundred bytes and an event line is at least ~40.
/// The fixtures need at most GROWTH_PER_BYTE / 8 (see `GOMOD_TRACE_FUZZ_GROWTH`).
const GROWTH_PER_BYTE: usize = 64;
const GROWTH_BASE: usize = 256 * 1024;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let events: Vec<Event> = text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    if events.is_empty() {
        return;
    }
    let settings = Settings {
        stall_threshold_ns: 5_000_000_000,
    };
    let mut finished = Vec::new();
    let mut pending: Vec<Event> = Vec::with_capacity(events.len());
    let mut correlator = Correlator::new(settings);
    // The daemon's stream starts with the clock anchor.
    if !matches!(events.first(), Some(Event::Clock { .. })) {
        correlator.push(&Event::Clock {
            monotonic_ns: 0,
            realtime_ns: 1_700_000_000_000_000_000,
        });
    }
    let baseline = LIVE.load(Ordering::Relaxed);
    let mut now = 0u64;
    for batch in events.chunks(BATCH) {
        pending.extend(batch.iter().cloned());
        now = now.max(batch.iter().map(Event::ts_ns).max().unwrap_or(0));
        let watermark = now.saturating_sub(REORDER_NS);
        sort_events(&mut pending);
        let ready = pending.partition_point(|e| matches!(e, Event::Clock { .. }) || e.ts_ns() < watermark);
        for event in pending.drain(..ready) {
            correlator.push(&event);
        }
        for build in correlator.take_finished(watermark.saturating_sub(SETTLE_NS), watermark.saturating_sub(IDLE_NS)) {
            // What the history stores and the API serves.
            let _ = serde_json::to_vec(&build).expect("builds serialize");
            finished.push(build);
        }
        let _ = correlator.open_transfers();
        let running = correlator.running(watermark);
        let _ = serde_json::to_vec(&running).expect("running builds serialize");
        drop(running);
    }
    sort_events(&mut pending);
    for event in pending.drain(..) {
        correlator.push(&event);
    }
    // The correlator's state and the builds it rendered so far.
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(baseline);
    if std::env::var_os("GOMOD_TRACE_FUZZ_GROWTH").is_some() {
        eprintln!("correlator held {held} bytes for {} input bytes", input.len());
    }
    let bound = GROWTH_BASE + GROWTH_PER_BYTE * input.len();
    assert!(
        held <= bound,
        "the correlator holds {held} bytes for {} input bytes (bound {bound})",
        input.len()
    );
    finished.extend(correlator.take_finished(u64::MAX, u64::MAX));
    assert_eq!(correlator.open_builds(), 0, "builds left open after every build was taken");
    assert!(
        correlator.open_transfers().is_empty(),
        "transfers left open after every build was taken"
    );
    if std::env::var_os("GOMOD_TRACE_FUZZ_GROWTH").is_some() {
        let rendered: usize = finished.iter().map(|b| serde_json::to_vec(b).map_or(0, |j| j.len())).sum();
        let left = LIVE.load(Ordering::Relaxed).saturating_sub(baseline);
        eprintln!("after every build was taken: {left} bytes held, with the rendered builds (~{rendered} bytes as JSON)");
    }

    // Every export of what was seen; then the one-shot path (`run`, `replay`).
    let timeline = Timeline {
        schema_version: SCHEMA_VERSION,
        builds: finished,
    };
    let view = View {
        color: true,
        width: Some(100),
        verbose: true,
        only_failures: false,
    };
    for format in [Format::Text, Format::Json, Format::Perfetto, Format::Html, Format::Otlp] {
        let _ = export::render(&timeline, format, &view);
    }
    let _ = Correlator::timeline(events, settings);
});
