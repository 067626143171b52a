//! Events in, timelines out: processes → builds, sockets → connections, DNS
//! queries ↔ answers, TLS and HTTP exchanges, and the findings they support.
//! Deterministic and free of I/O and clocks: the same events give the same
//! timeline, which is how recordings replay and how it is tested without root.
mod endpoints;
mod findings;
mod limits;
mod lookups;
mod modules;
mod render;
mod state;

use std::collections::{BTreeMap, HashMap};

use crate::{
    event::{Event, sort_events},
    timeline::{self, Build, SCHEMA_VERSION, Timeline},
};
pub use limits::{Dropped, Limits};
use state::{BuildState, SocketState};

/// Go's resolver gives a DNS server this long before it tries again.
pub const DNS_TIMEOUT_NS: u64 = 5_000_000_000;
/// Go's TLS handshake timeout (net/http's default transport).
pub const TLS_TIMEOUT_NS: u64 = 10_000_000_000;
/// How long a connection may go quiet mid-download before it counts as stalled.
pub const DEFAULT_STALL_THRESHOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// How the correlator judges what it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A connection that received nothing for this long while a module's zip was
    /// arriving stalled (`stalled_transfer`).
    pub stall_threshold_ns: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { stall_threshold_ns: DEFAULT_STALL_THRESHOLD.as_nanos() as u64 }
    }
}

#[derive(Default)]
pub struct Correlator {
    settings: Settings,
    /// (CLOCK_MONOTONIC ns, Unix ns) of the same instant.
    anchor: Option<(u64, i64)>,
    /// Builds by a number that is never reused (the daemon forgets finished ones).
    builds: BTreeMap<usize, BuildState>,
    next_build: usize,
    /// Builds whose root has not exited, by root pid.
    running: HashMap<u32, usize>,
    /// Live processes of builds → (build, process span index).
    processes: HashMap<u32, (usize, Option<usize>)>,
    /// Child → parent, from forks.
    parents: HashMap<u32, u32>,
    sockets: HashMap<u64, SocketState>,
    /// Every TCP socket of a build not yet rendered, by cookie → (build, connect
    /// span): a connect's error may be read after its socket closed.
    connects: HashMap<u64, (usize, usize)>,
    limits: Limits,
    /// What the limits refused since [`Correlator::take_dropped`] last asked.
    dropped: Dropped,
    /// Roots of builds refused at the open-build limit (each counted once),
    /// forgotten when the root exits; at most `limits.processes` of them.
    refused: std::collections::HashSet<u32>,
}

impl Correlator {
    pub fn new(settings: Settings) -> Correlator {
        Correlator { settings, ..Correlator::default() }
    }

    /// The same, keeping no more than `limits` allow.
    pub fn with_limits(settings: Settings, limits: Limits) -> Correlator {
        Correlator { settings, limits, ..Correlator::default() }
    }

    /// What the limits refused since the last call (for the daemon's metrics).
    pub fn take_dropped(&mut self) -> Dropped {
        std::mem::take(&mut self.dropped)
    }

    /// Whether the limits refuse `event`; if so, it is counted on its build.
    fn refused_by_limits(&mut self, event: &Event) -> bool {
        let (build_index, what) = match event {
            Event::Exec { pid, build, .. } | Event::HttpRequest { pid, build, .. } | Event::File { pid, build, .. } => {
                (self.build_of(*pid, *build), "spans")
            }
            Event::Connect { pid, build, .. } => {
                let index = self.build_of(*pid, *build);
                let what = if self.sockets.len() >= self.limits.connections { "connections" } else { "spans" };
                (index, what)
            }
            Event::Payload { cookie, .. } => (self.sockets.get(cookie).map(|s| s.build), "spans"),
            Event::Fork { parent, build, .. } if self.parents.len() >= self.limits.processes => {
                (self.processes.get(parent).map(|p| p.0).or_else(|| self.running.get(build).copied()), "processes")
            }
            _ => return false,
        };
        let Some(b) = build_index.and_then(|i| self.builds.get_mut(&i)) else { return false };
        match what {
            "spans" if b.spans.len() >= self.limits.spans_per_build => {
                b.dropped.spans += 1;
                self.dropped.spans += 1;
            }
            "connections" => {
                b.dropped.connections += 1;
                self.dropped.connections += 1;
            }
            "processes" => {
                b.dropped.processes += 1;
                self.dropped.processes += 1;
            }
            _ => return false,
        }
        true
    }

