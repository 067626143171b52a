//! The correlator on event streams written by hand: each case is a network built
//! differently from our lab (a resolver that refuses AAAA, a proxy given as an
//! address, a dead HTTPS_PROXY, two GOPROXY entries on one host, a direct fetch
//! that dies at discovery, a stall nothing ends, concurrent connects that fail
//! differently), with the findings it must and must not give.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use bytes::Bytes;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, ResourceRecord, TYPE, rdata};

use super::{Correlator, Settings};
use crate::{
    event::{At, ConnectHook, Counters, Direction, Event, Protocol, TcpState},
    timeline::{Build, Outcome, Role, Severity, SpanKind},
};

const ROOT: u32 = 100;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// A build's events, written in time order.
struct Stream {
    events: Vec<Event>,
    seq: u64,
    client_port: u16,
}

fn sa(addr: &str) -> SocketAddr {
    addr.parse().expect("socket address")
}

impl Stream {
    /// `go mod download` (pid 100) with these Go settings.
    fn new(vars: &[(&str, &str)]) -> Stream {
        let mut s = Stream { events: vec![Event::Clock { monotonic_ns: 0, realtime_ns: 1_700_000_000 * S as i64 }], seq: 0, client_port: 40_000 };
        let at = s.at(1);
        let argv = vec!["go".to_string(), "mod".into(), "download".into()];
        s.events.push(Event::Exec { at, pid: ROOT, build: ROOT, comm: "go".into(), argv });
        let mut env: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.entry("GOMODCACHE".into()).or_insert_with(|| "/m".into());
        let at = s.at(1);
        s.events.push(Event::Environment { at, build: ROOT, executable: "/usr/bin/go".into(), vars: env, truncated: false });
        s
    }

    /// The main module's go.mod names these modules.
    fn go_mod(mut self, modules: &[&str]) -> Stream {
        let at = self.at(1);
        let go_mod = crate::goenv::GoModFile { path: "/w/go.mod".into(), modules: modules.iter().map(|m| m.to_string()).collect() };
        self.events.push(Event::ConfigFiles { at, build: ROOT, goenv_file: None, goroot_go_env: None, go_mod: Some(go_mod), refused: Vec::new() });
        self
    }

    fn at(&mut self, ts_ns: u64) -> At {
        self.seq += 1;
        At { ts_ns, cpu: 0, seq: self.seq }
    }

    fn connect(&mut self, ts: u64, pid: u32, cookie: u64, protocol: Protocol, remote: &str) {
        let at = self.at(ts);
        self.events.push(Event::Connect { at, pid, build: ROOT, cookie, protocol, hook: ConnectHook::Connect, remote: sa(remote) });
    }

    #[expect(clippy::too_many_arguments, reason = "the fields of one TCP state event")]
    fn state(&mut self, ts: u64, cookie: u64, old: TcpState, new: TcpState, remote: &str, error: i32, counters: Option<Counters>) {
        self.client_port += 1;
        let local = SocketAddr::new("10.0.0.1".parse().unwrap(), self.client_port);
        let at = self.at(ts);
        self.events.push(Event::TcpState { at, cookie, old, new, local, remote: sa(remote), error, counters });
    }

    fn payload(&mut self, ts: u64, cookie: u64, direction: Direction, protocol: Protocol, data: Vec<u8>) {
        let at = self.at(ts);
        let segment_len = data.len() as u32;
        self.events.push(Event::Payload { at, cookie, direction, protocol, segment_len, data: Bytes::from(data) });
    }

    /// One DNS exchange on its own UDP socket: `answer` is the rcode and the
    /// addresses, or None for a query nobody answered.
    fn dns(&mut self, ts: u64, cookie: u64, server: &str, name: &str, qtype: TYPE, answer: Option<(RCODE, &[&str])>) {
        self.connect(ts, ROOT, cookie, Protocol::Udp, server);
        let id = cookie as u16;
        let mut query = Packet::new_query(id);
        query.questions.push(Question::new(Name::new_unchecked(name), QTYPE::TYPE(qtype), QCLASS::CLASS(CLASS::IN), false));
        self.payload(ts, cookie, Direction::Egress, Protocol::Udp, query.build_bytes_vec().unwrap());
        let Some((rcode, addresses)) = answer else { return };
        let mut reply = Packet::new_reply(id);
        reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
        *reply.rcode_mut() = rcode;
        reply.questions.push(Question::new(Name::new_unchecked(name), QTYPE::TYPE(qtype), QCLASS::CLASS(CLASS::IN), false));
        for address in addresses {
            let data = match address.parse::<IpAddr>().unwrap() {
                IpAddr::V4(a) => rdata::RData::A(rdata::A { address: a.into() }),
                IpAddr::V6(a) => rdata::RData::AAAA(rdata::AAAA { address: a.into() }),
            };
            reply.answers.push(ResourceRecord::new(Name::new_unchecked(name), CLASS::IN, 60, data));
        }
        self.payload(ts + 2 * MS, cookie, Direction::Ingress, Protocol::Udp, reply.build_bytes_vec().unwrap());
    }

    /// A TCP connect from `start`: established after 1 ms, or failed at the
    /// time and with the socket error of `failed`.
    fn tcp(&mut self, start: u64, pid: u32, cookie: u64, remote: &str, failed: Option<(u64, i32)>) {
        self.connect(start, pid, cookie, Protocol::Tcp, remote);
        match failed {
            None => self.state(start + MS, cookie, TcpState::SynSent, TcpState::Established, remote, 0, None),
            Some((end, error)) => self.state(end, cookie, TcpState::SynSent, TcpState::Close, remote, error, None),
        }
    }

    fn close(&mut self, ts: u64, cookie: u64, remote: &str, counters: Option<Counters>) {
        self.state(ts, cookie, TcpState::Established, TcpState::Close, remote, 0, counters);
    }

    /// A plaintext HTTP request and its answer on an established socket.
    fn http(&mut self, ts: u64, cookie: u64, request: &str, status: Option<u16>) {
        self.payload(ts, cookie, Direction::Egress, Protocol::Tcp, request.as_bytes().to_vec());
        if let Some(status) = status {
            let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            self.payload(ts + MS, cookie, Direction::Ingress, Protocol::Tcp, response.into_bytes());
        }
    }

    fn connect_error(&mut self, ts: u64, pid: u32, errno: i32, cookie: Option<u64>) {
        let at = self.at(ts);
        self.events.push(Event::ConnectError { at, pid, build: ROOT, errno, cookie });
    }

    fn file(&mut self, ts: u64, op: crate::event::FileOp, path: &str, to: Option<&str>) {
        let at = self.at(ts);
        self.events.push(Event::File { at, pid: ROOT, build: ROOT, op, path: path.into(), to: to.map(str::to_string), extracted: None });
    }

    /// The removal of a module's `.partial` marker, with the kernel's count of the
    /// files extracted in its directory.
    fn extracted(&mut self, ts: u64, partial: &str, extracted: crate::event::ExtractedFiles) {
        let at = self.at(ts);
        let (op, path) = (crate::event::FileOp::Unlink, partial.into());
        self.events.push(Event::File { at, pid: ROOT, build: ROOT, op, path, to: None, extracted: Some(extracted) });
    }

    fn fork_exec(&mut self, ts: u64, child: u32, comm: &str, argv: &[&str]) {
        let at = self.at(ts);
        self.events.push(Event::Fork { at, parent: ROOT, child, build: ROOT });
        let at = self.at(ts);
        self.events.push(Event::Exec { at, pid: child, build: ROOT, comm: comm.into(), argv: argv.iter().map(|a| a.to_string()).collect() });
    }

