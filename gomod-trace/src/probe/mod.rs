//! The only module that touches the kernel: reads what the host offers, loads the
//! embedded programs, configures and attaches them, and hands out the ring buffer.
//! Dropping a [`Probe`] detaches everything.
pub mod host;
pub mod requests;

use std::{
    collections::BTreeMap,
    fs::File,
    os::fd::AsFd as _,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, ProgramError, TracePoint,
    },
};
use crate::timeline::ConfigValue;
use gomod_trace_ebpf::{ModuleCache, PATH_CAPTURE, ProbeConfig, ProcessEntry, TASK_COMM_LEN, process_state};

pub use host::HostError;

/// How often readers drain the ring buffer. The programs wake a reader only when
/// a megabyte of records waits (gomod-trace-ebpf's `WAKE_READER_ABOVE`), or for an
/// exec (what /proc says of the process must be read while it lives): a busy
/// build would otherwise cost a wakeup and two context switches per record.
pub const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gomod-trace-probes"));

/// The tracepoints the programs attach to: (program, group, tracepoint).
pub const TRACEPOINTS: [(&str, &str, &str); 15] = [
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("tcp_retransmit_skb", "tcp", "tcp_retransmit_skb"),
    ("tcp_receive_reset", "tcp", "tcp_receive_reset"),
    ("kfree_skb", "skb", "kfree_skb"),
    ("sys_enter_openat", "syscalls", "sys_enter_openat"),
    ("sys_enter_renameat", "syscalls", "sys_enter_renameat"),
    ("sys_enter_renameat2", "syscalls", "sys_enter_renameat2"),
    ("sys_enter_unlinkat", "syscalls", "sys_enter_unlinkat"),
    ("sys_enter_connect", "syscalls", "sys_enter_connect"),
    ("sys_exit_connect", "syscalls", "sys_exit_connect"),
    ("sys_enter_getsockopt", "syscalls", "sys_enter_getsockopt"),
    ("sys_exit_getsockopt", "syscalls", "sys_exit_getsockopt"),
];
pub const SOCK_ADDR_PROGRAMS: [&str; 4] = ["connect4", "connect6", "sendmsg4", "sendmsg6"];
pub const SKB_PROGRAMS: [(&str, CgroupSkbAttachType); 2] =
    [("skb_egress", CgroupSkbAttachType::Egress), ("skb_ingress", CgroupSkbAttachType::Ingress)];

