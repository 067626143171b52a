//! The `gomod-trace` command line against the real kernel: exit statuses as
//! contract.md gives them, the no-privileges error, `doctor`. Needs root.
use std::process::Command;

use gomod_trace_lab::{gomod_trace_bin, lab_available};

fn gomod_trace(args: &[&str]) -> std::process::Output {
    Command::new(gomod_trace_bin()).args(args).output().expect("run gomod-trace")
}

#[test]
fn run_exits_with_the_commands_status() {
    if !lab_available("run_exits_with_the_commands_status") {
        return;
    }
    let out = gomod_trace(&["run", "--format", "json", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let timeline: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON timeline");
    assert_eq!(timeline["schema_version"], 1);
    assert_eq!(timeline["builds"], serde_json::json!([]), "no go ran");
}

#[test]
fn run_reports_a_missing_command() {
    if !lab_available("run_reports_a_missing_command") {
        return;
    }
    let out = gomod_trace(&["run", "--", "/nonexistent/command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot start /nonexistent/command"));
}

#[test]
fn run_traces_go_and_names_the_build() {
    if !lab_available("run_traces_go_and_names_the_build") {
        return;
    }
    let out = gomod_trace(&["run", "--format", "json", "--", "go", "version"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let json_start = text.find("{\n").expect("timeline after go's output");
    let timeline: serde_json::Value = serde_json::from_str(&text[json_start..]).expect("JSON timeline");
    let build = &timeline["builds"][0];
    assert_eq!(build["command"], serde_json::json!(["go", "version"]));
    assert_eq!(build["exit_code"], 0);
    assert_eq!(build["spans"][0]["kind"], "process");
}

#[test]
fn without_privileges_the_tracer_says_so_and_exits_70() {
    if !lab_available("without_privileges_the_tracer_says_so_and_exits_70") {
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(gomod_trace_bin())
        .args(["run", "--", "true"])
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(70));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must run as root"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn doctor_loads_and_attaches_everything() {
    if !lab_available("doctor_loads_and_attaches_everything") {
        return;
    }
    let out = gomod_trace(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok    load and attach all programs"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
