//! `gomod-trace daemon`: attach once, trace every Go build on the host, keep each
//! finished build in the history database, serve the HTTP API and metrics.
//!
//! Tasks, data flowing one way: the reader drains the kernel ring buffer
//! into decoded batches and never waits (when the correlator falls behind, the
//! bounded queue refuses a batch: its events are counted lost and the builds
//! running then are marked incomplete); the correlator puts events back in time
//! order (records from different CPUs arrive out of order), correlates them, and
//! hands each build whose root has exited (and whose sockets had time to close)
//! to the history writer and the metrics (and, when an endpoint is given, offers
//! it to the OTLP exporter, which never holds the correlator up); two HTTP
//! servers read the metrics (`--listen`) and the history (`--api-listen`).
//! All of them run in one supervised set (`supervise`): one that ends or
//! panics while the daemon runs stops it with a non-zero status, so that the
//! service manager restarts it.
pub mod api;
pub mod auth;
pub mod client;
pub mod endpoint;
pub mod health;
pub mod otlp;
mod roots;
mod store;
mod supervise;

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    capture::Capture,
    commands::{EXIT_TRACER_ERROR, EXIT_UNSUPPORTED},
    correlate::{Correlator, Limits},
    decode::DecodeContext,
    event::{Event, LossReason, sort_events},
    history::{History, Retention},
    metrics::Metrics,
    probe::{self, Probe, ProbeOptions},
    timeline::Build,
};

/// Batches of events the correlator may be behind by before the reader drops.
const QUEUE_BATCHES: usize = 4096;
/// How long events wait to be put in time order across CPUs; longer than records
/// wait in the ring buffer (`probe::DRAIN_EVERY`).
const REORDER_NS: u64 = 250_000_000;
/// How long after its root exits a build is finished (its sockets close then).
const SETTLE_NS: u64 = 500_000_000;
/// How often the correlator works through what arrived.
const TICK: Duration = Duration::from_millis(200);
/// How often kernel statistics are read into the metrics.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How often open sockets' counters are read from the kernel, and the running
/// builds rendered for the API: a stall shows while it lasts, without waiting
/// for a packet that may never come.
const LIVE_EVERY: Duration = Duration::from_secs(2);
/// How often the roots of open builds are looked for in /proc (a build whose
/// root is gone twice in a row is closed: its exit was lost).
const GONE_EVERY: Duration = Duration::from_secs(10);
/// The lock file that keeps a second daemon from attaching twice.
const LOCK: &str = "daemon.lock";

pub struct DaemonConfig {
    /// Metrics and health.
    pub listen: SocketAddr,
    /// The builds API.
    pub api: endpoint::ApiEndpoint,
    /// What every API request must carry, if anything.
    pub api_token: Option<auth::ApiToken>,
    pub data_dir: PathBuf,
    pub retention: Retention,
    /// A build with no event for this long is closed as it stands.
    pub idle_timeout: Duration,
    pub go_command: String,
    /// How findings are judged.
    pub settings: crate::correlate::Settings,
    /// Where finished builds are pushed as OpenTelemetry traces, if anywhere.
    pub otlp: Option<otlp::OtlpConfig>,
    /// How much the correlator keeps.
    pub limits: Limits,
}

/// What the API reads.
pub struct Shared {
    pub data_dir: PathBuf,
    pub metrics: Mutex<Metrics>,
    /// What /healthz and /readyz report.
    pub health: health::Health,
    /// The builds still running, as they stood at the last look.
    pub running: Mutex<Vec<Build>>,
    /// The sockets whose counters the reader reads (open transfers of running
    /// builds), as the correlator last saw them.
    pub watched: Mutex<Vec<u64>>,
}

fn wall_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

/// Takes the data directory's lock, or says who holds it.
fn lock(data_dir: &Path) -> Result<File, String> {
    // Created private (an existing directory keeps the mode it was given).
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let path = data_dir.join(LOCK);
    let file = File::create(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another gomod-trace daemon is running with data directory {} (it holds {}); stop it first",
            data_dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug)]
