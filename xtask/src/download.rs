//! `cargo xtask bench --workload download`: what gomod-trace costs a real
//! `go mod download` (issue 13). The modules are real: Debian's golang-*-dev
//! packages of a few large Go projects install their sources and those of their
//! whole dependency closure under /usr/share/gocode/src; tests/lab/corpus turns
//! every module there into a GOPROXY file tree (cached under target/bench/), which
//! labd serves over HTTPS with HTTP/2 inside the lab's namespaces. Go 1.23 (whose
//! requests the uprobes trace) downloads all of them into an empty module cache.
//!
//! Four variants, interleaved in every round, each from a cold module cache:
//! untraced; `gomod-trace run`; the daemon running with the build untouched; and
//! `strace -f` (what users reach for). Wall time and CPU of the build and of the
//! tracer are read per variant; the daemon's records and losses from its own
//! metrics. Then, outside the rounds: replay throughput on a recorded download
//! without process start, and the daemon's memory after 1,000 recorded builds.
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use gomod_trace_lab::{FILES_NAME, Lab};

use super::{status, step, workspace_root};

/// The Go that downloads: a release the request uprobes support.
const GO_DIR: &str = "/usr/lib/go-1.23/bin";
/// Four large Go projects (and InfluxDB, whose closure brings the count into the
/// issue's range) whose dependency closure makes the corpus: ~160 modules, ~22,000
/// files, ~120 MiB of zips. Installed by the bench, not by `cargo xtask setup`:
/// about 500 MB that only the benchmark needs, which every CI run would pay.
const CORPUS_PACKAGES: [&str; 5] = [
    "golang-github-aws-aws-sdk-go-dev",
    "golang-google-api-dev",
    "golang-github-syncthing-syncthing-dev",
    "golang-github-containerd-containerd-dev",
    "golang-github-influxdb-influxdb-dev",
];
/// Builds the daemon must have recorded before its memory is read.
const BUILDS: u64 = 1_000;
/// Replay throughput is measured on at least this many events.
const REPLAY_EVENTS: usize = 500_000;

/// Copies the binary to measure into target/bench/, so that a rebuild by someone
/// else does not change it mid-run: `tracer`, else a release build of this tree.
pub fn bench_binary(tracer: Option<&Path>) -> Result<PathBuf> {
    let root = workspace_root();
    let source = match tracer {
        Some(path) => path.to_path_buf(),
        None => {
            step("building gomod-trace (release)");
            status(super::cargo().args(["build", "--release", "-p", "gomod-trace"]))?;
            root.join("target/release/gomod-trace")
        }
    };
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let binary = dir.join("gomod-trace");
    // A new file, not a rewrite: a copy still running elsewhere keeps its own.
    let _ = std::fs::remove_file(&binary);
    std::fs::copy(&source, &binary).with_context(|| format!("copy {} to {}", source.display(), binary.display()))?;
    step(&format!("measuring {} (copied to {})", source.display(), binary.display()));
    Ok(binary)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM end the bench between steps, through the error path, so
/// that the lab, the daemon and the temporary files are dropped (removed). The go
/// commands, in the same process group, get Ctrl-C themselves and end at once.
struct CatchInterrupts;

impl CatchInterrupts {
    fn install() -> CatchInterrupts {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only stores to an atomic.
            unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
        }
        CatchInterrupts
    }
}

