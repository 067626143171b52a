//! The daemon as deploy/kubernetes/daemonset.yaml starts it (its own arguments,
//! read from the manifest), in the lab's server namespace (a node), asked from
//! the client namespace (another host on the network): the metrics answer, the
//! builds API does not; served off the node with a token file, it answers only
//! to the token. Needs root; under CI=true it must not skip.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use gomod_trace_lab::{Lab, daemonset, gomod_trace_bin, lab_available};

/// The DaemonSet's arguments for a daemon in the lab: every absolute path (the
/// data directory, the API's socket) moved under `root`, addresses as they are;
/// `--api-listen` replaced when `api_listen` is given; `extra` added.
fn lab_args(root: &Path, api_listen: Option<&str>, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = daemonset::args()
        .into_iter()
        .filter(|a| api_listen.is_none() || !a.starts_with("--api-listen"))
        .map(|arg| match arg.split_once('=') {
            Some((flag, value)) => {
                let (scheme, path) = value.strip_prefix("unix:").map_or(("", value), |p| ("unix:", p));
                if path.starts_with('/') { format!("{flag}={scheme}{}{path}", root.display()) } else { arg }
            }
            None => arg,
        })
        .collect();
    args.extend(api_listen.map(|a| format!("--api-listen={a}")));
    args.extend(extra.iter().cloned());
    args
}

/// A daemon in a namespace of the lab, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// Starts the daemon in `ns` (`ip netns exec` execs it: the child is the
    /// daemon) and waits until its metrics port says ready, from `ns` itself.
    fn start(ns: &str, args: &[String], metrics: &str) -> Daemon {
        let child = spawn_daemon(ns, args);
        let mut daemon = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while curl(ns, &[&format!("http://{metrics}/readyz")]).0 != 200 {
            if let Some(status) = daemon.0.try_wait().unwrap() {
                panic!("the daemon exited ({status}): {}", daemon.stderr());
            }
            assert!(Instant::now() < deadline, "the daemon did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    fn stderr(&mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut text = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text
    }
}

/// The daemon started in `ns` (`ip netns exec` execs it: the child is the daemon).
fn spawn_daemon(ns: &str, args: &[String]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(gomod_trace_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the daemon")
}

/// curl in a namespace: the HTTP status (0 when no connection was made) and the body.
fn curl(ns: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "--silent", "--max-time", "5", "--write-out", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The daemon run to completion with these arguments (one that must refuse to start).
fn refused(ns: &str, args: &[String]) -> Output {
    let mut child = spawn_daemon(ns, args);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started: it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The TCP addresses the process `pid` listens on in namespace `ns`.
fn listening(ns: &str, pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "exec", ns, "ss", "-Htlnp"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

fn token_file(dir: &Path, token: &str, mode: u32) -> PathBuf {
    let path = dir.join(format!("token-{mode:o}"));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn the_builds_api_is_not_reachable_off_the_node_with_the_daemonsets_arguments() {
    if !lab_available("the_builds_api_is_not_reachable_off_the_node_with_the_daemonsets_arguments") {
        return;
    }
    let lab = Lab::start();
    let root = lab.path("node");
    let args = lab_args(&root, None, &[]);
    let listen = args.iter().find_map(|a| a.strip_prefix("--listen=")).expect("the DaemonSet sets --listen").to_string();
    let port = listen.rsplit_once(':').unwrap().1;
    let daemon = Daemon::start(&lab.server_ns, &args, &format!("127.0.0.1:{port}"));

    // From another host: the metrics and probes answer, the builds do not.
    let node = format!("http://{}:{port}", lab.server_ip);
    let (status, metrics) = curl(&lab.client_ns, &[&format!("{node}/metrics")]);
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("# TYPE gomod_trace_build_duration_seconds histogram"), "{metrics}");
    assert_eq!(curl(&lab.client_ns, &[&format!("{node}/readyz")]).0, 200);
    for path in ["/api/v1/builds", "/api/v1/running", "/api/v1/builds/1-2"] {
        let (status, body) = curl(&lab.client_ns, &[&format!("{node}{path}")]);
        assert_eq!(status, 404, "{path} answered off the node: {body}");
        assert!(body.contains("--api-listen") && !body.contains("\"builds\""), "{path}: {body}");
    }
    // Nothing else of the daemon listens where another host could reach it.
    let addrs = listening(&lab.server_ns, daemon.0.id());
    assert_eq!(addrs, std::slice::from_ref(&listen), "the daemon's TCP listeners");
    // The API is a unix socket on the node, only root's.
    let socket = args.iter().find_map(|a| a.strip_prefix("--api-listen=unix:")).expect("the DaemonSet's API is a unix socket");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(Path::new(socket)), mode(Path::new(socket).parent().unwrap())), (0o660, 0o750));
    let (status, body) = curl(&lab.server_ns, &["--unix-socket", socket, "http://localhost/api/v1/builds"]);
    assert_eq!(status, 200, "{body}");
    let out = Command::new(gomod_trace_bin()).args(["builds", "--json", "--daemon", &format!("unix:{socket}")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(daemon);

    // Off the node without a token, or with a token file others can read: the
    // daemon refuses to start, and says why.
    let off_node = lab_args(&root, Some("0.0.0.0:9465"), &[]);
    let out = refused(&lab.server_ns, &off_node);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(stderr.contains("refusing to serve the builds API on 0.0.0.0:9465 without authentication"), "{stderr}");
    let token = "a9c1f0e7d2b84f6e9a1c3b5d7e9f0a2b";
    let readable = token_file(&lab.path(""), token, 0o644);
    let out = refused(&lab.server_ns, &lab_args(&root, Some("0.0.0.0:9465"), &[format!("--api-token-file={}", readable.display())]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(stderr.contains("open to other users") && !stderr.contains(token), "{stderr}");

    // Off the node with a token: only the token opens it.
    let file = token_file(&lab.path(""), token, 0o600);
    let args = lab_args(&root, Some("0.0.0.0:9465"), &[format!("--api-token-file={}", file.display())]);
    let mut daemon = Daemon::start(&lab.server_ns, &args, &format!("127.0.0.1:{port}"));
    let api = format!("http://{}:9465/api/v1/builds", lab.server_ip);
    let (status, body) = curl(&lab.client_ns, &[&api]);
    assert_eq!(status, 401, "no token: {body}");
    let (status, body) = curl(&lab.client_ns, &["--header", "Authorization: Bearer a9c1f0e7d2b84f6e9a1c3b5d7e9f0a2c", &api]);
    assert_eq!(status, 401, "a wrong token: {body}");
    let (status, body) = curl(&lab.client_ns, &["--header", &format!("Authorization: Bearer {token}"), &api]);
    assert_eq!(status, 200, "the token: {body}");
    assert!(body.contains("\"builds\""), "{body}");
    // The CLI from the other host, with the same file; and without it.
    let cli = |extra: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &lab.client_ns])
            .arg(gomod_trace_bin())
            .args(["builds", "--json", "--daemon", &format!("{}:9465", lab.server_ip)])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = cli(&["--api-token-file", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&[]);
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"), "{}", String::from_utf8_lossy(&out.stderr));
    // The metrics port still serves no builds, token or not.
    let (status, _) = curl(&lab.client_ns, &["--header", &format!("Authorization: Bearer {token}"), &format!("{node}/api/v1/builds")]);
    assert_eq!(status, 404);
    let stderr = daemon.stderr();
    assert!(!stderr.contains(token), "the token is never logged: {stderr}");
}
