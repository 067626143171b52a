//! The decoded event stream: owned, serde-able facts from the kernel, in the order
//! they were read. `--record` writes exactly these as JSON lines and `replay` reads
//! them back, so everything after decode is testable without root.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::goenv::{ConfigFile, GoModFile};

/// Where and when the kernel raised an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct At {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    pub cpu: u32,
    /// Per-CPU sequence number.
    pub seq: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Sent by the build.
    Egress,
    /// Received by the build.
    Ingress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOp {
    /// Opened for writing or created.
    Open,
    Rename,
    Unlink,
}

/// Files created in one module directory during its extraction: how many, and
/// when the first and the last were opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedFiles {
    pub files: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectHook {
    Connect,
    Sendmsg,
}

/// TCP states as numbered in include/net/tcp_states.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
}

impl TryFrom<i32> for TcpState {
    type Error = i32;
    fn try_from(value: i32) -> Result<Self, i32> {
        use TcpState::*;
        Ok(match value {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            13 => BoundInactive,
            other => return Err(other),
        })
    }
}

/// Per-connection counters, as the kernel programs kept them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub segments_sent: u64,
    pub segments_received: u64,
    /// When payload first and last arrived (same clock as event times; absent
    /// when nothing arrived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_received_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_ns: Option<u64>,
    /// The longest gap between two arriving payloads, and when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_silence: Option<Silence>,
    /// When payload was last sent (absent in older recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_ns: Option<u64>,
}

/// A time during which a connection received nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub ns: u64,
    pub end_ns: u64,
}

