//! The correlator's working state: a build with its spans as they open and close,
//! and one socket's progress from connect to close.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
};

use serde_json::{Value, json};

use super::{
    DNS_TIMEOUT_NS, TLS_TIMEOUT_NS,
    modules::{self, CachePath},
};
use crate::{
    event::{Counters, Direction, ExtractedFiles, FileOp, Protocol, TcpState},
    goenv,
    proto::{dns, http, tls},
    timeline::{self, ConfigValue, Outcome, Role, SpanKind},
};

/// Programs cmd/go runs for direct (VCS) fetches.
const VCS_COMMANDS: [&str; 6] = ["git", "hg", "svn", "bzr", "fossil", "ssh"];

const ECONNREFUSED: i32 = 111;
const ETIMEDOUT: i32 = 110;
const EHOSTUNREACH: i32 = 113;
const ENETUNREACH: i32 = 101;

#[derive(Clone)]
pub struct SpanState {
    pub kind: SpanKind,
    pub parent: Option<usize>,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub pid: u32,
    pub role: Role,
    pub host: Option<String>,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    pub outcome: Option<Outcome>,
    pub attrs: BTreeMap<String, Value>,
    /// An HTTP response's status.
    pub status: Option<u16>,
    /// The endpoints of the build's configuration this span's peer is (set when
    /// the build is rendered; see `endpoints`).
    pub endpoints: Vec<usize>,
    /// Through an HTTP proxy's tunnel: the role and endpoints of its target.
    pub target_role: Option<Role>,
    pub target_endpoints: Vec<usize>,
}

/// What identifies the peer of one socket of the build: the address it connected
/// to and every name the build used for it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub pid: u32,
    pub remote: SocketAddr,
    /// The name whose DNS answer gave the address (the latest before the connect).
    pub name: Option<String>,
    /// The SNI of the TLS handshake on this socket.
    pub sni: Option<String>,
    /// `host:port` of the CONNECT sent on this socket (an HTTP proxy's tunnel).
    pub tunnel: Option<String>,
    /// The Host of a plaintext HTTP request on this socket.
    pub host_header: Option<String>,
    /// The spans this socket carried.
    pub spans: Vec<usize>,
}

