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
