//! `builds` and `export` without a daemon: which history they read, and what they
//! say when there is none. No root needed.
use std::process::Command;

fn gomod_trace(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gomod-trace")).args(args).output().expect("run gomod-trace")
}

#[test]
fn an_empty_data_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = gomod_trace(&["builds", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(70));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("gomod-trace: no history in ") && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn daemon_and_data_directory_exclude_each_other() {
    let out = gomod_trace(&["builds", "--daemon", "127.0.0.1:9464", "--data-dir", "/tmp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[test]
fn export_refuses_what_is_not_a_build_id() {
    let out = gomod_trace(&["export", "../../etc/passwd", "--data-dir", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a build id"));
}

#[test]
fn the_builds_list_cannot_drive_the_terminal() {
    use gomod_trace::{
        history::{History, Retention},
        timeline::Build,
    };
    let dir = tempfile::tempdir().unwrap();
    // A build whose argv carries an OSC title change, a screen clear and a bidi override.
    let build = Build {
        id: "1796000000-4100".into(),
        command: vec!["go".into(), "\x1b]0;owned\x07".into(), "\x1b[2J".into(), "\u{202e}exe.txt".into()],
        pid: 4100,
        started_at: "2026-12-06T10:00:00Z".into(),
        ended_at: Some("2026-12-06T10:00:01Z".into()),
        exit_code: Some(0),
        complete: true,
        state: None,
        config: Default::default(),
        notes: Vec::new(),
        spans: Vec::new(),
        findings: Vec::new(),
    };
    let keep = Retention { max_age: std::time::Duration::from_secs(365 * 86400), max_builds: 10 };
    History::open(dir.path()).unwrap().insert(&build, keep, 1_796_000_000_000_000_000).unwrap();
    let out = gomod_trace(&["builds", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.contains("1796000000-4100"), "{list}");
    assert!(!list.contains(['\x1b', '\x07', '\u{202e}']), "{list:?}");
    assert!(list.contains("go \u{fffd}]0;owned"), "shown, made harmless: {list:?}");
}