impl SpanState {
    pub fn end(&mut self, ts: u64, outcome: Option<Outcome>) {
        if self.end_ns.is_none() {
            self.end_ns = Some(ts.max(self.start_ns));
            if outcome.is_some() {
                self.outcome = outcome;
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.end_ns.is_none()
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_ns.map_or(0, |end| end.saturating_sub(self.start_ns))
    }
}

#[derive(Clone)]
pub struct BuildState {
    pub root: u32,
    pub start_ns: u64,
    pub ended_ns: Option<u64>,
    pub last_ns: u64,
    pub exit_code: Option<i32>,
    pub command: Vec<String>,
    pub started_late: bool,
    /// The build's root was never seen to exit (the daemon aged it out).
    pub end_unseen: bool,
    /// Rendered while it still runs (the daemon's live view).
    pub live: bool,
    pub lost: u64,
    /// What the correlator's limits refused of this build.
    pub dropped: super::Dropped,
    pub spans: Vec<SpanState>,
    /// Names the build resolved, by address, with when each answer came (what it
    /// asked DNS, or sent as SNI outside a tunnel).
    pub names: HashMap<IpAddr, Vec<(u64, String)>>,
    /// Every socket of the build, in the order they connected.
    pub peers: Vec<Peer>,
    /// The root's Go-related environment (redacted) and executable.
    environment: BTreeMap<String, String>,
    pub(super) environment_truncated: bool,
    pub config: BTreeMap<String, ConfigValue>,
    /// Module paths the main module's go.mod names.
    pub required: Vec<String>,
    /// Module fetches by (module, version) → span index.
    modules: HashMap<(String, String), usize>,
    /// When the build worked in the module cache's VCS area (direct fetches).
    vcs_activity: Vec<u64>,
    /// Module span → when its zip started to arrive (temporary file created)
    /// and when it was put in place.
    pub zip_phase: HashMap<usize, (u64, Option<u64>)>,
    /// Checksum database lookups of modules whose fetch has not shown yet
    /// (cmd/go verifies a go.mod before it writes it): (module, version) → name.
    sumdb_lookups: HashMap<(String, String), String>,
    /// Requests of the go command's HTTP client in flight, by (pid, goroutine).
    requests: HashMap<(u32, u64), usize>,
    /// Whether requests of the build's go command were traced (uprobes), and
    /// whether some go executable it ran was not (then what the requests show
    /// is not the whole build).
    requests_traced: bool,
    requests_untraced: bool,
    /// What the timeline must say about how the build was seen.
    pub notes: Vec<String>,
}

impl BuildState {
    pub fn new(root: u32, ts: u64) -> BuildState {
        BuildState {
            root,
            start_ns: ts,
            ended_ns: None,
            last_ns: ts,
            exit_code: None,
            command: Vec::new(),
            started_late: false,
            end_unseen: false,
            live: false,
            lost: 0,
            dropped: super::Dropped::default(),
            spans: Vec::new(),
            names: HashMap::new(),
            peers: Vec::new(),
            environment: BTreeMap::new(),
            environment_truncated: false,
            config: BTreeMap::new(),
            required: Vec::new(),
            modules: HashMap::new(),
            vcs_activity: Vec::new(),
            zip_phase: HashMap::new(),
            sumdb_lookups: HashMap::new(),
            requests: HashMap::new(),
            requests_traced: false,
            requests_untraced: false,
            notes: Vec::new(),
        }
    }

    /// Whether a Go executable the build ran has its requests traced, and since when.
    pub fn on_go_executable(&mut self, go_version: Option<&str>, not_traced: Option<&str>, traced_from_ns: Option<u64>) {
        let note = match (not_traced, traced_from_ns) {
            (None, None) => None,
            (None, Some(from)) => Some(format!(
                "requests: traced only from {} ms after the build started (its go executable was new to the tracer; earlier requests are missing)",
                from.saturating_sub(self.start_ns) / 1_000_000
            )),
            (Some(reason), _) => Some(match go_version {
                Some(version) if !reason.contains(version) => format!("requests: not traced ({version}: {reason})"),
                _ => format!("requests: not traced ({reason})"),
            }),
        };
        match not_traced {
            None => self.requests_traced = true,
            Some(_) => self.requests_untraced = true,
        }
        if let Some(note) = note.filter(|n| !self.notes.contains(n)) {
            self.notes.push(note);
        }
    }

    /// A note on how the build was seen (once).
    pub fn note(&mut self, note: &str) {
        if !self.notes.iter().any(|n| n == note) {
            self.notes.push(note.to_string());
        }
    }

    /// Whether every request of the build's go command was traced: the rules may
    /// then take the absence of a status as an answer. (A build that switched
    /// to a toolchain the probes do not support is judged by inference.)
    pub fn requests_complete(&self) -> bool {
        self.requests_traced && !self.requests_untraced
    }

    /// The go command's HTTP client began a request on goroutine `goroutine`.
    #[expect(clippy::too_many_arguments, reason = "the fields of one request event")]
    pub fn on_request(&mut self, ts: u64, pid: u32, parent: Option<usize>, goroutine: u64, method: &str, url: &str, truncated: bool) {
        self.requests_traced = true;
        if let Some(&previous) = self.requests.get(&(pid, goroutine)) {
            let p = &self.spans[previous];
            let same = p.attrs.get("url").and_then(Value::as_str) == Some(url) && p.attrs.get("method").and_then(Value::as_str) == Some(method);
            if same {
                // The same call seen twice: two probes on one file (an overlay
                // filesystem shows it under two devices), or a probe on the
                // first instruction of a function that started over on a
                // bigger stack (recordings made before probes moved past the
                // stack check).
                return;
            }
            // Its return was never seen (a lost record): not this request's end.
            self.requests.remove(&(pid, goroutine));
            self.spans[previous].attrs.insert("return_unseen".into(), true.into());
        }
        let span = self.open_span(SpanKind::Http, ts, pid, parent);
        let s = &mut self.spans[span];
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        let default_port = match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let (host, port) = match goenv::url_host(&format!("{scheme}://{authority}")) {
            Some((host, port)) => (host, port.or(default_port)),
            None => (authority.to_string(), default_port),
        };
        // An IPv6 literal without a port keeps its brackets there.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        s.addr = host.parse().ok();
        s.host = Some(host);
        s.port = port;
        s.attrs.insert("method".into(), method.into());
        s.attrs.insert("target".into(), if target.is_empty() { "/" } else { target }.into());
        s.attrs.insert("url".into(), url.into());
        if truncated {
            s.attrs.insert("truncated".into(), true.into());
        }
        self.requests.insert((pid, goroutine), span);
    }

    /// The request in flight on `goroutine`, if any.
    pub fn request_of(&self, pid: u32, goroutine: u64) -> Option<usize> {
        self.requests.get(&(pid, goroutine)).copied()
    }

    /// The round trip on `goroutine` ended: a response's status, or an error.
    pub fn on_response(&mut self, ts: u64, pid: u32, goroutine: u64, status: Option<u16>, proto: Option<&str>, error: Option<&str>) {
        let Some(span) = self.requests.remove(&(pid, goroutine)) else { return };
        let s = &mut self.spans[span];
        s.status = status;
        if let Some(status) = status {
            s.attrs.insert("status".into(), status.into());
        }
        if let Some(proto) = proto {
            s.attrs.insert("proto".into(), proto.into());
        }
        if let Some(error) = error {
            s.attrs.insert("error".into(), error.into());
        }
        s.outcome = Some(match (status, error) {
            (Some(status), _) if status < 400 => Outcome::Ok,
            (Some(_), _) => Outcome::Error,
            (None, Some(e)) if e.contains("deadline exceeded") || e.contains("timeout") => Outcome::Timeout,
            (None, Some(e)) if e.contains("context canceled") => Outcome::Aborted,
            _ => Outcome::Error,
        });
        // The round trip's own end (a plaintext response may have ended it at
        // its first bytes already).
        s.end_ns = Some(ts.max(s.start_ns));
    }

    /// Module cache activity: opens, renames and removals under GOMODCACHE.
    pub fn on_file(&mut self, ts: u64, pid: u32, parent: Option<usize>, op: FileOp, path: &str, to: Option<&str>) {
        let Some(modcache) = goenv::module_cache(&self.config) else { return };
        // A rename puts a file in place: its new name is what it is.
        match modules::classify(&modcache, to.unwrap_or(path)) {
            Some(CachePath::Download { module, version: Some(version), part, temporary }) => {
                let span = self.module_span(ts, pid, parent, module, version);
                let s = &mut self.spans[span];
                let done = !temporary && matches!(part.as_str(), "info" | "mod" | "zip" | "ziphash");
                if done && op != FileOp::Unlink {
                    modules::note_part(&mut s.attrs, &part);
                }
                if part == "zip" && op != FileOp::Unlink {
                    let phase = self.zip_phase.entry(span).or_insert((ts, None));
                    if done {
                        phase.1 = Some(ts);
                    }
                }
                if part == "partial" && op == FileOp::Unlink {
                    s.attrs.insert("extracted".into(), true.into());
                }
            }
            Some(CachePath::Extract { module, version }) => {
                let span = self.module_span(ts, pid, parent, module, version);
                let s = &mut self.spans[span];
                if op == FileOp::Open {
                    let n = s.attrs.get("files_extracted").and_then(Value::as_u64).unwrap_or(0);
                    s.attrs.insert("files_extracted".into(), (n + 1).into());
                }
            }
            Some(CachePath::Sumdb { name, lookup: Some(module_version) }) => {
                if let Some((module, version)) = module_version.rsplit_once('@') {
                    let key = (module.to_string(), version.to_string());
                    match self.modules.get(&key) {
                        Some(&span) => {
                            self.spans[span].attrs.insert("sumdb_lookup".into(), name.into());
                        }
                        None => {
                            self.sumdb_lookups.insert(key, name);
                        }
                    }
                }
            }
            Some(CachePath::Vcs) => self.vcs_activity.push(ts),
            _ => {}
        }
    }

    /// The kernel's count of the files extracted for the module whose `.partial`
    /// marker (`path`) was removed: it recorded only the first of them.
    pub fn on_extracted(&mut self, path: &str, extracted: &ExtractedFiles) {
        let Some(modcache) = goenv::module_cache(&self.config) else { return };
        let Some(CachePath::Download { module, version: Some(version), .. }) = modules::classify(&modcache, path) else {
            return;
        };
        let Some(&span) = self.modules.get(&(module, version)) else { return };
        let s = &mut self.spans[span];
        s.attrs.insert("files_extracted".into(), extracted.files.into());
        s.start_ns = s.start_ns.min(extracted.first_ns);
        s.end_ns = Some(s.end_ns.unwrap_or(extracted.last_ns).max(extracted.last_ns));
    }

    /// The span of a module fetch, opened at its first file and extended by each.
    fn module_span(&mut self, ts: u64, pid: u32, parent: Option<usize>, module: String, version: String) -> usize {
        let key = (module, version);
        let span = match self.modules.get(&key) {
            Some(&span) => span,
            None => {
                let span = self.open_span(SpanKind::Module, ts, pid, parent);
                let s = &mut self.spans[span];
                s.attrs.insert("module".into(), key.0.clone().into());
                s.attrs.insert("version".into(), key.1.clone().into());
                if let Some(name) = self.sumdb_lookups.remove(&key) {
                    s.attrs.insert("sumdb_lookup".into(), name.into());
                }
                self.modules.insert(key, span);
                span
            }
        };
        let s = &mut self.spans[span];
        s.end_ns = Some(ts.max(s.end_ns.unwrap_or(ts)));
        span
    }

    /// Outcome, source, role and VCS URL of module spans, once the stream is
    /// complete. A zip that started to arrive and never was put in place leaves its
    /// module aborted, open until the build ended.
    pub(super) fn finish_modules(&mut self) {
        let vcs_urls = self.vcs_urls();
        let build_end = self.end_ns();
        for &span in self.modules.values() {
            let s = &mut self.spans[span];
            let (start, end) = (s.start_ns, s.end_ns.unwrap_or(s.start_ns));
            let direct = self.vcs_activity.iter().any(|&t| t >= start && t <= end);
            s.attrs.insert("source".into(), if direct { "direct" } else { "proxy" }.into());
            s.role = if direct { Role::Vcs } else { Role::Proxy };
            if direct
                && let Some(module) = s.attrs.get("module").and_then(Value::as_str)
                && let Some(url) = modules::vcs_url_for(module, &vcs_urls)
            {
                s.attrs.insert("vcs_url".into(), url.into());
            }
            let files = s.attrs.get("files").and_then(Value::as_array);
            let fetched = files.is_some_and(|f| f.iter().any(|p| p == "mod" || p == "zip"));
            s.outcome = match (fetched, self.live) {
                (true, _) => Some(Outcome::Ok),
                // Still being fetched in a build that runs.
                (false, true) => None,
                (false, false) => Some(Outcome::Error),
            };
            match self.zip_phase.get(&span) {
                Some((started, Some(done))) => {
                    s.attrs.insert("zip_ms".into(), timeline::millis(done.saturating_sub(*started)).into());
                }
                Some((_, None)) => {
                    // Still arriving in a build that runs; otherwise it never did.
                    s.outcome = if self.live { None } else { Some(Outcome::Aborted) };
                    if self.live {
                        s.attrs.insert("unfinished".into(), true.into());
                    }
                    s.attrs.insert("incomplete_part".into(), "zip".into());
                    s.end_ns = Some(build_end.max(s.start_ns));
                }
                None => {}
            }
        }
    }

    /// The hosts of the modules this build is known to want: its go.mod's, those
    /// it wrote to the module cache, and module paths on the root's command line
    /// (`go get example.com/m@v1`). A direct fetch goes to these hosts first.
    pub fn module_hosts(&self) -> std::collections::HashSet<String> {
        let argv = self.command.iter().skip(1).filter(|a| !a.starts_with('-')).map(|a| a.split('@').next().unwrap_or(a));
        self.required
            .iter()
            .map(String::as_str)
            .chain(self.modules.keys().map(|(m, _)| m.as_str()))
            .chain(argv)
            .filter_map(|m| m.split('/').next())
            .filter(|host| host.contains('.'))
            .map(str::to_ascii_lowercase)
            .collect()
    }

    /// Repository URLs in the command lines of the build's VCS processes.
    pub fn vcs_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        for span in self.spans.iter().filter(|s| s.kind == SpanKind::Process) {
            let comm = span.attrs.get("comm").and_then(Value::as_str).unwrap_or_default();
            if !is_vcs_command(comm) {
                continue;
            }
            let argv = span.attrs.get("argv").and_then(Value::as_array);
            for arg in argv.into_iter().flatten().filter_map(Value::as_str) {
                if arg.contains("://") && !urls.iter().any(|u| u == arg) {
                    urls.push(arg.to_string());
                }
            }
        }
        urls
    }

    pub fn set_environment(&mut self, vars: BTreeMap<String, String>, _executable: String, truncated: bool) {
        self.config = goenv::effective(&vars, None, None);
        self.environment = vars;
        self.environment_truncated = truncated;
    }

    pub fn set_config_files(&mut self, goenv_file: Option<&goenv::ConfigFile>, goroot_go_env: Option<&goenv::ConfigFile>) {
        self.config = goenv::effective(&self.environment, goenv_file, goroot_go_env);
    }

    /// The errno a process got for a connect. With the socket known (`connect`
    /// is its connect span) it is that socket's; recordings made before the kernel
    /// named the socket fall back to the process's latest connect without an
    /// error, still open or ended just before.
    pub fn on_connect_error(&mut self, ts: u64, pid: u32, errno: i32, connect: Option<usize>) {
        const RECENT_NS: u64 = 1_000_000_000;
        let span = match connect {
            Some(span) => Some(span),
            None => self.spans.iter().rposition(|s| {
                s.kind == SpanKind::Connect
                    && s.pid == pid
                    && !s.attrs.contains_key("error")
                    && s.outcome != Some(Outcome::Ok)
                    && s.end_ns.is_none_or(|end| end + RECENT_NS >= ts)
            }),
        };
        let Some(s) = span.map(|i| &mut self.spans[i]) else { return };
        if s.outcome == Some(Outcome::Ok) {
            return;
        }
        s.attrs.insert("error".into(), errno_name(errno).into());
        let outcome = match errno {
            ECONNREFUSED => Outcome::Refused,
            EHOSTUNREACH | ENETUNREACH => Outcome::Unreachable,
            ETIMEDOUT if s.outcome == Some(Outcome::Dropped) => Outcome::Dropped,
            ETIMEDOUT => Outcome::Timeout,
            _ => Outcome::Error,
        };
        s.outcome = Some(outcome);
        if s.end_ns.is_none() {
            s.end_ns = Some(ts.max(s.start_ns));
        }
    }

    pub fn touch(&mut self, ts: u64) {
        self.last_ns = self.last_ns.max(ts);
    }

    /// True while the build runs at `ts` (or has not been seen to end).
    pub fn covers(&self, ts: u64) -> bool {
        ts >= self.start_ns && self.ended_ns.is_none_or(|end| ts <= end)
    }

    pub fn end_ns(&self) -> u64 {
        self.ended_ns.unwrap_or(self.last_ns).max(self.last_ns)
    }

    pub fn open_span(&mut self, kind: SpanKind, ts: u64, pid: u32, parent: Option<usize>) -> usize {
        self.spans.push(SpanState {
            kind,
            parent,
            start_ns: ts,
            end_ns: None,
            pid,
            role: Role::Other,
            host: None,
            addr: None,
            port: None,
            outcome: None,
            attrs: BTreeMap::new(),
            status: None,
            endpoints: Vec::new(),
            target_role: None,
            target_endpoints: Vec::new(),
        });
        self.spans.len() - 1
    }

    pub fn process_span(&mut self, ts: u64, pid: u32, parent: Option<usize>, comm: &str, argv: &[String]) -> usize {
        let span = self.open_span(SpanKind::Process, ts, pid, parent);
        let s = &mut self.spans[span];
        s.outcome = Some(Outcome::Ok);
        s.attrs.insert("comm".into(), comm.into());
        s.attrs.insert("argv".into(), argv.into());
        span
    }

    /// The name the build resolved `addr` from: the latest answer before `ts`
    /// (several names may share an address), else the first.
    pub fn name_at(&self, addr: IpAddr, ts: u64) -> Option<&str> {
        let names = self.names.get(&addr)?;
        names.iter().rev().find(|(at, _)| *at <= ts).or(names.first()).map(|(_, n)| n.as_str())
    }

    /// Remembers that the build learned `name` for `addr` at `ts`.
    pub fn learn_name(&mut self, addr: IpAddr, name: &str, ts: u64) {
        let names = self.names.entry(addr).or_default();
        if names.last().is_none_or(|(_, last)| last != name) {
            names.push((ts, name.to_string()));
        }
    }
}

/// One socket of a build, from its connect to its close.
#[derive(Clone)]
pub struct SocketState {
    pub build: usize,
    pid: u32,
    /// The process span of the socket's owner.
    parent: Option<usize>,
    protocol: Protocol,
    remote: SocketAddr,
    connect: Option<usize>,
    transfer: Option<usize>,
    tls: Option<usize>,
    /// Whether the client's first flight after the ServerHello has been seen.
    client_flight_seen: bool,
    http: Option<usize>,
    /// Open DNS queries by message id.
    dns: HashMap<u16, usize>,
    syn_retransmits: u32,
    retransmits: u32,
    pub resets: u32,
    pub drops: u32,
    pub drop_reason: Option<String>,
    closed_by: Option<&'static str>,
    /// This socket's entry in [`BuildState::peers`].
    peer: usize,
    /// Requests of the go command's HTTP client sent on this plaintext socket
    /// whose bytes have not been seen yet: the payload's request is theirs.
    requests: std::collections::VecDeque<usize>,
    /// The latest reading of the socket's counters while it is open.
    progress: Option<Counters>,
}

impl SocketState {
    pub fn open(
        b: &mut BuildState,
        build: usize,
        ts: u64,
        pid: u32,
        parent: Option<usize>,
        protocol: Protocol,
        remote: SocketAddr,
    ) -> SocketState {
        let mut socket = SocketState {
            build,
            pid,
            parent,
            protocol,
            remote,
            connect: None,
            transfer: None,
            tls: None,
            client_flight_seen: false,
            http: None,
            dns: HashMap::new(),
            syn_retransmits: 0,
            retransmits: 0,
            resets: 0,
            drops: 0,
            drop_reason: None,
            closed_by: None,
            peer: b.peers.len(),
            progress: None,
            requests: std::collections::VecDeque::new(),
        };
        b.peers.push(Peer {
            pid,
            remote,
            name: b.name_at(remote.ip(), ts).map(str::to_string),
            sni: None,
            tunnel: None,
            host_header: None,
            spans: Vec::new(),
        });
        if protocol == Protocol::Tcp {
            socket.connect = Some(socket.span(b, SpanKind::Connect, ts));
        }
        socket
    }