impl Drop for CatchInterrupts {
    fn drop(&mut self) {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: restores the default disposition.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
}

fn check_interrupted() -> Result<()> {
    ensure!(!INTERRUPTED.load(Ordering::SeqCst), "interrupted");
    Ok(())
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        check_interrupted()?;
        ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// CPU seconds of a process from /proc/<pid>/stat: its own (all threads) and
/// that of the children it has reaped (their whole trees).
#[derive(Clone, Copy, Default)]
struct ProcTimes {
    comm: [u8; 16],
    own: f64,
    children: f64,
}

fn proc_times(pid: u32) -> Result<ProcTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("read /proc/{pid}/stat"))?;
    let (head, tail) = stat.rsplit_once(") ").context("malformed /proc/pid/stat")?;
    let name = head.split_once(" (").map_or("", |(_, n)| n).as_bytes();
    let mut comm = [0; 16];
    comm[..name.len().min(16)].copy_from_slice(&name[..name.len().min(16)]);
    // Fields 14–17 (utime, stime, cutime, cstime); `tail` starts at field 3.
    let fields: Vec<f64> = tail.split_whitespace().skip(11).take(4).map(|f| f.parse().unwrap_or(0.0)).collect();
    ensure!(fields.len() == 4, "malformed /proc/{pid}/stat");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ProcTimes { comm, own: (fields[0] + fields[1]) / hz, children: (fields[2] + fields[3]) / hz })
}

impl ProcTimes {
    fn comm(&self) -> String {
        String::from_utf8_lossy(&self.comm).trim_end_matches('\0').to_string()
    }
}

/// One measured download.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: f64,
    /// CPU seconds of the go command and everything it ran.
    build_cpu: f64,
    /// CPU seconds of the tracer (`run`, strace, or the daemon over the download).
    tracer_cpu: f64,
}

/// Runs `command` (whose process ends up executing a program named `comm`: `ip
/// netns exec` and `env` exec, they do not fork) to its end. It is waited for
/// without being reaped first, so that its /proc stat is still there: the tracer's
/// own CPU and, in its reaped children's, the build's.
fn measure(mut command: Command, comm: &str, log: &Path) -> Result<(f64, ProcTimes)> {
    let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("start {command:?}"))?;
    let pid = child.id();
    loop {
        // SAFETY: a zeroed siginfo_t is valid; waitid fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child without reaping it (WNOWAIT).
        let r = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            break;
        }
        let error = std::io::Error::last_os_error();
        ensure!(error.kind() == std::io::ErrorKind::Interrupted, "waitid: {error}");
    }
    let wall = started.elapsed().as_secs_f64();
    let times = proc_times(pid);
    let exit = child.wait()?;
    if !exit.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        bail!(
            "{comm} failed ({exit}); last lines of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let times = times?;
    ensure!(times.comm() == comm, "measured process is {:?}, expected {comm:?}", times.comm());
    Ok((wall, times))
}

/// A raw HTTP/1.1 GET to the daemon: status and body.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The sum of a metric's samples over all its label sets.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| match rest.chars().next() {
            Some('{') => rest.split_once('}').map(|(_, v)| v),
            Some(' ') => Some(rest),
            _ => None,
        })
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Clone, Copy, Debug)]
struct Counters {
    builds: f64,
    events: f64,
    lost: f64,
}

/// `gomod-trace daemon` on the host (it traces every go on the machine), on a
/// loopback port of its own; stopped (SIGTERM, then SIGKILL) when dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn start(binary: &Path, data_dir: &Path, log: &Path) -> Result<Daemon> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(binary)
            .args(["daemon", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("start gomod-trace daemon")?;
        let mut daemon = Daemon { child, addr };
        wait_until("the daemon to be ready", Duration::from_secs(60), || {
            if let Some(exit) = daemon.child.try_wait()? {
                bail!("the daemon exited ({exit}); see {}", log.display());
            }
            Ok(get(daemon.addr, "/readyz").is_ok_and(|(status, _)| status == 200))
        })?;
        Ok(daemon)
    }

    fn counters(&self) -> Result<Counters> {
        let (status, text) = get(self.addr, "/metrics").context("GET /metrics")?;
        ensure!(status == 200, "GET /metrics: {status}");
        Ok(Counters {
            builds: metric(&text, "gomod_trace_builds_total"),
            events: metric(&text, "gomod_trace_events_processed_total"),
            lost: metric(&text, "gomod_trace_events_lost_total"),
        })
    }

    /// Waits until the daemon has recorded `builds` builds in all and its event
    /// count has settled (unchanged for 300 ms, or 10 s passed: other go commands
    /// on the host may keep it moving).
    fn wait_for_builds(&self, builds: f64, timeout: Duration) -> Result<Counters> {
        let mut last = self.counters()?;
        wait_until(&format!("the daemon to record {builds} builds"), timeout, || {
            last = self.counters()?;
            Ok(last.builds >= builds)
        })
        .with_context(|| format!("last counters: {last:?}"))?;
        let (deadline, mut unchanged) = (Instant::now() + Duration::from_secs(10), 0);
        while unchanged < 3 && Instant::now() < deadline {
            check_interrupted()?;
            std::thread::sleep(Duration::from_millis(100));
            let now = self.counters()?;
            unchanged = if now.events == last.events { unchanged + 1 } else { 0 };
            last = now;
        }
        Ok(last)
    }

    fn cpu(&self) -> Result<f64> {
        Ok(proc_times(self.child.id())?.own)
    }

    /// VmRSS and VmHWM, in MiB.
    fn memory(&self) -> Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> Result<f64> {
            let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
            let kb: f64 = line.split_whitespace().nth(1).context("malformed")?.parse()?;
            Ok(kb / 1024.0)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Untraced,
    Run,
    Daemon,
    Strace,
}

const VARIANTS: [Variant; 4] = [Variant::Untraced, Variant::Run, Variant::Daemon, Variant::Strace];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Untraced => "untraced",
            Variant::Run => "gomod-trace run",
            Variant::Daemon => "daemon running",
            Variant::Strace => "strace -f",
        }
    }
}

