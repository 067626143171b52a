//! No secret survives in any output. Generated credentials are put in every
//! position a build can carry one (each URL of a GOPROXY list, userinfo with and
//! without a scheme, header values in argv and on the wire, `-H`/`--header` and
//! secret-named flags, `NAME=secret` settings, `.netrc` words, GOAUTH, query
//! parameters, a server's error text, an argument the kernel's window cuts in the
//! middle of a password); the events are built from kernel records by `decode`
//! (configuration files by the parser `capture` uses), then written as a
//! recording, correlated, stored in a history database and rendered in every
//! format, and the bytes of each are searched.
use std::{net::SocketAddr, time::Duration};

use gomod_trace::{
    correlate::{Correlator, Settings},
    decode::{DecodeContext, decode},
    event::{At, ConnectHook, Event, Protocol, TcpState},
    export::{self, Format, View},
    goenv::{self, ConfigFile},
    history::{History, Retention},
    record::{self, Recorder},
    redact,
};
use gomod_trace_ebpf::{
    ARGV_CAPTURE, EnvironmentRecord, EventHeader, ExecRecord, HttpRequestRecord, PayloadRecord,
    direction, kind,
};
use proptest::prelude::*;

const ROOT: u32 = 4100;
const PROXY_COOKIE: u64 = 77;
const START_NS: u64 = 5_000_000_000;

fn as_bytes<T>(record: &T) -> Vec<u8> {
    // SAFETY: reading a plain `#[repr(C)]` record as bytes.
    unsafe { std::slice::from_raw_parts(record as *const T as *const u8, size_of::<T>()) }.to_vec()
}

/// A record of plain data, all zero (every kernel record is valid zeroed).
fn zeroed<T: Copy>() -> T {
    // SAFETY: the kernel records are `#[repr(C)]` integers and byte arrays.
    unsafe { std::mem::zeroed() }
}

fn header(kind: u32, pid: u32, seq: u64) -> EventHeader {
    EventHeader {
        kind,
        cpu: 0,
        seq,
        ts_ns: START_NS + seq * 1_000_000,
        pid,
        tid: pid,
    }
}

fn at(seq: u64) -> At {
    At {
        ts_ns: START_NS + seq * 1_000_000,
        cpu: 0,
        seq,
    }
}

/// Copies `from` into the start of `to`, cut to its size; returns the full length.
fn fill(to: &mut [u8], from: &[u8]) -> u32 {
    let n = from.len().min(to.len());
    to[..n].copy_from_slice(&from[..n]);
    from.len() as u32
}

fn exec(pid: u32, seq: u64, args: &[String]) -> Event {
    let mut r: ExecRecord = zeroed();
    r.header = header(kind::EXEC, pid, seq);
    r.build = ROOT;
    r.comm[..2].copy_from_slice(b"go");
    let mut block = Vec::new();
    for arg in args {
        block.extend_from_slice(arg.as_bytes());
        block.push(0);
    }
    // The kernel copies the first ARGV_CAPTURE bytes and says how many.
    r.argv_len = fill(&mut r.argv, &block).min(ARGV_CAPTURE as u32);
    decode(&as_bytes(&r), &DecodeContext::default()).expect("an exec record")
}

fn environment(seq: u64, vars: &[String]) -> Event {
    let mut r: Box<EnvironmentRecord> = Box::new(zeroed());
    r.header = header(kind::ENVIRONMENT, ROOT, seq);
    r.build = ROOT;
    r.path_len = fill(&mut r.path, b"/usr/lib/go/bin/go");
    let block: Vec<u8> = vars.iter().flat_map(|v| v.bytes().chain([0])).collect();
    r.env_len = fill(&mut r.env, &block);
    decode(&as_bytes(&*r), &DecodeContext::default()).expect("an environment record")
}

fn payload(seq: u64, direction: u16, data: &[u8]) -> Event {
    let mut r: PayloadRecord = zeroed();
    r.header = header(kind::PAYLOAD, 0, seq);
    r.cookie = PROXY_COOKIE;
    r.direction = direction;
    r.protocol = 6;
    r.segment_len = data.len() as u32;
    r.captured_len = fill(&mut r.data, data).min(r.data.len() as u32);
    decode(&as_bytes(&r), &DecodeContext::default()).expect("a payload record")
}

fn http_request(seq: u64, query: &str) -> Event {
    let mut r: HttpRequestRecord = zeroed();
    r.header = header(kind::HTTP_REQUEST, ROOT, seq);
    r.build = ROOT;
    r.goroutine = 9;
    r.method_len = fill(&mut r.method, b"GET");
    r.scheme_len = fill(&mut r.scheme, b"http");
    r.host_len = fill(&mut r.host, b"proxy.example:3128");
    r.path_len = fill(&mut r.path, b"/corp.example/m/@v/list");
    r.query_len = fill(&mut r.query, query.as_bytes());
    decode(&as_bytes(&r), &DecodeContext::default()).expect("an http request record")
}