    /// Is the socket connected and not yet closed?
    pub fn transfer_open(&self) -> bool {
        self.transfer.is_some()
    }

    /// The span of this socket's TCP connect.
    pub fn connect_span(&self) -> Option<usize> {
        self.connect
    }

    /// A request of the go command's HTTP client goes out on this socket: it
    /// becomes the child of the socket's TLS handshake (or connect), and on a
    /// plaintext socket the request the payload shows next is the same one.
    pub fn carry_request(&mut self, b: &mut BuildState, request: usize, http_major: u8) {
        let tunneled = b.peers[self.peer].tunnel.is_some();
        let s = &mut b.spans[request];
        s.parent = self.tls.or(self.connect).or(s.parent);
        // Through an HTTP proxy's tunnel the address is the proxy's, not the
        // URL host's: the parent span shows it.
        if !tunneled {
            s.addr = Some(self.remote.ip());
        }
        if http_major == 2 {
            s.attrs.insert("proto".into(), "HTTP/2.0".into());
        }
        // (Twice for one request when the call was seen twice: see `on_request`.)
        if self.tls.is_none() && !self.requests.contains(&request) {
            self.requests.push_back(request);
        }
    }

    fn role(&self) -> Role {
        if self.remote.port() == 53 { Role::Dns } else { Role::Other }
    }

