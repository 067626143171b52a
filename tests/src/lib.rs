//! The hermetic lab: a client network namespace where the real `go` runs under
//! gomod-trace, and a server namespace with DNS (dnsmasq) and the servers of
//! tests/lab/labd (built with the machine's Go against Debian's golang.org/x/mod):
//! module proxies healthy and faulty, a checksum database, a vanity host and a git
//! server, HTTP CONNECT proxies, a TLS tarpit, a certificate from an untrusted CA,
//! DNS resolvers that answer AAAA unlike dnsmasq. Variants break the lab's own
//! habits: resolvers ([`Lab::set_resolvers`]), a proxy on a non-default port,
//! several GOPROXY entries on one host (path prefixes), an HTTP/1.1-only proxy, a
//! stall over plain HTTP, a module host where nothing listens ([`GONE_MODULE`]),
//! and a program that dials concurrently ([`Lab::traced_dialer`]).
//! Each server name has its own address. Faults are real: names that do not
//! resolve, ports nobody listens on, nftables rules that drop or reject packets.
//!
//! Everything a lab creates (namespaces, veth pair, /etc/netns files, processes,
//! temporary files) is removed when it is dropped, also when a test panics. Traffic
//! stays inside the lab's own namespaces.
pub mod daemonset;
pub mod viewers;

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
/// The container image `cargo xtask image` builds (deploy/container/), tagged
/// with the workspace's version and `latest`.
pub const IMAGE: &str = "localhost/gomod-trace";

pub fn image_tag() -> String {
    format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION"))
}

pub const MODULES: usize = 24;
pub const PROXY_NAME: &str = "proxy.lab.test";
/// The checksum database's name (and host).
pub const SUMDB_NAME: &str = "sum.lab.test";
/// A module that only the git server has (behind the vanity host lab.test): a
/// private module, unknown to the proxies and to the checksum database.
pub const PRIVATE_MODULE: &str = "lab.test/private";
/// Credentials the authenticating CONNECT proxy accepts.
pub const PROXY_AUTH: (&str, &str) = ("builder", "pr0xyS3cret");