/// Where each generated secret is put, and the stream that carries them.
struct Build {
    events: Vec<Event>,
    /// Secrets that must not appear whole.
    secrets: Vec<String>,
    /// A secret the kernel's argv window cuts: no 6-byte piece of it may appear.
    cut_secret: String,
}

fn build(s: &[String], cut_secret: &str, pad: usize) -> Build {
    let f = |i: usize| s[i].as_str();
    let goproxy = format!(
        "https://proxy.example,https://{}:{}@corp.example/go,direct|https://{}@third.example",
        f(0),
        f(1),
        f(2)
    );
    let args = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let mut events = vec![Event::Clock {
        monotonic_ns: START_NS,
        realtime_ns: 1_796_000_000_000_000_000,
    }];
    events.push(exec(
        ROOT,
        1,
        &args(&[
            "go",
            "mod",
            "download",
            &format!("GOPROXY={goproxy}"),
            &format!("-ldflags=-X main.apiToken={}", f(3)),
        ]),
    ));
    events.push(environment(2, &[
        format!("GOPROXY=https://proxy.example,https://{}:{}@corp.example/go|https://{}@b.example,direct", f(4), f(5), f(6)),
        format!("HTTPS_PROXY={}:{}@proxy.example:3128", f(7), f(8)),
        format!("GITHUB_TOKEN={}", f(9)),
        format!("GOAUTH=helper --token {}", f(10)),
        "GONOSUMDB=corp.example".to_string(),
        "GOFLAGS=-mod=mod".to_string(),
    ]));
    // The GOENV file, parsed as `capture` parses it.
    let goenv_text = format!(
        "GOPROXY=https://a.example,https://{}:{}@corp.example/go,direct\nGONOSUMDB=corp.example\n",
        f(11),
        f(12)
    );
    events.push(Event::ConfigFiles {
        at: at(2),
        build: ROOT,
        goenv_file: Some(ConfigFile {
            path: "/home/u/.config/go/env".into(),
            vars: goenv::parse_env_file(&goenv_text),
        }),
        goroot_go_env: None,
        go_mod: None,
        refused: Vec::new(),
    });
    let children: Vec<Vec<String>> = vec![
        args(&[
            "git",
            "-c",
            &format!("http.extraHeader=Authorization: Bearer {}", f(13)),
            "ls-remote",
            &format!("https://{}:{}@git.example/r.git", f(14), f(15)),
        ]),
        args(&[
            "curl",
            "-H",
            &format!("Private-Token: {}", f(16)),
            &format!("--header=Cookie: sid={}", f(17)),
            "-u",
            &format!("me:{}", f(18)),
            &format!("https://h.example/x?access_token={}&go-get=1", f(19)),
        ]),
        args(&[
            "sh",
            "-c",
            &format!(
                "printf 'machine corp.example login {} password {}\\n' > ~/.netrc",
                f(20),
                f(21)
            ),
        ]),
        args(&[
            "env",
            &format!("NPM_TOKEN={}", f(22)),
            &format!("GOAUTH=cred-helper --secret {}", f(23)),
            "go",
            "mod",
            "download",
        ]),
        args(&[
            "tool",
            "--password",
            f(24),
            &format!("--api-key={}", f(25)),
            "-H",
            &format!("X-Api-Key: {}", f(26)),
        ]),
        args(&[
            "printf",
            "machine",
            "h.example",
            "login",
            f(27),
            "password",
            f(28),
        ]),
        // Cut by the kernel's window inside the password of a list's second URL.
        args(&[
            "go",
            "env",
            "-w",
            &format!(
                "GOPROXY=https://p{}.example,https://u:{cut_secret}@corp.example/go,direct",
                "x".repeat(pad)
            ),
        ]),
    ];
    for (i, argv) in children.iter().enumerate() {
        let child = ROOT + 1 + i as u32;
        let seq = 3 + 2 * i as u64;
        events.push(Event::Fork {
            at: at(seq),
            parent: ROOT,
            child,
            build: ROOT,
        });
        events.push(exec(child, seq + 1, argv));
    }
    let remote: SocketAddr = "10.0.0.9:3128".parse().unwrap();
    let local: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    events.push(Event::Connect {
        at: at(30),
        pid: ROOT,
        build: ROOT,
        cookie: PROXY_COOKIE,
        protocol: Protocol::Tcp,
        hook: ConnectHook::Connect,
        remote,
    });
    events.push(Event::TcpState {
        at: at(31),
        cookie: PROXY_COOKIE,
        old: TcpState::Close,
        new: TcpState::SynSent,
        local,
        remote,
        error: 0,
        counters: None,
    });
    events.push(Event::TcpState {
        at: at(32),
        cookie: PROXY_COOKIE,
        old: TcpState::SynSent,
        new: TcpState::Established,
        local,
        remote,
        error: 0,
        counters: None,
    });
    events.push(http_request(33, &format!("token={}&go-get=1", f(30))));
    let request = format!(
        "GET http://{}:{}@proxy.example:3128/corp.example/m/@v/list?sig={} HTTP/1.1\r\nHost: proxy.example:3128\r\nAuthorization: Basic {}\r\nProxy-Authorization: Bearer {}\r\nCookie: a={}\r\nX-Auth-Token: {}\r\nUser-Agent: Go-http-client/1.1\r\n\r\n",
        f(31),
        f(32),
        f(33),
        f(34),
        f(35),
        f(36),
        f(37)
    );
    events.push(payload(34, direction::EGRESS, request.as_bytes()));
    let answer = format!(
        "HTTP/1.1 401 bad token={}\r\nSet-Cookie: s={}\r\nContent-Length: 0\r\n\r\n",
        f(38),
        f(39)
    );
    events.push(payload(35, direction::INGRESS, answer.as_bytes()));
    // A Go error's text (decode needs the probed executable to read it; it
    // applies the same `redact::event` to it).
    let mut response = Event::HttpResponse {
        at: at(36),
        pid: ROOT,
        build: ROOT,
        goroutine: 9,
        status: None,
        proto: None,
        error: Some(format!(
            "Get \"https://u:{}@corp.example/x?sig={}\": proxy said Authorization: Bearer {}",
            f(40),
            f(41),
            f(42)
        )),
    };
    redact::event(&mut response);
    events.push(response);
    events.push(Event::TcpState {
        at: at(37),
        cookie: PROXY_COOKIE,
        old: TcpState::Established,
        new: TcpState::Close,
        local,
        remote,
        error: 0,
        counters: None,
    });
    for i in 0..children.len() as u32 {
        events.push(Event::Exit {
            at: at(38 + u64::from(i)),
            pid: ROOT + 1 + i,
            build: ROOT,
            wait_status: 0,
        });
    }
    events.push(Event::Exit {
        at: at(50),
        pid: ROOT,
        build: ROOT,
        wait_status: 1 << 8,
    });
    Build {
        events,
        secrets: s.to_vec(),
        cut_secret: cut_secret.to_string(),
    }
}