    fn span(&self, b: &mut BuildState, kind: SpanKind, ts: u64) -> usize {
        let parent = match kind {
            SpanKind::Connect | SpanKind::Dns => self.parent,
            _ => self.connect.or(self.parent),
        };
        let index = b.open_span(kind, ts, self.pid, parent);
        let peer = &mut b.peers[self.peer];
        peer.spans.push(index);
        let host = peer.sni.clone().or_else(|| peer.name.clone());
        let s = &mut b.spans[index];
        s.role = self.role();
        s.addr = Some(self.remote.ip());
        s.port = Some(self.remote.port());
        s.host = host;
        index
    }

    pub fn on_retransmit(&mut self, state: TcpState) {
        if state == TcpState::SynSent {
            self.syn_retransmits += 1;
        } else {
            self.retransmits += 1;
        }
    }

    /// Returns true when the socket is gone.
    #[expect(clippy::too_many_arguments, reason = "the fields of one TCP state event")]
    pub fn on_tcp_state(
        &mut self,
        b: &mut BuildState,
        ts: u64,
        old: TcpState,
        new: TcpState,
        local: SocketAddr,
        error: i32,
        counters: Option<Counters>,
    ) -> bool {
        match (old, new) {
            (TcpState::SynSent, TcpState::Established) => {
                if let Some(c) = self.connect {
                    let s = &mut b.spans[c];
                    s.end(ts, Some(Outcome::Ok));
                    s.attrs.insert("local".into(), local.to_string().into());
                    s.attrs.insert("syn_retransmits".into(), self.syn_retransmits.into());
                }
                self.transfer = Some(self.span(b, SpanKind::Transfer, ts));
            }
            (TcpState::SynSent, TcpState::Close) => {
                let outcome = self.connect_failure(error);
                if let Some(c) = self.connect {
                    let s = &mut b.spans[c];
                    s.end(ts, Some(outcome));
                    s.attrs.insert("syn_retransmits".into(), self.syn_retransmits.into());
                    if error != 0 {
                        s.attrs.insert("error".into(), errno_name(error).into());
                    }
                    if let Some(reason) = &self.drop_reason {
                        s.attrs.insert("drop_reason".into(), reason.clone().into());
                        s.attrs.insert("drops".into(), self.drops.into());
                    }
                }
                return true;
            }
            (TcpState::Established, TcpState::FinWait1) => self.closed_by = Some("client"),
            (TcpState::Established, TcpState::CloseWait) => self.closed_by = Some("server"),
            (_, TcpState::Close) => {
                self.close(b, ts, error, counters);
                return true;
            }
            _ => {}
        }
        false
    }

