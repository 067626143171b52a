//! The history writer: builds in through a bounded queue (the correlator never
//! waits: when it is full, the build is counted in `gomod_trace_dropped_total
//! {what="history_writes"}`), written on a thread of the blocking pool (SQLite
//! blocks). A build that cannot be written (disk full, read-only) is kept and
//! written again every few seconds, up to [`RETRY_BUILDS`] of them; meanwhile
//! `/readyz` fails and `gomod_trace_store_failures_total` counts. When nothing is
//! to be written, the data directory is checked for writes every
//! [`CHECK_EVERY`], so that a store that broke shows before a build is lost.
use std::{
    collections::VecDeque,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::Duration,
};

use super::Shared;
use crate::{
    history::{History, Retention},
    timeline::Build,
};

/// Builds waiting for the writer before the correlator drops them.
pub const QUEUE_BUILDS: usize = 1024;
/// Builds kept in memory while the history cannot be written; past it the
/// oldest is dropped (and counted).
pub const RETRY_BUILDS: usize = 256;
/// How often the writer retries, or checks the data directory when idle.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The file written and removed to check the data directory.
const CHECK_FILE: &str = ".write-check";

/// The correlator's end of the queue.
pub struct Sender {
    queue: mpsc::SyncSender<Build>,
    shared: Arc<Shared>,
}

impl Sender {
    /// Hands a build to the writer; never waits. False when the writer is gone.
    pub fn send(&self, build: Build) -> bool {
        match self.queue.try_send(build) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(build)) => {
                tracing::error!("build {} not stored: the history writer is {QUEUE_BUILDS} builds behind", build.id);
                self.shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).dropped("history_writes", 1);
                true
            }
            Err(mpsc::TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The queue and the writer (to run on the blocking pool); it returns once
/// every sender is gone and what it holds is written (or could not be).
pub fn writer(history: History, retention: Retention, shared: Arc<Shared>) -> (Sender, impl FnOnce() + Send + 'static) {
    let (queue, builds) = mpsc::sync_channel::<Build>(QUEUE_BUILDS);
    let sender = Sender { queue, shared: shared.clone() };
    (sender, move || write(history, retention, builds, shared))
}

fn write(mut history: History, retention: Retention, builds: mpsc::Receiver<Build>, shared: Arc<Shared>) {
    let mut unwritten: VecDeque<Build> = VecDeque::new();
    let mut insert = |build: &Build| {
        let result = history.insert(build, retention, super::wall_ns()).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!("build {} not stored yet: {e}", build.id);
            shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).store_failures.inc();
        }
        shared.health.store_written(result.clone());
        result.is_ok()
    };
    loop {
        match builds.recv_timeout(CHECK_EVERY) {
            Ok(build) => {
                unwritten.push_back(build);
                write_waiting(&mut unwritten, &mut insert);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !unwritten.is_empty() => write_waiting(&mut unwritten, &mut insert),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let result = check_writable(&shared.data_dir);
                if let Err(e) = &result {
                    tracing::error!("the history's directory cannot be written: {e}");
                    shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).store_failures.inc();
                }
                shared.health.store_written(result);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        while unwritten.len() > RETRY_BUILDS {
            if let Some(oldest) = unwritten.pop_front() {
                tracing::error!("build {} not stored: {RETRY_BUILDS} builds wait for the history already", oldest.id);
                shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).dropped("history_writes", 1);
            }
        }
    }
    write_waiting(&mut unwritten, &mut insert);
    for build in &unwritten {
        tracing::error!("build {} not stored: the history could not be written until the daemon stopped", build.id);
    }
    if !unwritten.is_empty() {
        shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).dropped("history_writes", unwritten.len() as u64);
    }
}

/// Writes the waiting builds in order, until one fails again.
fn write_waiting(unwritten: &mut VecDeque<Build>, insert: &mut impl FnMut(&Build) -> bool) {
    while let Some(build) = unwritten.front() {
        if !insert(build) {
            return;
        }
        unwritten.pop_front();
    }
}

/// Writes, syncs and removes a small file in the data directory: fails when the
/// file system is full or read-only.
pub fn check_writable(dir: &Path) -> Result<(), String> {
    let path: PathBuf = dir.join(CHECK_FILE);
    let result = std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()));
    let _ = std::fs::remove_file(&path);
    result
}