/// Every output of the build, by name: the recording (and its payloads, which it
/// holds in base64), the history database's files, and each export format.
fn outputs(events: &[Event]) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("build.jsonl");
    let mut recorder = Recorder::create(&recording).unwrap();
    events.iter().try_for_each(|e| recorder.write(e)).unwrap();
    recorder.finish().unwrap();
    let raw = std::fs::read(&recording).unwrap();
    let mut out = vec![("recording".to_string(), raw.clone())];
    for line in String::from_utf8(raw).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(data) = value["data"].as_str() {
            use base64::Engine as _;
            out.push((
                "recorded payload".into(),
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap(),
            ));
        }
    }

    let timeline = Correlator::timeline(record::read(&recording).unwrap(), Settings::default());
    assert_eq!(timeline.builds.len(), 1, "one build");
    let history_dir = dir.path().join("history");
    std::fs::create_dir(&history_dir).unwrap();
    let mut history = History::open(&history_dir).unwrap();
    let keep = Retention {
        max_age: Duration::from_secs(365 * 86400),
        max_builds: 10,
    };
    history
        .insert(&timeline.builds[0], keep, 1_796_000_000_000_000_000)
        .unwrap();
    drop(history);
    for file in std::fs::read_dir(&history_dir).unwrap() {
        let file = file.unwrap();
        out.push((
            format!("history {}", file.file_name().to_string_lossy()),
            std::fs::read(file.path()).unwrap(),
        ));
    }

    let views = [
        View::default(),
        View {
            verbose: true,
            color: true,
            width: Some(400),
            only_failures: false,
        },
    ];
    for format in [
        Format::Text,
        Format::Json,
        Format::Perfetto,
        Format::Html,
        Format::Otlp,
    ] {
        for view in &views {
            out.push((
                format!("{format:?} {view:?}"),
                export::render(&timeline, format, view),
            ));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn no_generated_secret_survives_in_any_output(
        secrets in proptest::collection::vec("[A-Za-z0-9][A-Za-z0-9._~-]{7,23}", 43),
        cut_secret in "[A-Za-z0-9]{24}",
        // The password starts 232 to 251 bytes into the 256-byte argv window.
        pad in 186usize..206,
    ) {
        let build = build(&secrets, &cut_secret, pad);
        let outputs = outputs(&build.events);
        for (name, bytes) in &outputs {
            for secret in &build.secrets {
                prop_assert!(!contains(bytes, secret.as_bytes()), "{} holds {:?}:\n{}", name, secret, String::from_utf8_lossy(bytes));
            }
            for piece in build.cut_secret.as_bytes().windows(6) {
                prop_assert!(!contains(bytes, piece), "{} holds {:?} of the cut {:?}", name, String::from_utf8_lossy(piece), build.cut_secret);
            }
        }
        // The outputs do show what is kept around the secrets.
        let json = String::from_utf8_lossy(&outputs.iter().find(|(n, _)| n.starts_with("Json")).unwrap().1).into_owned();
        for kept in ["corp.example", "REDACTED", "proxy.example", "ls-remote", "Private-Token: REDACTED", "--password"] {
            prop_assert!(json.contains(kept), "the JSON shows {:?}: {}", kept, json);
        }
    }
}