    /// Why a connect failed, from what the kernel showed on the way.
    fn connect_failure(&self, error: i32) -> Outcome {
        if error == ECONNREFUSED || self.resets > 0 {
            Outcome::Refused
        } else if error == EHOSTUNREACH || error == ENETUNREACH {
            Outcome::Unreachable
        } else if self.drops > 0 {
            Outcome::Dropped
        } else if error == ETIMEDOUT || self.syn_retransmits > 0 {
            Outcome::Timeout
        } else {
            Outcome::Aborted
        }
    }

    fn close(&mut self, b: &mut BuildState, ts: u64, error: i32, counters: Option<Counters>) {
        if let Some(t) = self.tls.take() {
            let s = &mut b.spans[t];
            if s.is_open() {
                let outcome = if ts.saturating_sub(s.start_ns) >= TLS_TIMEOUT_NS {
                    Outcome::Timeout
                } else {
                    Outcome::Aborted
                };
                s.end(ts, Some(outcome));
            }
        }
        if let Some(h) = self.http.take() {
            b.spans[h].end(ts, Some(Outcome::Aborted));
        }
        self.requests.clear();
        if let Some(t) = self.transfer.take() {
            let s = &mut b.spans[t];
            let outcome = if self.resets > 0 { Outcome::Reset } else { Outcome::Ok };
            s.end(ts, Some(outcome));
            if let Some(c) = counters {
                write_counters(s, ts, &c);
            }
            if let Some(by) = self.closed_by {
                s.attrs.insert("closed_by".into(), by.into());
            }
            if self.retransmits > 0 {
                s.attrs.insert("retransmits".into(), self.retransmits.into());
            }
            if error != 0 {
                s.attrs.insert("error".into(), errno_name(error).into());
            }
        }
    }