    /// Builds the timeline of a whole recorded or captured stream.
    pub fn timeline(mut events: Vec<Event>, settings: Settings) -> Timeline {
        sort_events(&mut events);
        let mut correlator = Correlator::new(settings);
        for event in &events {
            correlator.push(event);
        }
        correlator.finish()
    }

    pub fn push(&mut self, event: &Event) {
        if self.refused_by_limits(event) {
            return;
        }
        match event {
            Event::Clock { monotonic_ns, realtime_ns } => {
                self.anchor.get_or_insert((*monotonic_ns, *realtime_ns));
            }
            Event::Exec { at, pid, build, comm, argv } => self.on_exec(at.ts_ns, *pid, *build, comm, argv),
            Event::Environment { build, executable, vars, truncated, .. } => {
                if let Some(b) = self.running.get(build).and_then(|b| self.builds.get_mut(b)) {
                    b.set_environment(vars.clone(), executable.clone(), *truncated);
                }
            }
            Event::ConfigFiles { build, goenv_file, goroot_go_env, go_mod, refused, .. } => {
                // Read off the event path, the files may arrive after the root
                // exited: then they are its latest build's not yet rendered.
                let index = self.running.get(build).copied().or_else(|| {
                    self.builds.iter().rev().find(|(_, b)| b.root == *build).map(|(&i, _)| i)
                });
                if let Some(b) = index.and_then(|b| self.builds.get_mut(&b)) {
                    b.set_config_files(goenv_file.as_ref(), goroot_go_env.as_ref());
                    if let Some(go_mod) = go_mod {
                        b.required = go_mod.modules.clone();
                    }
                    for note in refused {
                        b.note(note);
                    }
                }
            }
            Event::File { at, pid, build, op, path, to, extracted } => {
                let Some(build_index) = self.build_of(*pid, *build) else { return };
                let parent = self.processes.get(pid).and_then(|p| p.1);
                let Some(b) = self.builds.get_mut(&build_index) else { return };
                b.touch(at.ts_ns);
                b.on_file(at.ts_ns, *pid, parent, *op, path, to.as_deref());
                if let Some(extracted) = extracted {
                    b.on_extracted(path, extracted);
                }
            }
            Event::Fork { parent, child, build, .. } => {
                self.parents.insert(*child, *parent);
                let inherited = self.processes.get(parent).copied().or_else(|| {
                    self.running.get(build).map(|&b| (b, None))
                });
                if let Some(state) = inherited {
                    self.processes.insert(*child, state);
                }
            }
            Event::Exit { at, pid, build, wait_status } => self.on_exit(at.ts_ns, *pid, *build, *wait_status),
            Event::Connect { at, pid, build, cookie, protocol, remote, .. } => {
                let Some(build_index) = self.build_of(*pid, *build) else { return };
                let parent = self.processes.get(pid).and_then(|p| p.1);
                let Some(b) = self.builds.get_mut(&build_index) else { return };
                b.touch(at.ts_ns);
                let socket = SocketState::open(b, build_index, at.ts_ns, *pid, parent, *protocol, *remote);
                if let Some(span) = socket.connect_span() {
                    self.connects.insert(*cookie, (build_index, span));
                }
                self.sockets.insert(*cookie, socket);
            }
            Event::ConnectError { at, pid, build, errno, cookie } => {
                let Some(build_index) = self.build_of(*pid, *build) else { return };
                let Some(b) = self.builds.get_mut(&build_index) else { return };
                b.touch(at.ts_ns);
                // The socket's own connect (none for cookie 0: not an inet
                // socket); without a cookie (older recordings), the process's latest.
                let connect = match cookie {
                    Some(c) => match self.connects.get(c) {
                        Some(&(b, span)) if b == build_index => Some(span),
                        _ => return,
                    },
                    None => None,
                };
                b.on_connect_error(at.ts_ns, *pid, *errno, connect);
            }
            Event::TcpState { at, cookie, old, new, local, error, counters, .. } => {
                let Some(socket) = self.sockets.get_mut(cookie) else { return };
                let Some(b) = self.builds.get_mut(&socket.build) else { return };
                b.touch(at.ts_ns);
                if socket.on_tcp_state(b, at.ts_ns, *old, *new, *local, *error, *counters) {
                    self.sockets.remove(cookie);
                }
            }
            Event::TcpRetransmit { at, cookie, state } => {
                if let Some(socket) = self.sockets.get_mut(cookie) {
                    if let Some(b) = self.builds.get_mut(&socket.build) {
                        b.touch(at.ts_ns);
                    }
                    socket.on_retransmit(*state);
                }
            }
            Event::TcpReset { at, cookie } => {
                if let Some(socket) = self.sockets.get_mut(cookie) {
                    if let Some(b) = self.builds.get_mut(&socket.build) {
                        b.touch(at.ts_ns);
                    }
                    socket.resets += 1;
                }
            }
            Event::Drop { at, cookie, reason } => {
                if let Some(socket) = self.sockets.get_mut(cookie) {
                    if let Some(b) = self.builds.get_mut(&socket.build) {
                        b.touch(at.ts_ns);
                    }
                    socket.drops += 1;
                    socket.drop_reason.get_or_insert_with(|| reason.clone());
                }
            }
            Event::Payload { at, cookie, direction, data, .. } => {
                if let Some(socket) = self.sockets.get_mut(cookie) {
                    let Some(b) = self.builds.get_mut(&socket.build) else { return };
                    b.touch(at.ts_ns);
                    socket.on_payload(b, at.ts_ns, *direction, data);
                }
            }
            Event::HttpRequest { at, pid, build, goroutine, method, url, truncated } => {
                let Some(build_index) = self.build_of(*pid, *build) else { return };
                let parent = self.processes.get(pid).and_then(|p| p.1);
                let Some(b) = self.builds.get_mut(&build_index) else { return };
                b.touch(at.ts_ns);
                b.on_request(at.ts_ns, *pid, parent, *goroutine, method, url, *truncated);
            }
            Event::HttpConnection { at, pid, build, goroutine, cookie, http_major } => {
                let Some(build_index) = self.build_of(*pid, *build) else { return };
                let Some(b) = self.builds.get_mut(&build_index) else { return };
                b.touch(at.ts_ns);
                let Some(request) = b.request_of(*pid, *goroutine) else { return };
                // Cookie 0: the socket could not be read; the request keeps the
                // process as its parent rather than a guessed connection.
                if let Some(socket) = self.sockets.get_mut(cookie).filter(|s| *cookie != 0 && s.build == build_index) {
                    socket.carry_request(b, request, *http_major);
                }
            }
            Event::HttpResponse { at, pid, build, goroutine, status, proto, error } => {
                let Some(build_index) = self.build_of(*pid, *build) else { return };
                let Some(b) = self.builds.get_mut(&build_index) else { return };
                b.touch(at.ts_ns);
                b.on_response(at.ts_ns, *pid, *goroutine, *status, proto.as_deref(), error.as_deref());
            }
            Event::GoExecutable { pid, build, go_version, not_traced, traced_from_ns, .. } => {
                let Some(build_index) = self.build_of(*pid, *build) else { return };
                if let Some(b) = self.builds.get_mut(&build_index) {
                    b.on_go_executable(go_version.as_deref(), not_traced.as_deref(), *traced_from_ns);
                }
            }
            Event::Progress { ts_ns, cookie, counters } => {
                if let Some(socket) = self.sockets.get_mut(cookie) {
                    socket.on_progress(*counters);
                    // A socket still open is a build still alive, even when
                    // nothing else happens (it hangs).
                    if let Some(b) = self.builds.get_mut(&socket.build) {
                        b.touch(*ts_ns);
                    }
                }
            }
            Event::Lost { ts_ns, count, .. } => {
                for build in self.builds.values_mut() {
                    if build.covers(*ts_ns) {
                        build.lost += count;
                    }
                }
            }
        }
    }