/// The corpus: modules, files and zip bytes, from modules.txt.
struct Corpus {
    dir: PathBuf,
    modules: usize,
    files: u64,
    bytes: u64,
    skipped: usize,
    /// `path@version` of every module, escaped as in the module cache.
    list: Vec<String>,
}

/// Builds the GOPROXY tree once (target/bench/corpus; kept while modules.txt,
/// written last, is there): after a `cargo clean`, or by removing it.
fn corpus() -> Result<Corpus> {
    super::install_packages(&CORPUS_PACKAGES)?;
    let dir = workspace_root().join("target/bench/corpus");
    if !dir.join("modules.txt").exists() {
        step("building the module corpus from /usr/share/gocode/src (once; about 30 s)");
        let _ = std::fs::remove_dir_all(&dir);
        let builder = Lab::corpus_bin();
        status(Command::new(builder).arg("-out").arg(&dir))?;
    }
    let list = std::fs::read_to_string(dir.join("modules.txt")).context("read the corpus's modules.txt")?;
    let (mut modules, mut files, mut bytes, mut names) = (0, 0, 0, Vec::new());
    for line in list.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        ensure!(fields.len() == 4, "modules.txt: {line:?}");
        modules += 1;
        names.push(escape(&format!("{}@{}", fields[0], fields[1])));
        files += fields[2].parse::<u64>()?;
        bytes += fields[3].parse::<u64>()?;
    }
    let skipped = std::fs::read_to_string(dir.join("skipped.txt")).unwrap_or_default().lines().filter(|l| !l.is_empty()).count();
    Ok(Corpus { dir, modules, files, bytes, skipped, list: names })
}

/// Module directories extracted in a module cache (`path@version`, escaped,
/// outside cache/): what the download really produced.
fn extracted_modules(modcache: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, modcache: &Path, found: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() || (dir == modcache && entry.file_name() == "cache") {
                continue;
            }
            if entry.file_name().to_string_lossy().contains('@') {
                found.push(entry.path().strip_prefix(modcache)?.to_string_lossy().into_owned());
            } else {
                walk(&entry.path(), modcache, found)?;
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(modcache, modcache, &mut found)?;
    Ok(found)
}

/// A module path or version as the module cache spells it (`!` + lower case for
/// upper case).
fn escape(path: &str) -> String {
    path.chars().flat_map(|c| if c.is_ascii_uppercase() { vec!['!', c.to_ascii_lowercase()] } else { vec![c] }).collect()
}

/// The lab serving the corpus, and how its client downloads.
struct Bench<'a> {
    lab: Lab,
    binary: &'a Path,
    corpus: Corpus,
}