enum Failure {
    /// The probes cannot run on this host (kernel, BTF, privileges, setup): a
    /// restart will not help; the service does not restart on its status.
    Unsupported(String),
    /// Anything else (a task died, the store cannot open…): a restart may help.
    Other(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Other(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::Other(message.into())
    }
}

/// The builds API holds the command lines, Go configuration and hosts of every
/// build: it leaves the host only behind a token, and never shares the metrics'
/// port.
fn check_api_safety(config: &DaemonConfig) -> Result<(), String> {
    let endpoint::ApiEndpoint::Tcp(api) = &config.api else { return Ok(()) };
    // (Port 0 is any free port: two of them never meet.)
    let same_port = api.port() == config.listen.port() && api.port() != 0;
    let overlap = api.ip() == config.listen.ip() || api.ip().is_unspecified() || config.listen.ip().is_unspecified();
    if same_port && overlap {
        return Err(format!(
            "--api-listen {api} and --listen {} share a port: the builds API and the metrics are separate listeners",
            config.listen
        ));
    }
    if !config.api.on_host() && config.api_token.is_none() {
        return Err(format!(
            "refusing to serve the builds API on {api} without authentication: it holds the command lines, Go configuration and hosts of every build. Give --api-token-file FILE, or serve it on loopback or a unix socket (the default, unix:{})",
            endpoint::DEFAULT_API_SOCKET
        ));
    }
    Ok(())
}

pub async fn run(config: DaemonConfig) -> i32 {
    match serve(config).await {
        Ok(()) => 0,
        Err(Failure::Unsupported(e)) => {
            eprintln!("gomod-trace: {e}");
            eprintln!(
                "gomod-trace: this host cannot run the probes; exiting with status {EXIT_UNSUPPORTED} (the service is not restarted on it)"
            );
            EXIT_UNSUPPORTED
        }
        Err(Failure::Other(e)) => {
            eprintln!("gomod-trace: {e}");
            EXIT_TRACER_ERROR
        }
    }
}

async fn serve(config: DaemonConfig) -> Result<(), Failure> {
    check_api_safety(&config)?;
    let _lock = lock(&config.data_dir)?;
    // The database must open before anything is traced into it.
    let history = History::open(&config.data_dir).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let api_listener = endpoint::bind(&config.api).await?;
    let mut probe = Probe::attach(&ProbeOptions { go_command: config.go_command.clone(), scope: None }).map_err(|e| {
        if e.host_cannot_run() { Failure::Unsupported(e.to_string()) } else { Failure::Other(e.to_string()) }
    })?;
    let stats = probe::enable_bpf_stats().map_err(|e| tracing::warn!("{e}; program statistics stay at 0")).ok();
    let ring = probe.take_events().map_err(|e| e.to_string())?;
    let fill = probe::RingFill::new(&ring).map_err(|e| e.to_string())?;
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd lives.
    let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| format!("cannot poll the ring buffer: {e}"))?;

