//! The request uprobes on the Go command's executables (see the kernel's
//! `requests.rs`): attached once per executable file (device + inode), to every
//! process that runs it; a process that is not part of a build pays the traps and
//! one map lookup per probe. Executables are found where builds run them: each
//! exec of the Go command in a build is examined through /proc/PID/exe (so a
//! toolchain that GOTOOLCHAIN downloaded, or a `go` inside a container, is probed
//! like /usr/bin/go); `run` and the daemon also probe the known toolchains before
//! any build starts, so that the first requests of a build are not missed while
//! its executable is examined.
use std::{
    collections::HashMap,
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
    sync::Arc,
};

use aya::{
    Ebpf,
    maps::Array,
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use gomod_trace_ebpf::{GO_BINARIES_MAX, GoOffsets};

use crate::{
    event::Event,
    gobin::{self, NotTraceable},
    goerrors::Executables,
};

/// Program at `(*Transport).roundTrip`'s entry, at its RETs, and at the entries of
/// the HTTP/1 and HTTP/2 connections' round trips.
const ROUND_TRIP: &str = "go_round_trip";
const ROUND_TRIP_RETURN: &str = "go_round_trip_return";
const H1_CONNECTION: &str = "go_h1_connection";
const H2_CONNECTION: &str = "go_h2_connection";
const PROGRAMS: [&str; 4] = [ROUND_TRIP, ROUND_TRIP_RETURN, H1_CONNECTION, H2_CONNECTION];

/// What became of an executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Probed since `since_ns` (CLOCK_MONOTONIC, the kernel's event clock).
    Traced { go_version: String, since_ns: u64 },
    NotTraced { go_version: Option<String>, reason: String },
    /// Not a Go program, one without an HTTP client, or a process that exited
    /// before it could be examined: nothing to say.
    Irrelevant,
}

/// Which executables are probed; owned by the [`super::Probe`].
pub struct Requests {
    /// Why no executable can be probed (the programs did not load), if so.
    unavailable: Option<String>,
    examined: HashMap<(u64, u64), Outcome>,
    pub executables: Executables,
}

impl Requests {
    /// Loads (verifies) the programs; attaches nothing yet. A failure disables
    /// request tracing with a reason instead of failing the whole probe.
    pub fn load(ebpf: &mut Ebpf) -> Requests {
        let unavailable = PROGRAMS.iter().find_map(|name| {
            let program: Result<&mut UProbe, ProgramError> = ebpf
                .program_mut(name)
                .ok_or_else(|| ProgramError::InvalidName { name: name.to_string() })
                .and_then(|p| p.try_into());
            match program.and_then(|p| p.load()) {
                Ok(()) => None,
                Err(e) => {
                    let reason = super::program_error(name)(e).to_string();
                    tracing::warn!("HTTP requests will not be traced: {reason}");
                    Some(format!("uprobes unavailable: {reason}"))
                }
            }
        });
        Requests { unavailable, examined: HashMap::new(), executables: Executables::default() }
    }

    /// Probes the executable at `path` (once per file); what became of it.
    pub fn trace(&mut self, ebpf: &mut Ebpf, path: &Path) -> Outcome {
        // Opened once: everything below reads and attaches through this
        // descriptor, so a process that exits meanwhile (its /proc/PID/exe gone)
        // cannot make a good file look bad.
        let file = match File::open(path) {
            Ok(file) => file,
            // The process already exited (within the milliseconds since its
            // exec): which file it ran is unknown now, and there is nothing left
            // to probe. Its requests were traced if that file was probed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Irrelevant,
            Err(e) => return Outcome::NotTraced { go_version: None, reason: format!("cannot open the executable: {e}") },
        };
        let identity = match file.metadata() {
            Ok(meta) => (meta.dev(), meta.ino()),
            Err(e) => return Outcome::NotTraced { go_version: None, reason: format!("cannot read the executable: {e}") },
        };
        if let Some(outcome) = self.examined.get(&identity) {
            return outcome.clone();
        }
        let (outcome, lasting) = self.examine(ebpf, &file);
        if let Outcome::NotTraced { reason, .. } = &outcome {
            tracing::info!("requests of {} not traced: {reason}", path.display());
        }
        // What the file is decides for good; a failure of this host (a map
        // write, an attach) is tried again at the next exec.
        if lasting {
            self.examined.insert(identity, outcome.clone());
        }
        outcome
    }