impl Bench<'_> {
    /// The client's `go` environment: the corpus proxy, no checksum database.
    const ENV: [(&'static str, &'static str); 2] = [("GOSUMDB", "off"), ("GONOSUMDB", "")];

    fn command(&self, argv: &[&str]) -> Command {
        let goproxy = format!("https://{FILES_NAME}");
        let mut env = vec![("GOPROXY", goproxy.as_str())];
        env.extend(Self::ENV);
        self.lab.client_command(argv, &env)
    }

    /// An empty module cache and no go.sum: every download starts cold.
    fn cold(&self) -> Result<()> {
        let modcache = self.lab.path("modcache");
        if modcache.exists() {
            status(Command::new("chmod").args(["-R", "u+w"]).arg(&modcache))?;
            std::fs::remove_dir_all(&modcache).with_context(|| format!("remove {}", modcache.display()))?;
        }
        let _ = std::fs::remove_file(self.lab.path("work/go.sum"));
        Ok(())
    }

    /// Checks that the last download extracted every module of the corpus.
    fn check_complete(&self, what: &str) -> Result<()> {
        let extracted = extracted_modules(&self.lab.path("modcache"))?;
        let missing: Vec<&String> = self.corpus.list.iter().filter(|m| !extracted.contains(m)).collect();
        ensure!(
            missing.is_empty() && extracted.len() == self.corpus.modules,
            "{what}: {} modules extracted of {}; missing: {missing:?}",
            extracted.len(),
            self.corpus.modules
        );
        Ok(())
    }

    /// One cold `go mod download` under `variant`, measured. With a daemon, also
    /// its counters before the download and once it has recorded the build.
    fn download(&self, variant: Variant, daemon: Option<&Daemon>) -> Result<(Sample, Option<(Counters, Counters)>)> {
        self.cold()?;
        let tracer = self.binary.to_str().context("utf-8 path")?;
        let download = ["go", "mod", "download"];
        let log = self.lab.path("download.log");
        let (argv, comm): (Vec<&str>, &str) = match variant {
            Variant::Untraced | Variant::Daemon => (download.to_vec(), "go"),
            Variant::Run => (
                [tracer, "run", "--format", "json", "--output", "/dev/null", "--"].into_iter().chain(download).collect(),
                "gomod-trace",
            ),
            Variant::Strace => (["strace", "-f", "-o", "/dev/null"].into_iter().chain(download).collect(), "strace"),
        };
        let before = daemon.map(|d| Ok::<_, anyhow::Error>((d.counters()?, d.cpu()?))).transpose()?;
        let (wall, times) = measure(self.command(&argv), comm, &log)?;
        let mut counters = None;
        let sample = match (variant, daemon, before) {
            (Variant::Run | Variant::Strace, _, _) => Sample { wall, build_cpu: times.children, tracer_cpu: times.own },
            (Variant::Daemon, Some(daemon), Some((before, cpu))) => {
                // The daemon's CPU up to the build's end in its history, not only
                // while go ran.
                let after = daemon.wait_for_builds(before.builds + 1.0, Duration::from_secs(120))?;
                counters = Some((before, after));
                Sample { wall, build_cpu: times.own + times.children, tracer_cpu: daemon.cpu()? - cpu }
            }
            (Variant::Daemon, ..) => bail!("the daemon variant needs a daemon"),
            (Variant::Untraced, ..) => Sample { wall, build_cpu: times.own + times.children, tracer_cpu: 0.0 },
        };
        self.check_complete(variant.name())?;
        Ok((sample, counters))
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() { f64::NAN } else { sorted[sorted.len() / 2] }
}

