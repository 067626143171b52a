//! What `/healthz` and `/readyz` report: the probes are attached, the event
//! reader goes round its loop (it wakes every `probe::DRAIN_EVERY` even when
//! nothing happens, and beats each time), and the history database takes writes.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The reader has not gone round its loop for this long: not ready.
pub const READER_STALE: Duration = Duration::from_secs(10);
/// The reader has not gone round its loop for this long: not alive (it hangs;
/// a restart is the way out).
pub const READER_DEAD: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Health {
    /// The probes are attached and the daemon is not stopping.
    attached: AtomicBool,
    /// When the reader last went round its loop (CLOCK_MONOTONIC ns; 0: never).
    reader_beat_ns: AtomicU64,
    /// Why the last write to the history failed, while it fails.
    store_error: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub fn set_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::SeqCst);
    }

    /// The reader went round its loop at `now_ns`.
    pub fn reader_beat(&self, now_ns: u64) {
        self.reader_beat_ns.store(now_ns, Ordering::Relaxed);
    }

    /// The outcome of the latest write to the history.
    pub fn store_written(&self, result: Result<(), String>) {
        *self.store_error.lock().unwrap_or_else(|p| p.into_inner()) = result.err();
    }

    fn reader_silent_for(&self, now_ns: u64) -> Option<Duration> {
        let beat = self.reader_beat_ns.load(Ordering::Relaxed);
        (beat != 0).then(|| Duration::from_nanos(now_ns.saturating_sub(beat)))
    }

    /// Alive: the reader has gone round its loop within [`READER_DEAD`] (or has
    /// not started yet). Else what is wrong.
    pub fn alive(&self, now_ns: u64) -> Result<(), String> {
        match self.reader_silent_for(now_ns) {
            Some(silent) if silent > READER_DEAD => {
                Err(format!("the event reader has not run for {}s", silent.as_secs()))
            }
            _ => Ok(()),
        }
    }

    /// Ready: attached, the reader beat within [`READER_STALE`], the last write to
    /// the history succeeded. Else every reason it is not.
    pub fn ready(&self, now_ns: u64) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !self.attached.load(Ordering::SeqCst) {
            problems.push("the probes are not attached, or the daemon is stopping".to_string());
        }
        match self.reader_silent_for(now_ns) {
            None => problems.push("the event reader has not started".into()),
            Some(silent) if silent > READER_STALE => {
                problems.push(format!("the event reader has not run for {}s", silent.as_secs()))
            }
            Some(_) => {}
        }
        if let Some(e) = self.store_error.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            problems.push(format!("the history database cannot be written: {e}"));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn ready_only_while_attached_the_reader_beats_and_the_store_takes_writes() {
        let health = Health::default();
        assert_eq!(health.ready(100 * S).unwrap_err().len(), 2, "not attached, reader not started");
        assert!(health.alive(100 * S).is_ok(), "alive while starting");
        health.set_attached(true);
        health.reader_beat(100 * S);
        assert!(health.ready(105 * S).is_ok());
        let stale = health.ready(100 * S + READER_STALE.as_nanos() as u64 + S).unwrap_err();
        assert!(stale[0].contains("event reader has not run for 11s"), "{stale:?}");
        assert!(health.alive(100 * S + READER_DEAD.as_nanos() as u64 + S).is_err());
        health.store_written(Err("disk full".into()));
        let store = health.ready(101 * S).unwrap_err();
        assert!(store[0].contains("cannot be written: disk full"), "{store:?}");
        health.store_written(Ok(()));
        assert!(health.ready(101 * S).is_ok());
        health.set_attached(false);
        assert!(health.ready(101 * S).is_err(), "stopping");
    }
}