/// Cgroup programs attach as bpf_links (kernel 5.7+), which always coexist with
/// other programs on the cgroup; the kernel refuses the ALLOW_MULTI flag on links.
const CGROUP_MODE: CgroupAttachMode = CgroupAttachMode::Single;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "gomod-trace must run as root (it loads eBPF programs: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo"
    )]
    NotRoot,
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("the Go command name {0:?} is longer than a process name ({TASK_COMM_LEN} bytes with the NUL)")]
    GoCommandName(String),
    #[error("cannot load the eBPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("cannot open cgroup v2 root {path}: {source}")]
    Cgroup { path: PathBuf, source: std::io::Error },
    #[error("cannot load or attach eBPF program {program}: {detail}")]
    Program { program: String, detail: String },
    #[error("eBPF map {0} is missing or of the wrong type: the embedded object does not match this binary")]
    Map(&'static str),
    #[error("cannot write eBPF map {map}: {source}")]
    MapWrite { map: &'static str, source: aya::maps::MapError },
    #[error("cannot map the ring buffer's positions: {0}")]
    RingPositions(String),
}

impl ProbeError {
    /// Whether the error says this host cannot run the probes (privileges, the
    /// kernel, its BTF, tracefs, cgroup v2, the verifier, the Go command name):
    /// trying again will not help. The others are faults of the binary.
    pub fn host_cannot_run(&self) -> bool {
        match self {
            ProbeError::NotRoot
            | ProbeError::Host(_)
            | ProbeError::GoCommandName(_)
            | ProbeError::Load(_)
            | ProbeError::Cgroup { .. }
            | ProbeError::Program { .. } => true,
            ProbeError::Map(_) | ProbeError::MapWrite { .. } | ProbeError::RingPositions(_) => false,
        }
    }
}

pub struct ProbeOptions {
    /// Process name of the Go command (`go`): an exec of it starts a build.
    pub go_command: String,
    /// Only builds started by this process or its descendants (`run`), or every
    /// build on the host (`None`, the daemon).
    pub scope: Option<u32>,
}

pub struct Probe {
    ebpf: Ebpf,
    /// Process name of the Go command.
    go_command: String,
    /// The request uprobes, per Go executable.
    requests: requests::Requests,
    /// Kept alive: dropping it closes the log map (see environment.md).
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub drop_reasons: BTreeMap<u32, String>,
    /// The environments of builds whose configuration files are still being read
    /// (they arrive in a later drain), by build.
    environments: std::collections::HashMap<u32, BTreeMap<String, String>>,
}

/// Builds whose environment is kept for their configuration files at most: a
/// root whose exit was lost must not keep its entry forever.
const ENVIRONMENTS_KEPT: usize = 4096;

/// The program called `name`, of type `T`, loaded into the kernel (verified).
fn loaded<'a, T>(ebpf: &'a mut Ebpf, name: &'a str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    T: LoadProgram + 'a,
{
    let program: &mut T = ebpf
        .program_mut(name)
        .ok_or_else(|| ProbeError::Program { program: name.to_string(), detail: "not in the embedded object".into() })?
        .try_into()
        .map_err(program_error(name))?;
    program.load_program().map_err(program_error(name))?;
    Ok(program)
}

/// The `load` every program type has, under one name.
trait LoadProgram {
    fn load_program(&mut self) -> Result<(), ProgramError>;
}

macro_rules! load_program {
    ($($t:ty),*) => {$(
        impl LoadProgram for $t {
            fn load_program(&mut self) -> Result<(), ProgramError> {
                self.load()
            }
        }
    )*};
}
load_program!(TracePoint, CgroupSockAddr, CgroupSkb);

/// An attach error in one readable line: the verifier's log is cut to its verdict.
fn program_error(program: &str) -> impl FnOnce(ProgramError) -> ProbeError + '_ {
    move |source| {
        let mut text = source.to_string();
        let mut cause = std::error::Error::source(&source);
        while let Some(inner) = cause {
            text.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        let detail = match text.split_once("Verifier output:") {
            Some((head, log)) => {
                tracing::debug!("verifier log of {program}: {log}");
                let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
                // The verdict is the last lines before the statistics.
                let end = lines.iter().position(|l| l.starts_with("verification time")).unwrap_or(lines.len());
                let verdict = lines[end.saturating_sub(2)..end].join(" | ");
                format!("{}; verifier: {verdict}", head.trim().trim_end_matches('.'))
            }
            None => text,
        };
        ProbeError::Program { program: program.to_string(), detail }
    }
}

/// Now on the clock of the kernel's event times (`bpf_ktime_get_ns`: CLOCK_MONOTONIC).
pub fn monotonic_ns() -> u64 {
    nix::time::ClockId::CLOCK_MONOTONIC.now().map_or(0, |t| (t.tv_sec() * 1_000_000_000 + t.tv_nsec()) as u64)
}

/// Turns on the kernel's BPF run-time statistics for as long as the returned
/// descriptor is open (BPF_ENABLE_STATS; it costs two clock reads per program run).
pub fn enable_bpf_stats() -> Result<std::os::fd::OwnedFd, String> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| format!("cannot enable BPF statistics: {e}"))
}