    /// What became of the file, and whether that holds for good.
    fn examine(&mut self, ebpf: &mut Ebpf, file: &File) -> (Outcome, bool) {
        // SAFETY: see `unsafe_map`.
        let image = match unsafe_map(file) {
            Ok(image) => Arc::new(image),
            Err(e) => return (Outcome::NotTraced { go_version: None, reason: format!("cannot map the executable: {e}") }, false),
        };
        let inspection = match gobin::inspect(&image) {
            Ok(inspection) => inspection,
            Err(NotTraceable::NotElf | NotTraceable::NotGo | NotTraceable::NoHttpClient) => return (Outcome::Irrelevant, true),
            Err(e) => return (Outcome::NotTraced { go_version: None, reason: e.to_string() }, true),
        };
        let go_version = inspection.go_version.clone();
        let not_traced = |reason: String| Outcome::NotTraced { go_version: Some(go_version.clone()), reason };
        if let Some(reason) = &self.unavailable {
            return (not_traced(reason.clone()), true);
        }
        if self.executables.len() >= GO_BINARIES_MAX as usize {
            return (not_traced(format!("more than {GO_BINARIES_MAX} Go executables probed")), true);
        }
        let index = self.executables.len() as u32;
        if let Err(e) = set_offsets(ebpf, index, inspection.offsets) {
            return (not_traced(e), false);
        }
        // The returns first and the request's entry last: the process runs
        // while its probes are attached one by one, and a request seen starting
        // must be seen returning (entry first, a request that started and
        // returned between the two attaches was shown aborted, without status).
        // A return seen without its start is ignored.
        let mut points: Vec<(&str, u64)> = inspection.round_trip.returns.iter().map(|&ret| (ROUND_TRIP_RETURN, ret)).collect();
        points.extend([
            (H1_CONNECTION, inspection.persist_conn_round_trip.probe),
            (H2_CONNECTION, inspection.h2_round_trip.probe),
            (ROUND_TRIP, inspection.round_trip.probe),
        ]);
        // The kernel resolves this path to the file the descriptor holds.
        let target = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut links = Vec::new();
        for (program, offset) in points {
            match attach(ebpf, program, offset, u64::from(index), Path::new(&target)) {
                Ok(link) => links.push((program, link)),
                Err(e) => {
                    // All or nothing: the slot is not taken, so a later file
                    // may reuse it without these probes reading for it.
                    for (program, link) in links {
                        detach(ebpf, program, link);
                    }
                    return (not_traced(e), false);
                }
            }
        }
        // The image stays mapped: error types are named from it later, from a
        // few pages. Those the examination read are given back (a clean file
        // mapping: they are read again from the file when needed).
        // SAFETY: a read-only file mapping loses nothing to MADV_DONTNEED.
        if let Err(e) = unsafe { image.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) } {
            tracing::debug!("cannot release the pages of an examined executable: {e}");
        }
        self.executables.add(image);
        (Outcome::Traced { go_version, since_ns: super::monotonic_ns() }, true)
    }

    /// The `GoExecutable` events for the execs of the Go command among
    /// `events[from..]`: each exec'd file is examined (and probed) on the way.
    pub fn watch(&mut self, ebpf: &mut Ebpf, go_command: &str, events: &mut Vec<Event>, from: usize) {
        // Only the Go command: the programs a build runs (tests, `go run`,
        // generators) are its own business, and each would hold a probe slot.
        let execs: Vec<(u64, u32, u32)> = events[from..]
            .iter()
            .filter_map(|event| match event {
                Event::Exec { at, pid, build, comm, .. } if comm == go_command => Some((at.ts_ns, *pid, *build)),
                _ => None,
            })
            .collect();
        for (ts_ns, pid, build) in execs {
            let exe = format!("/proc/{pid}/exe");
            let outcome = self.trace(ebpf, Path::new(&exe));
            let path = std::fs::read_link(&exe).map_or(exe, |p| p.display().to_string());
            let event = |go_version, not_traced, traced_from_ns| Event::GoExecutable {
                ts_ns,
                pid,
                build,
                path: path.clone(),
                go_version,
                not_traced,
                traced_from_ns,
            };
            match outcome {
                // Probed only now, after the process started: its first requests
                // may have gone unseen, and the timeline says from when it saw.
                Outcome::Traced { go_version, since_ns } => {
                    events.push(event(Some(go_version), None, (since_ns > ts_ns).then_some(since_ns)))
                }
                Outcome::NotTraced { go_version, reason } => events.push(event(go_version, Some(reason), None)),
                Outcome::Irrelevant => {}
            }
        }
    }
}