    /// The build a process belongs to: its own, or its build root's.
    fn build_of(&self, pid: u32, build: u32) -> Option<usize> {
        self.processes.get(&pid).map(|p| p.0).or_else(|| self.running.get(&build).copied())
    }

    fn on_exec(&mut self, ts: u64, pid: u32, build: u32, comm: &str, argv: &[String]) {
        let build_index = match self.build_of(pid, build) {
            Some(index) => index,
            None => {
                if self.builds.len() >= self.limits.open_builds {
                    // Counted once per build (while the refused set has room).
                    if !self.refused.contains(&build) {
                        self.dropped.builds += 1;
                        if self.refused.len() < self.limits.processes {
                            self.refused.insert(build);
                        }
                    }
                    return;
                }
                // A new build: the root's exec, or a process of a build whose root
                // exec we never saw (then the timeline says it is incomplete).
                let mut state = BuildState::new(build, ts);
                if pid != build {
                    state.started_late = true;
                }
                let index = self.next_build;
                self.next_build += 1;
                self.builds.insert(index, state);
                self.running.insert(build, index);
                index
            }
        };
        // The parent's span: walk up forks to the nearest process with a span.
        let mut parent_span = None;
        let mut cursor = pid;
        for _ in 0..64 {
            let Some(&parent) = self.parents.get(&cursor) else { break };
            if let Some(&(b, Some(span))) = self.processes.get(&parent)
                && b == build_index
            {
                parent_span = Some(span);
                break;
            }
            cursor = parent;
        }
        let Some(b) = self.builds.get_mut(&build_index) else { return };
        b.touch(ts);
        if let Some(&(_, Some(previous))) = self.processes.get(&pid) {
            // Re-exec of a process that already has its own span.
            if b.spans[previous].pid == pid {
                b.spans[previous].end(ts, None);
                parent_span = b.spans[previous].parent.or(parent_span);
            }
        }
        if pid == build && b.command.is_empty() {
            b.command = argv.to_vec();
        }
        let span = b.process_span(ts, pid, parent_span, comm, argv);
        self.processes.insert(pid, (build_index, Some(span)));
    }

