//! Checks of deploy/: the systemd unit with `systemd-analyze verify` (any warning
//! fails), the Kubernetes manifests against the API's own schemas with
//! kubernetes-validate (strict: unknown fields fail), installed from PyPI into a
//! virtual environment of ours. The ServiceMonitor is a Prometheus Operator CRD
//! that kubernetes-validate has no schema for: it is only parsed (see README).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};

use crate::{output, status, step};

/// Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30";
const VALIDATOR: &str = "kubernetes-validate";

fn venv() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(Path::new(&home).join(".local/share/gomod-trace/venv"))
}

/// Installs kubernetes-validate into our virtual environment, once.
pub fn setup() -> Result<()> {
    let venv = venv()?;
    let validator = venv.join("bin").join(VALIDATOR);
    if validator.exists() {
        step(&format!("{VALIDATOR}: present"));
        return Ok(());
    }
    step(&format!("{VALIDATOR}: installing into {}", venv.display()));
    status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    status(Command::new(venv.join("bin/pip")).args(["install", "-q", VALIDATOR]))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Verifies deploy/; returns what was checked, in words.
pub fn check(gomod_trace: &Path) -> Result<String> {
    let deploy = workspace().join("deploy");
    // The unit names /usr/local/bin/gomod-trace; verify it with the binary we built.
    let unit = std::fs::read_to_string(deploy.join("systemd/gomod-trace.service"))?;
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("gomod-trace.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/gomod-trace", &gomod_trace.display().to_string()))?;
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().context("systemd-analyze")?;
    let complaints = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.success() && complaints.trim().is_empty(), "deploy/systemd/gomod-trace.service: {complaints}");

    let mut manifests: Vec<PathBuf> = std::fs::read_dir(deploy.join("kubernetes"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    let validated = output(
        Command::new(venv()?.join("bin").join(VALIDATOR))
            .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
            .args(&manifests),
    )?;
    for line in validated.lines() {
        println!("xtask:   {line}");
    }
    let passed = validated.lines().filter(|l| l.contains(" passed ")).count();
    let schemaless = validated.lines().filter(|l| l.contains("Couldn't find schema for kind ServiceMonitor")).count();
    ensure!(
        passed + schemaless == manifests.len() && schemaless <= 1,
        "deploy/kubernetes: not every manifest passed:\n{validated}"
    );
    serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(deploy.join("grafana/gomod-trace.json"))?)
        .context("deploy/grafana/gomod-trace.json is not JSON")?;
    Ok(format!(
        "the systemd unit and {passed} Kubernetes manifests verified, {schemaless} (the ServiceMonitor) only parsed, the dashboard is JSON"
    ))
}
