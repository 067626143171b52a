//! Kernel records to events, for every command that traces live (`run`, the
//! daemon): each ring-buffer record is decoded once; a build's Go configuration
//! files and its main module's go.mod are read when its environment arrives, while the build still runs (the
//! stream then holds what was read, so replays need no files); a rise of the
//! kernel's lost counter, or a record that cannot be decoded, becomes a `Lost`
//! event at that point of the stream.
use std::path::PathBuf;

use crate::{
    decode::{DecodeContext, decode},
    event::{Event, LossReason},
    goenv,
};

pub struct Capture {
    context: DecodeContext,
    /// Kernel reservations lost so far, as last read from the probe.
    lost_seen: u64,
    /// Time of the latest event, where losses are placed.
    last_ts: u64,
}

impl Capture {
    pub fn new(context: DecodeContext) -> Capture {
        Capture { context, lost_seen: 0, last_ts: 0 }
    }

    /// The events of one kernel record, appended to `out`.
    pub fn record(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        match decode(bytes, &self.context) {
            Ok(event) => {
                self.last_ts = self.last_ts.max(event.ts_ns());
                let files = match &event {
                    Event::Environment { at, build, executable, vars, .. } => {
                        let root = build_root(*build);
                        let (goenv_file, goroot_go_env) = goenv::read_files(vars, executable, &root);
                        // The directory the build runs in, as it sees it.
                        let go_mod = std::fs::read_link(format!("/proc/{build}/cwd"))
                            .ok()
                            .and_then(|cwd| goenv::read_go_mod(&cwd, &root));
                        Some(Event::ConfigFiles { at: *at, build: *build, goenv_file, goroot_go_env, go_mod })
                    }
                    _ => None,
                };
                out.push(event);
                out.extend(files);
            }
            Err(e) => {
                tracing::warn!("undecodable kernel record: {e}");
                out.push(Event::Lost { ts_ns: self.last_ts, count: 1, reason: LossReason::Undecodable });
            }
        }
    }

    /// A `Lost` event when the kernel's count of failed reservations (`lost`, as
    /// read from the probe) rose since the last call.
    pub fn losses(&mut self, lost: u64) -> Option<Event> {
        if lost <= self.lost_seen {
            return None;
        }
        let count = lost - self.lost_seen;
        self.lost_seen = lost;
        Some(Event::Lost { ts_ns: self.last_ts, count, reason: LossReason::RingBufferFull })
    }
}

/// The root directory of a build's `go` process as seen from here: through
/// /proc, so that a build in a container (another mount namespace) is read in its
/// own filesystem. `/` when that is not possible (the process already exited, or
/// /proc/PID/root is not ours to read: it needs CAP_SYS_PTRACE for another user's
/// process); the files are then read at the same paths in ours.
fn build_root(pid: u32) -> PathBuf {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    match std::fs::metadata(&root) {
        Ok(_) => root,
        Err(e) => {
            tracing::debug!("cannot read {}: {e}; the build's configuration files are read in this filesystem", root.display());
            PathBuf::from("/")
        }
    }
}