    fn on_exit(&mut self, ts: u64, pid: u32, build: u32, wait_status: i32) {
        if pid == build {
            self.refused.remove(&pid);
        }
        let Some(build_index) = self.build_of(pid, build) else { return };
        let Some(b) = self.builds.get_mut(&build_index) else { return };
        b.touch(ts);
        if let Some((_, Some(span))) = self.processes.remove(&pid)
            && b.spans[span].pid == pid
        {
            b.spans[span].end(ts, None);
            b.spans[span].attrs.insert("exit_code".into(), exit_code(wait_status).into());
        }
        self.parents.remove(&pid);
        if pid == b.root {
            b.ended_ns = Some(ts);
            b.exit_code = Some(exit_code(wait_status));
            self.running.remove(&pid);
            // Forget the build's other entries (threads appear as forks too).
            self.processes.retain(|_, p| p.0 != build_index);
        }
    }

    /// Ends what is still open and renders every build.
    pub fn finish(mut self) -> Timeline {
        let anchor = self.anchor.unwrap_or((0, 0));
        let indexes: Vec<usize> = self.builds.keys().copied().collect();
        let builds = indexes.into_iter().filter_map(|i| self.render_build(i, anchor)).collect();
        Timeline { schema_version: SCHEMA_VERSION, builds }
    }

