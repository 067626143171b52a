//! Checks the perfetto export in Perfetto's own protos: tests/exports/check_perfetto.py,
//! run with the Python of `cargo xtask setup` (the `perfetto` package on PyPI),
//! against the JSON timeline of the same build.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::tools_dir;

/// The checker script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("exports/check_perfetto.py")
}

/// The Python that has Perfetto's protos.
pub fn python() -> PathBuf {
    tools_dir().join("venv/bin/python")
}

/// Runs the checker: its one-line summary, or everything it said on a mismatch.
pub fn run(trace: &Path, timeline_json: &Path) -> Result<String, String> {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup` (it installs Perfetto's protos)",
        python.display()
    );
    let out = Command::new(&python).arg(script()).arg(trace).arg(timeline_json).output().expect("run the checker");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(said.trim().to_string()) } else { Err(said) }
}

/// Checks a trace against its timeline; panics with the checker's output on any
/// mismatch, returns its summary.
pub fn check(trace: &Path, timeline_json: &Path) -> String {
    run(trace, timeline_json)
        .unwrap_or_else(|said| panic!("{} does not match {}:\n{said}", trace.display(), timeline_json.display()))
}