    fn exit(&mut self, ts: u64, pid: u32, code: i32) {
        let at = self.at(ts);
        self.events.push(Event::Exit { at, pid, build: ROOT, wait_status: code << 8 });
    }

    fn build(self, settings: Settings) -> Build {
        let mut timeline = Correlator::timeline(self.events, settings);
        assert_eq!(timeline.builds.len(), 1);
        timeline.builds.remove(0)
    }

    fn finish(mut self, ts: u64, code: i32) -> Build {
        self.exit(ts, ROOT, code);
        self.build(Settings::default())
    }
}

/// Kinds of the error and warning findings, sorted.
fn serious(b: &Build) -> Vec<&str> {
    let mut kinds: Vec<&str> = b.findings.iter().filter(|f| f.severity >= Severity::Warning).map(|f| f.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

fn spans_of(b: &Build, kind: SpanKind) -> Vec<&crate::timeline::Span> {
    b.spans.iter().filter(|s| s.kind == kind).collect()
}

const NS: &str = "10.0.0.53:53";
const PROXY: &str = "10.0.0.10:443";

/// A clean fetch of the proxy's name and one connection to it.
fn resolve_and_use_proxy(s: &mut Stream, aaaa: Option<(RCODE, &[&str])>) {
    s.dns(10 * MS, 1, NS, "proxy.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.dns(10 * MS, 2, NS, "proxy.corp", TYPE::AAAA, aaaa);
    s.tcp(20 * MS, ROOT, 3, PROXY, None);
    s.close(500 * MS, 3, PROXY, None);
}

#[test]
fn a_resolver_that_refuses_or_empties_aaaa_is_no_dns_failure() {
    for aaaa in [Some((RCODE::Refused, &[][..])), Some((RCODE::NoError, &[][..])), Some((RCODE::NameError, &[][..]))] {
        let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp")]);
        resolve_and_use_proxy(&mut s, aaaa);
        let b = s.finish(600 * MS, 0);
        assert_eq!(serious(&b), Vec::<&str>::new(), "{aaaa:?}: {:#?}", b.findings);
        let dns = spans_of(&b, SpanKind::Dns);
        let noted = dns.iter().find(|d| d.attrs["qtype"] == "AAAA").unwrap();
        assert_eq!(noted.attrs["name_resolved"], true, "{noted:#?}");
        assert_eq!(spans_of(&b, SpanKind::Connect)[0].role, Role::Proxy);
    }
}

#[test]
fn an_unanswered_aaaa_beside_a_good_a_costs_its_timeout() {
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp")]);
    resolve_and_use_proxy(&mut s, None);
    let b = s.finish(6 * S, 0);
    let f = b.findings.iter().find(|f| f.kind == "dns_failure").expect("the wait is reported");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("AAAA") && f.message.contains("10.0.0.53:53"), "{}", f.message);
}

#[test]
fn a_name_that_no_query_resolved_is_a_dns_failure() {
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp")]);
    s.dns(10 * MS, 1, NS, "proxy.corp", TYPE::A, Some((RCODE::NameError, &[])));
    s.dns(10 * MS, 2, NS, "proxy.corp", TYPE::AAAA, Some((RCODE::Refused, &[])));
    let b = s.finish(100 * MS, 1);
    assert_eq!(serious(&b), ["dns_failure"]);
    let f = &b.findings[0];
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("nxdomain") && f.message.contains("refused"), "{}", f.message);
    // Search-list expansions are the same lookup: a miss of one that resolved is none.
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp")]);
    s.dns(5 * MS, 4, NS, "proxy.corp.svc.cluster.local", TYPE::A, Some((RCODE::NameError, &[])));
    resolve_and_use_proxy(&mut s, Some((RCODE::NoError, &[])));
    assert_eq!(serious(&s.finish(600 * MS, 0)), Vec::<&str>::new());
}

#[test]
fn a_proxy_given_as_an_address_has_its_role_and_entry() {
    let mut s = Stream::new(&[("GOPROXY", "https://10.0.0.10,https://proxy.corp:8443/go,direct")]);
    s.tcp(10 * MS, ROOT, 1, PROXY, None);
    s.close(100 * MS, 1, PROXY, None);
    // The same address on another port is another endpoint: the second entry's,
    // reached by the name the build resolved.
    s.dns(110 * MS, 2, NS, "proxy.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(120 * MS, ROOT, 3, "10.0.0.10:8443", Some((121 * MS, 111)));
    let b = s.finish(200 * MS, 1);
    let connects = spans_of(&b, SpanKind::Connect);
    assert_eq!((connects[0].role, connects[0].attrs["entry"].as_str()), (Role::Proxy, Some("GOPROXY[1] https://10.0.0.10")));
    assert_eq!((connects[1].role, connects[1].attrs["entry"].as_str()), (Role::Proxy, Some("GOPROXY[2] https://proxy.corp:8443/go")));
    // cmd/go moved from the first entry to the second (after `,`: a 404 or 410).
    assert_eq!(serious(&b), ["connect_refused", "proxy_fallthrough"]);
    // The refusal failed the build (its last entry): an error.
    assert_eq!(b.findings.iter().find(|f| f.kind == "connect_refused").unwrap().severity, Severity::Error);

    // With `|`, a first entry that refuses and a second that serves: the build
    // succeeded, so the refusal is a warning beside the fall-through.
    let mut s = Stream::new(&[("GOPROXY", "https://10.0.0.11|https://10.0.0.10")]);
    s.tcp(10 * MS, ROOT, 1, "10.0.0.11:443", Some((11 * MS, 111)));
    s.tcp(20 * MS, ROOT, 2, PROXY, None);
    s.close(100 * MS, 2, PROXY, None);
    let b = s.finish(200 * MS, 0);
    assert_eq!(serious(&b), ["connect_refused", "proxy_fallthrough"]);
    assert_eq!(b.findings.iter().find(|f| f.kind == "connect_refused").unwrap().severity, Severity::Warning);
}

#[test]
fn a_dead_https_proxy_is_an_http_proxy_failure() {
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp"), ("HTTPS_PROXY", "10.0.0.99:3128")]);
    s.tcp(10 * MS, ROOT, 1, "10.0.0.99:3128", Some((11 * MS, 111)));
    let b = s.finish(20 * MS, 1);
    assert_eq!(spans_of(&b, SpanKind::Connect)[0].role, Role::HttpsProxy);
    assert_eq!(serious(&b), ["http_proxy_failure"]);
    assert!(b.findings[0].message.contains("could not be reached (refused)"), "{}", b.findings[0].message);
}

#[test]
fn a_tunnel_keeps_the_proxys_address_and_names_the_targets_role() {
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp"), ("HTTPS_PROXY", "http://10.0.0.99:3128")]);
    let hop = "10.0.0.99:3128";
    s.tcp(10 * MS, ROOT, 1, hop, None);
    s.http(12 * MS, 1, "CONNECT proxy.corp:443 HTTP/1.1\r\nHost: proxy.corp:443\r\n\r\n", Some(200));
    s.close(100 * MS, 1, hop, None);
    // A later connect to the proxy's address that fails must stay the proxy's.
    s.tcp(200 * MS, ROOT, 2, hop, Some((201 * MS, 111)));
    let b = s.finish(300 * MS, 1);
    let connects = spans_of(&b, SpanKind::Connect);
    for c in &connects {
        assert_eq!((c.role, c.host.as_deref()), (Role::HttpsProxy, None), "{c:#?}");
    }
    assert_eq!(connects[0].attrs["target_role"], "proxy");
    assert_eq!(connects[0].attrs["target_entry"], "GOPROXY[1] https://proxy.corp");
    assert_eq!(serious(&b), ["http_proxy_failure"]);
}

/// GOPROXY entries on one host: plaintext paths tell them apart.
#[test]
fn two_entries_on_one_host_fall_through_by_path_and_never_by_name() {
    let config = [("GOPROXY", "http://p.corp/gone,http://p.corp/a")];
    let plain = "10.0.0.10:80";
    let mut s = Stream::new(&config);
    s.dns(5 * MS, 9, NS, "p.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, plain, None);
    s.http(12 * MS, 1, "GET /gone/m.corp/x/@v/list HTTP/1.1\r\nHost: p.corp\r\n\r\n", Some(404));
    s.http(20 * MS, 1, "GET /a/m.corp/x/@v/list HTTP/1.1\r\nHost: p.corp\r\n\r\n", Some(200));
    s.close(100 * MS, 1, plain, None);
    let b = s.finish(200 * MS, 0);
    let f = b.findings.iter().find(|f| f.kind == "proxy_fallthrough").expect("a fall-through");
    assert!(f.message.contains("404") && f.message.contains("entry 1") && f.message.contains("(entry 2)"), "{}", f.message);
    let http = spans_of(&b, SpanKind::Http);
    assert_eq!(http[0].attrs["entry"], "GOPROXY[1] http://p.corp/gone");
    assert_eq!(http[1].attrs["entry"], "GOPROXY[2] http://p.corp/a");

    // The same over TLS: nothing tells the entries apart, so nothing is claimed.
    let mut s = Stream::new(&[("GOPROXY", "https://p.corp/a|https://p.corp/b")]);
    s.dns(5 * MS, 9, NS, "p.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, PROXY, None);
    s.close(100 * MS, 1, PROXY, None);
    s.tcp(110 * MS, ROOT, 2, PROXY, None);
    s.close(200 * MS, 2, PROXY, None);
    let b = s.finish(300 * MS, 0);
    assert!(b.findings.iter().all(|f| f.kind != "proxy_fallthrough"), "{:#?}", b.findings);
    assert!(spans_of(&b, SpanKind::Connect)[0].attrs.contains_key("entry_candidates"));
}

#[test]
fn a_direct_fetch_that_dies_at_discovery_is_a_fallback_without_git() {
    let mut s = Stream::new(&[("GOPROXY", "http://p.corp,direct")]).go_mod(&["gone.corp/x"]);
    let plain = "10.0.0.10:80";
    s.dns(5 * MS, 9, NS, "p.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, plain, None);
    s.http(12 * MS, 1, "GET /gone.corp/x/@v/list HTTP/1.1\r\nHost: p.corp\r\n\r\n", Some(404));
    s.close(30 * MS, 1, plain, None);
    // cmd/go's own `GET https://gone.corp/x?go-get=1`: refused.
    s.dns(40 * MS, 8, NS, "gone.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.20"])));
    s.tcp(50 * MS, ROOT, 2, "10.0.0.20:443", Some((51 * MS, 111)));
    s.connect_error(51 * MS, ROOT, 111, Some(2));
    let b = s.finish(100 * MS, 1);
    assert_eq!(serious(&b), ["connect_refused", "fallback_to_direct"], "{:#?}", b.findings);
    let direct = spans_of(&b, SpanKind::Connect).into_iter().find(|c| c.port == Some(443)).unwrap();
    assert_eq!(direct.role, Role::Vcs);
    let f = b.findings.iter().find(|f| f.kind == "fallback_to_direct").unwrap();
    assert!(f.message.contains("gone.corp") && f.message.contains("404") && f.message.contains("no VCS command ran"), "{}", f.message);

    // Without `direct` in GOPROXY the same contact is no fetch of cmd/go's.
    let mut s = Stream::new(&[("GOPROXY", "http://p.corp")]).go_mod(&["gone.corp/x"]);
    s.dns(40 * MS, 8, NS, "gone.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.20"])));
    s.tcp(50 * MS, ROOT, 2, "10.0.0.20:443", None);
    let b = s.finish(100 * MS, 0);
    assert_eq!(spans_of(&b, SpanKind::Connect)[0].role, Role::Other);
}

