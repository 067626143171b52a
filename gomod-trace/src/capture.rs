//! Kernel records to events, for every command that traces live (`run`, the
//! daemon): each ring-buffer record is decoded once; a build's Go configuration
//! files and its main module's go.mod are read when its environment arrives, while
//! the build still runs (the stream then holds what was read, so replays need no
//! files); a rise of the kernel's lost counter, or a record that cannot be
//! decoded, becomes a `Lost` event at that point of the stream.
//!
//! The files are the build's (attacker-controlled): they are read inside its root
//! (see [`crate::buildfs`]) on threads of their own, a bounded number at a time
//! and each build's within [`READ_TIMEOUT`], so that no file can stall the
//! reading of events. Their `ConfigFiles` event joins the stream when ready.
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use crate::{
    buildfs::BuildProcess,
    decode::{DecodeContext, decode},
    event::{At, Event, LossReason},
    goenv::{self, ConfigRead},
};

/// How long the files of one build may take to read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Builds whose files are being read at once; a read stuck in the kernel (a hung
/// FUSE or NFS mount) keeps its place until it returns.
pub const READS_IN_FLIGHT: usize = 8;

pub struct Capture {
    context: DecodeContext,
    /// Kernel reservations lost so far, as last read from the probe.
    lost_seen: u64,
    /// Time of the latest event, where losses are placed.
    last_ts: u64,
    reads: Reads,
}

impl Capture {
    pub fn new(context: DecodeContext) -> Capture {
        Capture { context, lost_seen: 0, last_ts: 0, reads: Reads::new(READS_IN_FLIGHT, READ_TIMEOUT, Arc::new(read_build_files)) }
    }

    /// The events of one kernel record, appended to `out`, after the
    /// configuration files read since the last call.
    pub fn record(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        self.reads.collect(Instant::now(), out);
        match decode(bytes, &self.context) {
            Ok(event) => {
                self.last_ts = self.last_ts.max(event.ts_ns());
                let request = match &event {
                    Event::Environment { at, build, executable, vars, .. } => {
                        Some((*at, ReadRequest { build: *build, seen_ns: at.ts_ns, executable: executable.clone(), vars: vars.clone() }))
                    }
                    _ => None,
                };
                out.push(event);
                if let Some((at, request)) = request {
                    self.reads.submit(at, request, out);
                }
            }
            Err(e) => {
                tracing::warn!("undecodable kernel record: {e}");
                out.push(Event::Lost { ts_ns: self.last_ts, count: 1, reason: LossReason::Undecodable });
            }
        }
    }

    /// The `ConfigFiles` events that became ready (read, or timed out) since the
    /// last call, appended to `out`.
    pub fn completed(&mut self, out: &mut Vec<Event>) {
        self.reads.collect(Instant::now(), out);
    }