impl Probe {
    /// Loads, configures and attaches every program. Fails before attaching
    /// anything when the host lacks what the programs need.
    pub fn attach(options: &ProbeOptions) -> Result<Probe, ProbeError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(ProbeError::NotRoot);
        }
        let mut go_comm = [0u8; TASK_COMM_LEN];
        let name = options.go_command.as_bytes();
        if name.is_empty() || name.len() >= TASK_COMM_LEN {
            return Err(ProbeError::GoCommandName(options.go_command.clone()));
        }
        go_comm[..name.len()].copy_from_slice(name);

        let tracefs = host::tracefs()?;
        let tracepoints = host::tracepoint_facts(&tracefs)?;
        let kernel = host::kernel_offsets()?;
        let cgroup_path = host::cgroup2_root()?;
        let cgroup = File::open(&cgroup_path)
            .map_err(|source| ProbeError::Cgroup { path: cgroup_path.clone(), source })?;

        let mut ebpf = EbpfLoader::new().load(PROBES)?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                tracing::debug!("eBPF logging unavailable: {e}");
                None
            }
        };

        let config = ProbeConfig {
            go_comm,
            scoped: u32::from(options.scope.is_some()),
            ready: 1,
            kernel,
            tracepoints: tracepoints.offsets,
            kfree_has_rx_sk: u32::from(tracepoints.kfree_has_rx_sk),
            _pad: 0,
        };
        let mut config_map: Array<_, ProbeConfig> =
            Array::try_from(ebpf.map_mut("CONFIG").ok_or(ProbeError::Map("CONFIG"))?)
                .map_err(|_| ProbeError::Map("CONFIG"))?;
        config_map
            .set(0, config, 0)
            .map_err(|source| ProbeError::MapWrite { map: "CONFIG", source })?;
        if let Some(pid) = options.scope {
            let mut processes: HashMap<_, u32, ProcessEntry> =
                HashMap::try_from(ebpf.map_mut("PROCESSES").ok_or(ProbeError::Map("PROCESSES"))?)
                    .map_err(|_| ProbeError::Map("PROCESSES"))?;
            let entry = ProcessEntry { state: process_state::SCOPE, build: 0 };
            processes
                .insert(pid, entry, 0)
                .map_err(|source| ProbeError::MapWrite { map: "PROCESSES", source })?;
        }

        for (program, group, name) in TRACEPOINTS {
            let p: &mut TracePoint = loaded(&mut ebpf, program)?;
            p.attach(group, name).map_err(program_error(program))?;
        }
        for program in SOCK_ADDR_PROGRAMS {
            let p: &mut CgroupSockAddr = loaded(&mut ebpf, program)?;
            p.attach(&cgroup, CGROUP_MODE).map_err(program_error(program))?;
        }
        for (program, attach_type) in SKB_PROGRAMS {
            let p: &mut CgroupSkb = loaded(&mut ebpf, program)?;
            p.attach(&cgroup, attach_type, CGROUP_MODE).map_err(program_error(program))?;
        }
        let requests = requests::Requests::load(&mut ebpf);
        Ok(Probe {
            ebpf,
            go_command: options.go_command.clone(),
            requests,
            logger,
            drop_reasons: tracepoints.drop_reasons,
            environments: Default::default(),
        })
    }

    /// Detaches everything without making this process wait for it. The kernel
    /// removes a uprobe only after a grace period, one at a time (about 85 ms
    /// each here): a `run` that probed four toolchains (65 probes) spent 5–9 s
    /// exiting. A forked child takes the last references and drops them as it
    /// exits, without this process's standard streams (a pipe reader sees the
    /// end when `run` ends); this process's own closes are then immediate.
    pub fn release_in_background(self) {
        // SAFETY: the child only closes descriptors and calls _exit, which are
        // async-signal-safe, as required after fork in a threaded process.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => unsafe {
                for fd in 0..3 {
                    nix::libc::close(fd);
                }
                nix::libc::_exit(0);
            },
            Ok(nix::unistd::ForkResult::Parent { .. }) => {}
            Err(e) => tracing::debug!("cannot fork to release the probes: {e}; releasing them here"),
        }
        drop(self);
    }

    /// Probes the HTTP requests of the Go executable at `path` (once per file).
    pub fn trace_requests(&mut self, path: &std::path::Path) -> requests::Outcome {
        self.requests.trace(&mut self.ebpf, path)
    }

    /// Tells the programs what they need to know from `events[from..]`, the events
    /// just decoded: probes the executables of the execs (appending what became of
    /// Go commands as `GoExecutable` events), and hands each build's module cache
    /// to the programs, which then summarise module extractions.
    pub fn watch(&mut self, events: &mut Vec<crate::event::Event>, from: usize) {
        self.watch_module_caches(&events[from..]);
        self.requests.watch(&mut self.ebpf, &self.go_command, events, from);
    }

    /// Writes the GOMODCACHE of each build into `MODULE_CACHES` (as cmd/go names its
    /// files: cleaned), and removes it when the build's root exits. The cache is
    /// handed over at once from the build's environment (GOMODCACHE, or the GOPATH
    /// and HOME defaults), since the build's files are read off the event path and
    /// arrive later; it is handed over again with them (it changes only if they
    /// set GOMODCACHE). A cache the programs cannot compare (too long) is left
    /// out: its extractions are then recorded file by file.
    fn watch_module_caches(&mut self, events: &[crate::event::Event]) {
        use crate::event::Event;
        let Some(map) = self.ebpf.map_mut("MODULE_CACHES") else { return };
        let Ok(mut caches) = HashMap::<_, u32, ModuleCache>::try_from(map) else { return };
        let hand_over = |caches: &mut HashMap<_, u32, ModuleCache>, build: u32, config: &BTreeMap<String, ConfigValue>| {
            let Some(entry) = module_cache_entry(config) else { return };
            if let Err(e) = caches.insert(build, entry, 0) {
                tracing::debug!("module cache of build {build} not handed to the programs: {e}");
            }
        };
        for event in events {
            match event {
                Event::Environment { build, vars, .. } => {
                    hand_over(&mut caches, *build, &crate::goenv::effective(vars, None, None));
                    if self.environments.len() >= ENVIRONMENTS_KEPT {
                        self.environments.clear();
                    }
                    self.environments.insert(*build, vars.clone());
                }
                Event::ConfigFiles { build, goenv_file, goroot_go_env, .. } => {
                    let Some(vars) = self.environments.remove(build) else { continue };
                    let config = crate::goenv::effective(&vars, goenv_file.as_ref(), goroot_go_env.as_ref());
                    hand_over(&mut caches, *build, &config);
                }
                Event::Exit { pid, build, .. } if pid == build => {
                    self.environments.remove(build);
                    let _ = caches.remove(build);
                }
                _ => {}
            }
        }
    }

    /// The probed executables, for naming the errors requests end with.
    pub fn go_executables(&self) -> crate::goerrors::Executables {
        self.requests.executables.clone()
    }

    /// Forwards what the programs logged to this process's logger.
    pub fn flush_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    /// The ring buffer of records; can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(ProbeError::Map("EVENTS"))?;
        RingBuf::try_from(map).map_err(|_| ProbeError::Map("EVENTS"))
    }

    /// Run count and run time of each program, from the kernel's BPF statistics
    /// (they only grow while statistics are enabled: see [`enable_bpf_stats`]).
    pub fn program_stats(&self) -> Vec<(String, u64, std::time::Duration)> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some((name.to_string(), info.run_count(), info.run_time()))
            })
            .collect()
    }

    /// The counters of these tracked sockets as they are now (one map lookup
    /// each; a socket that closed meanwhile is left out).
    pub fn socket_counters(&self, cookies: &[u64]) -> Result<Vec<(u64, gomod_trace_ebpf::SocketEntry)>, ProbeError> {
        let map = self.ebpf.map("SOCKETS").ok_or(ProbeError::Map("SOCKETS"))?;
        let sockets = aya::maps::HashMap::<_, u64, gomod_trace_ebpf::SocketEntry>::try_from(map)
            .map_err(|_| ProbeError::Map("SOCKETS"))?;
        Ok(cookies.iter().filter_map(|&c| Some((c, sockets.get(&c, 0).ok()?))).collect())
    }

    /// Records the kernel could not reserve space for, summed over CPUs.
    pub fn lost(&self) -> Result<u64, ProbeError> {
        let map = self.ebpf.map("LOST").ok_or(ProbeError::Map("LOST"))?;
        let lost: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(|_| ProbeError::Map("LOST"))?;
        let values = lost.get(&0u32, 0).map_err(|source| ProbeError::MapWrite { map: "LOST", source })?;
        Ok(values.iter().sum())
    }
}