    let shared = Arc::new(Shared {
        data_dir: config.data_dir.clone(),
        metrics: Mutex::new(Metrics::new()),
        health: health::Health::default(),
        running: Mutex::new(Vec::new()),
        watched: Mutex::new(Vec::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, events_rx) = mpsc::channel::<Vec<Event>>(QUEUE_BATCHES);
    let context = DecodeContext { drop_reasons: probe.drop_reasons.clone(), go_executables: probe.go_executables() };
    for toolchain in crate::probe::requests::known_toolchains(None, true) {
        probe.trace_requests(&toolchain);
    }
    release_startup_memory();

    let mut tasks = supervise::Tasks::default();
    let (writer, write) = store::writer(history, config.retention, shared.clone());
    tasks.spawn_blocking("history writer", write);
    let exporter = config.otlp.map(|otlp| {
        tracing::info!(endpoint = %otlp.endpoint(), headers = ?otlp.header_names(), "pushing every finished build over OTLP/HTTP");
        let metrics = shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).otlp.clone();
        let tuning = otlp::Tuning::default();
        let wait = tuning.flush + Duration::from_secs(1);
        // Its own stop, given once the last build is offered: the builds still
        // running at SIGTERM (finished then, offered last) get all the flush time.
        let (flush, flush_rx) = watch::channel(false);
        let (offer, task) = otlp::spawn(otlp, tuning, metrics, crate::export::otlp::ResourceInfo::this_host(), flush_rx);
        (offer, task, flush, wait)
    });
    let offer = exporter.as_ref().map(|(offer, _, _, _)| offer.clone());
    let exporter_flush = match exporter {
        Some((offer, task, flush, wait)) => {
            // The correlator holds the only offer left: when it ends, the exporter's queue closes.
            drop(offer);
            tasks.spawn("OTLP exporter", async move {
                if let Err(e) = task.await {
                    tracing::error!("the OTLP exporter failed: {e}");
                }
            });
            Some((flush, wait))
        }
        None => None,
    };
    let correlate = correlate(events_rx, writer, offer, shared.clone(), config.idle_timeout, config.settings, config.limits);
    tasks.spawn("correlator", correlate);
    tasks.spawn("event reader", read(probe, ring, fill, context, events_tx, shared.clone(), stop_rx.clone()));
    tasks.spawn("metrics server", api::serve_metrics(listener, shared.clone(), stop_rx.clone()));
    tasks.spawn("builds API server", api::serve_builds(api_listener, shared.clone(), config.api_token, stop_rx));
    shared.health.set_attached(true);
    tracing::info!(listen = %config.listen, api = %config.api, data_dir = %config.data_dir.display(), "tracing every Go build on this host");

    let (mut sigint, mut sigterm) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        _ => return Err("cannot install signal handlers".into()),
    };
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        ended = tasks.next() => {
            shared.health.set_attached(false);
            let failure = ended.map_or_else(|| "no task left".to_string(), |e| e.as_failure());
            tracing::error!("{failure}");
            // The others stop; the history writer writes what it holds.
            let _ = stop_tx.send(true);
            tasks.abort_all();
            while tasks.next().await.is_some() {}
            return Err(Failure::Other(failure));
        }
    }
    tracing::info!("stopping: flushing the builds in progress");
    shared.health.set_attached(false);
    let _ = stop_tx.send(true);
    // The reader stops and drops the queue's sender; the correlator then
    // finishes every build, offers the last to the exporter and drops the
    // writer's sender; the exporter then sends what is queued, within its flush
    // time; the writer writes what it holds.
    let mut failure = None;
    let mut flush = exporter_flush;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut aborted = false;
    loop {
        let ended = match deadline.filter(|_| !aborted) {
            Some(deadline) => match tokio::time::timeout_at(deadline, tasks.next()).await {
                Ok(ended) => ended,
                Err(_) => {
                    tracing::warn!("the OTLP exporter did not finish in time; builds still queued are not exported");
                    tasks.abort_all();
                    aborted = true;
                    continue;
                }
            },
            None => tasks.next().await,
        };
        let Some(ended) = ended else { break };
        if ended.panic.is_some() && !aborted {
            failure.get_or_insert(ended.as_failure());
        }
        if ended.name == "correlator"
            && let Some((flush, wait)) = flush.take()
        {
            let _ = flush.send(true);
            deadline = Some(tokio::time::Instant::now() + wait);
        }
    }
    drop(stats);
    match failure {
        Some(failure) => Err(Failure::Other(failure)),
        None => Ok(()),
    }
}

