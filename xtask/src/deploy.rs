//! Checks of deploy/: the systemd unit with `systemd-analyze verify` (any warning
//! fails), the Kubernetes manifests against the API's own schemas with
//! kubernetes-validate (strict: unknown fields fail), installed from PyPI into a
//! virtual environment of ours, and the ServiceMonitor (a Prometheus Operator
//! custom resource, which kubernetes-validate has no schema for) against the
//! CRD's schema as @kubernetes-models/prometheus-operator compiles it, installed
//! from npm into a directory of ours. The Prometheus alerting rules with promtool
//! (Debian's prometheus package): syntax, and their own unit tests.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};

use crate::{output, status, step};

/// Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30";
const VALIDATOR: &str = "kubernetes-validate";
/// The npm packages that validate Prometheus Operator resources: the CRD schemas
/// compiled to validators, and a YAML parser.
const CRD_PACKAGES: [&str; 2] = ["@kubernetes-models/prometheus-operator@6.0.0", "yaml@2.9.1"];
const CRD_VALIDATOR: &str = include_str!("servicemonitor.mjs");

fn tools_dir(name: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(Path::new(&home).join(".local/share/gomod-trace").join(name))
}

pub(crate) fn venv() -> Result<PathBuf> {
    tools_dir("venv")
}

/// Where the npm packages go; the validator script is written next to them.
pub(crate) fn node_dir() -> Result<PathBuf> {
    tools_dir("node")
}

/// Installs kubernetes-validate into our virtual environment and the CRD
/// validator's npm packages into our node directory, once.
pub fn setup() -> Result<()> {
    let venv = venv()?;
    let validator = venv.join("bin").join(VALIDATOR);
    if validator.exists() {
        step(&format!("{VALIDATOR}: present"));
    } else {
        step(&format!("{VALIDATOR}: installing into {}", venv.display()));
        status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        status(Command::new(venv.join("bin/pip")).args(["install", "-q", VALIDATOR]))?;
    }
    let node = node_dir()?;
    if node.join("node_modules/@kubernetes-models/prometheus-operator").exists() && node.join("node_modules/yaml").exists() {
        step("Prometheus Operator CRD schemas (npm): present");
        return Ok(());
    }
    step(&format!("Prometheus Operator CRD schemas (npm): installing into {}", node.display()));
    std::fs::create_dir_all(&node)?;
    status(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&node)
            .args(CRD_PACKAGES),
    )
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
    let custom: Vec<PathBuf> = validated
        .lines()
        .filter(|l| l.contains("Couldn't find schema for kind ServiceMonitor"))
        .filter_map(|l| manifests.iter().find(|m| l.contains(&*m.to_string_lossy())).cloned())
        .collect();
    ensure!(passed + custom.len() == manifests.len(), "deploy/kubernetes: not every manifest passed:\n{validated}");
    // The DaemonSet runs the image this version builds, never a moving tag.
    let daemonset = std::fs::read_to_string(deploy.join("kubernetes/daemonset.yaml"))?;
    let image = daemonset.lines().find_map(|l| l.trim().strip_prefix("image:")).map(str::trim).unwrap_or_default();
    let pinned = format!(":{}", env!("CARGO_PKG_VERSION"));
    ensure!(image.ends_with(&pinned), "deploy/kubernetes/daemonset.yaml: image {image:?} is not pinned to this version ({pinned})");
    // The custom resources, against the CRD's schema.
    let script = node_dir()?.join("validate-crds.mjs");
    std::fs::write(&script, CRD_VALIDATOR)?;
    let crds = Command::new("node").arg(&script).args(&custom).output().context("node")?;
    let crd_lines = String::from_utf8_lossy(&crds.stdout).into_owned();
    for line in crd_lines.lines() {
        println!("xtask:   {line}");
    }
    ensure!(crds.status.success(), "deploy/kubernetes: a custom resource is invalid:\n{crd_lines}{}", String::from_utf8_lossy(&crds.stderr));
    // The alerting rules: valid, and behaving as their tests say.
    let prometheus = deploy.join("prometheus");
    for args in [["check", "rules", "gomod-trace-rules.yml"], ["test", "rules", "gomod-trace-rules.test.yml"]] {
        let out = Command::new("promtool").args(args).current_dir(&prometheus).output().context("promtool")?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for line in said.lines().filter(|l| !l.trim().is_empty()) {
            println!("xtask:   {line}");
        }
        ensure!(out.status.success(), "deploy/prometheus: promtool {} failed:\n{said}", args.join(" "));
    }
    serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(deploy.join("grafana/gomod-trace.json"))?)
        .context("deploy/grafana/gomod-trace.json is not JSON")?;
    Ok(format!(
        "the systemd unit and {} Kubernetes manifests verified ({} against the Prometheus Operator's CRD schema), the alerting rules checked and unit-tested, the dashboard is JSON",
        passed + custom.len(),
        custom.len()
    ))
}