/// Maps a file read-only.
fn unsafe_map(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: executables are not modified in place while they can run (the
    // kernel refuses writes to a running executable: ETXTBSY); a replaced file is
    // a new inode, and this mapping keeps the old one.
    unsafe { memmap2::Mmap::map(file) }
}


fn set_offsets(ebpf: &mut Ebpf, index: u32, offsets: GoOffsets) -> Result<(), String> {
    let map = ebpf.map_mut("GO_OFFSETS").ok_or("eBPF map GO_OFFSETS is missing")?;
    let mut array: Array<_, GoOffsets> = Array::try_from(map).map_err(|e| format!("eBPF map GO_OFFSETS: {e}"))?;
    array.set(index, offsets, 0).map_err(|e| format!("cannot write eBPF map GO_OFFSETS: {e}"))
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &str) -> Result<&'a mut UProbe, String> {
    ebpf.program_mut(program)
        .ok_or_else(|| format!("program {program} is not in the embedded object"))?
        .try_into()
        .map_err(|e: ProgramError| e.to_string())
}

fn attach(ebpf: &mut Ebpf, program: &'static str, offset: u64, cookie: u64, path: &Path) -> Result<UProbeLinkId, String> {
    let point = UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(offset), cookie: Some(cookie) };
    uprobe(ebpf, program)?
        .attach(point, path, UProbeScope::AllProcesses)
        .map_err(|e| format!("cannot attach a uprobe at {offset:#x}: {}", super::program_error(program)(e)))
}

fn detach(ebpf: &mut Ebpf, program: &str, link: UProbeLinkId) {
    if let Err(e) = uprobe(ebpf, program).and_then(|p| p.detach(link).map_err(|e| e.to_string())) {
        tracing::warn!("cannot detach a uprobe of {program}: {e}");
    }
}

/// The Go toolchains worth probing before any build starts: `go` on PATH (and
/// `command`, when `run` runs the Go command itself), the toolchains GOTOOLCHAIN
/// downloaded into this user's module cache, and `everywhere` (the daemon) also
/// GOROOT's and the usual install places. `run` probes no more than its build
/// may exec first: each probe costs a kernel grace period to remove. Others are
/// probed when they are exec'd. Missing files are left out; the same file under
/// two names is probed once.
pub fn known_toolchains(command: Option<&str>, everywhere: bool) -> Vec<std::path::PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let in_path = |name: &str| -> Vec<std::path::PathBuf> {
        if name.contains('/') {
            return vec![name.into()];
        }
        std::env::split_paths(&path_var).map(|dir| dir.join(name)).collect()
    };
    let mut candidates: Vec<std::path::PathBuf> = command.map(in_path).unwrap_or_default();
    candidates.extend(in_path("go"));
    if everywhere {
        if let Some(goroot) = std::env::var_os("GOROOT") {
            candidates.push(Path::new(&goroot).join("bin/go"));
        }
        candidates.push("/usr/local/go/bin/go".into());
    }
    // Toolchains GOTOOLCHAIN downloaded into this user's module cache.
    let modcache = std::env::var_os("GOMODCACHE").map(std::path::PathBuf::from).or_else(|| {
        let gopath = std::env::var_os("GOPATH").and_then(|p| std::env::split_paths(&p).next());
        gopath.or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join("go"))).map(|p| p.join("pkg/mod"))
    });
    let mut patterns = if everywhere { vec!["/usr/lib/go*/bin/go".to_string()] } else { Vec::new() };
    if let Some(modcache) = modcache.and_then(|m| m.to_str().map(str::to_string)) {
        patterns.push(format!("{}/golang.org/toolchain@*/bin/go", glob::Pattern::escape(&modcache)));
    }
    for pattern in patterns {
        if let Ok(paths) = glob::glob(&pattern) {
            candidates.extend(paths.flatten());
        }
    }
    let mut seen = std::collections::HashSet::new();
    candidates
        .into_iter()
        .filter(|path| {
            std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && seen.insert((meta.dev(), meta.ino())))
        })
        .collect()
}
