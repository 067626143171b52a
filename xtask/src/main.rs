//! Developer and CI tasks. Every task sets up what it needs first, idempotently:
//! a second run checks and skips in seconds.
//!
//!   cargo xtask setup   the toolchain and Debian packages
//!   cargo xtask test    setup, build, unit tests, then the privileged lab tests
//!   cargo xtask demo    setup, build, then gomod-trace on a real `go mod download`
//!                       in the lab (clean, then with a firewall dropping packets)
//!   cargo xtask bench   what the tracer costs: probes on untracked work, and a
//!                       real `go mod download` of ~160 modules, side by side
//!   cargo xtask fuzz    the parsers' libFuzzer targets, N seconds each
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

mod bench;
mod deploy;
mod download;
mod fuzz;
mod image;
mod viewers;
use clap::{Parser, Subcommand};

/// Seconds each fuzz target runs in `cargo xtask test` (a smoke run; the long
/// runs are `cargo xtask fuzz --seconds N`).
const FUZZ_SMOKE_SECONDS: u64 = 20;
/// The bpf-linker release known to build against the nightly's LLVM here.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages: the Go toolchains, the lab's peers and tools (git serves and
/// fetches direct modules; golang.org/x/mod builds the checksum database;
/// Prometheus scrapes the daemon; podman builds and runs the container image).
const PACKAGES: [&str; 15] = [
    "golang-go",
    "golang-1.21-go",
    "golang-1.22-go",
    "golang-1.23-go",
    "golang-golang-x-mod-dev",
    "git",
    "dnsmasq-base",
    "nftables",
    "iproute2",
    "ca-certificates",
    "bpftool",
    // The real Prometheus that scrapes the daemon in the lab.
    "prometheus",
    // Builds and runs the container image (runc: crun refuses hybrid cgroup hosts).
    "podman",
    "runc",
    // The browser the HTML export is checked in (driven by Playwright).
    "chromium",
];
/// Packages that come from the release's backports suite.
const BACKPORTS_PACKAGES: [&str; 3] = ["golang-1.21-go", "golang-1.22-go", "golang-1.23-go"];
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/gomod-trace-backports.list";