/// The lab's servers: (name, labd behaviour, port). Every name gets an address of
/// its own in the server namespace (see [`Lab::ip_of`]).
pub const SERVERS: &[(&str, &str, u16)] = &[
    (PROXY_NAME, "proxy", 443),
    (PROXY_NAME, "proxy+plain", 80),
    ("mirror.lab.test", "mirror", 443),
    (SUMDB_NAME, "sumdb", 443),
    ("lab.test", "vanity", 443),
    ("git.lab.test", "git", 443),
    ("s401.lab.test", "status:401", 443),
    ("s401.lab.test", "status:401+plain", 80),
    ("s403.lab.test", "status:403", 443),
    ("s404.lab.test", "status:404", 443),
    ("s404.lab.test", "status:404+plain", 80),
    ("s410.lab.test", "status:410", 443),
    ("s503.lab.test", "status:503", 443),
    ("s503.lab.test", "status:503+plain", 80),
    ("stall.lab.test", "stall", 443),
    ("slow.lab.test", "slow", 443),
    ("tarpit.lab.test", "tarpit", 443),
    ("untrusted.lab.test", "untrusted", 443),
    ("webproxy.lab.test", "connect", 3128),
    ("authproxy.lab.test", "connect-auth", 3128),
    ("dualstack.lab.test", "proxy", 443),
    // Variants (appended: the addresses of the names above do not move).
    // The proxy on a non-default port: GOPROXY=proxy.lab.test:9443 (cmd/go adds
    // https://) or https://<its IP>:9443 (the certificate has IP SANs).
    (PROXY_NAME, "proxy", PROXY_ALT_PORT),
    // The stalling proxy over plain HTTP too.
    ("stall.lab.test", "stall+plain", 80),
    (H1_PROXY_NAME, "proxy-h1", 443),
    // An address and a DNS record, nothing listening: connections are refused.
    (GONE_NAME, "closed", 443),
    (REFUSE_AAAA_RESOLVER, "dns:refuse-aaaa", 53),
    (EMPTY_AAAA_RESOLVER, "dns:empty-aaaa", 53),
    (SILENT_RESOLVER, "dns:silent", 53),
    ("s500.lab.test", "status:500", 443),
];
/// The second port of the lab proxy (the same modules as on 443, over TLS). Not
/// 8443: run_lab.rs and daemon_lab.rs use proxy.lab.test:8443 as a port that refuses.
pub const PROXY_ALT_PORT: u16 = 9443;
/// A module proxy over TLS that speaks HTTP/1.1 only (ALPN offers no h2); the
/// other TLS servers negotiate HTTP/2 with clients that offer it. The client side
/// can also be told `GODEBUG=http2client=0`.
pub const H1_PROXY_NAME: &str = "h1.lab.test";
/// A name with an address and a DNS record where nothing listens (port 443 and
/// every other refuse with a reset): a module host whose `?go-get=1` discovery
/// fails. See [`GONE_MODULE`].
pub const GONE_NAME: &str = "gone.lab.test";
/// A module under [`GONE_NAME`]: with GOPROXY=https://s404.lab.test,direct,
/// cmd/go falls back to direct, fails to fetch https://gone.lab.test/x?go-get=1
/// (connection refused) and never starts git. [`Lab::require`] writes it like any
/// other (`gone.lab.test/x v1.0.0`); note that GONOSUMDB=lab.test does not cover
/// it (another first element), which matters only if a download ever succeeded.
pub const GONE_MODULE: &str = "gone.lab.test/x";
/// A resolver (labd, UDP and TCP :53 of its own address) that answers A queries
/// for the lab's names, NXDOMAIN for other names, and REFUSED to every AAAA query.
pub const REFUSE_AAAA_RESOLVER: &str = "ns-refuse-aaaa.lab.test";
/// As [`REFUSE_AAAA_RESOLVER`], but AAAA queries for the lab's names get NOERROR
/// with no answer (NODATA).
pub const EMPTY_AAAA_RESOLVER: &str = "ns-empty-aaaa.lab.test";
/// A resolver that reads queries and never answers (UDP and TCP): a dead one.
pub const SILENT_RESOLVER: &str = "ns-silent.lab.test";
/// The process name of the lab's dialer ([`Lab::dialer_bin`]), for
/// `gomod-trace run --go-command`.
pub const DIALER_COMMAND: &str = "lab-dialer";
/// The module proxy that serves a directory, in a lab started with
/// [`Lab::start_serving`] (labd's `files` behaviour, port 443): the real-download
/// benchmark's corpus (tests/lab/corpus, see [`Lab::corpus_bin`]). Other labs
/// have no such name.
pub const FILES_NAME: &str = "files.lab.test";
/// The name that also has an AAAA record, an IPv6 address nothing answers at.
pub const DUAL_STACK_NAME: &str = "dualstack.lab.test";
/// A name whose lookups the lab's DNS server answers with SERVFAIL.
pub const SERVFAIL_NAME: &str = "broken.lab.test";
/// A name whose lookups the lab's DNS server never answers.
pub const SILENT_NAME: &str = "silent.lab.test";
/// Where labd answers SERVFAIL to everything (dnsmasq forwards SERVFAIL_NAME there).
const SERVFAIL_PORT: u16 = 5353;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The Go toolchains every lab scenario runs with: Debian's own (1.19) and 1.23
/// from bookworm-backports (`cargo xtask setup` installs both).
pub const GO_TOOLCHAINS: [(&str, &str); 2] = [("1.19", "/usr/lib/go-1.19/bin"), ("1.23", "/usr/lib/go-1.23/bin")];