    /// For a stream that goes on (the daemon): renders and forgets the builds
    /// whose root exited before `ended_before` (their sockets have had time to
    /// close), and those with no event since `idle_before` (their end was never
    /// seen: they are marked incomplete). Times are the events' clock.
    pub fn take_finished(&mut self, ended_before: u64, idle_before: u64) -> Vec<Build> {
        let Some(anchor) = self.anchor else { return Vec::new() };
        let done: Vec<usize> = self
            .builds
            .iter_mut()
            .filter_map(|(&i, b)| match b.ended_ns {
                Some(end) => (end < ended_before).then_some(i),
                None if b.last_ns < idle_before => {
                    b.end_unseen = true;
                    b.notes.push(
                        "end not seen: nothing happened in the build for longer than the idle timeout (--idle-timeout); closed as it stood".into(),
                    );
                    Some(i)
                }
                None => None,
            })
            .collect();
        done.into_iter().filter_map(|i| self.render_build(i, anchor)).collect()
    }

    /// The builds still running, as they stand at `now` (the events' clock): their
    /// spans so far, open ones marked unfinished, and the findings already true
    /// (a transfer silent for longer than the stall threshold is a stall now).
    pub fn running(&self, now: u64) -> Vec<Build> {
        let Some(anchor) = self.anchor else { return Vec::new() };
        self.builds
            .iter()
            .filter(|(_, b)| b.ended_ns.is_none())
            .map(|(&index, b)| {
                let mut build = b.clone();
                build.live = true;
                build.touch(now);
                for socket in self.sockets.values().filter(|s| s.build == index) {
                    socket.snapshot(&mut build, now);
                }
                let mut rendered = render::render(build, anchor, &self.settings);
                rendered.state = Some(timeline::BuildStatus::Running);
                rendered
            })
            .collect()
    }

    /// The sockets of running builds that carry an open transfer: those whose
    /// counters the daemon reads from the kernel (see `Event::Progress`).
    pub fn open_transfers(&self) -> Vec<u64> {
        self.sockets.iter().filter(|(_, s)| s.transfer_open()).map(|(&cookie, _)| cookie).collect()
    }

    /// How many builds are open (started, not yet rendered).
    pub fn open_builds(&self) -> usize {
        self.builds.len()
    }

    /// Renders one build and forgets everything that points at it.
    fn render_build(&mut self, index: usize, anchor: (u64, i64)) -> Option<Build> {
        let mut build = self.builds.remove(&index)?;
        let end = build.end_ns();
        let cookies: Vec<u64> = self.sockets.iter().filter(|(_, s)| s.build == index).map(|(&c, _)| c).collect();
        for cookie in cookies {
            if let Some(socket) = self.sockets.remove(&cookie) {
                socket.finish(&mut build, end);
            }
        }
        self.processes.retain(|_, p| p.0 != index);
        // Forks whose exit was never seen (lost events) leave no trace behind.
        let processes = &self.processes;
        self.parents.retain(|child, _| processes.contains_key(child));
        self.running.retain(|_, b| *b != index);
        self.connects.retain(|_, (b, _)| *b != index);
        let notes = build.dropped.notes(&self.limits);
        build.notes.extend(notes);
        Some(render::render(build, anchor, &self.settings))
    }

    /// The roots of the builds whose end has not been seen, with when each build
    /// started (the events' clock): the daemon checks that they still run.
    pub fn open_roots(&self) -> Vec<(u32, u64)> {
        self.builds.values().filter(|b| b.ended_ns.is_none()).map(|b| (b.root, b.start_ns)).collect()
    }

    /// Ends the build of `root` (its process is gone, its exit never seen) at its
    /// last event: it is finished as it stood, incomplete, with `note`.
    pub fn end_gone(&mut self, root: u32, note: String) {
        let Some(&index) = self.running.get(&root) else { return };
        let Some(b) = self.builds.get_mut(&index) else { return };
        if b.ended_ns.is_some() {
            return;
        }
        b.ended_ns = Some(b.last_ns);
        b.end_unseen = true;
        b.notes.push(note);
        self.running.remove(&root);
        self.processes.retain(|_, p| p.0 != index);
    }
}

/// A wait status as a shell would report it: the exit code, or 128 + signal.
pub fn exit_code(wait_status: i32) -> i32 {
    let signal = wait_status & 0x7f;
    if signal == 0 { (wait_status >> 8) & 0xff } else { 128 + signal }
}

#[cfg(test)]
mod tests;
