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
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("timeline.json");
    let out = gomod_trace(&["run", "--format", "json", "--output", report.to_str().unwrap(), "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let timeline: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON timeline");
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
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("timeline.json");
    let out = gomod_trace(&["run", "--format", "json", "--output", report.to_str().unwrap(), "--", "go", "version"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("go version go1."), "go's own output, alone on stdout");
    let timeline: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON timeline");
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

/// `gomod-trace run -- CMD | jq` works: the command's standard output is its own,
/// the report goes to standard error (or --output).
#[test]
fn run_leaves_the_commands_stdout_alone() {
    if !lab_available("run_leaves_the_commands_stdout_alone") {
        return;
    }
    let out = gomod_trace(&["run", "--", "sh", "-c", "echo '{\"Path\": \"x\"}'"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"Path\": \"x\"}\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Go build ran"), "the report, on stderr");

    // A format for programs goes to a file: standard error is the command's too.
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("started");
    let out = gomod_trace(&["run", "--format", "json", "--", "touch", marker.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --output FILE"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!marker.exists(), "refused before the command started");

    let report = dir.path().join("timeline.json");
    let out = gomod_trace(&["run", "--format", "json", "--output", report.to_str().unwrap(), "--", "echo", "hello"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "nothing else when the report goes to a file");
    let timeline: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    assert_eq!(timeline["schema_version"], 1);
}

/// Runs `gomod-trace ARGS` on a pseudo-terminal (script(1)); returns what the
/// terminal showed.
fn on_a_terminal(args: &str, env: &[(&str, &str)]) -> String {
    let command = format!("{} {args}", gomod_trace_bin().display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .env("COLUMNS", "100")
        .output()
        .expect("script(1)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On a terminal `run` shows a live line while the command runs (elapsed time,
/// what is being fetched), clears it before the report, and colours the report
/// unless NO_COLOR is set; a binary format is not written to a terminal.
#[test]
fn on_a_terminal_run_shows_progress_and_colour_unless_no_color() {
    if !lab_available("on_a_terminal_run_shows_progress_and_colour_unless_no_color") {
        return;
    }
    let shown = on_a_terminal("run -- go env GOMODCACHE", &[]);
    assert!(shown.contains("\x1b[1m"), "bold headings on a terminal: {shown:?}");
    let shown = on_a_terminal("run -- sh -c 'sleep 3.5; go env GOMODCACHE; sleep 0.2'", &[]);
    assert!(shown.contains("\r\x1b[2Kgomod-trace: 2.00s  no Go build running\r"), "the live line: {shown:?}");
    assert!(shown.contains("\r\x1b[2Kgomod-trace: 3.00s"), "redrawn every second: {shown:?}");
    let report = shown.rfind("\x1b[2K").map_or("", |at| &shown[at..]);
    assert!(report.contains("go env GOMODCACHE"), "the report follows the cleared line: {shown:?}");

    let plain = on_a_terminal("run -- sh -c 'sleep 2.5; go env GOMODCACHE'", &[("NO_COLOR", "1")]);
    assert!(plain.contains("gomod-trace: 2.00s"), "{plain:?}");
    let without_line: String = plain.replace("\x1b[2K", "");
    assert!(!without_line.contains('\x1b'), "no colour with NO_COLOR: {plain:?}");

    let refused = on_a_terminal("replay /dev/null --format perfetto", &[]);
    assert!(refused.contains("binary and will not be written to a terminal"), "{refused:?}");
}

#[test]
fn completions_and_manual_come_from_the_command_line_definition() {
    if !lab_available("completions_and_manual_come_from_the_command_line_definition") {
        return;
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = gomod_trace(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && script.contains("only-failures") && script.contains("perfetto"), "{shell}: {script}");
    }
    let bash = String::from_utf8_lossy(&gomod_trace(&["completions", "bash"]).stdout).into_owned();
    let checked = Command::new("bash").args(["-n", "-c", &bash]).status().expect("bash");
    assert!(checked.success(), "the bash completion script parses");
}
