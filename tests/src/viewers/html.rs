//! Checks the html export in a real headless Chromium: tests/exports/check_html.mjs
//! (playwright-core driving Debian's /usr/bin/chromium, both installed by `cargo
//! xtask setup`) loads the page from file://, refuses and reports any other
//! request, and compares what it shows with the JSON timeline of the same build.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::tools_dir;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("exports/check_html.mjs")
}

/// Runs the checker; Ok(its output) when it passed, Err(its output) when not.
pub fn try_check(page: &Path, timeline_json: &Path, screenshot: Option<&Path>) -> Result<String, String> {
    let modules = tools_dir().join("node/node_modules");
    assert!(
        modules.join("playwright-core").exists(),
        "playwright-core is not installed in {} (run `cargo xtask setup`)",
        modules.display()
    );
    let mut node = Command::new("node");
    node.arg(script()).arg(page).arg(timeline_json).env("NODE_PATH", &modules);
    if let Some(png) = screenshot {
        node.arg(png);
    }
    let out = node.output().expect("node runs (cargo xtask setup installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(text) }
}

/// Checks `page` against `timeline_json`, writes the screenshot if asked; panics
/// with the checker's output when anything is wrong. Returns that output (its
/// last line is the summary, with the timings).
pub fn check(page: &Path, timeline_json: &Path, screenshot: Option<&Path>) -> String {
    match try_check(page, timeline_json, screenshot) {
        Ok(text) => text,
        Err(text) => panic!("the html page {} fails its check in Chromium:\n{text}", page.display()),
    }
}