/// Adds `<codename>-backports` with the mirror apt already uses for the release.
fn add_backports() -> Result<()> {
    if Path::new(BACKPORTS_LIST).exists() {
        return Ok(());
    }
    let os_release = std::fs::read_to_string("/etc/os-release")?;
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .context("/etc/os-release names no VERSION_CODENAME")?
        .trim_matches('"')
        .to_string();
    let mut sources = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for entry in std::fs::read_dir("/etc/apt/sources.list.d")?.flatten() {
        sources.push('\n');
        sources.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    // One-line `deb URI suite …` or deb822 `URIs:` followed by `Suites:`.
    let mut mirror = None;
    let mut uris: Option<String> = None;
    for line in sources.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"deb") && words.get(2) == Some(&codename.as_str()) {
            mirror = words.get(1).map(|u| u.to_string());
        } else if let Some(u) = line.strip_prefix("URIs:") {
            uris = u.split_whitespace().next().map(str::to_string);
        } else if let Some(suites) = line.strip_prefix("Suites:")
            && suites.split_whitespace().any(|s| s == codename)
        {
            mirror = uris.clone();
        }
        if mirror.is_some() {
            break;
        }
    }
    let mirror = mirror.with_context(|| format!("no apt source for {codename} to take a mirror from"))?;
    step(&format!("apt: adding {codename}-backports"));
    std::fs::write(BACKPORTS_LIST, format!("deb {mirror} {codename}-backports main\n"))?;
    Ok(())
}

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Set up, build, and run every test (unit, replay, privileged lab).
    Test,
    /// Set up, build, and show gomod-trace on a real `go mod download` in the lab.
    Demo,
    /// Set up, build, and check deploy/ (systemd unit, Kubernetes manifests and the
    /// ServiceMonitor against their schemas, the dashboard); part of `test`.
    CheckDeploy,
    /// Build gomod-trace and write its manual pages (from its command-line
    /// definition) into target/man, each checked by man(1) for warnings. Part of
    /// `test`.
    Man,
    /// Build the container image (deploy/container/Containerfile) with podman:
    /// localhost/gomod-trace:VERSION and :latest. Part of `test`.
    Image,
    /// Run the libFuzzer targets of gomod-trace/fuzz one after another, each for
    /// --seconds, from the corpus kept in the repository; fails on a crash. Part
    /// of `test` (a short run of each).
    Fuzz {
        /// Seconds each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The targets to run (default: all): decode, proto, gobin, goenv, redact, correlator.
        targets: Vec<String>,
    },
    /// Measure what gomod-trace costs: processes it does not track (the probes),
    /// and a real `go mod download` untraced, under `run`, under the daemon and
    /// under `strace -f`; interleaved, as ratios.
    Bench {
        /// Rounds per configuration (the configurations alternate in each round).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Which benchmark: the probes on untracked work, the real download, or both.
        #[arg(long, value_enum, default_value_t = Workload::All)]
        workload: Workload,
        /// The gomod-trace binary to measure (copied first); default: a release
        /// build of this tree.
        #[arg(long, env = "GOMOD_TRACE_BENCH_BIN", value_name = "PATH")]
        tracer: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    /// `go mod download` of real modules from a local HTTPS proxy (xtask/src/download.rs).
    Download,
    /// The probes' cost on untracked work and the request uprobes (xtask/src/bench.rs).
    Probes,
    All,
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn status(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command.status().with_context(|| format!("cannot run {shown}"))?;
    ensure!(status.success(), "{shown} failed ({status})");
    Ok(())
}

fn output(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let out = command.output().with_context(|| format!("cannot run {shown}"))?;
    ensure!(out.status.success(), "{shown} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn step(what: &str) {
    println!("xtask: {what}");
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn setup_packages() -> Result<()> {
    install_packages(&PACKAGES)
}

/// Installs the Debian packages of `packages` that are missing (as root).
pub(crate) fn install_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        step(&format!("Debian packages ({}): present", packages.len()));
        return Ok(());
    }
    ensure!(is_root(), "Debian packages {missing:?} are missing; run as root so that xtask can install them");
    step(&format!("Debian packages: installing {}", missing.join(" ")));
    if missing.iter().any(|p| BACKPORTS_PACKAGES.contains(p)) {
        add_backports()?;
    }
    status(Command::new("apt-get").args(["update", "-qq"]))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn setup_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))
        .context("the nightly toolchain is needed for the eBPF programs; it is part of this machine's image")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        step("nightly rust-src: present");
        return Ok(());
    }
    step("nightly rust-src: installing");
    status(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// bpf-linker linked against the nightly's own LLVM (environment.md): Debian has
/// no LLVM of the right version.
fn setup_bpf_linker() -> Result<()> {
    let working = Command::new("bpf-linker").arg("--version").output();
    if working.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)) {
        step(&format!("bpf-linker {BPF_LINKER_VERSION}: present"));
        return Ok(());
    }
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let llvm_major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV names no LLVM version")?
        .to_string();
    let sysroot = PathBuf::from(output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim());
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = Path::new(&home).join(format!(".local/share/gomod-trace/llvm-{llvm_major}"));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    let mut main_library = None;
    for entry in std::fs::read_dir(sysroot.join("lib"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("libLLVM") {
            let link = lib.join(&name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(entry.path(), &link)?;
            if name.starts_with(&format!("libLLVM-{llvm_major}")) {
                main_library = Some(entry.path());
            }
        }
    }
    let main_library = main_library.with_context(|| format!("no libLLVM-{llvm_major}*.so in {}", sysroot.display()))?;
    let link = lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(main_library, &link)?;
    step(&format!("bpf-linker {BPF_LINKER_VERSION}: building against the nightly's LLVM {llvm_major} (about 2 minutes, once)"));
    status(
        Command::new("cargo")
            .args(["install", "--locked", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", &format!("llvm-{llvm_major}")])
            .env("LLVM_PREFIX", &prefix),
    )
}

pub(crate) fn setup() -> Result<()> {
    let started = Instant::now();
    setup_packages()?;
    setup_rust_src()?;
    setup_bpf_linker()?;
    fuzz::setup()?;
    deploy::setup()?;
    viewers::setup()?;
    step(&format!("setup done in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(())
}

pub(crate) fn build() -> Result<()> {
    let started = Instant::now();
    step("building gomod-trace (and its eBPF programs)");
    status(cargo().args(["build", "-p", "gomod-trace"]))?;
    step(&format!("build done in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(())
}

/// Totals over the `test result:` lines of cargo test runs.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    /// Runs `cargo test ARGS`, echoing its output and counting its results.
    fn cargo_test(&mut self, args: &[&str]) -> Result<()> {
        use std::io::BufRead as _;
        let mut child = cargo().arg("test").args(args).stdout(std::process::Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().context("cargo test stdout")?;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(result) = line.strip_prefix("test result: ") {
                let count = |word: &str| {
                    result
                        .split(';')
                        .find_map(|part| part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(word))
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                self.passed += count(" passed");
                self.failed += count(" failed");
                self.ignored += count(" ignored");
            }
        }
        let status = child.wait()?;
        ensure!(status.success(), "cargo test {} failed ({status})", args.join(" "));
        Ok(())
    }
}

fn test() -> Result<()> {
    setup()?;
    build()?;
    let lab_skips = gomod_trace_lab::missing_requirements();
    if let Some(why) = &lab_skips {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("the lab tests cannot run: {why}");
        }
        println!("xtask: WARNING: lab tests will be skipped: {why}");
    }
    let mut tally = Tally::default();
    step("unit, replay and parser tests");
    let unit = tally.cargo_test(&["--workspace", "--exclude", "gomod-trace-lab"]);
    step(&format!("fuzz targets, {FUZZ_SMOKE_SECONDS} s each"));
    let fuzzed = fuzz::fuzz(FUZZ_SMOKE_SECONDS, &[]);
    if let Ok(fuzzed) = &fuzzed {
        step(&format!("fuzz: {fuzzed}"));
    }
    step("deploy/ manifests");
    let checked = deploy::check(&gomod_trace_lab::gomod_trace_bin())?;
    step(&format!("deploy/: {checked}"));
    step(&format!("manual pages: {}", man()?));
    step("container image (the lab runs it as the DaemonSet does)");
    let image = image::build()?;
    step(&format!("image: {image}"));
    step("lab tests (root, network namespaces, real go; one at a time)");
    let lab = unit.and(fuzzed.map(drop)).and_then(|()| tally.cargo_test(&["-p", "gomod-trace-lab", "--", "--test-threads=1"]));
    println!("xtask: {} passed, {} failed, {} skipped", tally.passed, tally.failed, tally.ignored);
    lab
}

/// Writes the manual pages into target/man and has man(1) format each one with
/// its warnings on: a page it complains about fails.
fn man() -> Result<String> {
    let dir = workspace_root().join("target/man");
    let _ = std::fs::remove_dir_all(&dir);
    status(Command::new(gomod_trace_lab::gomod_trace_bin()).arg("man-pages").arg(&dir))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    pages.sort();
    for page in &pages {
        let out = Command::new("man").args(["--warnings", "-l"]).arg(page).env("MANWIDTH", "80").output().context("man")?;
        let warnings = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success() && warnings.trim().is_empty(), "{}: {warnings}", page.display());
        ensure!(String::from_utf8_lossy(&out.stdout).contains("SYNOPSIS"), "{}: no SYNOPSIS", page.display());
    }
    Ok(format!("{} pages in {}, formatted by man(1) without warnings", pages.len(), dir.display()))
}

fn demo() -> Result<()> {
    setup()?;
    build()?;
    if let Some(why) = gomod_trace_lab::missing_requirements() {
        bail!("the lab cannot run here: {why}");
    }
    let proxy = format!("https://{}", gomod_trace_lab::PROXY_NAME);
    println!(
        "\nxtask: the lab: {} modules served over TLS by {proxy}, DNS from dnsmasq, go from Debian,",
        gomod_trace_lab::MODULES
    );
    println!("xtask: each in its own network namespace. No traffic leaves this machine.\n");

    println!("== 1. a clean `go mod download`\n");
    let lab = gomod_trace_lab::Lab::start();
    let run = lab.traced_download(&proxy, Duration::from_secs(120));
    println!("{}", run.report());
    drop(lab);

    println!("== 2. the same, with nftables on the agent dropping packets to the proxy (about 30 s)\n");
    let lab = gomod_trace_lab::Lab::start();
    lab.require_modules(1);
    lab.client_firewall(&format!(
        "table inet gomod_trace_demo {{\n chain out {{\n  type filter hook output priority 0;\n  ip daddr {} tcp dport 443 drop\n }}\n}}\n",
        lab.ip_of(gomod_trace_lab::PROXY_NAME)
    ));
    let run = lab.traced_download(&proxy, Duration::from_secs(120));
    println!("{}", run.report());
    println!("xtask: go printed:\n{}", run.stderr.trim_end());
    drop(lab);

    println!("\n== 3. a proxy that answers 404 (plain HTTP), so Go falls back to git for two modules\n");
    let lab = gomod_trace_lab::Lab::start();
    lab.require_modules(2);
    let run = lab.traced_download("http://s404.lab.test,direct", Duration::from_secs(120));
    println!("{}", run.report());
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup(),
        Task::Test => test(),
        Task::Demo => demo(),
        Task::Man => {
            build()?;
            step(&format!("manual pages: {}", man()?));
            Ok(())
        }
        Task::Image => {
            setup()?;
            step(&format!("image: {}", image::build()?));
            Ok(())
        }
        Task::CheckDeploy => {
            setup()?;
            build()?;
            step(&format!("deploy/: {}", deploy::check(&gomod_trace_lab::gomod_trace_bin())?));
            Ok(())
        }
        Task::Fuzz { seconds, targets } => {
            setup()?;
            step(&format!("fuzz: {}", fuzz::fuzz(seconds, &targets)?));
            Ok(())
        }
        Task::Bench { rounds, workload, tracer } => {
            ensure!(rounds >= 1, "at least one round");
            setup()?;
            let binary = download::bench_binary(tracer.as_deref())?;
            if workload != Workload::Download {
                bench::bench(rounds, &binary)?;
            }
            if workload != Workload::Probes {
                download::bench(rounds, &binary)?;
            }
            Ok(())
        }
    }
}
