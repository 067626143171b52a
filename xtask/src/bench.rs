//! `cargo xtask bench`: what gomod-trace costs the rest of the machine. Workloads
//! that hit every probe (TCP connects on loopback: connect hook, TCP state
//! tracepoint, cgroup_skb both ways; fork+exec+exit of /bin/true: the process
//! tracepoints) run in this process, which the tracer does not track, without and
//! with `gomod-trace run` attached, interleaved so that machine noise hits both.
//! Only ratios measured side by side in one run are reported, and the kernel's own
//! accounting of the programs (kernel.bpf_stats_enabled): runs and nanoseconds per
//! run of each program while the untracked workloads ran, which does not depend on
//! how noisy the machine is.
//!
//! The request uprobes are measured with a Go program (`xtask/httpbench`) that
//! sends keep-alive GETs to itself on loopback: without the tracer, while the
//! tracer's probes are on its executable but this instance is not part of a
//! build (the uprobe's trap and one map lookup per request), and traced (every
//! request recorded).
use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};

const TCP_CONNECTS: u32 = 4_000;
const EXECS: u32 = 300;
const OPENS: u32 = 20_000;
const REQUESTS: u32 = 2_000;
/// The process name `run` is told to trace (`--go-command`).
const HTTPBENCH: &str = "httpbench";