/// How full the kernel ring buffer is: its consumer and producer positions, read
/// from the map's first two pages (the kernel lets any process map them for
/// reading). aya's [`RingBuf`] keeps its own mapping private.
pub struct RingFill {
    /// The consumer page, then the producer page; each starts with its position.
    pages: memmap2::Mmap,
    page_size: usize,
    capacity: u64,
}

impl RingFill {
    pub fn new(ring: &RingBuf<MapData>) -> Result<RingFill, ProbeError> {
        let error = |e: &dyn std::fmt::Display| ProbeError::RingPositions(e.to_string());
        let fd = ring.as_fd();
        let owned = fd.try_clone_to_owned().map_err(|e| error(&e))?;
        let capacity = u64::from(MapData::from_fd(owned).and_then(|m| m.info()).map_err(|e| error(&e))?.max_entries());
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| error(&"the page size is unknown"))?;
        // SAFETY: a read-only shared mapping of the map's metadata pages; the
        // kernel owns their contents and we only load the two positions atomically.
        let pages = unsafe { memmap2::MmapOptions::new().len(2 * page_size).map(&fd) }.map_err(|e| error(&e))?;
        Ok(RingFill { pages, page_size, capacity })
    }

    fn position(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is 0 or one page into a mapping of two pages, so the
        // address is in bounds and 8-byte aligned; the kernel writes it atomically.
        let position = unsafe { &*(self.pages.as_ptr().add(offset) as *const AtomicU64) };
        position.load(Ordering::Acquire)
    }

    /// Bytes written by the programs and not yet read, as a share of the ring (0 to 1).
    pub fn ratio(&self) -> f64 {
        let unread = self.position(self.page_size).saturating_sub(self.position(0));
        (unread as f64 / self.capacity.max(1) as f64).min(1.0)
    }
}

/// The `MODULE_CACHES` entry of a build's configuration: its GOMODCACHE as cmd/go
/// names its files (cleaned, with a trailing `/`), or `None` when there is none or
/// it is too long for the programs to compare.
fn module_cache_entry(config: &BTreeMap<String, ConfigValue>) -> Option<ModuleCache> {
    let prefix = format!("{}/", crate::goenv::module_cache(config)?);
    let mut entry = ModuleCache { len: prefix.len() as u32, _pad: 0, path: [0; PATH_CAPTURE] };
    entry.path.get_mut(..prefix.len())?.copy_from_slice(prefix.as_bytes());
    Some(entry)
}