    pub fn on_payload(&mut self, b: &mut BuildState, ts: u64, direction: Direction, data: &[u8]) {
        match (self.protocol, direction) {
            (Protocol::Udp, _) if self.remote.port() == 53 => self.on_dns(b, ts, data, dns::parse(data)),
            (Protocol::Tcp, _) if self.remote.port() == 53 => self.on_dns(b, ts, data, dns::parse_tcp(data)),
            (Protocol::Tcp, Direction::Egress) => self.on_egress(b, ts, data),
            (Protocol::Tcp, Direction::Ingress) => self.on_ingress(b, ts, data),
            (Protocol::Udp, _) => {}
        }
    }

    fn on_dns(&mut self, b: &mut BuildState, ts: u64, data: &[u8], message: Result<dns::DnsMessage, crate::proto::ProtoError>) {
        let Ok(message) = message else {
            tracing::debug!("undecodable DNS payload of {} bytes", data.len());
            return;
        };
        if !message.response {
            let span = self.span(b, SpanKind::Dns, ts);
            let s = &mut b.spans[span];
            if let Some(q) = message.questions.first() {
                s.host = Some(q.name.clone());
                s.attrs.insert("qtype".into(), q.qtype.clone().into());
            }
            s.attrs.insert("id".into(), message.id.into());
            if let Some(size) = message.edns_udp_size {
                s.attrs.insert("edns_udp_size".into(), size.into());
            }
            // A retry with the same id on the same socket supersedes the first try.
            if let Some(previous) = self.dns.insert(message.id, span) {
                b.spans[previous].end(ts, Some(Outcome::Timeout));
            }
            return;
        }
        let Some(span) = self.dns.remove(&message.id) else { return };
        let outcome = match message.rcode.as_str() {
            "NOERROR" => Outcome::Ok,
            "NXDOMAIN" => Outcome::Nxdomain,
            "SERVFAIL" => Outcome::Servfail,
            _ => Outcome::Error,
        };
        if let Some(name) = b.spans[span].host.clone() {
            for address in &message.addresses {
                b.learn_name(*address, &name, ts);
            }
        }
        let s = &mut b.spans[span];
        s.end(ts, Some(outcome));
        s.attrs.insert("rcode".into(), message.rcode.into());
        let answers: Vec<String> = message.addresses.iter().map(IpAddr::to_string).collect();
        s.attrs.insert("answers".into(), answers.into());
        if !message.aliases.is_empty() {
            s.attrs.insert("aliases".into(), message.aliases.into());
        }
        if message.truncated {
            s.attrs.insert("truncated".into(), true.into());
        }
    }