/// Builds xtask/httpbench with Go 1.23 (a release the uprobes support), offline.
fn build_httpbench() -> Result<std::path::PathBuf> {
    let root = super::workspace_root();
    let out = root.join("target/httpbench").join(HTTPBENCH);
    let cache = root.join("target/httpbench/gocache");
    let status = Command::new("/usr/lib/go-1.23/bin/go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(root.join("xtask/httpbench"))
        .env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOCACHE", &cache)
        .env("GOPATH", root.join("target/httpbench/gopath"))
        .status()
        .context("run go build")?;
    ensure!(status.success(), "building xtask/httpbench failed");
    Ok(out)
}

/// Nanoseconds per request the workload measured itself, run as `command`.
fn requests(mut command: Command) -> Result<Duration> {
    let out = command.stderr(Stdio::inherit()).output().context("run httpbench")?;
    ensure!(out.status.success(), "httpbench failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let ns: u64 = text.lines().last().unwrap_or_default().trim().parse().with_context(|| format!("httpbench printed {text:?}"))?;
    Ok(Duration::from_nanos(ns))
}

/// The workload alone, or traced by `gomod-trace run` (every request recorded).
fn httpbench(client: &std::path::Path, tracer: Option<&std::path::Path>) -> Command {
    let n = REQUESTS.to_string();
    match tracer {
        None => {
            let mut command = Command::new(client);
            command.args(["-n", &n]);
            command
        }
        Some(tracer) => {
            let mut command = Command::new(tracer);
            command
                .args(["run", "--format", "json", "--output", "/dev/null", "--go-command", HTTPBENCH, "--"])
                .arg(client)
                .args(["-n", &n]);
            command
        }
    }
}

/// Per-operation time of `n` loopback TCP connect + accept + close.
fn tcp_connects(n: u32) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    for _ in 0..n {
        // Connect, accept and close in turn: the backlog never fills.
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        drop(client);
        drop(server);
    }
    Ok(started.elapsed() / n)
}

/// Per-operation time of `n` create+write-open and close of a file.
fn opens(n: u32) -> Result<Duration> {
    let path = std::env::temp_dir().join(format!("gomod-trace-bench-{}", std::process::id()));
    let started = Instant::now();
    for _ in 0..n {
        drop(std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?);
    }
    let elapsed = started.elapsed();
    std::fs::remove_file(&path)?;
    Ok(elapsed / n)
}

/// Per-operation time of `n` fork + exec + wait of /bin/true.
fn execs(n: u32) -> Result<Duration> {
    let started = Instant::now();
    for _ in 0..n {
        let status = Command::new("/bin/true").status()?;
        ensure!(status.success(), "/bin/true failed");
    }
    Ok(started.elapsed() / n)
}

/// `gomod-trace run -- sleep` holds the programs attached until it is stopped.
struct Tracer(Child);

impl Tracer {
    fn attach(binary: &std::path::Path) -> Result<Tracer> {
        Tracer::holding(binary, &[], &["sleep", "3600"])
    }

    /// `gomod-trace run TRACER_ARGS -- COMMAND`, attached once COMMAND started.
    fn holding(binary: &std::path::Path, tracer_args: &[&str], command: &[&str]) -> Result<Tracer> {
        let child = Command::new(binary)
            .args(["run", "--format", "json", "--output", "/dev/null"])
            .args(tracer_args)
            .arg("--")
            .args(command)
            .stdout(Stdio::null())
            .spawn()
            .context("start gomod-trace")?;
        let pid = child.id();
        // Attached once it has started its command.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            if !children.trim().is_empty() {
                return Ok(Tracer(child));
            }
            ensure!(Instant::now() < deadline, "gomod-trace did not attach within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// Run count and run time of gomod-trace's programs, by name, from `bpftool`.
fn program_stats() -> Result<std::collections::BTreeMap<String, (u64, u64)>> {
    let out = Command::new("bpftool").args(["prog", "show", "-j"]).output().context("bpftool")?;
    ensure!(out.status.success(), "bpftool prog show failed");
    let programs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut stats = std::collections::BTreeMap::new();
    for p in programs.as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default();
        // Kernel program names are cut to 15 characters.
        let ours = PROGRAMS.iter().find(|full| full.starts_with(name) && !name.is_empty());
        if let Some(full) = ours {
            let entry = stats.entry((*full).to_string()).or_insert((0, 0));
            entry.0 += p["run_cnt"].as_u64().unwrap_or(0);
            entry.1 += p["run_time_ns"].as_u64().unwrap_or(0);
        }
    }
    Ok(stats)
}

const PROGRAMS: [&str; 25] = [
    "go_round_trip",
    "go_round_trip_return",
    "go_h1_connection",
    "go_h2_connection",
    "sched_process_exec",
    "sched_process_fork",
    "sched_process_exit",
    "inet_sock_set_state",
    "tcp_retransmit_skb",
    "tcp_receive_reset",
    "kfree_skb",
    "connect4",
    "connect6",
    "sendmsg4",
    "sendmsg6",
    "skb_egress",
    "skb_ingress",
    "sys_enter_openat",
    "sys_enter_renameat",
    "sys_enter_renameat2",
    "sys_enter_unlinkat",
    "sys_enter_connect",
    "sys_exit_connect",
    "sys_enter_getsockopt",
    "sys_exit_getsockopt",
];

/// Turns kernel BPF statistics on for the bench, and back to what they were.
struct BpfStats(String);

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";
    fn enable() -> Result<BpfStats> {
        let before = std::fs::read_to_string(Self::PATH).context("read bpf_stats_enabled")?;
        std::fs::write(Self::PATH, "1").context("enable bpf_stats")?;
        Ok(BpfStats(before.trim().to_string()))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// The probes' benchmark, of `binary` (see [`super::download::bench_binary`]).
pub fn bench(rounds: usize, binary: &std::path::Path) -> Result<()> {
    let binary = binary.to_path_buf();
    println!("xtask: {rounds} rounds of {TCP_CONNECTS} loopback TCP connects, {EXECS} execs of /bin/true and {OPENS} file opens, without and with the tracer");
    let client = build_httpbench()?;
    let client_path = client.to_str().context("utf-8 path")?;
    let (mut tcp, mut exec, mut open) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut request = [Vec::new(), Vec::new(), Vec::new()];
    // Warm up caches and the loopback path once.
    tcp_connects(TCP_CONNECTS / 4)?;
    requests(httpbench(&client, None))?;
    for round in 0..rounds {
        for traced in [false, true] {
            let _tracer = if traced { Some(Tracer::attach(&binary)?) } else { None };
            tcp[usize::from(traced)].push(tcp_connects(TCP_CONNECTS)?);
            exec[usize::from(traced)].push(execs(EXECS)?);
            open[usize::from(traced)].push(opens(OPENS)?);
        }
        request[0].push(requests(httpbench(&client, None))?);
        {
            // A traced instance that only waits keeps the probes on the
            // executable; this one is not part of a build.
            let _tracer = Tracer::holding(&binary, &["--go-command", HTTPBENCH], &[client_path, "-hold", "1h"])?;
            request[1].push(requests(httpbench(&client, None))?);
        }
        request[2].push(requests(httpbench(&client, Some(&binary)))?);
        println!("xtask: round {} of {rounds} done", round + 1);
    }
    // The kernel's accounting, in a pass of its own: collecting it costs time too.
    let mut program_time: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let stats_pass_tcp = {
        let _stats = BpfStats::enable()?;
        let _tracer = Tracer::attach(&binary)?;
        let before = program_stats()?;
        let tcp = tcp_connects(TCP_CONNECTS)?;
        let tcp_stats = program_stats()?;
        execs(EXECS)?;
        opens(OPENS)?;
        for (name, (runs, ns)) in program_stats()? {
            let (runs0, ns0) = before.get(&name).copied().unwrap_or((0, 0));
            program_time.insert(name, (runs.saturating_sub(runs0), ns.saturating_sub(ns0)));
        }
        let tcp_ns: u64 = tcp_stats.iter().map(|(name, (_, ns))| ns - before.get(name).map_or(0, |b| b.1)).sum();
        (tcp, tcp_ns)
    };
    // The request uprobes, read while the tracer that loaded them still runs: an
    // untracked instance on a probed executable, then a traced one.
    let uprobes = |stats: std::collections::BTreeMap<String, (u64, u64)>, before: &std::collections::BTreeMap<String, (u64, u64)>| {
        stats
            .into_iter()
            .filter(|(name, _)| name.starts_with("go_"))
            .map(|(name, (runs, ns))| {
                let (runs0, ns0) = before.get(&name).copied().unwrap_or((0, 0));
                (name, (runs.saturating_sub(runs0), ns.saturating_sub(ns0)))
            })
            .collect::<Vec<_>>()
    };
    let (untracked_uprobes, traced_uprobes) = {
        let _stats = BpfStats::enable()?;
        let untracked = {
            let _holder = Tracer::holding(&binary, &["--go-command", HTTPBENCH], &[client_path, "-hold", "1h"])?;
            let before = program_stats()?;
            requests(httpbench(&client, None))?;
            uprobes(program_stats()?, &before)
        };
        let script = format!("{client_path} -n {REQUESTS} >/dev/null && exec sleep 3600");
        let _holder = Tracer::holding(&binary, &["--go-command", HTTPBENCH], &["sh", "-c", &script])?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let traced = loop {
            let stats = program_stats()?;
            if stats.get("go_round_trip_return").is_some_and(|(runs, _)| *runs >= u64::from(REQUESTS)) {
                break uprobes(stats, &Default::default());
            }
            ensure!(Instant::now() < deadline, "the traced httpbench did not finish within 120 s");
            std::thread::sleep(Duration::from_millis(200));
        };
        (untracked, traced)
    };
    println!("\n{:<38} {:>14} {:>14} {:>7}", "workload (untracked process)", "without/op", "with/op", "ratio");
    for (name, samples) in [
        ("TCP connect+accept+close, loopback", &tcp),
        ("fork+exec+wait /bin/true", &exec),
        ("open(O_CREAT|O_WRONLY)+close", &open),
    ] {
        let (without, with) = (median(samples[0].clone()), median(samples[1].clone()));
        println!(
            "{name:<38} {:>12.1}µs {:>12.1}µs {:>7.3}",
            without.as_secs_f64() * 1e6,
            with.as_secs_f64() * 1e6,
            with.as_secs_f64() / without.as_secs_f64()
        );
    }
    println!("\n{:<38} {:>14} {:>14} {:>7}", "HTTP request of a Go client (loopback)", "without", "with", "ratio");
    let without = median(request[0].clone());
    for (name, samples) in [("probes on it, process untracked", &request[1]), ("traced (`run --go-command`)", &request[2])] {
        let with = median(samples.clone());
        println!(
            "{name:<38} {:>12.1}µs {:>12.1}µs {:>7.3}",
            without.as_secs_f64() * 1e6,
            with.as_secs_f64() * 1e6,
            with.as_secs_f64() / without.as_secs_f64()
        );
    }
    println!("\n(medians of {rounds} interleaved rounds; only the ratios mean anything on a shared machine)");

    println!("\nkernel accounting of each program while the untracked workloads ran (bpf_stats):");
    println!("{:<22} {:>10} {:>12}", "program", "runs", "ns per run");
    let mut total_ns = 0;
    for (name, (runs, ns)) in &program_time {
        total_ns += ns;
        if *runs > 0 {
            println!("{name:<22} {runs:>10} {:>12.0}", *ns as f64 / *runs as f64);
        }
    }
    for (what, stats) in [("an untracked httpbench on a probed executable", &untracked_uprobes), ("a traced httpbench", &traced_uprobes)] {
        println!("\nthe request uprobes, for {what} ({REQUESTS} requests after 100 to warm up):");
        for (name, (runs, ns)) in stats.iter().filter(|(_, (runs, _))| *runs > 0) {
            println!("{name:<22} {runs:>10} {:>12.0}", *ns as f64 / *runs as f64);
        }
    }
    println!("(a uprobe also costs the trap into the kernel, which bpf_stats does not see: the request ratios above include it)");
    let (tcp_op, tcp_ns) = stats_pass_tcp;
    let tcp_programs = tcp_ns as f64 / f64::from(TCP_CONNECTS);
    let tcp_op = tcp_op.as_secs_f64() * 1e9;
    println!(
        "\nper loopback TCP connect+accept+close in that pass: {tcp_programs:.0} ns in gomod-trace's programs of {tcp_op:.0} ns ({:.1}%)",
        100.0 * tcp_programs / tcp_op
    );
    println!("(bpf_stats adds two clock reads to every run, so these are upper bounds)");
    println!("all programs together ran {:.1} ms during that pass", total_ns as f64 / 1e6);
    Ok(())
}