/// Why events are missing from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReason {
    /// The kernel could not reserve ring-buffer space.
    RingBufferFull,
    /// A record could not be decoded.
    Undecodable,
    /// The daemon's correlator fell behind and its queue refused the events.
    QueueFull,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Anchors CLOCK_MONOTONIC to wall-clock time; the first event of every stream.
    Clock { monotonic_ns: u64, realtime_ns: i64 },
    /// A build process executed a program (the root `go`, or a descendant).
    Exec {
        #[serde(flatten)]
        at: At,
        pid: u32,
        build: u32,
        comm: String,
        argv: Vec<String>,
    },
    /// The Go-related environment of a build's root process (other variables are
    /// dropped at decode, values redacted) and the program it executed.
    Environment {
        #[serde(flatten)]
        at: At,
        build: u32,
        executable: String,
        vars: BTreeMap<String, String>,
        /// The environment was larger than the kernel copies: settings may be missing.
        truncated: bool,
    },
    /// The configuration files the build's Go command reads, as read when it
    /// started. Read off the event path, it may arrive after later events; it
    /// carries the time of the build's `Environment` event, so that sorting puts
    /// it right after that event.
    ConfigFiles {
        #[serde(flatten)]
        at: At,
        build: u32,
        goenv_file: Option<ConfigFile>,
        goroot_go_env: Option<ConfigFile>,
        /// The main module's go.mod (absent in older recordings).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        go_mod: Option<GoModFile>,
        /// What was not read, and why (`GOENV /dev/zero: not read (not a regular
        /// file: a character device)`): notes of the build (absent in older recordings).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<String>,
    },
    /// A build process created, wrote, renamed or removed a file.
    File {
        #[serde(flatten)]
        at: At,
        pid: u32,
        build: u32,
        op: FileOp,
        path: String,
        /// The new name, for a rename.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// On the removal of a module's `.partial` marker: the files the kernel
        /// counted in the module's directory (it records only the first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extracted: Option<ExtractedFiles>,
    },
    Fork {
        #[serde(flatten)]
        at: At,
        parent: u32,
        child: u32,
        build: u32,
    },
    Exit {
        #[serde(flatten)]
        at: At,
        pid: u32,
        build: u32,
        /// Wait status: exit code << 8 | terminating signal.
        wait_status: i32,
    },
    /// A process of a build learned that its connect failed (the errno connect()
    /// or getsockopt(SO_ERROR) gave it).
    ConnectError {
        #[serde(flatten)]
        at: At,
        pid: u32,
        build: u32,
        errno: i32,
        /// The cookie of the failed socket (its `Connect` event's); 0 when the
        /// kernel knew no inet socket for it (a Unix socket, io_uring: such an
        /// error is not attributed). Absent in recordings made before it was
        /// recorded, which then still replay (by process and time).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cookie: Option<u64>,
    },
    /// A build process connected a socket, or sent its first datagram.
    Connect {
        #[serde(flatten)]
        at: At,
        pid: u32,
        build: u32,
        cookie: u64,
        protocol: Protocol,
        hook: ConnectHook,
        remote: SocketAddr,
    },
    TcpState {
        #[serde(flatten)]
        at: At,
        cookie: u64,
        old: TcpState,
        new: TcpState,
        local: SocketAddr,
        remote: SocketAddr,
        /// Socket error (errno) when the socket closed, else 0.
        error: i32,
        /// Counters, when the socket closed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        counters: Option<Counters>,
    },
    TcpRetransmit {
        #[serde(flatten)]
        at: At,
        cookie: u64,
        state: TcpState,
    },
    TcpReset {
        #[serde(flatten)]
        at: At,
        cookie: u64,
    },
    /// The kernel dropped a packet of a build socket.
    Drop {
        #[serde(flatten)]
        at: At,
        cookie: u64,
        reason: String,
    },
    /// The first bytes of a segment or datagram of a build socket.
    Payload {
        #[serde(flatten)]
        at: At,
        cookie: u64,
        direction: Direction,
        protocol: Protocol,
        /// Payload bytes the segment carried (`data` may hold fewer).
        segment_len: u32,
        #[serde(with = "base64_bytes")]
        data: Bytes,
    },
    /// The go command's HTTP client began a request (uprobes on its `net/http`).
    /// Paired with its `HttpConnection` and `HttpResponse` by (pid, goroutine).
    HttpRequest {
        #[serde(flatten)]
        at: At,
        pid: u32,
        build: u32,
        goroutine: u64,
        method: String,
        /// `scheme://host/path?query`, tokens in the query redacted.
        url: String,
        /// The host, path or query was longer than the kernel copies.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    /// The connection a request went out on.
    HttpConnection {
        #[serde(flatten)]
        at: At,
        pid: u32,
        build: u32,
        goroutine: u64,
        /// The socket's cookie (its `Connect` event's); 0 when unknown.
        cookie: u64,
        /// 1 for HTTP/1.x, 2 for HTTP/2.
        http_major: u8,
    },
    /// A request's round trip ended: a response, or an error.
    HttpResponse {
        #[serde(flatten)]
        at: At,
        pid: u32,
        build: u32,
        goroutine: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// `HTTP/1.1`, `HTTP/2.0`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A build ran a Go executable that has an HTTP client: whether its requests
    /// are traced, and if not why.
    GoExecutable {
        ts_ns: u64,
        pid: u32,
        build: u32,
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        go_version: Option<String>,
        /// Absent when the requests are traced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_traced: Option<String>,
        /// When the probes were attached, if that was after the process
        /// started (its first run on this host): requests before went unseen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traced_from_ns: Option<u64>,
    },
    /// A tracked socket's counters read from the kernel's socket map while it is
    /// open (the daemon reads them periodically): how long it has been silent,
    /// without waiting for a packet or its close.
    Progress {
        ts_ns: u64,
        cookie: u64,
        counters: Counters,
    },
    /// Events were lost; every build running at the time is incomplete.
    Lost {
        ts_ns: u64,
        count: u64,
        reason: LossReason,
    },
}

impl Event {
    /// Where the event belongs in time order: clock anchors first, then by
    /// kernel time, CPU and the CPU's sequence.
    pub fn order(&self) -> (u64, u32, u64) {
        match (self, self.at()) {
            (Event::Clock { .. }, _) => (0, 0, 0),
            (_, Some(at)) => (at.ts_ns, at.cpu, at.seq),
            (other, None) => (other.ts_ns(), u32::MAX, u64::MAX),
        }
    }

    /// Where and when the kernel raised the event (not for `Clock` and `Lost`).
    pub fn at(&self) -> Option<At> {
        match self {
            Event::Exec { at, .. }
            | Event::Environment { at, .. }
            | Event::ConfigFiles { at, .. }
            | Event::File { at, .. }
            | Event::Fork { at, .. }
            | Event::Exit { at, .. }
            | Event::Connect { at, .. }
            | Event::ConnectError { at, .. }
            | Event::TcpState { at, .. }
            | Event::TcpRetransmit { at, .. }
            | Event::TcpReset { at, .. }
            | Event::Drop { at, .. }
            | Event::Payload { at, .. }
            | Event::HttpRequest { at, .. }
            | Event::HttpConnection { at, .. }
            | Event::HttpResponse { at, .. } => Some(*at),
            Event::Clock { .. } | Event::Lost { .. } | Event::Progress { .. } | Event::GoExecutable { .. } => None,
        }
    }

    /// Monotonic time of the event (the anchor's own time for `Clock`).
    pub fn ts_ns(&self) -> u64 {
        match self {
            Event::Clock { monotonic_ns, .. } => *monotonic_ns,
            Event::Lost { ts_ns, .. } | Event::Progress { ts_ns, .. } | Event::GoExecutable { ts_ns, .. } => *ts_ns,
            other => other.at().map_or(0, |at| at.ts_ns),
        }
    }
}

/// Puts events from several CPUs into time order (stable for equal keys, so the
/// anchor stays first and the order of one CPU is kept). An event userspace
/// derived from kernel records (a loss, a socket reading, what became of an
/// exec'd executable) comes after the records of its own time.
pub fn sort_events(events: &mut [Event]) {
    events.sort_by_key(Event::order);
}

/// An address of a record: IPv4 in the first four bytes.
pub fn ip_from_wire(family: u16, addr: [u8; 16]) -> Option<IpAddr> {
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    match family {
        AF_INET => Some(IpAddr::from([addr[0], addr[1], addr[2], addr[3]])),
        AF_INET6 => {
            let v6 = std::net::Ipv6Addr::from(addr);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

mod base64_bytes {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map(Bytes::from).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_cookie_is_optional_on_the_wire() {
        // A line of a recording made before connect errors carried a cookie.
        let old = r#"{"event":"connect_error","ts_ns":5,"cpu":1,"seq":70,"pid":22989,"build":22970,"errno":2}"#;
        let event: Event = serde_json::from_str(old).unwrap();
        let at = At { ts_ns: 5, cpu: 1, seq: 70 };
        assert_eq!(event, Event::ConnectError { at, pid: 22989, build: 22970, errno: 2, cookie: None });
        assert_eq!(serde_json::to_string(&event).unwrap(), old);

        let new = Event::ConnectError { at, pid: 22989, build: 22970, errno: 111, cookie: Some(4097) };
        let line = serde_json::to_string(&new).unwrap();
        assert!(line.ends_with(r#""errno":111,"cookie":4097}"#), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), new);
    }
}
