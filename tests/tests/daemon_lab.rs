//! `gomod-trace daemon` on the host while the lab's client runs builds the daemon
//! did not start: concurrent builds all recorded with the right findings, the
//! API and metrics, malformed requests, a second instance, SIGTERM, and `kill -9`
//! with a restart that keeps every completed build. Needs root; under CI=true it
//! must not skip.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use gomod_trace_lab::{Lab, PROXY_NAME, gomod_trace_bin, lab_available, viewers::{self, otlp}};
use serde_json::Value;

/// A daemon process, killed when dropped.
struct Daemon {
    child: Child,
    /// Metrics and health.
    addr: SocketAddr,
    /// The builds API, on loopback.
    api: SocketAddr,
}

impl Daemon {
    fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with(data_dir, &[])
    }

    /// A daemon with more options on its command line.
    fn start_with(data_dir: &Path, args: &[&str]) -> Daemon {
        // Two free ports on loopback (both held until both are known, so they
        // differ), then released for the daemon to bind.
        let (metrics_port, api_port) = (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
        let (addr, api) = (metrics_port.local_addr().unwrap(), api_port.local_addr().unwrap());
        drop((metrics_port, api_port));
        let child = Command::new(gomod_trace_bin())
            .args(["daemon", "--listen", &addr.to_string(), "--api-listen", &api.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let daemon = Daemon { child, addr, api };
        wait_until("the daemon to be ready", Duration::from_secs(30), || {
            get(daemon.addr, "/readyz").is_ok_and(|(status, _)| status == 200)
        });
        daemon
    }

    /// Sends a signal; returns the exit status.
    fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not stop on {signal}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// As [`Daemon::stop`], and what it wrote on stderr.
    fn stop_with_stderr(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        let stderr = self.child.stderr.take();
        let status = self.stop(signal);
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        (status, text)
    }

    fn stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw HTTP/1.1 exchange: what a client sends, status and body back.
fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
}

fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}")))
}

/// Builds the daemon recorded, newest first.
fn recorded(addr: SocketAddr) -> Vec<Value> {
    let (status, body) = get_json(addr, "/api/v1/builds?limit=1000");
    assert_eq!(status, 200, "{body}");
    body["builds"].as_array().cloned().unwrap_or_default()
}

fn downloads(builds: &[Value]) -> Vec<&Value> {
    builds.iter().filter(|b| b["command"] == serde_json::json!(["go", "mod", "download"])).collect()
}

/// A build the API lists as run to its end, complete, with exit status 0 and no
/// error or warning.
fn assert_clean(build: &Value) {
    assert_eq!((build["exit_code"].as_i64(), build["complete"].as_bool()), (Some(0), Some(true)), "{build:#}");
    assert_eq!(build["findings"], serde_json::json!([]), "{build:#}");
}