#[test]
fn a_host_a_proxy_redirects_to_is_no_direct_fetch() {
    // A proxy in redirect mode (Athens, Artifactory with object storage): cmd/go
    // follows it to a host no entry names and no module path has.
    let mut s = Stream::new(&[("GOPROXY", "https://athens.corp,direct"), ("GOPRIVATE", "*.corp")]).go_mod(&["github.com/a/b"]);
    s.dns(5 * MS, 9, NS, "athens.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, PROXY, None);
    s.close(30 * MS, 1, PROXY, None);
    s.dns(40 * MS, 8, NS, "storage.cdn.example", TYPE::A, Some((RCODE::NoError, &["10.0.0.40"])));
    s.tcp(50 * MS, ROOT, 2, "10.0.0.40:443", None);
    s.close(90 * MS, 2, "10.0.0.40:443", None);
    s.file(60 * MS, crate::event::FileOp::Rename, "/m/cache/download/github.com/a/b/@v/v1.0.0.zip1.tmp", Some("/m/cache/download/github.com/a/b/@v/v1.0.0.zip"));
    let b = s.finish(100 * MS, 0);
    let redirected = spans_of(&b, SpanKind::Connect).into_iter().find(|c| c.port == Some(443) && c.host.as_deref() == Some("storage.cdn.example")).unwrap();
    assert_eq!(redirected.role, Role::Other);
    assert_eq!(serious(&b), Vec::<&str>::new(), "{:#?}", b.findings);
    // The module's own host would be where a direct fetch goes.
    let mut s = Stream::new(&[("GOPROXY", "https://athens.corp,direct")]).go_mod(&["github.com/a/b"]);
    s.dns(40 * MS, 8, NS, "github.com", TYPE::A, Some((RCODE::NoError, &["10.0.0.41"])));
    s.tcp(50 * MS, ROOT, 2, "10.0.0.41:443", None);
    let b = s.finish(100 * MS, 0);
    assert_eq!(spans_of(&b, SpanKind::Connect)[0].role, Role::Vcs);
}

#[test]
fn a_module_span_counts_the_files_the_kernel_summarised() {
    let mut s = Stream::new(&[("GOPROXY", "https://p.corp"), ("GOMODCACHE", "/m//")]);
    s.file(10 * MS, crate::event::FileOp::Open, "/m/cache/download/x.org/m/@v/v1.0.0.partial", None);
    // The first file is recorded, the others only counted.
    s.file(12 * MS, crate::event::FileOp::Open, "/m/x.org/m@v1.0.0/go.mod", None);
    let extracted = crate::event::ExtractedFiles { files: 1_200, first_ns: 12 * MS, last_ns: 70 * MS };
    s.extracted(75 * MS, "/m/cache/download/x.org/m/@v/v1.0.0.partial", extracted);
    let b = s.finish(100 * MS, 0);
    let module = &spans_of(&b, SpanKind::Module)[0];
    assert_eq!(module.attrs["files_extracted"], 1_200);
    assert_eq!(module.attrs["extracted"], true);
    // From the marker's creation to its removal, past the last file.
    assert_eq!(module.duration_ms, Some(65.0));
}

#[test]
fn an_intended_direct_fetch_is_no_fallback() {
    let mut s = Stream::new(&[("GOPROXY", "http://p.corp,direct"), ("GOPRIVATE", "git.corp/*")]);
    let plain = "10.0.0.10:80";
    s.tcp(10 * MS, ROOT, 1, plain, None);
    s.http(12 * MS, 1, "GET /m.corp/x/@v/list HTTP/1.1\r\nHost: p.corp\r\n\r\n", Some(200));
    s.close(30 * MS, 1, plain, None);
    s.dns(40 * MS, 8, NS, "git.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.20"])));
    s.tcp(50 * MS, ROOT, 2, "10.0.0.20:443", Some((51 * MS, 111)));
    let b = s.finish(100 * MS, 1);
    assert_eq!(serious(&b), ["connect_refused"], "{:#?}", b.findings);
}