    /// Waits (at most [`READ_TIMEOUT`]) for the reads still in progress, appending
    /// their events: before a stream ends.
    pub async fn settle(&mut self, out: &mut Vec<Event>) {
        loop {
            self.reads.collect(Instant::now(), out);
            if self.reads.pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
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

/// What the files of a build are read from: its root process and environment.
pub struct ReadRequest {
    pub build: u32,
    /// When the build's exec was seen (CLOCK_MONOTONIC ns): a later process of
    /// that PID is not the build.
    pub seen_ns: u64,
    pub executable: String,
    pub vars: BTreeMap<String, String>,
}

/// Reads a build's files (blocking; on a reader thread).
pub type Reader = Arc<dyn Fn(&ReadRequest) -> ConfigRead + Send + Sync>;

/// The build's files, inside its root (/proc/PID/root) and with its own
/// credentials; nothing when that root cannot be opened (never ours instead).
/// Runs on a thread of the read's own: it takes the build's credentials.
fn read_build_files(request: &ReadRequest) -> ConfigRead {
    let process = match BuildProcess::open(request.build, request.seen_ns) {
        Ok(process) => process,
        Err(reason) => return ConfigRead::refused(&reason),
    };
    let root = match process.root() {
        Ok(root) => root,
        Err(reason) => return ConfigRead::refused(&reason),
    };
    // This thread is the read's own and ends with it.
    if let Err(reason) = process.read_as_it() {
        return ConfigRead::refused(&reason);
    }
    goenv::read_files(&request.vars, &request.executable, process.cwd().as_deref(), &root)
}

/// Reads in progress, on threads of their own: at most `limit` at once (one
/// more is refused with a note), each given up after `timeout` (a note too; its
/// thread's late answer is dropped).
struct Reads {
    reader: Reader,
    limit: usize,
    timeout: Duration,
    in_flight: Arc<AtomicUsize>,
    done_tx: mpsc::Sender<(u64, ConfigRead)>,
    done: mpsc::Receiver<(u64, ConfigRead)>,
    /// (id, the Environment's time, build, deadline), in submission order.
    pending: Vec<(u64, At, u32, Instant)>,
    next_id: u64,
}

/// Gives a reader thread's place back when the thread ends, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Reads {
    fn new(limit: usize, timeout: Duration, reader: Reader) -> Reads {
        let (done_tx, done) = mpsc::channel();
        Reads { reader, limit, timeout, in_flight: Arc::new(AtomicUsize::new(0)), done_tx, done, pending: Vec::new(), next_id: 0 }
    }

    /// Starts reading a build's files; a refusal (too many reads) is appended to
    /// `out` at once.
    fn submit(&mut self, at: At, request: ReadRequest, out: &mut Vec<Event>) {
        let build = request.build;
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.limit {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            out.push(config_files(at, build, ConfigRead::refused("too many builds' files were being read")));
            return;
        }
        let guard = InFlight(self.in_flight.clone());
        let id = self.next_id;
        self.next_id += 1;
        let (reader, done) = (self.reader.clone(), self.done_tx.clone());
        let spawned = std::thread::Builder::new().name("build-files".into()).stack_size(256 << 10).spawn(move || {
            let _guard = guard;
            let _ = done.send((id, reader(&request)));
        });
        match spawned {
            Ok(_) => self.pending.push((id, at, build, Instant::now() + self.timeout)),
            Err(e) => out.push(config_files(at, build, ConfigRead::refused(&format!("no reader thread: {e}")))),
        }
    }

    /// Appends the reads done, then those whose time is up (as refusals).
    fn collect(&mut self, now: Instant, out: &mut Vec<Event>) {
        while let Ok((id, read)) = self.done.try_recv() {
            if let Some(i) = self.pending.iter().position(|p| p.0 == id) {
                let (_, at, build, _) = self.pending.remove(i);
                out.push(config_files(at, build, read));
            }
        }
        let timeout = self.timeout;
        self.pending.retain(|&(_, at, build, deadline)| {
            let late = deadline <= now;
            if late {
                let reason = format!("timed out after {} ms", timeout.as_millis());
                out.push(config_files(at, build, ConfigRead::refused(&reason)));
            }
            !late
        });
    }
}

fn config_files(at: At, build: u32, read: ConfigRead) -> Event {
    let ConfigRead { goenv_file, goroot_go_env, go_mod, refused } = read;
    Event::ConfigFiles { at, build, goenv_file, goroot_go_env, go_mod, refused }
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use super::*;

    const AT: At = At { ts_ns: 7, cpu: 1, seq: 3 };

    fn request(build: u32) -> ReadRequest {
        ReadRequest { build, seen_ns: u64::MAX, executable: "/usr/bin/go".into(), vars: BTreeMap::new() }
    }

    fn refused(event: &Event) -> Vec<String> {
        match event {
            Event::ConfigFiles { refused, at, .. } => {
                assert_eq!(*at, AT, "the Environment's time");
                refused.clone()
            }
            other => panic!("{other:?}"),
        }
    }

    /// A reader that blocks until released (a hung mount), counting its calls.
    fn stuck() -> (Reader, Arc<(Mutex<bool>, Condvar)>) {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let held = gate.clone();
        let reader: Reader = Arc::new(move |_| {
            let (open, cv) = &*held;
            let _unused = cv.wait_while(open.lock().unwrap(), |open| !*open).unwrap();
            ConfigRead::default()
        });
        (reader, gate)
    }

    fn release(gate: &(Mutex<bool>, Condvar)) {
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    /// Catches a read made inline (submit would block here and the test hang),
    /// a missing timeout (no event ever), and a late answer applied twice.
    #[test]
    fn a_stuck_read_times_out_without_blocking() {
        let (reader, gate) = stuck();
        let mut reads = Reads::new(2, Duration::from_millis(50), reader);
        let mut out = Vec::new();
        let started = Instant::now();
        reads.submit(AT, request(40), &mut out);
        assert!(out.is_empty() && started.elapsed() < Duration::from_millis(40));
        reads.collect(Instant::now(), &mut out);
        assert!(out.is_empty(), "nothing yet: {out:?}");
        reads.collect(Instant::now() + Duration::from_millis(60), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(refused(&out[0]), ["config files: not read (timed out after 50 ms)"]);
        // The stuck thread answers at last: nothing more.
        release(&gate);
        while reads.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        reads.collect(Instant::now(), &mut out);
        assert_eq!(out.len(), 1);
        assert!(reads.pending.is_empty());
    }

    /// Catches unbounded reader threads (a build storm on a hung mount), and a
    /// bound that never frees its places.
    #[test]
    fn reads_in_flight_are_bounded() {
        let (reader, gate) = stuck();
        let mut reads = Reads::new(2, Duration::from_secs(60), reader);
        let mut out = Vec::new();
        for build in [1, 2, 3] {
            reads.submit(AT, request(build), &mut out);
        }
        assert_eq!(reads.in_flight.load(Ordering::SeqCst), 2);
        assert_eq!(out.len(), 1, "the third is refused at once");
        assert!(matches!(out[0], Event::ConfigFiles { build: 3, .. }));
        assert_eq!(refused(&out[0]), ["config files: not read (too many builds' files were being read)"]);
        release(&gate);
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.len() < 3 && Instant::now() < deadline {
            reads.collect(Instant::now(), &mut out);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.len(), 3);
        assert!(out[1..].iter().all(|e| refused(e).is_empty()));
        while reads.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        reads.submit(AT, request(4), &mut out);
        assert_eq!(out.len(), 3, "places are given back");
    }

    /// Catches the old fallback to our root: a build whose process is gone gets
    /// nothing read, and a note.
    #[test]
    fn a_gone_build_reads_nothing() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // HOME=/ would find /.config/go/env in our root; GOROOT=/usr/lib/go… too.
        let vars: BTreeMap<String, String> = [("GOENV", "/etc/passwd"), ("GOROOT", "/etc")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let read = read_build_files(&ReadRequest { build: pid, seen_ns: u64::MAX, executable: "/usr/bin/go".into(), vars });
        assert_eq!(read, ConfigRead::refused("the process had exited"));
        assert_eq!(read.refused, ["config files: not read (the process had exited)"]);
    }

    /// A live build (this test process) has its GOENV refused with the path.
    #[test]
    fn refusals_name_the_file() {
        let vars: BTreeMap<String, String> = [("GOENV", "/dev/zero")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let read = read_build_files(&ReadRequest { build: std::process::id(), seen_ns: u64::MAX, executable: "/nonexistent/go".into(), vars });
        assert_eq!(read.goenv_file, None);
        assert_eq!(read.refused.first().map(String::as_str), Some("GOENV /dev/zero: not read (not a regular file: a character device)"));
    }
}