    fn on_egress(&mut self, b: &mut BuildState, ts: u64, data: &[u8]) {
        if tls::looks_like_tls(data) {
            if let Some(t) = self.tls {
                let s = &mut b.spans[t];
                if let Ok(tls::TlsRecord::Alert(alert)) = tls::parse_first_record(data) {
                    // A plaintext alert from the client ends the handshake.
                    s.attrs.insert("alert".into(), alert.description.into());
                    s.attrs.insert("alert_from".into(), "client".into());
                    s.end(ts, Some(Outcome::Alert));
                } else if s.outcome == Some(Outcome::Ok) && !self.client_flight_seen {
                    // The client's answer to the server's flight (TLS 1.3 encrypts
                    // it): its Finished, or an alert when it gave up.
                    self.client_flight_seen = true;
                    if tls::is_encrypted_alert(data) {
                        s.outcome = Some(Outcome::Alert);
                        s.attrs.insert("alert".into(), "encrypted".into());
                        s.attrs.insert("alert_from".into(), "client".into());
                        s.end_ns = Some(ts.max(s.start_ns));
                    }
                }
                return;
            }
            let span = self.span(b, SpanKind::Tls, ts);
            match tls::parse_first_record(data) {
                Ok(tls::TlsRecord::ClientHello(hello)) => {
                    if let Some(sni) = &hello.sni {
                        // Inside an HTTP proxy's tunnel the name is the target's,
                        // not the proxy's.
                        let peer = &mut b.peers[self.peer];
                        peer.sni = Some(sni.clone());
                        if peer.tunnel.is_none() {
                            b.learn_name(self.remote.ip(), sni, ts);
                            for s in [self.connect, self.transfer].into_iter().flatten() {
                                b.spans[s].host.get_or_insert_with(|| sni.clone());
                            }
                        }
                    }
                    let s = &mut b.spans[span];
                    if let Some(sni) = hello.sni {
                        s.attrs.insert("sni".into(), sni.clone().into());
                        s.host = Some(sni);
                    }
                    s.attrs.insert("alpn_offered".into(), hello.alpn.into());
                    s.attrs.insert("versions_offered".into(), hello.versions.into());
                }
                Ok(_) => {}
                Err(e) => {
                    b.spans[span].attrs.insert("parse_error".into(), e.to_string().into());
                }
            }
            self.tls = Some(span);
            return;
        }
        if self.http.is_some_and(|h| b.spans[h].is_open()) {
            return;
        }
        if let Ok(request) = http::parse_request(data) {
            // A request the go command's client announced (uprobes) is this one.
            let announced = self.requests.pop_front();
            let span = announced.unwrap_or_else(|| self.span(b, SpanKind::Http, ts));
            let peer = &mut b.peers[self.peer];
            if request.method == "CONNECT" {
                peer.tunnel = Some(request.target.clone());
            } else if let Some(rest) = request.target.strip_prefix("http://") {
                // Absolute form: a request for another host through an HTTP proxy
                // (HTTP_PROXY with an http:// GOPROXY): that host is the target.
                let authority = rest.split('/').next().unwrap_or(rest);
                let target = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']') {
                    authority.to_string()
                } else {
                    format!("{authority}:80")
                };
                peer.tunnel.get_or_insert(target);
            } else if let Some(host) = &request.host {
                peer.host_header.get_or_insert_with(|| host.clone());
            }
            let s = &mut b.spans[span];
            self.http = Some(span);
            if announced.is_some() {
                // The client's own view (its URL) already names host and target.
                return;
            }
            // A CONNECT names its target; the span stays the proxy's.
            if let Some(host) = request.host.as_ref().filter(|_| request.method != "CONNECT") {
                s.host = Some(goenv::url_host(host).map_or_else(|| host.clone(), |(h, _)| h));
            }
            s.attrs.insert("method".into(), request.method.into());
            s.attrs.insert("target".into(), request.target.into());
        }
    }

