//! `gomod-trace doctor`: what this host supports, checked for real (the programs are
//! loaded and attached, then detached), and what is missing.
use super::EXIT_TRACER_ERROR;
use crate::probe::{Probe, ProbeOptions, TRACEPOINTS, host, requests::Outcome};

fn line(ok: bool, what: &str, detail: &str) {
    let mark = if ok { "ok  " } else { "FAIL" };
    println!("{mark}  {what:<34} {detail}");
}

pub fn doctor() -> i32 {
    let mut healthy = true;
    let mut check = |ok: bool, what: &str, detail: String| {
        healthy &= ok;
        line(ok, what, &detail);
    };
    let uname = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    println!("kernel {uname}");
    let root = nix::unistd::geteuid().is_root();
    check(root, "running as root", if root { String::new() } else { "run doctor with sudo".into() });
    match host::kernel_offsets() {
        Ok(o) => check(true, "kernel BTF and struct offsets", format!("{o:?}")),
        Err(e) => check(false, "kernel BTF and struct offsets", e.to_string()),
    }
    match host::tracefs() {
        Ok(tracefs) => {
            check(true, "tracefs", tracefs.display().to_string());
            for (_, group, name) in TRACEPOINTS {
                let format = host::read_format(&tracefs, group, name);
                check(format.is_ok(), &format!("tracepoint {group}:{name}"), format.err().map(|e| e.to_string()).unwrap_or_default());
            }
            if let Ok(facts) = host::tracepoint_facts(&tracefs) {
                check(true, "skb drop reasons", format!("{} names from skb:kfree_skb", facts.drop_reasons.len()));
            }
        }
        Err(e) => check(false, "tracefs", e.to_string()),
    }
    match host::cgroup2_root() {
        Ok(path) => check(true, "cgroup v2", path.display().to_string()),
        Err(e) => check(false, "cgroup v2", e.to_string()),
    }
    if root {
        let options = ProbeOptions { go_command: "go".into(), scope: Some(std::process::id()) };
        match Probe::attach(&options) {
            Ok(mut probe) => {
                check(true, "load and attach all programs", "ok (detached again)".into());
                // The request uprobes, on each Go toolchain found (a failure here
                // loses request data, not tracing: informational).
                for toolchain in crate::probe::requests::known_toolchains(None, true) {
                    let (ok, detail) = match probe.trace_requests(&toolchain) {
                        Outcome::Traced { go_version, .. } => (true, format!("{go_version}: requests traced")),
                        Outcome::NotTraced { go_version, reason } => {
                            (false, format!("{}: requests not traced ({reason})", go_version.as_deref().unwrap_or("?")))
                        }
                        Outcome::Irrelevant => (false, "not a Go command with an HTTP client".into()),
                    };
                    line(ok, &format!("uprobes on {}", toolchain.display()), &detail);
                }
            }
            Err(e) => check(false, "load and attach all programs", e.to_string()),
        }
    }
    let go = std::process::Command::new("go").arg("version").output();
    match go {
        Ok(out) if out.status.success() => line(true, "go command", String::from_utf8_lossy(&out.stdout).trim()),
        _ => line(false, "go command", "not on PATH (not needed to trace, needed to build)"),
    }
    if healthy {
        println!("\nthis host can run gomod-trace");
        0
    } else {
        println!("\nthis host cannot run gomod-trace yet: fix the FAIL lines above");
        EXIT_TRACER_ERROR
    }
}
