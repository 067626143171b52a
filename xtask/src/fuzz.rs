//! `cargo xtask fuzz`: the libFuzzer targets of gomod-trace/fuzz (cargo-fuzz),
//! one after another for a fixed time each, each starting from the corpus kept
//! in the repository. New inputs go to target/fuzz/corpus (the repository's
//! corpus is only read); a crash fails the task and its reproducer is kept in
//! target/fuzz/artifacts.
use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{status, step, workspace_root};

/// The cargo-fuzz release `cargo xtask setup` installs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// A fuzz target: its name, the largest input worth trying (what the product
/// reads at most, or its largest seed), and its dictionary, if any.
pub(crate) struct Target {
    name: &'static str,
    max_len: usize,
    dict: Option<&'static str>,
}

/// Every target, in the order they run.
pub(crate) const TARGETS: [Target; 6] = [
    // A ring-buffer record: the largest, the environment record, is 16.6 KiB.
    Target {
        name: "decode",
        max_len: 17 * 1024,
        dict: None,
    },
    // A captured payload is at most 2 KiB; DNS over TCP frames may say more.
    Target {
        name: "proto",
        max_len: 4096,
        dict: None,
    },
    // Go executables: the seeds are two small Go programs without their code.
    Target {
        name: "gobin",
        max_len: 512 * 1024,
        dict: Some("gobin.dict"),
    },
    Target {
        name: "goenv",
        max_len: 8192,
        dict: None,
    },
    Target {
        name: "redact",
        max_len: 4096,
        dict: None,
    },
    // Recorded lab runs, the largest about 100 KB.
    Target {
        name: "correlator",
        max_len: 128 * 1024,
        dict: None,
    },
];

fn fuzz_dir() -> PathBuf {
    workspace_root().join("gomod-trace/fuzz")
}

/// `cargo +nightly fuzz …` on gomod-trace/fuzz (sanitizers need the nightly).
fn cargo_fuzz(subcommand: &str) -> Command {
    let mut command = Command::new("cargo");
    command
        .current_dir(workspace_root())
        .args(["+nightly", "fuzz", subcommand, "--fuzz-dir"])
        .arg(fuzz_dir());
    command
}

/// Installs cargo-fuzz, pinned (idempotent: a second run checks the version).
pub(crate) fn setup() -> Result<()> {
    let working = Command::new("cargo-fuzz").arg("--version").output();
    if working.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)) {
        step(&format!("cargo-fuzz {CARGO_FUZZ_VERSION}: present"));
        return Ok(());
    }
    step(&format!("cargo-fuzz {CARGO_FUZZ_VERSION}: installing (about a minute, once)"));
    status(Command::new("cargo").args(["install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION]))
}

/// What one run of a target did, from libFuzzer's final statistics.
struct Run {
    name: &'static str,
    execs: u64,
    execs_per_second: u64,
    new_inputs: u64,
    corpus: String,
    seconds: f64,
    crash: Option<String>,
}

/// Runs `names` (every target when empty) for `seconds` each; fails when one crashed.
pub(crate) fn fuzz(seconds: u64, names: &[String]) -> Result<String> {
    ensure!(seconds >= 1, "at least one second per target");
    let targets: Vec<&Target> = if names.is_empty() {
        TARGETS.iter().collect()
    } else {
        names
            .iter()
            .map(|name| {
                TARGETS.iter().find(|t| t.name == name).with_context(|| {
                    let all: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                    format!("no fuzz target {name:?}; there are {}", all.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    let started = Instant::now();
    step("building the fuzz targets (nightly, AddressSanitizer)");
    status(&mut cargo_fuzz("build"))?;
    let built = started.elapsed().as_secs_f64();
    let mut runs = Vec::new();
    for target in targets {
        runs.push(run(target, seconds)?);
    }
    println!("xtask: fuzz targets built in {built:.0} s, then {seconds} s each:");
    for r in &runs {
        println!(
            "xtask:   {:<11} {:>10} execs  {:>6} exec/s  {:>4} new inputs  corpus {:<12} {:>4.0} s  {}",
            r.name,
            r.execs,
            r.execs_per_second,
            r.new_inputs,
            r.corpus,
            r.seconds,
            r.crash.as_deref().unwrap_or("no crash")
        );
    }
    let crashed: Vec<&Run> = runs.iter().filter(|r| r.crash.is_some()).collect();
    if !crashed.is_empty() {
        bail!(
            "{} of {} fuzz targets crashed: {}",
            crashed.len(),
            runs.len(),
            crashed.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(format!(
        "{} targets, {seconds} s each, no crash ({:.0} s in all)",
        runs.len(),
        started.elapsed().as_secs_f64()
    ))
}

fn run(target: &Target, seconds: u64) -> Result<Run> {
    let scratch = workspace_root().join("target/fuzz/corpus").join(target.name);
    let artifacts = workspace_root().join("target/fuzz/artifacts").join(target.name);
    std::fs::create_dir_all(&scratch)?;
    std::fs::create_dir_all(&artifacts)?;
    let kept = fuzz_dir().join("corpus").join(target.name);
    step(&format!("fuzzing {} for {seconds} s", target.name));
    let mut command = cargo_fuzz("run");
    // New inputs go to the first directory; the repository's corpus is read only.
    command.arg(target.name).arg(&scratch).arg(&kept).arg("--").args([
        format!("-max_total_time={seconds}"),
        format!("-max_len={}", target.max_len),
        // An input that takes this long is a hang: reported as a crash.
        "-timeout=10".to_string(),
        "-rss_limit_mb=2048".to_string(),
        "-print_final_stats=1".to_string(),
        format!("-artifact_prefix={}/", artifacts.display()),
    ]);
    // SQLite's amalgamation has function-local statics of the same name, which
    // AddressSanitizer's ODR check mistakes for one global defined twice.
    let asan = std::env::var("ASAN_OPTIONS").map_or_else(|_| String::new(), |o| format!("{o}:"));
    command.env("ASAN_OPTIONS", format!("{asan}detect_odr_violation=0"));
    if let Some(dict) = target.dict {
        command.arg(format!("-dict={}", fuzz_dir().join(dict).display()));
    }
    let started = Instant::now();
    let out = command
        .output()
        .with_context(|| format!("cannot run cargo fuzz run {}", target.name))?;
    let seconds_taken = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `#N DONE cov: … corp: 123/45Kb …`, else the last status line.
    let corpus = log
        .lines()
        .rev()
        .find_map(|l| l.split_whitespace().skip_while(|w| *w != "corp:").nth(1))
        .unwrap_or("?")
        .to_string();
    let crash = (!out.status.success()).then(|| {
        let reproducer = std::fs::read_dir(&artifacts)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
        let summary = log
            .lines()
            .find(|l| l.contains("panicked at") || l.contains("ERROR: libFuzzer") || l.contains("ERROR: AddressSanitizer"))
            .unwrap_or("exited with failure")
            .trim()
            .to_string();
        eprintln!("{log}");
        match reproducer {
            Some(path) => format!("CRASH: {summary} (reproducer {})", path.display()),
            None => format!("CRASH: {summary} ({})", out.status),
        }
    });
    Ok(Run {
        name: target.name,
        execs: stat("number_of_executed_units"),
        execs_per_second: stat("average_exec_per_sec"),
        new_inputs: stat("new_units_added"),
        corpus,
        seconds: seconds_taken,
        crash,
    })
}