/// A module whose zip began to arrive, over a connection that then went quiet
/// until the build was killed: nothing arrived after the stall to end it.
fn stalled_stream(silence_to_close: u64) -> Stream {
    let mut s = Stream::new(&[("GOPROXY", "http://p.corp")]);
    let plain = "10.0.0.10:80";
    s.dns(5 * MS, 9, NS, "p.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, plain, None);
    s.file(20 * MS, crate::event::FileOp::Open, "/m/cache/download/m.corp/x/@v/v1.0.0.zip123.tmp", None);
    let last = 30 * MS;
    let close = last + silence_to_close;
    let counters = Counters {
        bytes_received: 65_536,
        segments_received: 40,
        first_received_ns: Some(11 * MS),
        last_received_ns: Some(last),
        longest_silence: Some(crate::event::Silence { ns: MS, end_ns: 12 * MS }),
        ..Counters::default()
    };
    s.exit(close, ROOT, 124);
    s.close(close + MS, 1, plain, Some(counters));
    s
}

#[test]
fn a_stall_that_never_ends_is_measured_to_the_close() {
    let b = stalled_stream(40 * S).build(Settings::default());
    let f = b.findings.iter().find(|f| f.kind == "stalled_transfer").expect("a stall");
    assert!(f.message.contains("m.corp/x@v1.0.0") && f.message.contains("40.0 s") && f.message.contains("until it was stopped"), "{}", f.message);
    assert_eq!(serious(&b), ["stalled_transfer"]);
    // Below the threshold it is not one; the threshold is the user's.
    let b = stalled_stream(20 * S).build(Settings::default());
    assert!(b.findings.iter().all(|f| f.kind != "stalled_transfer"));
    let b = stalled_stream(20 * S).build(Settings { stall_threshold_ns: 10 * S });
    assert!(b.findings.iter().any(|f| f.kind == "stalled_transfer"));
}

#[test]
fn concurrent_connects_get_their_own_errors_by_socket() {
    let mut s = Stream::new(&[("GOPROXY", "https://a.corp|https://b.corp")]);
    // Both in flight at once.
    s.connect(10 * MS, ROOT, 1, Protocol::Tcp, "10.0.0.1:443");
    s.connect(10 * MS, ROOT, 2, Protocol::Tcp, "10.0.0.2:443");
    // The first connect's error arrives first, while the second (the latest,
    // which a guess by process and time would pick) is still open; the second's
    // socket closes before its own error is read.
    s.connect_error(20 * MS, ROOT, 113, Some(1));
    s.state(21 * MS, 2, TcpState::SynSent, TcpState::Close, "10.0.0.2:443", 0, None);
    s.connect_error(22 * MS, ROOT, 111, Some(2));
    s.state(23 * MS, 1, TcpState::SynSent, TcpState::Close, "10.0.0.1:443", 0, None);
    // A Unix socket's error (cookie 0) belongs to no connect.
    s.connect_error(22 * MS, ROOT, 2, Some(0));
    let b = s.finish(30 * MS, 1);
    let connects = spans_of(&b, SpanKind::Connect);
    let outcome = |addr: &str| connects.iter().find(|c| c.addr.as_deref() == Some(addr)).unwrap().outcome;
    assert_eq!(outcome("10.0.0.1"), Some(Outcome::Unreachable));
    assert_eq!(outcome("10.0.0.2"), Some(Outcome::Refused));
    assert_eq!(serious(&b), ["connect_refused", "host_unreachable"]);
}

#[test]
fn git_run_by_the_build_is_version_control_and_its_address_not_a_proxy() {
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp,direct")]);
    s.fork_exec(5 * MS, 200, "git", &["git", "ls-remote", "https://git.corp/x.git"]);
    s.tcp(10 * MS, 200, 1, "10.0.0.30:443", None);
    s.close(20 * MS, 1, "10.0.0.30:443", None);
    let b = s.finish(30 * MS, 0);
    assert_eq!(spans_of(&b, SpanKind::Connect)[0].role, Role::Vcs);
}

#[test]
fn a_running_build_shows_its_stall_while_it_lasts() {
    // The zip began to arrive at 30 ms and nothing came after; no close yet.
    let mut s = Stream::new(&[("GOPROXY", "http://p.corp")]);
    let plain = "10.0.0.10:80";
    s.dns(5 * MS, 9, NS, "p.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, plain, None);
    s.file(20 * MS, crate::event::FileOp::Open, "/m/cache/download/m.corp/x/@v/v1.0.0.zip123.tmp", None);
    let progress = |ts: u64| Event::Progress {
        ts_ns: ts,
        cookie: 1,
        counters: Counters { bytes_received: 4096, first_received_ns: Some(11 * MS), last_received_ns: Some(30 * MS), ..Counters::default() },
    };
    s.events.push(progress(5 * S));
    s.events.push(progress(35 * S));
    let mut correlator = Correlator::new(Settings::default());
    for event in &s.events[..s.events.len() - 1] {
        correlator.push(event);
    }
    let early = correlator.running(6 * S);
    assert_eq!(early.len(), 1);
    assert_eq!(early[0].state, Some(crate::timeline::BuildStatus::Running));
    assert!(early[0].findings.iter().all(|f| f.kind != "stalled_transfer"), "6 s of silence is no stall yet");
    correlator.push(s.events.last().unwrap());
    let late = correlator.running(36 * S);
    let f = late[0].findings.iter().find(|f| f.kind == "stalled_transfer").expect("a stall while it lasts");
    assert!(f.message.contains("is still waiting") && f.message.contains("36.0 s"), "{}", f.message);
    let module = spans_of(&late[0], SpanKind::Module)[0];
    assert_eq!((module.outcome, &module.attrs["unfinished"]), (None, &serde_json::json!(true)), "still arriving, not aborted");
    // Looking does not change the build: it still ends as it would have.
    assert_eq!(correlator.open_builds(), 1);
}

#[test]
fn a_plain_proxy_reached_through_http_proxy_is_the_requests_target() {
    // GOPROXY over plain HTTP with HTTP_PROXY set: absolute-form requests to the
    // HTTP proxy, no CONNECT.
    let mut s = Stream::new(&[("GOPROXY", "http://athens.corp/go,direct"), ("HTTP_PROXY", "http://10.0.0.99:3128")]);
    let hop = "10.0.0.99:3128";
    s.tcp(10 * MS, ROOT, 1, hop, None);
    s.http(12 * MS, 1, "GET http://athens.corp/go/m.corp/x/@v/list HTTP/1.1\r\nHost: athens.corp\r\n\r\n", Some(404));
    s.close(50 * MS, 1, hop, None);
    let b = s.finish(100 * MS, 1);
    let http = spans_of(&b, SpanKind::Http)[0];
    assert_eq!((http.role, http.attrs["target_role"].as_str()), (Role::HttpsProxy, Some("proxy")));
    assert_eq!(http.attrs["target_entry"], "GOPROXY[1] http://athens.corp/go");
}

#[test]
fn a_hang_closed_by_the_daemon_keeps_its_stall() {
    // Nothing ends the stall: no close, no exit; the daemon's readings go on
    // until it stops (SIGTERM) and renders the build as it stands.
    let mut s = Stream::new(&[("GOPROXY", "http://p.corp")]);
    s.dns(5 * MS, 9, NS, "p.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, "10.0.0.10:80", None);
    s.file(20 * MS, crate::event::FileOp::Open, "/m/cache/download/m.corp/x/@v/v1.0.0.zip123.tmp", None);
    for ts in [5 * S, 35 * S, 65 * S] {
        s.events.push(Event::Progress {
            ts_ns: ts,
            cookie: 1,
            counters: Counters { bytes_received: 4096, first_received_ns: Some(11 * MS), last_received_ns: Some(30 * MS), ..Counters::default() },
        });
    }
    let b = s.build(Settings::default());
    let f = b.findings.iter().find(|f| f.kind == "stalled_transfer").expect("the stall, in history too");
    assert!(f.message.contains("65.0 s"), "{}", f.message);
}

/// Two connections to the proxy while a zip arrives: `rested` has been idle
/// since before the zip began (a keep-alive connection), `carrying` is used
/// after it began (a request sent at `sent`, its last answer at `received`).
fn zip_beside_an_idle_connection(sent: u64, received: u64) -> Build {
    let mut s = Stream::new(&[("GOPROXY", "http://p.corp")]);
    let plain = "10.0.0.10:80";
    s.dns(5 * MS, 9, NS, "p.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, plain, None);
    s.tcp(11 * MS, ROOT, 2, plain, None);
    s.file(S, crate::event::FileOp::Open, "/m/cache/download/m.corp/x/@v/v1.0.0.zip123.tmp", None);
    let killed = 45 * S;
    s.exit(killed, ROOT, 143);
    let rested = Counters { bytes_received: 900, first_received_ns: Some(20 * MS), last_received_ns: Some(30 * MS), last_sent_ns: Some(15 * MS), ..Counters::default() };
    let carrying = Counters { bytes_received: 1 << 20, first_received_ns: Some(S), last_received_ns: Some(received), last_sent_ns: Some(sent), ..Counters::default() };
    s.close(killed + MS, 1, plain, Some(rested));
    s.close(killed + MS, 2, plain, Some(carrying));
    s.build(Settings::default())
}

#[test]
fn an_idle_keep_alive_connection_is_not_the_stall() {
    // The zip kept arriving until the build was killed: no stall, although the
    // other connection had rested for 45 s.
    let b = zip_beside_an_idle_connection(S, 44 * S);
    assert!(b.findings.iter().all(|f| f.kind != "stalled_transfer"), "{:#?}", b.findings);
    // A request sent after the zip began and never answered: silent from then.
    let b = zip_beside_an_idle_connection(2 * S, S);
    let f = b.findings.iter().find(|f| f.kind == "stalled_transfer").expect("the unanswered request");
    assert!(f.message.contains("43.0 s") && f.message.contains("1048576 bytes"), "{}", f.message);
}

#[test]
fn a_name_the_build_reached_did_not_fail_to_resolve() {
    // The A answer was not seen (a lost datagram copy), the AAAA was empty, and
    // the build then talked to the name: it resolved.
    let mut s = Stream::new(&[("GOPROXY", "http://proxy.corp")]);
    s.dns(10 * MS, 1, NS, "proxy.corp", TYPE::A, None);
    s.dns(10 * MS, 2, NS, "proxy.corp", TYPE::AAAA, Some((RCODE::NoError, &[])));
    s.tcp(20 * MS, ROOT, 3, "10.0.0.10:80", None);
    s.http(22 * MS, 3, "GET /m.corp/x/@v/list HTTP/1.1\r\nHost: proxy.corp\r\n\r\n", Some(200));
    s.close(500 * MS, 3, "10.0.0.10:80", None);
    let b = s.finish(600 * MS, 0);
    assert_eq!(serious(&b), Vec::<&str>::new(), "{:#?}", b.findings);
}

#[test]
fn an_unanswered_query_ends_at_its_retry() {
    // resolv.conf's `options timeout:1`: Go asks again after 1 s, then gives up.
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp")]);
    s.dns(10 * MS, 1, NS, "proxy.corp", TYPE::A, None);
    s.dns(1010 * MS, 2, NS, "proxy.corp", TYPE::A, None);
    let b = s.finish(2010 * MS, 1);
    let dns = spans_of(&b, SpanKind::Dns);
    assert_eq!((dns[0].outcome, dns[0].duration_ms), (Some(Outcome::Timeout), Some(1000.0)));
    assert_eq!(dns[1].outcome, Some(Outcome::Aborted), "the build gave up with it");
    let f = b.findings.iter().find(|f| f.kind == "dns_failure").expect("the name failed");
    assert!((1_000.0..1_001.0).contains(&f.cost_ms), "{f:?}");
}

#[test]
fn a_nameserver_that_refuses_at_once_is_no_wait() {
    // The first nameserver is refused (ICMP port unreachable): Go moves to the
    // next one within a millisecond, which answers.
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.corp")]);
    s.dns(10 * MS, 1, "10.0.0.54:53", "proxy.corp", TYPE::A, None);
    s.dns(10 * MS + 200_000, 2, NS, "proxy.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(20 * MS, ROOT, 3, PROXY, None);
    let b = s.finish(600 * MS, 0);
    assert_eq!(spans_of(&b, SpanKind::Dns)[0].outcome, Some(Outcome::Refused));
    assert_eq!(serious(&b), Vec::<&str>::new(), "{:#?}", b.findings);
}

#[test]
fn a_connection_reset_mid_zip_is_a_cut_download() {
    let mut s = Stream::new(&[("GOPROXY", "http://p.corp")]);
    let plain = "10.0.0.10:80";
    s.dns(5 * MS, 9, NS, "p.corp", TYPE::A, Some((RCODE::NoError, &["10.0.0.10"])));
    s.tcp(10 * MS, ROOT, 1, plain, None);
    s.file(20 * MS, crate::event::FileOp::Open, "/m/cache/download/m.corp/x/@v/v1.0.0.zip123.tmp", None);
    let at = s.at(500 * MS);
    s.events.push(Event::TcpReset { at, cookie: 1 });
    let counters = Counters { bytes_received: 68_233, first_received_ns: Some(11 * MS), last_received_ns: Some(490 * MS), ..Counters::default() };
    s.close(500 * MS, 1, plain, Some(counters));
    let b = s.finish(600 * MS, 1);
    assert_eq!(serious(&b), ["transfer_reset"], "{:#?}", b.findings);
    assert!(b.findings[0].message.contains("m.corp/x@v1.0.0") && b.findings[0].message.contains("68233 bytes"));
}

impl Stream {
    /// A TLS connection from `start` with this SNI: connect, ClientHello, and
    /// the server's answer (a minimal handshake record; its parse fails, the
    /// handshake stays open, as an encrypted one does for the correlator).
    fn tls(&mut self, start: u64, cookie: u64, remote: &str, sni: &str) {
        self.tcp(start, ROOT, cookie, remote, None);
        let hello = crate::proto::tls::tests::client_hello_for(sni);
        self.payload(start + 2 * MS, cookie, Direction::Egress, Protocol::Tcp, hello);
    }

    /// A request of the go command's client (uprobes) on goroutine `g`, sent on
    /// socket `cookie` (0: not known), answered with `status` or `error` at `end`.
    fn request(&mut self, start: u64, g: u64, url: &str, cookie: u64, end: Option<(u64, Option<u16>, Option<&str>)>) {
        let at = self.at(start);
        self.events.push(Event::HttpRequest { at, pid: ROOT, build: ROOT, goroutine: g, method: "GET".into(), url: url.into(), truncated: false });
        let at = self.at(start);
        self.events.push(Event::HttpConnection { at, pid: ROOT, build: ROOT, goroutine: g, cookie, http_major: 2 });
        if let Some((end, status, error)) = end {
            let at = self.at(end);
            let proto = status.map(|_| "HTTP/2.0".to_string());
            self.events.push(Event::HttpResponse { at, pid: ROOT, build: ROOT, goroutine: g, status, proto, error: error.map(str::to_string) });
        }
    }

    /// What became of the root's executable: known at its exec's own time (the
    /// event sorts after the exec).
    fn go_executable(&mut self, not_traced: Option<&str>) {
        let ts_ns = 1;
        self.events.push(Event::GoExecutable {
            ts_ns,
            pid: ROOT,
            build: ROOT,
            path: "/usr/bin/go".into(),
            go_version: Some("go1.17.13".into()),
            not_traced: not_traced.map(str::to_string),
            traced_from_ns: None,
        });
    }
}

fn finding<'a>(b: &'a Build, kind: &str) -> &'a crate::timeline::Finding {
    b.findings.iter().find(|f| f.kind == kind).unwrap_or_else(|| panic!("no {kind} in {:#?}", b.findings))
}

#[test]
fn requests_inside_tls_hang_under_their_handshake_and_findings_quote_their_status() {
    let mut s = Stream::new(&[("GOPROXY", "https://private.example|https://proxy.golang.org"), ("GOSUMDB", "off")]);
    s.go_executable(None);
    s.dns(10 * MS, 1, "10.0.0.53:53", "private.example", TYPE::A, Some((RCODE::NoError, &["10.1.0.1"])));
    s.tls(20 * MS, 11, "10.1.0.1:443", "private.example");
    s.request(30 * MS, 7, "https://private.example/example.com/m/@v/list", 11, Some((40 * MS, Some(401), None)));
    s.dns(50 * MS, 2, "10.0.0.53:53", "proxy.golang.org", TYPE::A, Some((RCODE::NoError, &["10.2.0.1"])));
    s.tls(60 * MS, 12, "10.2.0.1:443", "proxy.golang.org");
    s.request(70 * MS, 7, "https://proxy.golang.org/example.com/m/@v/list", 12, Some((80 * MS, Some(200), None)));
    let b = s.finish(100 * MS, 0);

    let http = spans_of(&b, SpanKind::Http);
    assert_eq!(http.len(), 2, "{http:#?}");
    let tls = spans_of(&b, SpanKind::Tls);
    for (request, handshake) in http.iter().zip(&tls) {
        assert_eq!(request.parent, Some(handshake.id), "a request hangs under the handshake of its socket");
        assert_eq!(request.role, Role::Proxy);
        assert_eq!(request.attrs["proto"], "HTTP/2.0");
    }
    assert_eq!((http[0].attrs["status"].as_u64(), http[0].outcome), (Some(401), Some(Outcome::Error)));
    assert_eq!(http[0].attrs["entry"], "GOPROXY[1] https://private.example");
    assert_eq!(http[0].addr.as_deref(), Some("10.1.0.1"));
    assert_eq!((http[1].attrs["status"].as_u64(), http[1].outcome), (Some(200), Some(Outcome::Ok)));
    let fallthrough = finding(&b, "proxy_fallthrough");
    assert!(fallthrough.message.contains("answered HTTP 401 ×1 (e.g. GET /example.com/m/@v/list)"), "{}", fallthrough.message);
    let error = finding(&b, "http_error");
    assert!(error.message.starts_with("private.example answered HTTP 401"), "{}", error.message);
    assert!(b.notes.is_empty(), "{:?}", b.notes);
}

#[test]
fn two_entries_on_one_host_inside_tls_are_told_apart_by_the_url() {
    let mut s = Stream::new(&[("GOPROXY", "https://corp.example/a,https://corp.example/b"), ("GOSUMDB", "off")]);
    s.go_executable(None);
    s.dns(10 * MS, 1, "10.0.0.53:53", "corp.example", TYPE::A, Some((RCODE::NoError, &["10.1.0.1"])));
    s.tls(20 * MS, 11, "10.1.0.1:443", "corp.example");
    s.request(30 * MS, 7, "https://corp.example/a/example.com/m/@v/v1.0.0.info", 11, Some((40 * MS, Some(404), None)));
    s.request(50 * MS, 7, "https://corp.example/b/example.com/m/@v/v1.0.0.info", 11, Some((60 * MS, Some(200), None)));
    let b = s.finish(100 * MS, 0);
    let http = spans_of(&b, SpanKind::Http);
    assert_eq!(http[0].attrs["entry"], "GOPROXY[1] https://corp.example/a");
    assert_eq!(http[1].attrs["entry"], "GOPROXY[2] https://corp.example/b");
    let fallthrough = finding(&b, "proxy_fallthrough");
    assert!(fallthrough.message.contains("https://corp.example/a (GOPROXY entry 1), which answered HTTP 404"), "{}", fallthrough.message);
    // A 404 that the next entry answered is the protocol's "not here".
    assert_eq!(finding(&b, "http_error").severity, Severity::Info);
}

#[test]
fn the_404_that_sent_go_direct_is_named() {
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.example,direct"), ("GOSUMDB", "off")]).go_mod(&["example.com/m"]);
    s.go_executable(None);
    s.dns(10 * MS, 1, "10.0.0.53:53", "proxy.example", TYPE::A, Some((RCODE::NoError, &["10.1.0.1"])));
    s.tls(20 * MS, 11, "10.1.0.1:443", "proxy.example");
    s.request(30 * MS, 7, "https://proxy.example/example.com/m/@v/v1.0.0.info", 11, Some((40 * MS, Some(404), None)));
    s.dns(50 * MS, 2, "10.0.0.53:53", "example.com", TYPE::A, Some((RCODE::NoError, &["10.3.0.1"])));
    s.tls(60 * MS, 12, "10.3.0.1:443", "example.com");
    s.request(70 * MS, 9, "https://example.com/m?go-get=1", 12, Some((80 * MS, Some(200), None)));
    let b = s.finish(100 * MS, 0);
    let http = spans_of(&b, SpanKind::Http);
    assert_eq!(http[1].role, Role::Vcs, "cmd/go's discovery request is a direct fetch: {:#?}", http[1]);
    assert_eq!(http[1].attrs["target"], "/m?go-get=1");
    let fallback = finding(&b, "fallback_to_direct");
    assert!(fallback.message.contains("which answered HTTP 404 ×1 (e.g. GET /example.com/m/@v/v1.0.0.info)"), "{}", fallback.message);
}

#[test]
fn a_plaintext_request_the_client_announced_is_one_span() {
    let mut s = Stream::new(&[("GOPROXY", "http://proxy.example"), ("GOSUMDB", "off")]);
    s.go_executable(None);
    s.dns(10 * MS, 1, "10.0.0.53:53", "proxy.example", TYPE::A, Some((RCODE::NoError, &["10.1.0.1"])));
    s.tcp(20 * MS, ROOT, 11, "10.1.0.1:80", None);
    s.request(30 * MS, 7, "http://proxy.example/example.com/m/@v/list", 11, None);
    s.http(31 * MS, 11, "GET /example.com/m/@v/list HTTP/1.1\r\nHost: proxy.example\r\n\r\n", Some(200));
    let at = s.at(33 * MS);
    s.events.push(Event::HttpResponse { at, pid: ROOT, build: ROOT, goroutine: 7, status: Some(200), proto: Some("HTTP/1.1".into()), error: None });
    let b = s.finish(100 * MS, 0);
    let http = spans_of(&b, SpanKind::Http);
    assert_eq!(http.len(), 1, "{http:#?}");
    assert_eq!(http[0].attrs["url"], "http://proxy.example/example.com/m/@v/list");
    assert_eq!(http[0].attrs["proto"], "HTTP/1.1");
    assert_eq!(http[0].port, Some(80));
}

#[test]
fn a_request_that_failed_or_never_returned_says_so() {
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.example"), ("GOSUMDB", "off")]);
    s.go_executable(None);
    s.dns(10 * MS, 1, "10.0.0.53:53", "proxy.example", TYPE::A, Some((RCODE::NoError, &["10.1.0.1"])));
    s.tls(20 * MS, 11, "10.1.0.1:443", "proxy.example");
    s.request(30 * MS, 7, "https://proxy.example/a/@v/list", 11, Some((30 * MS + 30 * S, None, Some("context deadline exceeded"))));
    s.request(40 * MS, 8, "https://proxy.example/b/@v/list", 11, None);
    let b = s.finish(31 * S, 1);
    let http = spans_of(&b, SpanKind::Http);
    assert_eq!((http[0].outcome, http[0].attrs["error"].as_str()), (Some(Outcome::Timeout), Some("context deadline exceeded")));
    assert!(!http[0].attrs.contains_key("status"));
    assert_eq!(http[1].outcome, Some(Outcome::Aborted));
    assert_eq!(http[1].attrs["unfinished"], true);
}

#[test]
fn a_go_whose_requests_are_not_traced_is_noted_and_inference_says_so() {
    let mut s = Stream::new(&[("GOPROXY", "https://private.example,https://proxy.golang.org"), ("GOSUMDB", "off")]);
    s.go_executable(Some("go1.17.13 unsupported"));
    s.dns(10 * MS, 1, "10.0.0.53:53", "private.example", TYPE::A, Some((RCODE::NoError, &["10.1.0.1"])));
    s.tls(20 * MS, 11, "10.1.0.1:443", "private.example");
    s.dns(50 * MS, 2, "10.0.0.53:53", "proxy.golang.org", TYPE::A, Some((RCODE::NoError, &["10.2.0.1"])));
    s.tls(60 * MS, 12, "10.2.0.1:443", "proxy.golang.org");
    let b = s.finish(100 * MS, 0);
    assert_eq!(b.notes, ["requests: not traced (go1.17.13 unsupported)"]);
    let fallthrough = finding(&b, "proxy_fallthrough");
    assert!(fallthrough.message.contains("404 or 410 (inferred"), "{}", fallthrough.message);
}

#[test]
fn a_go_probed_after_it_started_says_from_when() {
    let mut s = Stream::new(&[("GOPROXY", "https://proxy.example"), ("GOSUMDB", "off")]);
    let ts_ns = 1;
    s.events.insert(1, Event::GoExecutable {
        ts_ns,
        pid: ROOT,
        build: ROOT,
        path: "/root/go/pkg/mod/golang.org/toolchain@v0.0.1-go1.23.4.linux-amd64/bin/go".into(),
        go_version: Some("go1.23.4".into()),
        not_traced: None,
        traced_from_ns: Some(40 * MS),
    });
    let b = s.finish(100 * MS, 0);
    assert_eq!(
        b.notes,
        ["requests: traced only from 39 ms after the build started (its go executable was new to the tracer; earlier requests are missing)"]
    );
}

#[test]
fn a_request_seen_twice_is_one_request() {
    let mut s = Stream::new(&[("GOPROXY", "http://proxy.example"), ("GOSUMDB", "off")]);
    s.go_executable(None);
    s.tcp(20 * MS, ROOT, 11, "10.1.0.1:80", None);
    let url = "http://proxy.example/example.com/m/@v/list";
    // The entry uprobe fires twice for one call (two probes on one file, or
    // morestack re-entering a function probed at its first instruction), and
    // so may the connection's.
    s.request(30 * MS, 7, url, 11, None);
    s.request(30 * MS + 50_000, 7, url, 11, None);
    s.http(31 * MS, 11, "GET /example.com/m/@v/list HTTP/1.1\r\nHost: proxy.example\r\n\r\n", Some(200));
    let at = s.at(33 * MS);
    s.events.push(Event::HttpResponse { at, pid: ROOT, build: ROOT, goroutine: 7, status: Some(200), proto: Some("HTTP/1.1".into()), error: None });
    s.tcp(40 * MS, ROOT, 12, "10.1.0.1:80", None);
    s.http(41 * MS, 12, "GET /other HTTP/1.1\r\nHost: proxy.example\r\n\r\n", Some(200));
    let b = s.finish(100 * MS, 0);
    let http = spans_of(&b, SpanKind::Http);
    assert_eq!(http.len(), 2, "{http:#?}");
    assert_eq!((http[0].attrs["status"].as_u64(), http[0].attrs.get("return_unseen")), (Some(200), None));
    assert_eq!(http[1].attrs["target"], "/other", "a later payload request is its own span");
}

#[test]
fn a_request_outside_the_entrys_path_is_not_the_proxys() {
    let goproxy = "https://gitlab.corp/api/v4/projects/42/packages/go,direct";
    let mut s = Stream::new(&[("GOPROXY", goproxy), ("GOSUMDB", "off")]).go_mod(&["gitlab.corp/grp/mod"]);
    s.go_executable(None);
    s.dns(10 * MS, 1, "10.0.0.53:53", "gitlab.corp", TYPE::A, Some((RCODE::NoError, &["10.1.0.1"])));
    s.tls(20 * MS, 11, "10.1.0.1:443", "gitlab.corp");
    s.request(30 * MS, 7, "https://gitlab.corp/api/v4/projects/42/packages/go/gitlab.corp/grp/mod/@v/list", 11, Some((40 * MS, Some(404), None)));
    s.request(50 * MS, 7, "https://gitlab.corp/grp/mod?go-get=1", 11, Some((60 * MS, Some(401), None)));
    let b = s.finish(100 * MS, 1);
    let http = spans_of(&b, SpanKind::Http);
    assert_eq!((http[0].role, http[0].attrs["entry"].as_str()), (Role::Proxy, Some("GOPROXY[1] https://gitlab.corp/api/v4/projects/42/packages/go")));
    assert_eq!(http[1].role, Role::Vcs, "the discovery request is the direct fetch's: {:#?}", http[1]);
    assert!(!http[1].attrs.contains_key("entry"));
    let fallback = finding(&b, "fallback_to_direct");
    assert!(fallback.message.contains("which answered HTTP 404"), "{}", fallback.message);
}

#[test]
fn a_request_to_an_ipv6_literal_has_its_address() {
    let mut s = Stream::new(&[("GOPROXY", "https://[fd00::1]"), ("GOSUMDB", "off")]);
    s.go_executable(None);
    s.request(30 * MS, 7, "https://[fd00::1]/example.com/m/@v/list", 0, Some((40 * MS, Some(200), None)));
    let b = s.finish(100 * MS, 0);
    let http = spans_of(&b, SpanKind::Http);
    assert_eq!((http[0].host.as_deref(), http[0].addr.as_deref(), http[0].port), (Some("fd00::1"), Some("fd00::1"), Some(443)));
    assert_eq!((http[0].role, http[0].attrs["entry"].as_str()), (Role::Proxy, Some("GOPROXY[1] https://[fd00::1]")));
}

/// Catches refusals dropped silently, and configuration files dropped when read
/// (off the event path) after the build's root exited, as the daemon may push
/// them: late, but before the build is rendered.
#[test]
fn configuration_files_read_late_still_apply_and_refusals_are_notes() {
    let mut s = Stream::new(&[("HOME", "/h")]);
    let environment_at = match &s.events[2] {
        Event::Environment { at, .. } => *at,
        other => panic!("{other:?}"),
    };
    s.exit(50 * MS, ROOT, 0);
    let mut correlator = Correlator::new(Settings::default());
    for event in &s.events {
        correlator.push(event);
    }
    let file = crate::goenv::ConfigFile { path: "/h/.config/go/env".into(), vars: [("GOPROXY".to_string(), "https://file.example".to_string())].into() };
    let refused = vec!["GOROOT/go.env /go/go.env: not read (not a regular file: a FIFO)".to_string()];
    let late = Event::ConfigFiles { at: environment_at, build: ROOT, goenv_file: Some(file), goroot_go_env: None, go_mod: None, refused };
    correlator.push(&late);
    correlator.push(&late);
    let builds = correlator.take_finished(u64::MAX, u64::MAX);
    let [b] = builds.as_slice() else { panic!("{builds:?}") };
    assert_eq!(b.notes, ["GOROOT/go.env /go/go.env: not read (not a regular file: a FIFO)"]);
    assert_eq!((b.config["GOPROXY"].value.as_str(), b.config["GOPROXY"].source.as_str()), ("https://file.example", "goenv_file"));
}

/// Pushes a stream into a correlator with `limits`; returns every build it
/// renders at the end and what the limits dropped, and how many sockets and
/// forks it still tracked before the end.
fn with_limits(
    events: &[Event],
    limits: super::Limits,
) -> (Vec<Build>, super::Dropped, usize, usize) {
    let mut correlator = Correlator::with_limits(Settings::default(), limits);
    for event in events {
        correlator.push(event);
    }
    let dropped = correlator.take_dropped();
    let tracked = (correlator.sockets.len(), correlator.parents.len());
    (correlator.finish().builds, dropped, tracked.0, tracked.1)
}

fn note_with<'a>(b: &'a Build, text: &str) -> Option<&'a String> {
    b.notes.iter().find(|n| n.contains(text))
}

#[test]
fn a_build_that_opens_endless_connections_keeps_a_bounded_state() {
    let mut s = Stream::new(&[]);
    s.client_port = 1_024;
    // 5,000 connections, all open at once, closed; then 10,000 more opened and
    // closed one after the other.
    for cookie in 1..=5_000 {
        s.tcp(10 * MS + cookie, ROOT, cookie, "10.0.0.9:443", None);
    }
    for cookie in 1..=5_000 {
        s.close(15 * MS + cookie, cookie, "10.0.0.9:443", None);
    }
    for cookie in 5_001..=15_000 {
        s.tcp(20 * MS + cookie, ROOT, cookie, "10.0.0.9:443", None);
        s.close(20 * MS + cookie + 1, cookie, "10.0.0.9:443", None);
    }
    s.exit(30 * MS, ROOT, 0);
    let limits = super::Limits {
        spans_per_build: 8_000,
        connections: 1_000,
        ..Default::default()
    };
    let (builds, dropped, sockets, _) = with_limits(&s.events, limits);
    assert!(sockets <= 1_000, "{sockets} sockets tracked");
    assert_eq!(dropped.connections, 4_000, "{dropped:?}");
    assert!(dropped.spans > 0, "{dropped:?}");
    let b = &builds[0];
    assert!(b.spans.len() <= 8_000 + 2, "{} spans", b.spans.len());
    assert!(!b.complete);
    assert!(
        note_with(b, "4000 connections not traced").is_some(),
        "{:?}",
        b.notes
    );
    assert!(
        note_with(b, "spans (--max-spans-per-build)").is_some(),
        "{:?}",
        b.notes
    );
    assert!(serious(b).contains(&"incomplete_trace"), "{:?}", b.findings);
    // Nothing dropped under the defaults.
    let (builds, dropped, _, _) = with_limits(&s.events, super::Limits::default());
    assert_eq!(dropped, super::Dropped::default());
    assert!(builds[0].complete, "{:?}", builds[0].notes);
}

#[test]
fn endless_forks_and_builds_are_refused_past_their_limits_and_counted() {
    let mut s = Stream::new(&[]);
    // Forks whose exits are never seen (threads, or lost events).
    for child in 1_000..3_000 {
        let at = s.at(5 * MS);
        s.events.push(Event::Fork {
            at,
            parent: ROOT,
            child,
            build: ROOT,
        });
    }
    // 50 more go commands, each its own build, none ending; each executed twice.
    for root in 10_000..10_050u32 {
        for _ in 0..2 {
            let at = s.at(6 * MS);
            s.events.push(Event::Exec {
                at,
                pid: root,
                build: root,
                comm: "go".into(),
                argv: vec!["go".into()],
            });
        }
    }
    let limits = super::Limits {
        processes: 100,
        open_builds: 10,
        ..Default::default()
    };
    let mut correlator = Correlator::with_limits(Settings::default(), limits);
    for event in &s.events {
        correlator.push(event);
    }
    // The forks tracked, plus the roots of the open builds.
    assert!(correlator.parents.len() <= 100 && correlator.processes.len() <= 100 + 1 + 10);
    assert_eq!(correlator.open_builds(), 10);
    let dropped = correlator.take_dropped();
    // Each refused build counted once, though its root executed twice.
    assert_eq!(
        (dropped.processes, dropped.builds),
        (1_900, 41),
        "{dropped:?}"
    );
    assert_eq!(
        correlator.take_dropped(),
        super::Dropped::default(),
        "taken"
    );
    let builds = correlator.finish().builds;
    let first = builds.iter().find(|b| b.pid == ROOT).unwrap();
    assert!(
        !first.complete && note_with(first, "1900 processes not tracked").is_some(),
        "{:?}",
        first.notes
    );
}

#[test]
fn a_build_whose_root_is_gone_ends_incomplete_with_a_note() {
    let mut s = Stream::new(&[]);
    s.tcp(10 * MS, ROOT, 1, "10.0.0.9:443", None);
    let mut correlator = Correlator::new(Settings::default());
    for event in &s.events {
        correlator.push(event);
    }
    assert_eq!(correlator.open_roots(), vec![(ROOT, 1)]);
    correlator.end_gone(ROOT, "gone".into());
    assert!(correlator.open_roots().is_empty());
    let builds = correlator.take_finished(u64::MAX, 0);
    assert_eq!(builds.len(), 1);
    assert!(
        !builds[0].complete && builds[0].notes.contains(&"gone".to_string()),
        "{:?}",
        builds[0].notes
    );
    assert!(correlator.sockets.is_empty() && correlator.processes.is_empty());
}