/// Why the lab cannot run here, if it cannot.
pub fn missing_requirements() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("the lab needs root (network namespaces, eBPF)".into());
    }
    for tool in ["ip", "dnsmasq", "nft", "go", "git"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` is not installed (cargo xtask setup installs it)"));
        }
    }
    for (version, dir) in GO_TOOLCHAINS {
        if !Path::new(dir).join("go").exists() {
            return Some(format!("Go {version} is not installed at {dir} (cargo xtask setup installs it)"));
        }
    }
    if !Path::new(GOPATH_LIBRARIES).join("src/golang.org/x/mod/sumdb").exists() {
        return Some("golang-golang-x-mod-dev is not installed (cargo xtask setup installs it)".into());
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

/// Builds the lab's servers once per test process, in GOPATH mode against
/// Debian's golang.org/x/mod (golang-golang-x-mod-dev), with Debian's Go.
fn labd_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_lab_program("labd", "lab-labd"))
}

/// Builds tests/lab/<dir> into target/<profile>/<out> with Debian's Go, in
/// GOPATH mode (nothing is fetched).
fn build_lab_program(dir: &str, out: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab").join(dir);
    let out = profile_dir().join(out);
    let status = Command::new(Path::new(GO_TOOLCHAINS[0].1).join("go"))
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH_LIBRARIES)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .status()
        .expect("run go build");
    assert!(status.success(), "building tests/lab/{dir} failed");
    out
}

/// Where Debian installs Go libraries (golang-golang-x-mod-dev).
const GOPATH_LIBRARIES: &str = "/usr/share/gocode";

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
    /// The DNS server's address; every server name has its own ([`Lab::ip_of`]).
    pub server_ip: Ipv4Addr,
    subnet: u8,
    dir: tempfile::TempDir,
    children: Vec<Child>,
    /// Directory of the `go` the client runs (first on its PATH).
    go_dir: String,
    /// The directory [`FILES_NAME`] serves, if the lab has that server.
    files: Option<PathBuf>,
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
    /// What `gomod-trace run` and the traced command printed on stdout (the
    /// timeline goes to a file): the dialer's results, for one.
    pub stdout: String,
}

/// The distinct server names, in [`SERVERS`] order, then [`FILES_NAME`] when the
/// lab serves a directory (last: the addresses of the others do not move).
fn server_names(files: bool) -> Vec<&'static str> {
    let mut names: Vec<&str> = Vec::new();
    for (name, _, _) in SERVERS {
        if !names.contains(name) {
            names.push(name);
        }
    }
    if files {
        names.push(FILES_NAME);
    }
    names
}

impl Lab {
    /// Creates the namespaces, the link between them, DNS and the servers.
    pub fn start() -> Lab {
        Lab::start_with(None)
    }

    /// As [`Lab::start`], plus a module proxy at `https://`[`FILES_NAME`] (HTTP/2,
    /// the lab's certificate) serving the GOPROXY file tree in `dir`.
    pub fn start_serving(dir: &Path) -> Lab {
        Lab::start_with(Some(dir.to_path_buf()))
    }

    fn start_with(files: Option<PathBuf>) -> Lab {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let subnet = (20 + (std::process::id() + n) % 200) as u8;
        let mut lab = Lab {
            client_ns: format!("gmt-c-{id}"),
            server_ns: format!("gmt-s-{id}"),
            client_ip: Ipv4Addr::new(10, 231, subnet, 1),
            server_ip: Ipv4Addr::new(10, 231, subnet, 2),
            subnet,
            dir: tempfile::Builder::new().prefix("gomod-trace-lab-").tempdir().expect("temp dir"),
            children: Vec::new(),
            go_dir: GO_TOOLCHAINS[0].1.to_string(),
            files,
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
        let mut host_records = Vec::new();
        for name in server_names(lab.files.is_some()) {
            let ip = lab.ip_of(name);
            run("ip", &["-n", &s, "addr", "add", &format!("{ip}/24"), "dev", &vs]);
            host_records.push(if name == DUAL_STACK_NAME {
                format!("--host-record={name},{ip},{}", lab.unanswered_ipv6())
            } else {
                format!("--host-record={name},{ip}")
            });
        }
        // The client has IPv6 (a global address and its on-link route); the server
        // has none, so IPv6 connects find no neighbour.
        run("ip", &["-n", &c, "addr", "add", &format!("2001:db8:231:{subnet}::1/64"), "dev", &vc, "nodad"]);
        let netns_etc = PathBuf::from("/etc/netns").join(&c);
        std::fs::create_dir_all(&netns_etc).expect("/etc/netns");
        lab.default_resolvers();
        std::fs::write(netns_etc.join("hosts"), "127.0.0.1 localhost\n").expect("hosts");

        let server = lab.server_ip.to_string();
        let mut dnsmasq_args = vec![
            "--keep-in-foreground".to_string(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={server}"),
            // Upstreams for two zones: one that fails, one where nothing listens.
            format!("--server=/{SERVFAIL_NAME}/{server}#{SERVFAIL_PORT}"),
            format!("--server=/{SILENT_NAME}/127.0.0.1#5399"),
            "--local=/lab.test/".into(),
            "--log-queries".into(),
            format!("--log-facility={}", lab.path("dnsmasq.log").display()),
            format!("--pid-file={}", lab.path("dnsmasq.pid").display()),
        ];
        dnsmasq_args.extend(host_records);
        let dnsmasq_args: Vec<&str> = dnsmasq_args.iter().map(String::as_str).collect();
        let dnsmasq = lab.spawn_in(&s, "dnsmasq", &dnsmasq_args);
        lab.children.push(dnsmasq);

        let ready = lab.path("labd.ready");
        let mut args: Vec<String> = Vec::new();
        for (name, behaviour, port) in SERVERS {
            args.push("-serve".into());
            args.push(format!("{name},{}:{port},{behaviour}", lab.ip_of(name)));
        }
        if let Some(dir) = &lab.files {
            args.push("-serve".into());
            args.push(format!("{FILES_NAME},{}:443,files", lab.ip_of(FILES_NAME)));
            args.push("-files".into());
            args.push(dir.display().to_string());
        }
        for (flag, value) in [
            ("-ca", lab.path("ca.pem")),
            ("-sumdb-key", lab.path("sumdb.key")),
            ("-repos", lab.path("repos")),
            ("-ready", ready.clone()),
        ] {
            args.push(flag.into());
            args.push(value.display().to_string());
        }
        args.extend(["-dns-servfail".into(), format!("{server}:{SERVFAIL_PORT}")]);
        args.extend(["-sumdb-name".into(), SUMDB_NAME.into(), "-modules".into(), MODULES.to_string()]);
        args.extend(["-proxy-auth".into(), format!("{}:{}", PROXY_AUTH.0, PROXY_AUTH.1)]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let labd = lab.spawn_in(&s, labd_bin().to_str().expect("utf-8 path"), &args);
        lab.children.push(labd);
        wait_for("the lab servers", Duration::from_secs(30), || ready.exists());
        wait_for("dnsmasq", Duration::from_secs(10), || {
            let out = Command::new("ip").args(["netns", "exec", &s, "ss", "-Hlun", "sport = :53"]).output();
            out.is_ok_and(|o| !o.stdout.is_empty())
        });
        lab.require_modules(MODULES);
        lab
    }

    /// The address of a server name of [`SERVERS`].
    pub fn ip_of(&self, name: &str) -> Ipv4Addr {
        let names = server_names(self.files.is_some());
        let index = names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("no lab server {name}"));
        Ipv4Addr::new(10, 231, self.subnet, 10 + index as u8)
    }

    /// The IPv6 address [`DUAL_STACK_NAME`] resolves to (nobody has it).
    pub fn unanswered_ipv6(&self) -> String {
        format!("2001:db8:231:{}::2", self.subnet)
    }

    /// An address in the lab's subnet that nobody has: packets to it find no
    /// neighbour. A TCP connect fails after about 3 s (ARP gives up: EHOSTUNREACH);
    /// a DNS query over UDP gets no error, only silence (Go times out after 5 s).
    pub fn unused_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 250)
    }

    /// Points the client's resolver at these nameservers, in this order (one
    /// `nameserver` line each in /etc/netns/<client>/resolv.conf, which `ip netns
    /// exec` puts in place of /etc/resolv.conf; Go reads it when it starts). For
    /// example `[lab.ip_of(SILENT_RESOLVER), lab.server_ip]`: a dead resolver, then
    /// a good one. Stays until changed; see [`Lab::default_resolvers`].
    pub fn set_resolvers(&self, nameservers: &[Ipv4Addr]) {
        let text: String = nameservers.iter().map(|ip| format!("nameserver {ip}\n")).collect();
        self.set_resolv_conf(&text);
    }

    /// Writes the client's resolv.conf as given (e.g. with `options timeout:1
    /// attempts:1`, `options rotate`, `options use-vc`).
    pub fn set_resolv_conf(&self, text: &str) {
        let path = PathBuf::from("/etc/netns").join(&self.client_ns).join("resolv.conf");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Points the client's resolver back at the lab's dnsmasq ([`Lab::server_ip`]),
    /// as [`Lab::start`] leaves it.
    pub fn default_resolvers(&self) {
        self.set_resolvers(&[self.server_ip]);
    }

    /// The lab's small dialer (tests/lab/dialer, see [`DIALER_COMMAND`]), built
    /// once per test process into the target directory, like the lab's servers.
    pub fn dialer_bin() -> &'static Path {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        BIN.get_or_init(|| build_lab_program("dialer", DIALER_COMMAND))
    }

    /// The corpus builder (tests/lab/corpus): real module sources to a GOPROXY
    /// file tree for [`Lab::start_serving`]. Built once per process, like labd.
    pub fn corpus_bin() -> &'static Path {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        BIN.get_or_init(|| build_lab_program("corpus", "lab-corpus"))
    }

    /// GOSUMDB for the lab's checksum database: its name and verifier key.
    pub fn gosumdb(&self) -> String {
        std::fs::read_to_string(self.path("sumdb.key")).expect("sumdb key").trim().to_string()
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
        let modules: Vec<String> = (1..=count.min(MODULES)).map(|i| format!("lab.test/mod{i:02}")).collect();
        self.require(&modules.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Writes the client's go.mod, requiring these modules at v1.0.0.
    pub fn require(&self, modules: &[&str]) {
        let work = self.path("work");
        std::fs::create_dir_all(&work).expect("work dir");
        let mut gomod = String::from("module lab.test/app\n\ngo 1.19\n\nrequire (\n");
        for module in modules {
            gomod.push_str(&format!("\t{module} v1.0.0\n"));
        }
        gomod.push_str(")\n");
        std::fs::write(work.join("go.mod"), gomod).expect("go.mod");
    }

    /// Adds nftables rules in the client namespace (they vanish with it).
    pub fn client_firewall(&self, rules: &str) {
        self.firewall(&self.client_ns, rules);
    }

    /// Adds nftables rules in the server namespace: faults on the far side.
    pub fn server_firewall(&self, rules: &str) {
        self.firewall(&self.server_ns, rules);
    }

    /// Removes the rules [`Lab::client_firewall`] and [`Lab::server_firewall`] added.
    pub fn clear_firewalls(&self) {
        for ns in [&self.client_ns, &self.server_ns] {
            run("ip", &["netns", "exec", ns, "nft", "flush", "ruleset"]);
        }
    }

    fn firewall(&self, ns: &str, rules: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
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

    /// The client's environment for `go`: the lab's defaults, changed by
    /// `overrides` (an empty value unsets).
    fn go_env(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
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
            // git (direct fetches) trusts the lab CA too, and reads no host config.
            ("GIT_SSL_CAINFO", self.path("ca.pem").display().to_string()),
            ("GIT_CONFIG_NOSYSTEM", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (name, value) in overrides.iter().copied() {
            env.retain(|(k, _)| k != name);
            if !value.is_empty() {
                env.push((name.to_string(), value.to_string()));
            }
        }
        env
    }

    /// A command that runs `argv` in the client namespace with the lab's Go
    /// environment (`overrides` as in [`Lab::traced_download_env`]), in the work
    /// directory, without gomod-trace: builds a daemon may trace.
    pub fn client_command(&self, argv: &[&str], overrides: &[(&str, &str)]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.client_ns, "env", "-i"])
            .args(self.go_env(overrides).iter().map(|(k, v)| format!("{k}={v}")))
            .args(argv)
            .current_dir(self.path("work"));
        command
    }

    /// As [`Lab::traced_download`], with the go command's environment changed: each
    /// (name, value) replaces the lab's default; an empty value unsets it.
    pub fn traced_download_env(&self, overrides: &[(&str, &str)], timeout: Duration) -> TracedRun {
        self.traced(&["go", "mod", "download"], overrides, timeout)
    }

    /// Runs `gomod-trace run -- COMMAND` in the client namespace, in the work
    /// directory, with the lab's Go environment changed by `overrides` (as in
    /// [`Lab::traced_download_env`]); `timeout` bounds the whole run.
    pub fn traced(&self, argv: &[&str], overrides: &[(&str, &str)], timeout: Duration) -> TracedRun {
        self.traced_with(argv, overrides, &[], timeout)
    }

    /// Runs the lab's dialer ([`Lab::dialer_bin`]) traced in the client namespace:
    /// `gomod-trace run --go-command lab-dialer TRACER_ARGS -- lab-dialer ADDR...`.
    /// It dials every address concurrently and prints one line each on stdout
    /// ([`TracedRun::stdout`]); it exits 0 whatever the outcomes.
    pub fn traced_dialer(&self, addrs: &[&str], tracer_args: &[&str], timeout: Duration) -> TracedRun {
        let bin = Lab::dialer_bin().to_str().expect("utf-8 path");
        let argv: Vec<&str> = std::iter::once(bin).chain(addrs.iter().copied()).collect();
        let tracer: Vec<&str> =
            ["--go-command", DIALER_COMMAND].into_iter().chain(tracer_args.iter().copied()).collect();
        self.traced_with(&argv, &[], &tracer, timeout)
    }

    /// As [`Lab::traced`], with extra arguments for `gomod-trace run` (before the
    /// `--`), e.g. `&["--stall-threshold", "5s"]`.
    pub fn traced_with(
        &self,
        argv: &[&str],
        overrides: &[(&str, &str)],
        tracer_args: &[&str],
        timeout: Duration,
    ) -> TracedRun {
        self.traced_to("json", &self.path("timeline.json"), argv, overrides, tracer_args, timeout)
    }

    /// As [`Lab::traced_with`], with `run --format FORMAT --output REPORT`; the
    /// run's timeline JSON ([`TracedRun::json`]) is then the replay of its
    /// recording (byte for byte what `run --format json` would have written).
    pub fn traced_to(
        &self,
        format: &str,
        report: &Path,
        argv: &[&str],
        overrides: &[(&str, &str)],
        tracer_args: &[&str],
        timeout: Duration,
    ) -> TracedRun {
        let events = self.path("events.jsonl");
        let _ = std::fs::remove_file(report);
        let env = self.go_env(overrides);
        let started = Instant::now();
        let mut command = Command::new("timeout");
        command
            .arg("--kill-after=5")
            .arg(timeout.as_secs().to_string())
            .args(["ip", "netns", "exec", &self.client_ns, "env", "-i"])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(gomod_trace_bin())
            .args(["run", "--format", format, "--output"])
            .arg(report)
            .arg("--record")
            .arg(&events)
            .args(tracer_args)
            .arg("--")
            .args(argv)
            .current_dir(self.path("work"));
        // Each run starts from nothing: no checksums from an earlier run.
        let _ = std::fs::remove_file(self.path("work/go.sum"));
        let output = command.output().expect("run gomod-trace");
        let elapsed = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // (The status alone cannot tell: a command may itself be `timeout …`.)
        assert!(
            !(output.status.code() == Some(124) && elapsed >= timeout),
            "gomod-trace run timed out after {timeout:?}: {stderr}"
        );
        let written = std::fs::read(report).unwrap_or_else(|e| {
            panic!("no {format} report written ({e}); status {:?}, stderr: {stderr}", output.status)
        });
        let json = if format == "json" {
            written
        } else {
            // Judged as the run was.
            let judge: Vec<&str> = tracer_args
                .windows(2)
                .filter(|pair| pair[0] == "--stall-threshold")
                .flat_map(|pair| pair.iter().copied())
                .collect();
            let replayed = Command::new(gomod_trace_bin())
                .args(["replay", "--format", "json"])
                .args(&judge)
                .arg(&events)
                .output()
                .expect("replay");
            assert!(replayed.status.success(), "replay: {}", String::from_utf8_lossy(&replayed.stderr));
            replayed.stdout
        };
        let timeline = serde_json::from_slice(&json).expect("timeline is JSON");
        // Developers refresh the replay fixtures with GOMOD_TRACE_SAVE_EVENTS=DIR.
        // Each run of a test gets its own file: <test>-<n>.jsonl, n counting from 1.
        if let Some(dir) = std::env::var_os("GOMOD_TRACE_SAVE_EVENTS") {
            static RUNS: AtomicU32 = AtomicU32::new(0);
            let n = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
            let name = std::thread::current().name().unwrap_or("run").replace("::", "-");
            let _ = std::fs::copy(&events, Path::new(&dir).join(format!("{name}-{n}.jsonl")));
        }
        // Fresh module cache for the next run in this lab.
        if self.path("modcache").exists() {
            let _ = Command::new("chmod").args(["-R", "u+w"]).arg(self.path("modcache")).status();
            let _ = std::fs::remove_dir_all(self.path("modcache"));
        }
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        TracedRun { status: output.status, stderr, json, timeline, events, elapsed, stdout }
    }
}

impl TracedRun {
    /// The text waterfall of this run (every span, replayed from its recording),
    /// for messages.
    pub fn waterfall(&self) -> String {
        self.replayed(&["--verbose"])
    }

    /// The report `run` prints by default (replayed from its recording).
    pub fn report(&self) -> String {
        self.replayed(&[])
    }

    fn replayed(&self, args: &[&str]) -> String {
        let out = Command::new(gomod_trace_bin()).arg("replay").args(args).arg(&self.events).output();
        match out {
            Ok(out) => format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("(no timeline: {e})"),
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

/// Kinds of the error and warning findings of the run's one build, sorted and
/// without repeats: what a scenario asserts exactly.
pub fn serious_kinds(run: &TracedRun) -> Vec<String> {
    let build = only_build(&run.timeline);
    let mut kinds: Vec<String> = build["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["severity"] == "error" || f["severity"] == "warning")
                .map(|f| f["kind"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Runs a scenario in one lab with each of [`GO_TOOLCHAINS`]; the firewalls and
/// resolvers go back to the lab's defaults after each. Skips (or, under CI=true,
/// fails) when the lab cannot run here. Prints one `matrix:` line per toolchain
/// the scenario passed on.
pub fn with_each_go(test: &str, mut scenario: impl FnMut(&mut Lab, &str)) {
    if !lab_available(test) {
        return;
    }
    let mut lab = Lab::start();
    for (go, dir) in GO_TOOLCHAINS {
        lab.use_go(dir);
        eprintln!("== {test} with Go {go}");
        scenario(&mut lab, go);
        lab.clear_firewalls();
        lab.default_resolvers();
        eprintln!("matrix: {test} go{go} right");
    }
}
