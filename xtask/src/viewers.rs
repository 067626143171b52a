//! The tools the export formats are checked in by the tests, each the real
//! reader of its format: Perfetto's own Python protos (the `perfetto` package on
//! PyPI ships the trace protos Perfetto UI reads), and Playwright driving
//! Debian's Chromium for the HTML page. Installed next to the deploy/ checkers.
use std::process::Command;

use anyhow::Result;

use crate::{
    deploy::{node_dir, venv},
    status, step,
};

/// PyPI: Perfetto's trace protos, and the protobuf runtime they need.
const PERFETTO: &str = "perfetto==0.59.1";
/// npm: Playwright without its browser download (it drives Debian's Chromium).
const PLAYWRIGHT: &str = "playwright-core@1.65.2";

pub fn setup() -> Result<()> {
    let venv = venv()?;
    let installed = Command::new(venv.join("bin/python"))
        .args(["-c", "import perfetto.protos.perfetto.trace.perfetto_trace_pb2"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        step("perfetto protos (PyPI): present");
    } else {
        step(&format!("perfetto protos (PyPI): installing {PERFETTO} into {}", venv.display()));
        if !venv.join("bin/pip").exists() {
            status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        status(Command::new(venv.join("bin/pip")).args(["install", "-q", PERFETTO]))?;
    }
    let node = node_dir()?;
    if node.join("node_modules/playwright-core").exists() {
        step("playwright-core (npm): present");
        return Ok(());
    }
    step(&format!("playwright-core (npm): installing {PLAYWRIGHT} into {}", node.display()));
    std::fs::create_dir_all(&node)?;
    status(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&node)
            .arg(PLAYWRIGHT),
    )
}