    fn on_ingress(&mut self, b: &mut BuildState, ts: u64, data: &[u8]) {
        if let Some(t) = self.tls.filter(|&t| b.spans[t].is_open()) {
            match tls::parse_first_record(data) {
                Ok(tls::TlsRecord::ServerHello(hello)) => {
                    let s = &mut b.spans[t];
                    s.attrs.insert("version".into(), hello.version.into());
                    if let Some(alpn) = hello.alpn {
                        s.attrs.insert("alpn".into(), alpn.into());
                    }
                    s.end(ts, Some(Outcome::Ok));
                }
                Ok(tls::TlsRecord::Alert(alert)) => {
                    let s = &mut b.spans[t];
                    s.attrs.insert("alert".into(), alert.description.into());
                    s.attrs.insert("alert_from".into(), "server".into());
                    s.end(ts, Some(Outcome::Alert));
                }
                Ok(_) => {}
                Err(e) => {
                    b.spans[t].attrs.insert("parse_error".into(), json!(e.to_string()));
                }
            }
            return;
        }
        if let Some(h) = self.http.filter(|&h| b.spans[h].is_open())
            && let Ok(response) = http::parse_response(data)
        {
            let s = &mut b.spans[h];
            s.status = Some(response.status);
            s.attrs.insert("status".into(), response.status.into());
            let outcome = if response.status < 400 { Outcome::Ok } else { Outcome::Error };
            s.end(ts, Some(outcome));
        }
    }

    /// A reading of the socket's counters from the kernel while it is open.
    pub fn on_progress(&mut self, counters: Counters) {
        self.progress = Some(counters);
    }

    /// The socket as it stands at `now`, for a build still running.
    pub fn snapshot(&self, b: &mut BuildState, now: u64) {
        self.clone().finish(b, now);
    }

    /// Ends what this socket still has open when the stream ends at `end`: an
    /// open transfer gets the latest counters read from the kernel, its silence
    /// counted to `end` (a hang that nothing ended).
    pub fn finish(self, b: &mut BuildState, end: u64) {
        if let (Some(t), Some(counters)) = (self.transfer, self.progress) {
            write_counters(&mut b.spans[t], end, &counters);
        }
        for (_, span) in self.dns {
            let s = &mut b.spans[span];
            let deadline = s.start_ns + DNS_TIMEOUT_NS;
            // Unanswered for Go's whole timeout, or only cut short by the end of
            // the build (a lookup the build no longer waited for): not a timeout.
            let outcome = if end >= deadline { Outcome::Timeout } else { Outcome::Aborted };
            s.end(deadline.min(end), Some(outcome));
            s.attrs.insert("answered".into(), false.into());
        }
    }
}

/// A transfer's counters as attributes; the idle time runs to `ts` (its close, or
/// now for one still open).
fn write_counters(s: &mut SpanState, ts: u64, c: &Counters) {
    if let (Some(first), Some(last)) = (c.first_received_ns, c.last_received_ns) {
        s.attrs.insert("receiving_ms".into(), timeline::millis(last.saturating_sub(first)).into());
        s.attrs.insert("idle_at_close_ms".into(), timeline::millis(ts.saturating_sub(last)).into());
    }
    if let Some(sent) = c.last_sent_ns {
        s.attrs.insert("sent_idle_at_close_ms".into(), timeline::millis(ts.saturating_sub(sent)).into());
    }
    if let Some(silence) = c.longest_silence {
        s.attrs.insert("longest_silence_ms".into(), timeline::millis(silence.ns).into());
        s.attrs.insert(
            "longest_silence_after_ms".into(),
            timeline::millis(silence.end_ns.saturating_sub(silence.ns).saturating_sub(s.start_ns)).into(),
        );
    }
    s.attrs.insert("bytes_sent".into(), c.bytes_sent.into());
    s.attrs.insert("bytes_received".into(), c.bytes_received.into());
    s.attrs.insert("segments_sent".into(), c.segments_sent.into());
    s.attrs.insert("segments_received".into(), c.segments_received.into());
}

/// Is this `comm` one of the programs cmd/go runs for a direct fetch?
pub(super) fn is_vcs_command(comm: &str) -> bool {
    VCS_COMMANDS.contains(&comm) || comm.starts_with("git-remote-")
}

fn errno_name(errno: i32) -> String {
    match errno {
        ECONNREFUSED => "ECONNREFUSED".into(),
        ETIMEDOUT => "ETIMEDOUT".into(),
        EHOSTUNREACH => "EHOSTUNREACH".into(),
        ENETUNREACH => "ENETUNREACH".into(),
        104 => "ECONNRESET".into(),
        32 => "EPIPE".into(),
        other => format!("errno {other}"),
    }
}