/// Gives the heap that loading the programs used (the kernel's BTF, parsed for
/// relocations: tens of MiB) back to the system: the daemon runs for months.
fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Drains the ring buffer into the queue; never waits for the correlator.
/// Reports the highest ring fill it found on waking in each statistics interval:
/// a reader that falls behind shows as a fill near 1 before events are lost.
async fn read(
    mut probe: Probe,
    mut ring: AsyncFd<RingBuf<MapData>>,
    fill: probe::RingFill,
    context: DecodeContext,
    events: mpsc::Sender<Vec<Event>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut capture = Capture::new(context);
    let mut dropped = 0u64;
    let mut stats = tokio::time::interval(STATS_EVERY);
    let mut live = tokio::time::interval(LIVE_EVERY);
    let mut progress = ProgressFilter::default();
    let mut batch = vec![crate::commands::run::clock_anchor()];
    let mut peak_fill = 0.0f64;
    let mut drain_clock = tokio::time::interval(probe::DRAIN_EVERY);
    loop {
        // The loop goes round at least every DRAIN_EVERY (its drain clock).
        shared.health.reader_beat(probe::monotonic_ns());
        tokio::select! {
            guard = ring.readable_mut() => {
                let Ok(mut guard) = guard else {
                    tracing::error!("cannot read the ring buffer; tracing stopped");
                    break;
                };
                peak_fill = peak_fill.max(fill.ratio());
                drain(guard.get_inner_mut(), &mut capture, &mut probe, &mut batch);
                guard.clear_ready();
            }
            _ = drain_clock.tick() => {
                peak_fill = peak_fill.max(fill.ratio());
                drain(ring.get_mut(), &mut capture, &mut probe, &mut batch);
            }
            _ = stats.tick() => {
                let mut metrics = shared.metrics.lock().unwrap_or_else(|p| p.into_inner());
                for (program, runs, time) in probe.program_stats() {
                    metrics.program_stats(&program, runs, time.as_secs_f64());
                }
                metrics.queue_fill.set(1.0 - events.capacity() as f64 / QUEUE_BATCHES as f64);
                metrics.ring_fill.set(peak_fill.max(fill.ratio()));
                peak_fill = 0.0;
            }
            _ = live.tick() => {
                let cookies = shared.watched.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match probe.socket_counters(&cookies) {
                    Ok(sockets) => {
                        let ts_ns = probe::monotonic_ns();
                        for (cookie, entry) in &sockets {
                            let counters = crate::decode::counters(entry);
                            if progress.changed(*cookie, &counters) {
                                batch.push(Event::Progress { ts_ns, cookie: *cookie, counters });
                            }
                        }
                        progress.forget_others(&sockets);
                    }
                    Err(e) => tracing::warn!("cannot read the socket counters: {e}"),
                }
            }
            _ = stop.changed() => break,
        }
        if let Ok(lost) = probe.lost() {
            batch.extend(capture.losses(lost));
        }
        probe.flush_logs();
        if batch.is_empty() {
            continue;
        }
        if dropped > 0 {
            // Tell the correlator where events went missing.
            let ts_ns = batch.first().map_or(0, Event::ts_ns);
            batch.insert(0, Event::Lost { ts_ns, count: dropped, reason: LossReason::QueueFull });
        }
        let n = batch.len() as u64;
        match events.try_send(std::mem::take(&mut batch)) {
            Ok(()) => dropped = 0,
            // Counted (and the builds marked) when the next batch gets through.
            Err(mpsc::error::TrySendError::Full(_)) => dropped += n,
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
    }
    // What the kernel still holds.
    let mut rest = Vec::new();
    while let Some(item) = ring.get_mut().next() {
        capture.record(&item, &mut rest);
    }
    capture.settle(&mut rest).await;
    let _ = events.send(rest).await;
}

/// Decodes what the ring buffer holds into `batch`, and tells the probe.
fn drain(ring: &mut RingBuf<MapData>, capture: &mut Capture, probe: &mut Probe, batch: &mut Vec<Event>) {
    let from = batch.len();
    while let Some(item) = ring.next() {
        capture.record(&item, batch);
    }
    capture.completed(batch);
    probe.watch(batch, from);
}

/// Which socket readings are worth an event: the first, one whose counters
/// moved, and a repeat every so often (the correlator keeps the latest, and
/// measures a silence to its own `now`; a repeat keeps a hanging build alive).
#[derive(Default)]
struct ProgressFilter {
    /// Cookie → (bytes sent, bytes received, polls since last sent).
    seen: std::collections::HashMap<u64, (u64, u64, u32)>,
}

impl ProgressFilter {
    /// Polls after which an unchanged reading is sent again.
    const REPEAT: u32 = 15;

    fn changed(&mut self, cookie: u64, counters: &crate::event::Counters) -> bool {
        let now = (counters.bytes_sent, counters.bytes_received);
        let entry = self.seen.entry(cookie).or_insert((u64::MAX, u64::MAX, 0));
        let send = (entry.0, entry.1) != now || entry.2 >= Self::REPEAT;
        *entry = (now.0, now.1, if send { 0 } else { entry.2 + 1 });
        send
    }

    /// Forgets sockets the kernel no longer tracks.
    fn forget_others(&mut self, sockets: &[(u64, gomod_trace_ebpf::SocketEntry)]) {
        let present: std::collections::HashSet<u64> = sockets.iter().map(|(c, _)| *c).collect();
        self.seen.retain(|c, _| present.contains(c));
    }
}

/// Puts events in time order, correlates them and finishes builds.
async fn correlate(
    mut events: mpsc::Receiver<Vec<Event>>,
    builds: store::Sender,
    otlp: Option<otlp::Offer>,
    shared: Arc<Shared>,
    idle_timeout: Duration,
    settings: crate::correlate::Settings,
    limits: Limits,
) {
    let mut correlator = Correlator::with_limits(settings, limits);
    let mut pending: Vec<Event> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    let mut live = tokio::time::interval(LIVE_EVERY);
    let mut gone_check = tokio::time::interval(GONE_EVERY);
    let mut gone = roots::GoneRoots::default();
    let finish = |finished: Vec<Build>| {
        // A build that ended is no longer shown as running.
        shared.running.lock().unwrap_or_else(|p| p.into_inner()).retain(|r| finished.iter().all(|f| f.id != r.id));
        let mut metrics = shared.metrics.lock().unwrap_or_else(|p| p.into_inner());
        for build in finished {
            metrics.observe(&build);
            if let Some(otlp) = &otlp {
                otlp.offer(build.clone());
            }
            if !builds.send(build) {
                tracing::error!("the history writer is gone; builds are not stored");
            }
        }
    };
    loop {
        tokio::select! {
            batch = events.recv() => match batch {
                Some(batch) => {
                    let metrics = shared.metrics.lock().unwrap_or_else(|p| p.into_inner());
                    metrics.events_processed.inc_by(batch.len() as u64);
                    for event in &batch {
                        if let Event::Lost { count, reason, .. } = event {
                            metrics.lost(*reason, *count);
                        }
                    }
                    drop(metrics);
                    pending.extend(batch);
                }
                None => break,
            },
            _ = tick.tick() => {
                let watermark = probe::monotonic_ns().saturating_sub(REORDER_NS);
                sort_events(&mut pending);
                let ready = pending.partition_point(|e| matches!(e, Event::Clock { .. }) || e.ts_ns() < watermark);
                for event in pending.drain(..ready) {
                    correlator.push(&event);
                }
                let idle_before = watermark.saturating_sub(idle_timeout.as_nanos() as u64);
                finish(correlator.take_finished(watermark.saturating_sub(SETTLE_NS), idle_before));
                let metrics = shared.metrics.lock().unwrap_or_else(|p| p.into_inner());
                metrics.open_builds.set(correlator.open_builds() as i64);
                for (what, count) in correlator.take_dropped().by_kind() {
                    metrics.dropped(what, count);
                }
            }
            _ = gone_check.tick() => {
                for (root, _) in gone.confirm(&correlator.open_roots(), roots::still_runs) {
                    tracing::warn!("build of pid {root}: its root process is gone and its exit was not seen; closed as it stood");
                    correlator.end_gone(
                        root,
                        "end not seen: its root process was gone (its exit event was lost); closed at its last event".into(),
                    );
                }
            }
            _ = live.tick() => {
                *shared.watched.lock().unwrap_or_else(|p| p.into_inner()) = correlator.open_transfers();
                let running = correlator.running(probe::monotonic_ns().saturating_sub(REORDER_NS));
                let stalled = stalled_connections(&running);
                shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).stalled_connections.set(stalled as i64);
                *shared.running.lock().unwrap_or_else(|p| p.into_inner()) = running;
            }
        }
    }
    shared.running.lock().unwrap_or_else(|p| p.into_inner()).clear();
    // Stopping: everything that arrived, then every build as it stands.
    sort_events(&mut pending);
    for event in pending.drain(..) {
        correlator.push(&event);
    }
    finish(correlator.take_finished(u64::MAX, u64::MAX));
}

/// Connections that are stalled now: the transfer spans of the running builds'
/// stalled_transfer findings.
fn stalled_connections(running: &[Build]) -> usize {
    running.iter().map(|b| b.stalled_transfers().len()).sum()
}

#[cfg(test)]
mod tests {
    use super::ProgressFilter;
    use crate::event::Counters;

    #[test]
    fn unchanged_socket_readings_are_sent_once_then_now_and_then() {
        let mut filter = ProgressFilter::default();
        let idle = Counters { bytes_received: 10, ..Counters::default() };
        assert!(filter.changed(1, &idle), "the first reading");
        let repeats = (0..30).filter(|_| filter.changed(1, &idle)).count();
        assert_eq!(repeats, 30 / (ProgressFilter::REPEAT as usize + 1));
        assert!(filter.changed(1, &Counters { bytes_received: 11, ..Counters::default() }), "it moved");
        filter.forget_others(&[]);
        assert!(filter.seen.is_empty());
    }
}
