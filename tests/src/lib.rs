//! The hermetic lab: a client network namespace where the real `go` runs under
//! gomod-trace, and a server namespace with DNS (dnsmasq) and a TLS module proxy
//! (tests/lab/goproxy, built with the machine's Go). Faults are real: names that do
//! not resolve, ports nobody listens on, nftables rules that drop packets.
//!
//! Everything a lab creates (namespaces, veth pair, /etc/netns files, processes,
//! temporary files) is removed when it is dropped, also when a test panics. Traffic
//! stays inside the lab's own namespaces.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

/// Modules the lab proxy serves (lab.test/mod01 … modNN) and the client requires.
pub const MODULES: usize = 24;
pub const PROXY_NAME: &str = "proxy.lab.test";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The Go toolchains every lab scenario runs with: Debian's own (1.19) and 1.23
/// from bookworm-backports (`cargo xtask setup` installs both).
pub const GO_TOOLCHAINS: [(&str, &str); 2] = [("1.19", "/usr/lib/go-1.19/bin"), ("1.23", "/usr/lib/go-1.23/bin")];

/// Why the lab cannot run here, if it cannot.
pub fn missing_requirements() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("the lab needs root (network namespaces, eBPF)".into());
    }
    for tool in ["ip", "dnsmasq", "nft", "go"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` is not installed (cargo xtask setup installs it)"));
        }
    }
    for (version, dir) in GO_TOOLCHAINS {
        if !Path::new(dir).join("go").exists() {
            return Some(format!("Go {version} is not installed at {dir} (cargo xtask setup installs it)"));
        }
    }
    if !gomod_trace_bin().exists() {
        return Some(format!(
            "{} does not exist: build it first (cargo build -p gomod-trace; cargo xtask test does)",
            gomod_trace_bin().display()
        ));
    }
    None
}

/// Returns true when a lab test should run; a lab that cannot run fails under
/// CI=true and is skipped, loudly, elsewhere.
pub fn lab_available(test: &str) -> bool {
    match missing_requirements() {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("lab test {test} cannot run under CI=true: {why}")
        }
        Some(why) => {
            eprintln!("SKIPPED lab test {test}: {why}");
            false
        }
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    PATH.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.exists())
}

/// The gomod-trace binary under test: $GOMOD_TRACE_BIN, else next to this test's
/// target directory.
pub fn gomod_trace_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("GOMOD_TRACE_BIN") {
        return PathBuf::from(path);
    }
    profile_dir().join("gomod-trace")
}

/// target/<profile>/, from this executable: a test (target/<profile>/deps/<test>)
/// or a binary such as xtask (target/<profile>/xtask).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable directory");
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent().expect("target directory") } else { dir }
        .to_path_buf()
}

/// Builds the lab's module proxy once per test process.
fn goproxy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/goproxy");
        let out = profile_dir().join("lab-goproxy");
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&source)
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .status()
            .expect("run go build");
        assert!(status.success(), "building the lab proxy failed");
        out
    })
}

/// Runs a command to completion; panics with its output when it fails.
fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Lab {
    pub client_ns: String,
    pub server_ns: String,
    pub client_ip: Ipv4Addr,
    pub server_ip: Ipv4Addr,
    dir: tempfile::TempDir,
    children: Vec<Child>,
    /// Directory of the `go` the client runs (first on its PATH).
    go_dir: String,
}

/// A traced `go mod download` and what it left behind.
pub struct TracedRun {
    pub status: std::process::ExitStatus,
    pub stderr: String,
    /// The timeline JSON, as written.
    pub json: Vec<u8>,
    pub timeline: Value,
    pub events: PathBuf,
    pub elapsed: Duration,
}

impl Lab {
    /// Creates the namespaces, the link between them, DNS and the TLS proxy.
    pub fn start() -> Lab {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let subnet = 20 + (std::process::id() + n) % 200;
        let mut lab = Lab {
            client_ns: format!("gmt-c-{id}"),
            server_ns: format!("gmt-s-{id}"),
            client_ip: Ipv4Addr::new(10, 231, subnet as u8, 1),
            server_ip: Ipv4Addr::new(10, 231, subnet as u8, 2),
            dir: tempfile::Builder::new().prefix("gomod-trace-lab-").tempdir().expect("temp dir"),
            children: Vec::new(),
            go_dir: GO_TOOLCHAINS[0].1.to_string(),
        };
        // From here on, Drop cleans up whatever was created.
        let (c, s) = (lab.client_ns.clone(), lab.server_ns.clone());
        let (vc, vs) = (format!("gc{id}"), format!("gs{id}"));
        run("ip", &["netns", "add", &c]);
        run("ip", &["netns", "add", &s]);
        run("ip", &["link", "add", &vc, "type", "veth", "peer", "name", &vs]);
        run("ip", &["link", "set", &vc, "netns", &c]);
        run("ip", &["link", "set", &vs, "netns", &s]);
        for (ns, dev, ip) in [(&c, &vc, lab.client_ip), (&s, &vs, lab.server_ip)] {
            run("ip", &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let netns_etc = PathBuf::from("/etc/netns").join(&c);
        std::fs::create_dir_all(&netns_etc).expect("/etc/netns");
        std::fs::write(netns_etc.join("resolv.conf"), format!("nameserver {}\n", lab.server_ip))
            .expect("resolv.conf");
        std::fs::write(netns_etc.join("hosts"), "127.0.0.1 localhost\n").expect("hosts");

        let server = lab.server_ip.to_string();
        let dnsmasq = lab.spawn_in(
            &s,
            "dnsmasq",
            &[
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={server}"),
                &format!("--host-record={PROXY_NAME},{server}"),
                "--local=/lab.test/",
                "--log-queries",
                &format!("--log-facility={}", lab.path("dnsmasq.log").display()),
                &format!("--pid-file={}", lab.path("dnsmasq.pid").display()),
            ],
        );
        lab.children.push(dnsmasq);
        let ready = lab.path("proxy.ready");
        let proxy = lab.spawn_in(
            &s,
            goproxy_bin().to_str().expect("utf-8 path"),
            &[
                "-addr",
                &format!("{server}:443"),
                "-names",
                PROXY_NAME,
                "-ca",
                lab.path("ca.pem").to_str().expect("utf-8 path"),
                "-modules",
                &MODULES.to_string(),
                "-ready",
                ready.to_str().expect("utf-8 path"),
            ],
        );
        lab.children.push(proxy);
        wait_for("the lab proxy", Duration::from_secs(20), || ready.exists());
        wait_for("dnsmasq", Duration::from_secs(10), || {
            let out = Command::new("ip").args(["netns", "exec", &s, "ss", "-Hlun", "sport = :53"]).output();
            out.is_ok_and(|o| !o.stdout.is_empty())
        });
        lab.require_modules(MODULES);
        lab
    }

    /// Runs later downloads with the `go` in `dir` (see [`GO_TOOLCHAINS`]).
    pub fn use_go(&mut self, dir: &str) {
        self.go_dir = dir.to_string();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn_in(&self, ns: &str, program: &str, args: &[&str]) -> Child {
        let log = std::fs::File::create(self.path(&format!("{}.out", Path::new(program).file_name().unwrap().to_string_lossy())))
            .expect("log file");
        Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"))
    }

    /// Writes the client's go.mod, requiring the first `count` lab modules.
    pub fn require_modules(&self, count: usize) {
        let work = self.path("work");
        std::fs::create_dir_all(&work).expect("work dir");
        let mut gomod = String::from("module lab.test/app\n\ngo 1.19\n\nrequire (\n");
        for i in 1..=count.min(MODULES) {
            gomod.push_str(&format!("\tlab.test/mod{i:02} v1.0.0\n"));
        }
        gomod.push_str(")\n");
        std::fs::write(work.join("go.mod"), gomod).expect("go.mod");
    }

    /// Adds nftables rules in the client namespace (they vanish with it).
    pub fn client_firewall(&self, rules: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.client_ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write as _;
        child.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("nft rules");
        assert!(child.wait().expect("nft").success(), "nft rejected: {rules}");
    }

    /// Runs `gomod-trace run -- go mod download` in the client namespace with the
    /// given GOPROXY, and reads back the timeline it wrote.
    pub fn traced_download(&self, goproxy: &str, timeout: Duration) -> TracedRun {
        self.traced_download_env(&[("GOPROXY", goproxy)], timeout)
    }

    /// As [`Lab::traced_download`], with the go command's environment changed: each
    /// (name, value) replaces the lab's default; an empty value unsets it.
    pub fn traced_download_env(&self, overrides: &[(&str, &str)], timeout: Duration) -> TracedRun {
        let timeline = self.path("timeline.json");
        let events = self.path("events.jsonl");
        let _ = std::fs::remove_file(&timeline);
        let home = self.path("home");
        // The lab's modules are private to it: no checksum database is asked
        // (GONOSUMDB, as agents configure private modules; not GOSUMDB=off).
        let mut env: Vec<(String, String)> = [
            ("PATH", format!("{}:{PATH}", self.go_dir)),
            ("HOME", home.display().to_string()),
            ("GOPATH", home.join("go").display().to_string()),
            ("GOMODCACHE", self.path("modcache").display().to_string()),
            ("GOCACHE", self.path("gocache").display().to_string()),
            ("GOPROXY", format!("https://{PROXY_NAME}")),
            ("GONOSUMDB", "lab.test".to_string()),
            ("GOFLAGS", "-mod=mod".to_string()),
            ("GOTOOLCHAIN", "local".to_string()),
            ("GOENV", "off".to_string()),
            ("GO111MODULE", "on".to_string()),
            ("SSL_CERT_FILE", self.path("ca.pem").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (name, value) in overrides {
            env.retain(|(k, _)| k != name);
            if !value.is_empty() {
                env.push((name.to_string(), value.to_string()));
            }
        }
        let started = Instant::now();
        let mut command = Command::new("timeout");
        command
            .arg("--kill-after=5")
            .arg(timeout.as_secs().to_string())
            .args(["ip", "netns", "exec", &self.client_ns, "env", "-i"])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(gomod_trace_bin())
            .args(["run", "--format", "json", "--output"])
            .arg(&timeline)
            .arg("--record")
            .arg(&events)
            .args(["--", "go", "mod", "download"])
            .current_dir(self.path("work"));
        let output = command.output().expect("run gomod-trace");
        let elapsed = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_ne!(output.status.code(), Some(124), "gomod-trace run timed out after {timeout:?}: {stderr}");
        let json = std::fs::read(&timeline).unwrap_or_else(|e| {
            panic!("no timeline written ({e}); status {:?}, stderr: {stderr}", output.status)
        });
        let timeline = serde_json::from_slice(&json).expect("timeline is JSON");
        // Developers refresh the replay fixtures with GOMOD_TRACE_SAVE_EVENTS=DIR.
        if let Some(dir) = std::env::var_os("GOMOD_TRACE_SAVE_EVENTS") {
            let name = std::thread::current().name().unwrap_or("run").replace("::", "-");
            let _ = std::fs::copy(&events, Path::new(&dir).join(format!("{name}.jsonl")));
        }
        // Fresh module cache for the next run in this lab.
        let _ = Command::new("chmod").args(["-R", "u+w"]).arg(self.path("modcache")).status();
        let _ = std::fs::remove_dir_all(self.path("modcache"));
        TracedRun { status: output.status, stderr, json, timeline, events, elapsed }
    }
}

impl TracedRun {
    /// The text waterfall of this run (replayed from its recording), for messages.
    pub fn waterfall(&self) -> String {
        let out = Command::new(gomod_trace_bin()).arg("replay").arg(&self.events).output();
        match out {
            Ok(out) => format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("(no waterfall: {e})"),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.client_ns, &self.server_ns] {
            // Anything still running in the namespace goes with it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.client_ns));
        let _ = Command::new("chmod").args(["-R", "u+w"]).arg(self.dir.path()).status();
    }
}

/// The spans of a build of a timeline with the given kind.
pub fn spans<'a>(build: &'a Value, kind: &str) -> Vec<&'a Value> {
    build["spans"].as_array().map(|s| s.iter().filter(|s| s["kind"] == kind).collect()).unwrap_or_default()
}

/// The one build of a timeline (a `go mod download` is one build).
pub fn only_build(timeline: &Value) -> &Value {
    let builds = timeline["builds"].as_array().expect("builds array");
    assert_eq!(builds.len(), 1, "expected one build: {timeline:#}");
    &builds[0]
}

/// Finding kinds of a build with severity error or warning.
pub fn serious_findings(build: &Value) -> Vec<String> {
    build["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["severity"] == "error" || f["severity"] == "warning")
                .map(|f| format!("{}: {}", f["kind"], f["message"]))
                .collect()
        })
        .unwrap_or_default()
}
