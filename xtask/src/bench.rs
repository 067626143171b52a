//! `cargo xtask bench`: what gomod-trace costs the rest of the machine. Workloads
//! that hit every probe (TCP connects on loopback: connect hook, TCP state
//! tracepoint, cgroup_skb both ways; fork+exec+exit of /bin/true: the process
//! tracepoints) run in this process, which the tracer does not track, without and
//! with `gomod-trace run` attached, interleaved so that machine noise hits both.
//! Only ratios measured side by side in one run are reported, and the kernel's own
//! accounting of the programs (kernel.bpf_stats_enabled): runs and nanoseconds per
//! run of each program while the untracked workloads ran, which does not depend on
//! how noisy the machine is.
use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};

const TCP_CONNECTS: u32 = 4_000;
const EXECS: u32 = 300;
const OPENS: u32 = 20_000;

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
        let child = Command::new(binary)
            .args(["run", "--format", "json", "--", "sleep", "3600"])
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

const PROGRAMS: [&str; 21] = [
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

pub fn bench(rounds: usize) -> Result<()> {
    ensure!(rounds >= 1, "at least one round");
    super::setup()?;
    super::build()?;
    let binary = super::workspace_root().join("target/debug/gomod-trace");
    println!("xtask: {rounds} rounds of {TCP_CONNECTS} loopback TCP connects, {EXECS} execs of /bin/true and {OPENS} file opens, without and with the tracer");
    let (mut tcp, mut exec, mut open) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    // Warm up caches and the loopback path once.
    tcp_connects(TCP_CONNECTS / 4)?;
    for round in 0..rounds {
        for traced in [false, true] {
            let _tracer = if traced { Some(Tracer::attach(&binary)?) } else { None };
            tcp[usize::from(traced)].push(tcp_connects(TCP_CONNECTS)?);
            exec[usize::from(traced)].push(execs(EXECS)?);
            open[usize::from(traced)].push(opens(OPENS)?);
        }
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