#[test]
fn daemon_records_concurrent_builds_it_did_not_start() {
    if !lab_available("daemon_records_concurrent_builds_it_did_not_start") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(4);
    let data = lab.path("daemon-data");
    let daemon = Daemon::start(&data);

    // A second daemon on the same data directory refuses to attach twice.
    let second = Command::new(gomod_trace_bin())
        .args(["daemon", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another gomod-trace daemon"));

    // Ten builds at once, each with its own module cache: eight through the
    // proxy, two at a port where nothing listens.
    let mut children = Vec::new();
    for i in 0..10 {
        let modcache = lab.path(&format!("modcache-{i}"));
        let modcache = modcache.to_str().unwrap();
        let goproxy = if i < 8 { format!("https://{PROXY_NAME}") } else { format!("https://{PROXY_NAME}:8443") };
        let mut command = lab.client_command(&["go", "mod", "download"], &[("GOPROXY", &goproxy), ("GOMODCACHE", modcache)]);
        children.push((i, command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()));
    }
    for (i, mut child) in children {
        let status = child.wait().unwrap();
        assert_eq!(status.success(), i < 8, "build {i}: {status}");
    }
    wait_until("ten builds in the history", Duration::from_secs(30), || downloads(&recorded(daemon.api)).len() >= 10);
    let builds = recorded(daemon.api);
    let downloads = downloads(&builds);
    assert_eq!(downloads.len(), 10, "{builds:#?}");
    let (ok, failed): (Vec<&Value>, Vec<&Value>) = downloads.iter().copied().partition(|b| b["exit_code"] == 0);
    assert_eq!((ok.len(), failed.len()), (8, 2));
    for b in &ok {
        assert_clean(b);
        // The whole timeline: four modules through the proxy.
        let (status, t) = get_json(daemon.api, &format!("/api/v1/builds/{}", b["id"].as_str().unwrap()));
        assert_eq!(status, 200);
        assert_eq!(t["schema_version"], 1);
        let modules = t["builds"][0]["spans"].as_array().unwrap().iter().filter(|s| s["kind"] == "module").count();
        assert_eq!(modules, 4, "{t:#}");
    }
    for b in &failed {
        assert_eq!(b["findings"], serde_json::json!(["connect_refused"]), "{b:#}");
    }

    // Filters and pages.
    let (_, only_failed) = get_json(daemon.api, "/api/v1/builds?failed=true&kind=connect_refused");
    assert_eq!(only_failed["builds"].as_array().unwrap().len(), 2);
    let (_, page) = get_json(daemon.api, "/api/v1/builds?limit=3&page=2&since=1h");
    assert_eq!((page["builds"].as_array().unwrap().len(), page["page"].as_u64()), (3, Some(2)));

    // The CLI through the API: the same listing, filters and timelines.
    let cli = |args: &[&str]| Command::new(gomod_trace_bin()).args(args).args(["--daemon", &daemon.api.to_string()]).output().unwrap();
    let out = cli(&["builds", "--json", "--limit", "1000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap(), builds);
    let out = cli(&["builds", "--failed", "--kind", "connect_refused", "--since", "1h"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().filter(|l| l.contains("connect_refused")).count(), 2, "{table}");
    let id = failed[0]["id"].as_str().unwrap();
    let out = cli(&["export", id, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), get_json(daemon.api, &format!("/api/v1/builds/{id}")).1);
    let out = cli(&["export", "12345-67890"]);
    assert_eq!(out.status.code(), Some(1), "an unknown build: {}", String::from_utf8_lossy(&out.stderr));
    let nobody = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = Command::new(gomod_trace_bin()).args(["builds", "--daemon", &nobody.to_string()]).output().unwrap();
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no gomod-trace daemon answers"), "{}", String::from_utf8_lossy(&out.stderr));

    // Metrics: OpenMetrics text with the builds and findings counted.
    let (status, metrics) = get(daemon.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    for line in [
        "gomod_trace_builds_total{outcome=\"failed\"} 2",
        "gomod_trace_findings_total{kind=\"connect_refused\"} 2",
        "gomod_trace_connects_total{role=\"proxy\",host=\"proxy.lab.test\",outcome=\"refused\"}",
        "gomod_trace_module_fetches_total{source=\"proxy\",outcome=\"ok\"} 32",
        "gomod_trace_events_lost_total{reason=\"ring_buffer_full\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    assert!(metrics.contains("gomod_trace_builds_total{outcome=\"ok\"}"));
    assert!(!metrics.contains(&lab.ip_of(PROXY_NAME).to_string()), "no addresses in labels");

    // Malformed requests: 4xx with a JSON error, never a crash.
    for (path, status) in [
        ("/api/v1/builds?limit=0", 400),
        ("/api/v1/builds?since=yesterday", 400),
        ("/api/v1/builds?kind=nope", 400),
        ("/api/v1/builds?page=-1", 400),
        ("/api/v1/builds?color=blue", 400),
        ("/api/v1/builds/..%2f..%2fetc", 400),
        ("/api/v1/builds/12345-67890", 404),
        ("/nowhere", 404),
    ] {
        let (got, body) = get_json(daemon.api, path);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (got, _) = exchange(daemon.api, b"POST /api/v1/builds HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(got, 405);
    let (got, _) = exchange(daemon.addr, b"\x16\x03\x01garbage\r\n\r\n").unwrap();
    assert_eq!(got, 400, "not HTTP");
    assert_eq!(get(daemon.addr, "/healthz").unwrap().0, 200, "still serving");

    // SIGTERM: stop, flush, exit 0.
    let status = daemon.stop("TERM");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn kill_9_loses_no_completed_build() {
    if !lab_available("kill_9_loses_no_completed_build") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(2);
    let data = lab.path("daemon-data");
    let daemon = Daemon::start(&data);
    for i in 0..3 {
        let modcache = lab.path(&format!("modcache-{i}"));
        let status = lab
            .client_command(&["go", "mod", "download"], &[("GOMODCACHE", modcache.to_str().unwrap())])
            .status()
            .unwrap();
        assert!(status.success());
    }
    wait_until("three builds in the history", Duration::from_secs(30), || downloads(&recorded(daemon.api)).len() >= 3);
    // A build in flight when the daemon dies: a stalled download.
    let mut stalled = lab
        .client_command(&["go", "mod", "download"], &[("GOPROXY", "https://stall.lab.test"), ("GOMODCACHE", lab.path("modcache-stall").to_str().unwrap())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let status = daemon.stop("KILL");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    let _ = stalled.kill();
    let _ = stalled.wait();

    // The database is sound and holds every completed build.
    let check = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('PRAGMA integrity_check').fetchone()[0])"])
        .arg(data.join("history.sqlite3"))
        .output()
        .expect("python3's sqlite3");
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok", "{}", String::from_utf8_lossy(&check.stderr));
    let daemon = Daemon::start(&data);
    let builds = recorded(daemon.api);
    assert_eq!(downloads(&builds).iter().filter(|b| b["exit_code"] == 0).count(), 3, "{builds:#?}");
    // The CLI reads the same history.
    let out = Command::new(gomod_trace_bin()).args(["builds", "--json", "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success());
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(downloads(&listed).len(), downloads(&builds).len());
    let id = downloads(&listed)[0]["id"].as_str().unwrap().to_string();
    let out = Command::new(gomod_trace_bin()).args(["export", &id, "--format", "json", "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success());
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["builds"][0]["id"], id.as_str());
    let stderr = daemon.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Issue 15 §2 for the daemon: credentials in a build's argv (the second URL of
/// a GOPROXY list, a header flag) and environment (the second URL) reach neither
/// the API (list, timeline, running builds), the metrics, the daemon's log nor
/// the history's files; the history is the owner's only, in a data directory the
/// daemon created private.
#[test]
fn no_credential_of_a_build_reaches_the_api_the_metrics_or_the_history() {
    use std::os::unix::fs::PermissionsExt as _;
    if !lab_available("no_credential_of_a_build_reaches_the_api_the_metrics_or_the_history") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(1);
    let data = lab.path("daemon-data");
    let daemon = Daemon::start(&data);
    let secrets = ["DaemonArgvSecondUrlPw1", "DaemonHeaderTok2", "DaemonEnvSecondUrlPw3"];
    // Exits 2 (no such flag), and is a build all the same.
    let goproxy_arg = format!("GOPROXY=https://{PROXY_NAME},https://u:{}@corp.lab.test/go,direct", secrets[0]);
    let header = format!("Authorization: Bearer {}", secrets[1]);
    let _ = lab.client_command(&["go", "env", "-H", &header, &goproxy_arg], &[]).output().unwrap();
    let goproxy = format!("https://{PROXY_NAME},https://u:{}@corp.lab.test/go,direct", secrets[2]);
    let status = lab.client_command(&["go", "mod", "download"], &[("GOPROXY", &goproxy)]).status().unwrap();
    assert!(status.success());
    wait_until("both builds in the history", Duration::from_secs(30), || recorded(daemon.api).len() >= 2);

    let mut outputs = vec![("/metrics".to_string(), get(daemon.addr, "/metrics").unwrap().1)];
    let answer = |path: &str| {
        let (status, body) = get(daemon.api, path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        (path.to_string(), body)
    };
    outputs.extend(["/api/v1/builds?limit=1000", "/api/v1/running"].map(answer));
    for build in recorded(daemon.api) {
        outputs.push(answer(&format!("/api/v1/builds/{}", build["id"].as_str().unwrap())));
    }
    let api = outputs.iter().map(|(_, body)| body.as_str()).collect::<String>();
    let (_, log) = daemon.stop_with_stderr("TERM");
    outputs.push(("the daemon's log".to_string(), log));
    for file in std::fs::read_dir(&data).unwrap() {
        let file = file.unwrap();
        outputs.push((file.path().display().to_string(), String::from_utf8_lossy(&std::fs::read(file.path()).unwrap()).into_owned()));
    }
    let leaks: Vec<String> = outputs
        .iter()
        .flat_map(|(what, body)| secrets.iter().filter(|s| body.contains(*s)).map(move |s| format!("{s} in {what}")))
        .collect();
    assert!(leaks.is_empty(), "secrets appear: {leaks:#?}");
    // The builds were seen, with what is kept around the secrets.
    assert!(api.contains("https://REDACTED@corp.lab.test/go") && api.contains("Authorization: REDACTED"), "{api}");

    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("history.sqlite3")), 0o600, "the history is the owner's only");
    assert_eq!(mode(&data), 0o700, "the data directory the daemon created is private");
}

/// Percent-encodes a PromQL query for a URL.
fn encode_query(query: &str) -> String {
    query.bytes().map(|b| if b.is_ascii_alphanumeric() || b"_.-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The value of an instant PromQL query, if it returned one sample.
fn promql(prometheus: SocketAddr, query: &str) -> Option<f64> {
    let (status, body) = get(prometheus, &format!("/api/v1/query?query={}", encode_query(query))).ok()?;
    let body: Value = serde_json::from_str(&body).ok()?;
    if status != 200 || body["status"] != "success" {
        return None;
    }
    let result = body["data"]["result"].as_array()?;
    (result.len() == 1).then(|| result[0]["value"][1].as_str()?.parse().ok()).flatten()
}

#[test]
fn prometheus_scrapes_the_daemon() {
    if !lab_available("prometheus_scrapes_the_daemon") {
        return;
    }
    let prometheus_bin = Path::new("/usr/bin/prometheus");
    assert!(prometheus_bin.exists(), "Debian's prometheus is not installed (cargo xtask setup installs it)");
    let lab = Lab::start();
    lab.require_modules(2);
    let daemon = Daemon::start(&lab.path("daemon-data"));

    // A real Prometheus, scraping the daemon and evaluating deploy/'s alerting
    // rules every second.
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/gomod-trace-rules.yml");
    let config = lab.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: gomod-trace\n    static_configs:\n      - targets: ['{}']\n",
            rules.display(),
            daemon.addr
        ),
    )
    .unwrap();
    let web = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut prometheus = Command::new(prometheus_bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", lab.path("prometheus-data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let result = std::panic::catch_unwind(|| {
        // Scraping before the builds: the alerts see the counters rise from 0.
        wait_until("Prometheus to scrape the daemon", Duration::from_secs(60), || {
            promql(web, "up{job=\"gomod-trace\"}") == Some(1.0)
                && promql(web, "gomod_trace_findings_total{kind=\"connect_refused\"}") == Some(0.0)
        });
        for (i, goproxy) in [format!("https://{PROXY_NAME}"), format!("https://{PROXY_NAME}:8443")].iter().enumerate() {
            let modcache = lab.path(&format!("modcache-{i}"));
            let overrides = [("GOPROXY", goproxy.as_str()), ("GOMODCACHE", modcache.to_str().unwrap())];
            let status = lab.client_command(&["go", "mod", "download"], &overrides).output().unwrap().status;
            assert_eq!(status.success(), i == 0);
        }
        wait_until("both builds in Prometheus", Duration::from_secs(60), || {
            promql(web, "sum(gomod_trace_builds_total{job=\"gomod-trace\"})") == Some(2.0)
        });
        assert_eq!(promql(web, "gomod_trace_builds_total{outcome=\"failed\"}"), Some(1.0));
        assert_eq!(promql(web, "gomod_trace_findings_total{kind=\"connect_refused\"}"), Some(1.0));
        assert_eq!(promql(web, "sum(gomod_trace_module_fetches_total{source=\"proxy\",outcome=\"ok\"})"), Some(2.0));
        assert!(promql(web, "sum(gomod_trace_connects_total{host=\"proxy.lab.test\",outcome=\"refused\"})").is_some_and(|n| n > 0.0));
        assert!(promql(web, "sum(gomod_trace_bpf_program_runs_total)").is_some_and(|n| n > 0.0));
        assert!(promql(web, "histogram_quantile(0.5, sum by (le) (gomod_trace_connect_duration_seconds_bucket))").is_some());
        // The alerting rule fires for the refused build, and only for it.
        wait_until("the GoModuleNetworkFailures alert", Duration::from_secs(30), || {
            promql(web, "ALERTS{alertname=\"GoModuleNetworkFailures\",kind=\"connect_refused\",alertstate=\"firing\"}") == Some(1.0)
        });
        assert_eq!(promql(web, "count(ALERTS{alertname=\"GoModuleNetworkFailures\"})"), Some(1.0));
    });
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The value of a metric line (`name{labels} value`) in the daemon's /metrics.
fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, text) = get(addr, "/metrics").ok()?;
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A `go generate` whose generator writes far more file records than the 8 MiB
/// kernel ring buffer holds while the daemon is stopped (SIGSTOP): the programs
/// fail to reserve, the losses are counted, and once the daemon runs again the
/// build is recorded incomplete, the lost events and the ring's fill show in the
/// metrics, and the daemon goes on tracing.
#[test]
fn a_full_ring_buffer_is_counted_and_marks_the_build_incomplete() {
    if !lab_available("a_full_ring_buffer_is_counted_and_marks_the_build_incomplete") {
        return;
    }
    let lab = Lab::start();
    let daemon = Daemon::start(&lab.path("daemon-data"));
    let pid = daemon.child.id().to_string();

    // ~40 000 opens for writing, each a file record of about 550 bytes: 20 MiB.
    // The generator wakes the daemon itself once it is done, so that the exits
    // that follow find room.
    let generate = lab.path("generate");
    std::fs::create_dir_all(&generate).unwrap();
    std::fs::write(generate.join("go.mod"), "module lab.test/generate\n\ngo 1.19\n").unwrap();
    std::fs::write(generate.join("gen.go"), "package gen\n\n//go:generate sh flood.sh\n").unwrap();
    std::fs::write(
        generate.join("flood.sh"),
        "i=0\nwhile [ $i -lt 40000 ]; do : > flood.out; i=$((i+1)); done\nkill -CONT \"$DAEMON_PID\"\nsleep 1\n",
    )
    .unwrap();
    assert_eq!(metric(daemon.addr, "gomod_trace_events_lost_total{reason=\"ring_buffer_full\"}"), Some(0.0));
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let generated = lab
        .client_command(&["go", "generate", "./..."], &[("DAEMON_PID", &pid)])
        .current_dir(&generate)
        .output()
        .unwrap();
    // Whatever happened, the daemon must not stay stopped.
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));

    // The reader found the ring (nearly) full on waking; the gauge holds that
    // for a statistics interval.
    let mut fill = 0.0f64;
    wait_until("the ring's fill in the metrics", Duration::from_secs(15), || {
        fill = fill.max(metric(daemon.addr, "gomod_trace_ring_buffer_fill_ratio").unwrap_or(0.0));
        fill > 0.9
    });
    let lost = metric(daemon.addr, "gomod_trace_events_lost_total{reason=\"ring_buffer_full\"}").unwrap();
    eprintln!("the reader found the ring {:.0}% full; {lost} events lost", fill * 100.0);
    assert!(lost > 1000.0, "{lost} events lost");
    wait_until("the generate build in the history", Duration::from_secs(30), || {
        recorded(daemon.api).iter().any(|b| b["command"][1] == "generate")
    });
    let builds = recorded(daemon.api);
    let build = builds.iter().find(|b| b["command"][1] == "generate").unwrap();
    assert_eq!(build["complete"], false, "{build:#}");
    assert_eq!(build["exit_code"], 0, "{build:#}");
    assert!(build["findings"].as_array().unwrap().contains(&"incomplete_trace".into()), "{build:#}");
    let (_, timeline) = get_json(daemon.api, &format!("/api/v1/builds/{}", build["id"].as_str().unwrap()));
    let finding = timeline["builds"][0]["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "incomplete_trace").cloned();
    assert!(finding.is_some_and(|f| f["message"].as_str().unwrap().contains("lost")), "{timeline:#}");

    // Still tracing: a clean download afterwards is recorded complete.
    lab.require_modules(1);
    let status = lab.client_command(&["go", "mod", "download"], &[]).status().unwrap();
    assert!(status.success());
    wait_until("the download after the loss", Duration::from_secs(30), || !downloads(&recorded(daemon.api)).is_empty());
    assert_clean(downloads(&recorded(daemon.api))[0]);
}

/// The cgroup v2 hierarchy's mount point, from /proc/self/mounts.
fn cgroup2_mount() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(fields[1]))
        })
        .expect("a cgroup v2 mount")
}

/// A cgroup of our own under the v2 root, removed when dropped (after its
/// processes ended).
struct Cgroup(std::path::PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A build in a container the daemon did not start: its own cgroup, PID, mount,
/// UTS and IPC namespaces (what a container runtime sets up, made here with
/// unshare), in the lab client's network namespace. Its GOENV file exists only in
/// the container's mount namespace (a private tmpfs), so the configuration is
/// right only if the daemon reads it through the build's own root.
#[test]
fn builds_in_containers_are_traced_with_their_own_configuration() {
    if !lab_available("builds_in_containers_are_traced_with_their_own_configuration") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(2);
    let daemon = Daemon::start(&lab.path("daemon-data"));
    let cgroup = Cgroup(cgroup2_mount().join(format!("gomod-trace-lab-{}", std::process::id())));
    std::fs::create_dir(&cgroup.0).unwrap();
    let private = lab.path("container-config");
    std::fs::create_dir_all(&private).unwrap();
    let goenv = private.join("env");

    // Its own copy of the go command, in its own filesystem: an executable the
    // daemon first meets when the build execs it (as a toolchain GOTOOLCHAIN
    // downloaded), probed through /proc/PID/exe.
    let container = format!(
        "mount -t tmpfs tmpfs {dir} && printf 'GOPROXY=https://mirror.lab.test\\n' > {goenv} && cp \"$(command -v go)\" {dir}/go && GOROOT=\"$(dirname \"$(dirname \"$(command -v go)\")\")\" PATH={dir}:\"$PATH\" exec go mod download",
        dir = private.display(),
        goenv = goenv.display()
    );
    let inside = lab.client_command(
        &["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--uts", "--ipc", "sh", "-c", &container],
        &[("GOENV", goenv.to_str().unwrap()), ("GOPROXY", "")],
    );
    // Join the cgroup first, then enter the namespaces.
    let output = Command::new("sh")
        .args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
        .arg(&cgroup.0)
        .arg(inside.get_program())
        .args(inside.get_args())
        .current_dir(inside.get_current_dir().unwrap())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!goenv.exists(), "the GOENV file must exist only inside the container");

    wait_until("the container's build in the history", Duration::from_secs(30), || !downloads(&recorded(daemon.api)).is_empty());
    let builds = recorded(daemon.api);
    let build = downloads(&builds)[0];
    assert_clean(build);
    let (_, timeline) = get_json(daemon.api, &format!("/api/v1/builds/{}", build["id"].as_str().unwrap()));
    let build = &timeline["builds"][0];
    assert_eq!(build["config"]["GOPROXY"], serde_json::json!({"value": "https://mirror.lab.test", "source": "goenv_file"}), "{build:#}");
    let spans = build["spans"].as_array().unwrap();
    assert_eq!(spans.iter().filter(|s| s["kind"] == "module").count(), 2, "{build:#}");
    let connects: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "connect").collect();
    assert!(!connects.is_empty() && connects.iter().all(|s| s["host"] == "mirror.lab.test" && s["role"] == "proxy"), "{build:#}");
    // Probed at its exec, a little after it started: said so. The requests seen
    // from then on are the mirror's.
    let notes = build["notes"].as_array().cloned().unwrap_or_default();
    assert!(notes.iter().any(|n| n.as_str().is_some_and(|n| n.starts_with("requests: traced only from"))), "{build:#}");
    for request in spans.iter().filter(|s| s["kind"] == "http" && s["attrs"]["url"].is_string()) {
        assert_eq!((request["host"].as_str(), request["role"].as_str(), request["attrs"]["status"].as_u64()), (Some("mirror.lab.test"), Some("proxy"), Some(200)), "{request:#}");
    }
}

/// A container of the gomod-trace image, removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "--force", "--time", "0", &self.0]).output();
    }
}

/// The image `cargo xtask image` built (deploy/container/), run the way the
/// DaemonSet runs it: its arguments (the metrics port moved to a free one: the
/// container shares the host's network here), the host's PID namespace, the
/// DaemonSet's capabilities and nothing else, the runtime's default seccomp
/// profile, a read-only root, the host's cgroup hierarchy, BTF, tracefs and
/// bpffs mounted in, and the API's socket directory. It traces a build of the
/// lab's client, serves it on the socket and not on the metrics port, and stops
/// cleanly.
#[test]
fn the_container_image_traces_builds_as_the_daemonset_runs_it() {
    if !lab_available("the_container_image_traces_builds_as_the_daemonset_runs_it") {
        return;
    }
    let image = gomod_trace_lab::image_tag();
    let exists = Command::new("podman").args(["image", "exists", &image]).status().is_ok_and(|s| s.success());
    if !exists {
        let why = format!("no image {image}: build it with `cargo xtask image` (`cargo xtask test` does)");
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let lab = Lab::start();
    lab.require_modules(2);
    let data = lab.path("daemon-data");
    std::fs::create_dir_all(&data).unwrap();
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let capabilities = gomod_trace_lab::daemonset::capabilities().join(",");
    assert_eq!(capabilities, "BPF,PERFMON,SYS_ADMIN,DAC_READ_SEARCH,SYS_PTRACE,SETUID,SETGID");
    let run = lab.path("run-gomod-trace");
    std::fs::create_dir_all(&run).unwrap();
    let args: Vec<String> = gomod_trace_lab::daemonset::args()
        .into_iter()
        .map(|a| if a.starts_with("--listen=") { format!("--listen={addr}") } else { a })
        .collect();
    let socket = args.iter().find_map(|a| a.strip_prefix("--api-listen=unix:")).expect("the DaemonSet's API is a unix socket");
    let socket = run.join(Path::new(socket).strip_prefix("/run/gomod-trace").expect("in /run/gomod-trace"));
    let container = Container(format!("gomod-trace-lab-{}", std::process::id()));
    let volume = |host: &str, inside: &str, mode: &str| format!("{host}:{inside}:{mode}");
    let started = Command::new("podman")
        // runc and lowered rlimits: this machine's hybrid cgroup layout is refused
        // by crun, and its root may not raise rlimits (no CAP_SYS_RESOURCE).
        .args(["--runtime", "runc", "run", "--detach", "--name", &container.0])
        .args(["--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096"])
        .args(["--pid=host", "--cgroupns=host", "--network=host", "--read-only"])
        .args(["--security-opt", "no-new-privileges", "--cap-drop=ALL"])
        .arg(format!("--cap-add={capabilities}"))
        .args(["--volume", &volume("/sys/fs/cgroup", "/sys/fs/cgroup", "ro")])
        .args(["--volume", &volume("/sys/kernel/btf", "/sys/kernel/btf", "ro")])
        .args(["--volume", &volume("/sys/kernel/tracing", "/sys/kernel/tracing", "ro")])
        .args(["--volume", &volume("/sys/fs/bpf", "/sys/fs/bpf", "rw")])
        .args(["--volume", &volume(data.to_str().unwrap(), "/var/lib/gomod-trace", "rw")])
        .args(["--volume", &volume(run.to_str().unwrap(), "/run/gomod-trace", "rw")])
        .arg(&image)
        .args(&args)
        .output()
        .unwrap();
    assert!(started.status.success(), "podman run: {}", String::from_utf8_lossy(&started.stderr));
    let logs = || String::from_utf8_lossy(&Command::new("podman").args(["logs", &container.0]).output().unwrap().stderr).into_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(addr, "/readyz").is_ok_and(|(status, _)| status == 200) {
        assert!(Instant::now() < deadline, "the daemon in the container did not get ready:\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }

    let status = lab.client_command(&["go", "mod", "download"], &[]).status().unwrap();
    assert!(status.success());
    // The builds, through the API's socket as root on the node reads them.
    let cli = |args: &[&str]| {
        let out = Command::new(gomod_trace_bin()).args(args).arg("--daemon").arg(format!("unix:{}", socket.display())).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let listed = || cli(&["builds", "--json"]).as_array().cloned().unwrap_or_default();
    wait_until("the build in the container's history", Duration::from_secs(30), || !downloads(&listed()).is_empty());
    let builds = listed();
    let build = downloads(&builds)[0];
    assert_clean(build);
    let timeline = cli(&["export", build["id"].as_str().unwrap(), "--format", "json"]);
    let spans = timeline["builds"][0]["spans"].as_array().unwrap();
    assert_eq!(spans.iter().filter(|s| s["kind"] == "module").count(), 2, "{timeline:#}");
    assert!(spans.iter().any(|s| s["kind"] == "connect" && s["outcome"] == "ok"), "connects traced: {timeline:#}");
    let (_, metrics) = get(addr, "/metrics").unwrap();
    assert!(metrics.contains("gomod_trace_builds_total{outcome=\"ok\"} 1"), "{metrics}");
    assert_eq!(get(addr, "/api/v1/builds").unwrap().0, 404, "no builds on the metrics port");

    // A build of another user: its GOENV file, its own and 0600, is read with its
    // credentials (the DaemonSet's SETUID/SETGID), not refused. A `go` that is a
    // copy of sleep, so that the build lives long enough to be read.
    let home = Scratch(std::env::temp_dir().join(format!("gomod-trace-nobody-{}", std::process::id())));
    std::fs::create_dir_all(&home.0).unwrap();
    std::fs::write(home.0.join("env"), "GOPROXY=https://nobodys-proxy.lab.test\n").unwrap();
    std::fs::copy("/usr/bin/sleep", home.0.join("go")).unwrap();
    let owned = Command::new("sh")
        .arg("-c")
        .arg(format!("chmod 755 {d} && chmod 600 {d}/env && chown -R 65534:65534 {d}", d = home.0.display()))
        .status()
        .unwrap();
    assert!(owned.success());
    let nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(home.0.join("go"))
        .arg("2.005")
        .env("GOENV", home.0.join("env"))
        .status()
        .unwrap();
    assert!(nobody.success());
    wait_until("nobody's build in the history", Duration::from_secs(30), || listed().iter().any(|b| b["command"][1] == "2.005"));
    let build = listed().into_iter().find(|b| b["command"][1] == "2.005").unwrap();
    let timeline = cli(&["export", build["id"].as_str().unwrap(), "--format", "json"]);
    let read = &timeline["builds"][0];
    assert_eq!(read["config"]["GOPROXY"], serde_json::json!({"value": "https://nobodys-proxy.lab.test", "source": "goenv_file"}), "{read:#}");

    // `podman stop` sends SIGTERM: the daemon flushes and exits 0.
    let stopped = Command::new("podman").args(["stop", "--time", "20", &container.0]).output().unwrap();
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    let code = Command::new("podman").args(["inspect", "--format", "{{.State.ExitCode}}", &container.0]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0", "{}", logs());
    // Its history is on the host's volume; its socket is gone.
    assert!(data.join("history.sqlite3").exists());
    assert!(!socket.exists(), "the socket is removed on exit");
}

/// A build that hangs on a proxy that stopped sending (over plain HTTP nothing
/// arrives after the stall, not even a TLS close_notify): the daemon shows it as
/// running with a stalled_transfer while it hangs, counts it in
/// gomod_trace_stalled_connections, and keeps the finding when the CI step's
/// timeout kills it.
#[test]
fn a_hanging_build_shows_its_stall_while_it_hangs() {
    if !lab_available("a_hanging_build_shows_its_stall_while_it_hangs") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(1);
    let data = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(data.path(), &["--stall-threshold", "3s"]);
    let mut step = lab
        .client_command(&["timeout", "-k", "5", "60", "go", "mod", "download"], &[("GOPROXY", "http://stall.lab.test")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the build");
    let mut live = Value::Null;
    wait_until("the running build's stall", Duration::from_secs(40), || {
        let (status, body) = get_json(daemon.api, "/api/v1/running");
        assert_eq!(status, 200, "{body}");
        live = body["builds"].as_array().and_then(|b| b.iter().find(|b| b["command"][0] == "go").cloned()).unwrap_or(Value::Null);
        live["findings"].as_array().is_some_and(|f| f.iter().any(|f| f["kind"] == "stalled_transfer"))
    });
    assert_eq!(live["state"], "running", "{live:#}");
    assert_eq!(live["ended_at"], Value::Null);
    let stall = live["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "stalled_transfer").unwrap().clone();
    assert!(stall["message"].as_str().unwrap().contains("is still waiting"), "{stall:#}");
    assert!(step.try_wait().unwrap().is_none(), "the build still hangs");
    // The same build by its id, and the gauge.
    let id = live["id"].as_str().unwrap().to_string();
    let (status, one) = get_json(daemon.api, &format!("/api/v1/builds/{id}"));
    assert_eq!((status, &one["builds"][0]["state"]), (200, &Value::from("running")));
    assert!(metric(daemon.addr, "gomod_trace_stalled_connections").is_some_and(|n| n >= 1.0));

    // The CI step gives up: `timeout` passes SIGTERM on to go.
    let _ = Command::new("kill").args(["-TERM", &step.id().to_string()]).status();
    let _ = step.wait();
    wait_until("the killed build in the history", Duration::from_secs(20), || {
        recorded(daemon.api).iter().any(|b| b["id"] == id.as_str())
    });
    let (_, stored) = get_json(daemon.api, &format!("/api/v1/builds/{id}"));
    let stored = &stored["builds"][0];
    assert_eq!(stored["state"], Value::Null, "a finished build has no state");
    let kinds: Vec<&str> = stored["findings"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    assert!(kinds.contains(&"stalled_transfer"), "{stored:#}");
    wait_until("the gauge back at 0", Duration::from_secs(10), || {
        metric(daemon.addr, "gomod_trace_stalled_connections") == Some(0.0)
    });
    let (_, running) = get_json(daemon.api, "/api/v1/running");
    assert!(running["builds"].as_array().unwrap().iter().all(|b| b["id"] != id.as_str()));
}

/// The daemon pushes each finished build as an OpenTelemetry trace to an
/// OTLP/HTTP receiver (in this test process, on loopback: the daemon runs in the
/// host's namespace), with the configured header; what arrives is the build the
/// daemon itself exports as timeline JSON, span by span, once.
#[test]
fn the_daemon_pushes_each_finished_build_over_otlp() {
    if !lab_available("the_daemon_pushes_each_finished_build_over_otlp") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(2);
    let receiver = otlp::Receiver::start("127.0.0.1:0");
    let secret = "x-api-key=lab-otlp-s3cret";
    let daemon = Daemon::start_with(&lab.path("daemon-data"), &["--otlp-endpoint", &receiver.url(), "--otlp-header", secret]);

    let status = lab.client_command(&["go", "mod", "download"], &[]).status().unwrap();
    assert!(status.success());
    wait_until("the build in the history", Duration::from_secs(30), || !downloads(&recorded(daemon.api)).is_empty());
    let id = downloads(&recorded(daemon.api))[0]["id"].as_str().unwrap().to_string();
    let root_of_build = |requests: &[otlp::Received]| {
        requests
            .iter()
            .flat_map(|r| r.request.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter())))
            .filter(|s| {
                s.parent_span_id.is_empty()
                    && s.attributes.iter().any(|kv| {
                        kv.key == "gomod_trace.build.id"
                            && kv.value.as_ref().and_then(|v| v.value.as_ref())
                                == Some(&opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(id.clone()))
                    })
            })
            .count()
    };
    receiver.wait_for("the build's trace", Duration::from_secs(20), |r| root_of_build(r) > 0);
    // Batches go out each second: a duplicate would have come by now.
    std::thread::sleep(Duration::from_secs(2));
    let received = receiver.accepted();
    assert_eq!(root_of_build(&received), 1, "delivered once");
    assert!(received.iter().all(|r| r.path == "/v1/traces" && r.content_type == "application/x-protobuf"));
    assert!(received.iter().all(|r| r.headers.contains(&("x-api-key".into(), "lab-otlp-s3cret".into()))), "the header sent");

    // The daemon's own export of that build, as timeline JSON.
    let out = Command::new(gomod_trace_bin())
        .args(["export", &id, "--format", "json", "--daemon", &daemon.api.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let timeline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let requests: Vec<_> = received.iter().map(|r| r.request.clone()).collect();
    otlp::check(&otlp::only_build(&requests, &id), &timeline);
    let modules = timeline["builds"][0]["spans"].as_array().unwrap().iter().filter(|s| s["kind"] == "module").count();
    assert_eq!(modules, 2, "{timeline:#}");

    let (status, metrics) = get(daemon.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let exported = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gomod_trace_otlp_exported_builds_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(exported.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(metrics.contains("gomod_trace_otlp_dropped_builds_total{reason=\"queue_full\"} 0"), "{metrics}");

    let (status, stderr) = daemon.stop_with_stderr("TERM");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("pushing every finished build over OTLP/HTTP") && stderr.contains(&receiver.url()), "{stderr}");
    assert!(!stderr.contains("lab-otlp-s3cret"), "a header value in the log: {stderr}");
}

/// `export BUILD --format X` of a build the daemon recorded, for each format,
/// read back by the tool it is made for, against `export BUILD --format json`;
/// the text view by default groups it (one line per endpoint and module).
#[test]
fn export_writes_a_recorded_build_in_every_format() {
    if !lab_available("export_writes_a_recorded_build_in_every_format") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(2);
    let daemon = Daemon::start(&lab.path("daemon-data"));
    let status = lab.client_command(&["go", "mod", "download"], &[("GOPROXY", "https://s404.lab.test,direct")]).status().unwrap();
    assert!(status.success());
    wait_until("the build in the history", Duration::from_secs(30), || !downloads(&recorded(daemon.api)).is_empty());
    let id = downloads(&recorded(daemon.api))[0]["id"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let export = |format: &str| -> std::path::PathBuf {
        let path = dir.path().join(format!("build.{format}"));
        let out = Command::new(gomod_trace_bin())
            .args(["export", &id, "--format", format, "--daemon", &daemon.api.to_string(), "--output"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "export --format {format}: {}", String::from_utf8_lossy(&out.stderr));
        path
    };
    let timeline = export("json");
    let json: Value = serde_json::from_slice(&std::fs::read(&timeline).unwrap()).unwrap();
    let kinds: Vec<&str> = json["builds"][0]["findings"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    assert!(kinds.contains(&"fallback_to_direct"), "the scenario: {kinds:?}");
    println!("perfetto: {}", viewers::perfetto::check(&export("perfetto"), &timeline));
    println!("html: {}", viewers::html::check(&export("html"), &timeline, None));
    otlp::check_json(&export("otlp"), &timeline);

    let text = std::fs::read_to_string(export("text")).unwrap();
    assert!(text.contains("fallback_to_direct") && text.contains("s404.lab.test:443"), "{text}");
    let module_lines = text.lines().filter(|l| l.trim_start().starts_with("lab.test/mod0")).count();
    assert_eq!(module_lines, 2, "one line per module: {text}");
    assert!(!text.contains('\x1b'), "no colour in a file: {text}");
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
}

/// A hostile build in a container (its own mount and PID namespaces) points GOENV
/// at what the daemon, root, must not follow or read: an absolute symlink whose
/// target differs inside and outside the container, a FIFO, /dev/zero and a link
/// into /proc/1/root. The daemon reads the container's file (not the host's),
/// refuses the others with notes, stays small, and keeps recording builds. (The
/// magic link is the container's pid 1's root: /proc/self would name no process
/// in the container's procfs for the daemon, and so resolve to nothing.)
#[test]
fn hostile_configuration_files_are_read_inside_the_build_or_refused() {
    if !lab_available("hostile_configuration_files_are_read_inside_the_build_or_refused") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(2);
    let daemon = Daemon::start(&lab.path("daemon-data"));
    let rss_before = rss_kib(daemon.child.id());
    let dir = lab.path("hostile-config");
    std::fs::create_dir_all(&dir).unwrap();
    // The host's file at the path the container's link names.
    std::fs::write(dir.join("target"), "GOPROXY=https://host-secret.lab.test\n").unwrap();

    // `go` processes that are not Go (a copy of sleep: comm `go`, so each is a
    // build), alive long enough for their root to be read; the seconds tell them apart.
    let container = format!(
        "set -e; d={dir}; mount -t tmpfs tmpfs $d && printf 'GOPROXY=https://mirror.lab.test\\n' > $d/target && ln -s $d/target $d/link && mkfifo $d/fifo && ln -s /proc/1/root/etc/passwd $d/magic && cp \"$(command -v sleep)\" $d/go; \
         printf 'GOPROXY=https://root-only.lab.test\\n' > $d/root-only && chmod 600 $d/root-only; \
         GOENV=$d/link go mod download; GOENV=$d/fifo $d/go 2.001; GOENV=/dev/zero $d/go 2.002; GOENV=$d/magic $d/go 2.003; \
         GOENV=$d/root-only setpriv --reuid=65534 --regid=65534 --clear-groups $d/go 2.004",
        dir = dir.display()
    );
    let output = lab
        .client_command(&["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--uts", "--ipc", "sh", "-c", &container], &[("GOPROXY", "")])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let by_seconds = |builds: &[Value], seconds: &str| builds.iter().find(|b| b["command"][1] == seconds).cloned();
    wait_until("the hostile builds in the history", Duration::from_secs(30), || {
        let builds = recorded(daemon.api);
        !downloads(&builds).is_empty() && ["2.001", "2.002", "2.003", "2.004"].iter().all(|s| by_seconds(&builds, s).is_some())
    });
    let timeline = |build: &Value| get_json(daemon.api, &format!("/api/v1/builds/{}", build["id"].as_str().unwrap())).1["builds"][0].clone();
    let builds = recorded(daemon.api);
    let download = timeline(downloads(&builds)[0]);
    assert_eq!(download["config"]["GOPROXY"], serde_json::json!({"value": "https://mirror.lab.test", "source": "goenv_file"}), "{download:#}");
    assert!(!download.to_string().contains("host-secret"), "{download:#}");
    let d = dir.display();
    for (seconds, note) in [
        ("2.001", format!("GOENV {d}/fifo: not read (not a regular file: a FIFO)")),
        ("2.002", "GOENV /dev/zero: not read (not a regular file: a character device)".to_string()),
        ("2.003", format!("GOENV {d}/magic: not read (too many symbolic links, or a link into /proc)")),
        // Read as the build's user, who may not read it (the daemon, as root, could).
        ("2.004", format!("GOENV {d}/root-only: not read (permission denied)")),
    ] {
        let build = timeline(&by_seconds(&builds, seconds).unwrap());
        let notes = build["notes"].as_array().cloned().unwrap_or_default();
        assert!(notes.iter().any(|n| n == &Value::from(note.as_str())), "{note} in {build:#}");
        assert!(!build.to_string().contains("root-only.lab.test"), "{build:#}");
    }

    // Still recording, and no file was read whole.
    let before = downloads(&builds).len();
    let status = lab.client_command(&["go", "mod", "download"], &[]).status().unwrap();
    assert!(status.success());
    wait_until("a later build in the history", Duration::from_secs(30), || downloads(&recorded(daemon.api)).len() > before);
    let rss_after = rss_kib(daemon.child.id());
    assert!(rss_after < rss_before + 64 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");
}

/// The daemon's resident memory now and at its peak, in KiB (/proc/PID/status).
fn daemon_memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A hostile build: `go generate` runs the lab's dialer on 2,000 connections at
/// once to an address nobody has (they hang, then fail), then on 20,000 to a port
/// that refuses. With the daemon's limits lowered, it keeps at most 50
/// connections at once and 2,000 spans of it: the drops are counted, the build is
/// recorded incomplete with notes saying what was dropped, the daemon's memory
/// stays put, and the next build is traced complete.
#[test]
fn a_build_that_opens_endless_connections_is_cut_at_the_limits() {
    if !lab_available("a_build_that_opens_endless_connections_is_cut_at_the_limits") {
        return;
    }
    let lab = Lab::start();
    let limits = ["--max-connections", "50", "--max-spans-per-build", "2000"];
    let daemon = Daemon::start_with(&lab.path("daemon-data"), &limits);
    for what in ["connections", "spans"] {
        assert_eq!(metric(daemon.addr, &format!("gomod_trace_dropped_total{{what=\"{what}\"}}")), Some(0.0));
    }
    let (rss_before, _) = daemon_memory_kib(daemon.child.id());

    let generate = lab.path("generate");
    std::fs::create_dir_all(&generate).unwrap();
    std::fs::write(generate.join("go.mod"), "module lab.test/generate\n\ngo 1.19\n").unwrap();
    std::fs::write(generate.join("gen.go"), "package gen\n\n//go:generate sh flood.sh\n").unwrap();
    let nobody = format!("{}:443", lab.unused_ip());
    let refused = format!("{}:8443", lab.ip_of(PROXY_NAME));
    let dialer = Lab::dialer_bin().display().to_string();
    let flood = format!("{dialer} $(yes {nobody} | head -n 2000) > /dev/null\nexec {dialer} $(yes {refused} | head -n 20000) > /dev/null\n");
    std::fs::write(generate.join("flood.sh"), flood).unwrap();
    let started = Instant::now();
    let generated = lab.client_command(&["go", "generate", "./..."], &[]).current_dir(&generate).output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    eprintln!("22,000 connections in {:?}", started.elapsed());

    wait_until("the generate build in the history", Duration::from_secs(30), || {
        recorded(daemon.api).iter().any(|b| b["command"][1] == "generate")
    });
    let build = recorded(daemon.api).into_iter().find(|b| b["command"][1] == "generate").unwrap();
    assert_eq!((build["complete"].as_bool(), build["exit_code"].as_i64()), (Some(false), Some(0)), "{build:#}");
    let (_, timeline) = get_json(daemon.api, &format!("/api/v1/builds/{}", build["id"].as_str().unwrap()));
    let b = &timeline["builds"][0];
    let spans = b["spans"].as_array().unwrap().len();
    let notes: Vec<&str> = b["notes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(spans <= 2010, "{spans} spans kept");
    assert!(notes.iter().any(|n| n.contains("connections not traced") && n.contains("--max-connections")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("--max-spans-per-build")), "{notes:?}");
    let connections = metric(daemon.addr, "gomod_trace_dropped_total{what=\"connections\"}").unwrap();
    let dropped_spans = metric(daemon.addr, "gomod_trace_dropped_total{what=\"spans\"}").unwrap();
    let (rss_after, peak) = daemon_memory_kib(daemon.child.id());
    eprintln!(
        "dropped: {connections} connections, {dropped_spans} span events; {spans} spans kept; daemon RSS {rss_before} KiB before, {rss_after} KiB after, peak {peak} KiB"
    );
    assert!(connections > 0.0 && dropped_spans > 0.0);
    // Events in flight take some (without the limits, these 22,000 connections
    // took the daemon's peak 55 MiB above where it started; it grows with them).
    assert!(peak < rss_before + 48 * 1024, "the daemon's peak grew from {rss_before} KiB to {peak} KiB");

    // Still tracing, and within the limits a real build loses nothing.
    lab.require_modules(1);
    assert!(lab.client_command(&["go", "mod", "download"], &[]).status().unwrap().success());
    wait_until("the download after the flood", Duration::from_secs(30), || !downloads(&recorded(daemon.api)).is_empty());
    assert_clean(downloads(&recorded(daemon.api))[0]);
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "gomod-trace-test"]).arg(dir).status().unwrap();
        assert!(status.success(), "mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
    }
}

/// The history's file system fills up under a running daemon: /readyz fails
/// (saying why) and gomod_trace_store_failures_total counts; a build that
/// finishes meanwhile is kept in memory, and written once there is room again,
/// when /readyz is back to 200.
#[test]
fn a_full_store_makes_the_daemon_unready_and_loses_no_build() {
    if !lab_available("a_full_store_makes_the_daemon_unready_and_loses_no_build") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(1);
    let data = lab.path("daemon-data");
    let _tmpfs = Tmpfs::mount(&data, "8m");
    let daemon = Daemon::start(&data);
    assert_eq!(metric(daemon.addr, "gomod_trace_store_failures_total"), Some(0.0));

    // Fill it: dd stops at ENOSPC.
    let filler = data.join("filler");
    let _ = Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).args(["bs=64k", "status=none"]).stderr(Stdio::null()).status();
    wait_until("/readyz to fail", Duration::from_secs(20), || get(daemon.addr, "/readyz").is_ok_and(|(status, _)| status == 503));
    let (_, why) = get(daemon.addr, "/readyz").unwrap();
    assert!(why.contains("history database cannot be written") && why.contains("No space left"), "{why}");
    assert_eq!(get(daemon.addr, "/healthz").unwrap().0, 200, "alive all the same");
    assert!(metric(daemon.addr, "gomod_trace_store_failures_total").unwrap() >= 1.0);

    let status = lab.client_command(&["go", "mod", "download"], &[]).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    // Finished (counted) but not in the history yet.
    wait_until("the build counted", Duration::from_secs(30), || {
        metric(daemon.addr, "gomod_trace_builds_total{outcome=\"ok\"}").is_some_and(|n| n >= 1.0)
    });
    std::thread::sleep(Duration::from_secs(1));
    let failures = metric(daemon.addr, "gomod_trace_store_failures_total").unwrap();
    eprintln!("store failures while full: {failures}; /readyz said: {why}");
    assert_eq!(get(daemon.addr, "/readyz").unwrap().0, 503);

    std::fs::remove_file(&filler).unwrap();
    wait_until("/readyz to recover", Duration::from_secs(20), || get(daemon.addr, "/readyz").is_ok_and(|(status, _)| status == 200));
    wait_until("the build written", Duration::from_secs(10), || !downloads(&recorded(daemon.api)).is_empty());
    assert_clean(downloads(&recorded(daemon.api))[0]);
    assert_eq!(metric(daemon.addr, "gomod_trace_dropped_total{what=\"history_writes\"}"), Some(0.0));
    drop(daemon);
}

/// A host whose kernel BTF cannot be read (here: /dev/null bound over it in a
/// mount namespace of the daemon's own) cannot run the probes: the daemon says
/// so and exits with status 78, on which its unit is not restarted.
#[test]
fn a_host_that_cannot_run_the_probes_exits_78() {
    if !lab_available("a_host_that_cannot_run_the_probes_exits_78") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let script = format!(
        "mount --bind /dev/null /sys/kernel/btf/vmlinux && exec {} daemon --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --data-dir {}",
        gomod_trace_bin().display(),
        data.path().display()
    );
    let out = Command::new("timeout").args(["60", "unshare", "--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("BTF") && stderr.contains("cannot run the probes"), "{stderr}");
}

/// A directory of the test's outside the lab, removed however the test ends.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