/// Copies of a recording, each shifted past the previous one in time and given
/// its own pids, build ids and socket cookies: `copies` builds one after another,
/// as a long-running daemon would see them. (A plain concatenation is not that:
/// replay sorts events by time, so the copies would interleave as one build with
/// the same processes and sockets many times over.) Every field whose name ends
/// in `_ns` is a time on the event clock except `realtime_ns` (the anchor, kept
/// once); `pid`, `build`, `parent`, `child` are process ids; `cookie` a socket's.
fn replicate(recording: &str, copies: usize) -> Result<String> {
    let events: Vec<serde_json::Value> =
        recording.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    let times: Vec<u64> = events.iter().filter_map(|e| e["ts_ns"].as_u64()).collect();
    let span = times.iter().max().copied().unwrap_or(0) - times.iter().min().copied().unwrap_or(0);
    let shift = span + 1_000_000_000;
    // Above any pid the kernel hands out (pid_max is at most 2^22).
    const PID_STRIDE: u64 = 1 << 22;
    ensure!((copies as u64) * PID_STRIDE < u64::from(u32::MAX), "too many copies");
    fn offset(value: &mut serde_json::Value, copy: u64, time: u64) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let add = match key.as_str() {
                        "pid" | "build" | "parent" | "child" => copy * PID_STRIDE,
                        "cookie" => copy << 40,
                        "realtime_ns" => 0,
                        k if k.ends_with("_ns") => copy * time,
                        _ => {
                            offset(v, copy, time);
                            continue;
                        }
                    };
                    // Zero means unknown (a cookie, a pid): it stays unknown.
                    if let Some(n) = v.as_u64().filter(|n| *n != 0) {
                        *v = (n + add).into();
                    } else {
                        offset(v, copy, time);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| offset(v, copy, time)),
            _ => {}
        }
    }
    let mut out = String::new();
    for copy in 0..copies as u64 {
        for event in &events {
            if copy > 0 && event["event"] == "clock" {
                continue;
            }
            let mut event = event.clone();
            offset(&mut event, copy, shift);
            out.push_str(&serde_json::to_string(&event)?);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Seconds `gomod-trace replay` takes on `events` (the best of three), and the
/// timeline it wrote.
fn replay(binary: &Path, events: &Path, timeline: &Path) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        check_interrupted()?;
        let started = Instant::now();
        status(Command::new(binary).arg("replay").arg(events).args(["--format", "json", "--output"]).arg(timeline))?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Builds and module spans of a timeline file.
fn timeline_counts(path: &Path) -> Result<(usize, usize)> {
    let timeline: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let builds = timeline["builds"].as_array().context("no builds in the timeline")?;
    let modules =
        builds.iter().flat_map(|b| b["spans"].as_array().into_iter().flatten()).filter(|s| s["kind"] == "module").count();
    Ok((builds.len(), modules))
}

pub fn bench(rounds: usize, binary: &Path) -> Result<()> {
    let started = Instant::now();
    super::install_packages(&["strace"])?;
    if let Some(why) = gomod_trace_lab::missing_requirements() {
        bail!("the lab cannot run here: {why}");
    }
    let corpus = corpus()?;
    let _interrupts = CatchInterrupts::install();
    step(&format!(
        "real download: {} modules ({} skipped by x/mod/zip), {} files, {:.1} MiB of zips, from https://{FILES_NAME} (HTTP/2) in the lab; Go 1.23",
        corpus.modules,
        corpus.skipped,
        corpus.files,
        corpus.bytes as f64 / (1 << 20) as f64
    ));
    let mut lab = Lab::start_serving(&corpus.dir);
    lab.use_go(GO_DIR);
    std::fs::copy(corpus.dir.join("go.mod"), lab.path("work/go.mod")).context("the main module's go.mod")?;
    let bench = Bench { lab, binary, corpus };

    // Warm up (page cache, the server's files, the lab), and check that every
    // module arrives.
    step("one untimed download to warm up");
    bench.download(Variant::Untraced, None)?;

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); VARIANTS.len()];
    let (mut events, mut lost, mut rss, mut hwm) = (Vec::new(), 0.0, Vec::new(), Vec::new());
    // Builds of other go commands on the host that a daemon recorded meanwhile:
    // their events are in its count too.
    let mut other_builds = 0.0;
    for round in 0..rounds {
        // The order rotates, so that no variant always follows the same one.
        for i in 0..VARIANTS.len() {
            check_interrupted()?;
            let index = (i + round) % VARIANTS.len();
            let variant = VARIANTS[index];
            let sample = if variant == Variant::Daemon {
                // Its own daemon per round, started before and stopped after the
                // download (outside the timed part): a daemon left running would
                // trace the other variants' builds too.
                let data = bench.lab.path(&format!("daemon-{round}"));
                let daemon = Daemon::start(binary, &data, &bench.lab.path(&format!("daemon-{round}.log")))?;
                let (sample, counters) = bench.download(variant, Some(&daemon))?;
                let (before, after) = counters.context("no daemon counters")?;
                events.push(after.events - before.events);
                other_builds += after.builds - before.builds - 1.0;
                lost += after.lost - before.lost;
                let (r, h) = daemon.memory()?;
                rss.push(r);
                hwm.push(h);
                sample
            } else {
                bench.download(variant, None)?.0
            };
            println!(
                "xtask: round {}/{rounds} {:<16} wall {:6.2} s, build CPU {:6.2} s, tracer CPU {:6.2} s",
                round + 1,
                variant.name(),
                sample.wall,
                sample.build_cpu,
                sample.tracer_cpu
            );
            samples[index].push(sample);
        }
    }

    // A recording of one download, for replay.
    step("recording one download (gomod-trace run --record)");
    bench.cold()?;
    let recording = bench.lab.path("download.jsonl");
    let tracer = binary.to_str().context("utf-8 path")?;
    let rec = recording.to_str().context("utf-8 path")?;
    let argv = [tracer, "run", "--format", "json", "--output", "/dev/null", "--record", rec, "--", "go", "mod", "download"];
    measure(bench.command(&argv), "gomod-trace", &bench.lab.path("record.log"))?;
    bench.check_complete("recorded download")?;
    let text = std::fs::read_to_string(&recording).context("read the recording")?;
    let recorded = text.lines().filter(|l| !l.trim().is_empty()).count();
    let copies = REPLAY_EVENTS.div_ceil(recorded).clamp(2, 500);
    let many = bench.lab.path("download-many.jsonl");
    std::fs::write(&many, replicate(&text, copies)?)?;
    let (one_timeline, many_timeline) = (bench.lab.path("replay-one.json"), bench.lab.path("replay-many.json"));
    step(&format!("replay: the recording ({recorded} events) once and {copies} times over"));
    let once = replay(binary, &recording, &one_timeline)?;
    let many_time = replay(binary, &many, &many_timeline)?;
    let (one_builds, one_modules) = timeline_counts(&one_timeline)?;
    let (many_builds, many_modules) = timeline_counts(&many_timeline)?;
    ensure!(
        many_builds == copies * one_builds && many_modules == copies * one_modules,
        "the replicated recording does not replay as {copies} copies: {many_builds} builds and {many_modules} module spans, once: {one_builds} and {one_modules}"
    );
    let replay_rate = ((copies - 1) * recorded) as f64 / (many_time - once).max(1e-9);

    // The daemon's memory after many recorded builds: `go env` is a build to it
    // (a root `go` process; counted by gomod_trace_builds_total).
    step(&format!("{BUILDS} builds (`go env GOMODCACHE`) under a daemon"));
    let builds_started = Instant::now();
    let daemon = Daemon::start(binary, &bench.lab.path("daemon-builds"), &bench.lab.path("daemon-builds.log"))?;
    let before = daemon.counters()?;
    for _ in 0..BUILDS {
        check_interrupted()?;
        let out = bench.command(&["go", "env", "GOMODCACHE"]).stdin(Stdio::null()).output()?;
        ensure!(out.status.success(), "go env failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let after = daemon.wait_for_builds(before.builds + BUILDS as f64, Duration::from_secs(300))?;
    let (builds_rss, builds_hwm) = daemon.memory()?;
    lost += after.lost - before.lost;
    drop(daemon);
    let builds_time = builds_started.elapsed().as_secs_f64();

    // The report.
    let modules = bench.corpus.modules as f64;
    let med = |index: usize, f: fn(&Sample) -> f64| median(&samples[index].iter().map(f).collect::<Vec<_>>());
    let base_wall = med(0, |s| s.wall);
    let base_cpu = med(0, |s| s.build_cpu);
    println!(
        "\nreal download: `go mod download` (Go 1.23) of {} modules, {} files, {:.1} MiB of zips, HTTPS with HTTP/2 in the lab; cold module cache each time",
        bench.corpus.modules,
        bench.corpus.files,
        bench.corpus.bytes as f64 / (1 << 20) as f64
    );
    println!("medians of {rounds} interleaved rounds; CPU is user+sys; the ratio's CPU is the build's and the tracer's");
    println!(
        "\n{:<18} {:>9} {:>11} {:>12} {:>11} {:>10}",
        "variant", "wall s", "build CPU s", "tracer CPU s", "wall ratio", "CPU ratio"
    );
    let mut ratios = Vec::new();
    for (index, variant) in VARIANTS.iter().enumerate() {
        let (wall, build, tracer) = (med(index, |s| s.wall), med(index, |s| s.build_cpu), med(index, |s| s.tracer_cpu));
        let cpu = med(index, |s| s.build_cpu + s.tracer_cpu);
        ratios.push((wall / base_wall, cpu / base_cpu));
        println!(
            "{:<18} {wall:>9.2} {build:>11.2} {tracer:>12.2} {:>11.3} {:>10.3}",
            variant.name(),
            wall / base_wall,
            cpu / base_cpu
        );
    }
    let events_per_download = median(&events);
    let daemon_cpu = med(2, |s| s.tracer_cpu);
    println!(
        "\ndaemon: {events_per_download:.0} records per download ({:.1} per module), {:.2} s CPU per download ({:.1} µs per record); VmRSS {:.1} MiB, VmHWM {:.1} MiB after a download",
        events_per_download / modules,
        daemon_cpu,
        daemon_cpu * 1e6 / events_per_download.max(1.0),
        median(&rss),
        median(&hwm)
    );
    if other_builds > 0.0 {
        println!(
            "WARNING: the daemons also recorded {other_builds} builds of other go commands on this host during the downloads: their records are in the daemon's count"
        );
    }
    println!("recording of one download: {recorded} events ({:.1} per module)", recorded as f64 / modules);
    println!(
        "replay: {recorded} events in {once:.3} s (process start included), {} in {many_time:.3} s: {:.2} M events/s without process start",
        copies * recorded,
        replay_rate / 1e6
    );
    println!(
        "daemon after {BUILDS} builds: VmRSS {builds_rss:.1} MiB, VmHWM {builds_hwm:.1} MiB ({builds_time:.0} s for the builds)"
    );

    let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!("\n{:<38} {:>12}  {:<28}", "goal (issue 13)", "measured", "goal");
    let row = |what: &str, figure: String, goal: &str, ok: bool| println!("{what:<38} {figure:>12}  {goal:<28} {}", verdict(ok));
    for index in [1, 2] {
        let (wall, cpu) = ratios[index];
        row(
            &format!("`{}`: median wall ratio", VARIANTS[index].name()),
            format!("{wall:.3}"),
            "≤ 1.02 (1.05 at most)",
            wall <= 1.02,
        );
        row(
            &format!("`{}`: median CPU ratio", VARIANTS[index].name()),
            format!("{cpu:.3}"),
            "≤ 1.02 (1.05 at most)",
            cpu <= 1.02,
        );
    }
    let per_module = events_per_download / modules;
    row("records per module (daemon's count)", format!("{per_module:.1}"), "≤ 20", per_module <= 20.0);
    row("replay throughput", format!("{:.2} M/s", replay_rate / 1e6), "≥ 1 M events/s", replay_rate >= 1e6);
    row(&format!("daemon VmRSS after {BUILDS} builds"), format!("{builds_rss:.1} MiB"), "≤ 50 MiB", builds_rss <= 50.0);
    row("events lost (daemon, all runs)", format!("{lost:.0}"), "0", lost == 0.0);
    println!("(strace -f for comparison: wall {:.2}×, CPU {:.2}×)", ratios[3].0, ratios[3].1);
    step(&format!("download bench done in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}
