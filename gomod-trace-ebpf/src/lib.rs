//! Records shared by the kernel programs and userspace: the wire format of the ring
//! buffer and the configuration userspace hands to the programs.
//! Fixed-width integers, explicit padding, no `bool`, no enums on the wire: every
//! record starts with an [`EventHeader`] whose `kind` userspace checks before it
//! reads anything else.
#![no_std]

/// Bytes of a process name (`comm`), as the kernel stores it.
pub const TASK_COMM_LEN: usize = 16;
/// Bytes of a process's argument block copied at exec (NUL-separated).
pub const ARGV_CAPTURE: usize = 256;
/// Bytes of a build root's environment block copied at exec (its Go configuration).
pub const ENV_CAPTURE: usize = 16 * 1024;
/// Bytes of the executable path a build root was started from.
pub const PATH_CAPTURE: usize = 256;
/// Bytes of a segment's payload copied for the userspace parsers.
pub const PAYLOAD_CAPTURE: usize = 2048;
/// Payload-bearing segments copied per direction of a TCP connection (the
/// handshake and the first request/response lines live in the first few).
pub const TCP_SEGMENTS_CAPTURED: u64 = 4;
/// Datagrams copied per direction of a UDP socket (DNS queries and answers).
pub const UDP_DATAGRAMS_CAPTURED: u64 = 16;
/// Bytes of an HTTP request's method, URL scheme, host, path and raw query, as the
/// go command's `net/http` holds them (longer values are cut; the record carries
/// their full length).
pub const HTTP_METHOD_CAPTURE: usize = 16;
pub const HTTP_SCHEME_CAPTURE: usize = 8;
pub const HTTP_HOST_CAPTURE: usize = 128;
pub const HTTP_PATH_CAPTURE: usize = 256;
pub const HTTP_QUERY_CAPTURE: usize = 128;
/// Bytes of the text an error value may point at (read when its type is known to
/// be a string-carrying error; userspace decides from the type).
pub const GO_ERROR_CAPTURE: usize = 96;
/// Go executables whose HTTP client can be probed at once (`GO_OFFSETS` entries).
pub const GO_BINARIES_MAX: u32 = 64;

/// `EventHeader::kind` values.
pub mod kind {
    pub const EXEC: u32 = 1;
    pub const FORK: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const CONNECT: u32 = 4;
    pub const TCP_STATE: u32 = 5;
    pub const TCP_RETRANSMIT: u32 = 6;
    pub const TCP_RESET: u32 = 7;
    pub const SKB_DROP: u32 = 8;
    pub const PAYLOAD: u32 = 9;
    pub const ENVIRONMENT: u32 = 10;
    pub const FILE: u32 = 11;
    pub const CONNECT_ERROR: u32 = 12;
    pub const HTTP_REQUEST: u32 = 13;
    pub const HTTP_CONNECTION: u32 = 14;
    pub const HTTP_RESPONSE: u32 = 15;
}

/// `FileRecord::op` values.
pub mod file_op {
    /// openat for writing or creating.
    pub const OPEN: u32 = 1;
    pub const RENAME: u32 = 2;
    pub const UNLINK: u32 = 3;
}

/// `ProcessEntry::state` values.
pub mod process_state {
    /// Not part of a build, but a Go command it execs starts a build (the command
    /// `gomod-trace run` started, and its descendants).
    pub const SCOPE: u32 = 1;
    /// Part of a build: every socket it opens is traced.
    pub const TRACKED: u32 = 2;
}

/// `ConnectRecord::hook` values.
pub mod hook {
    pub const CONNECT: u16 = 1;
    pub const SENDMSG: u16 = 2;
}

/// `PayloadRecord::direction` values.
pub mod direction {
    pub const EGRESS: u16 = 1;
    pub const INGRESS: u16 = 2;
}

/// Value of the `PROCESSES` map, keyed by thread-group id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessEntry {
    pub state: u32,
    /// Thread-group id of the build's root `go` process (0 for SCOPE entries).
    pub build: u32,
}

/// Value of the `SOCKETS` map, keyed by socket cookie: per-connection counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketEntry {
    pub pid: u32,
    pub build: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub segments_sent: u64,
    pub segments_received: u64,
    /// Segments whose payload was copied (64-bit: the BPF target's only atomics).
    pub captured_sent: u64,
    pub captured_received: u64,
    /// When payload first and last arrived (CLOCK_MONOTONIC ns, 0 before any):
    /// how long a connection was busy, and how long it has been idle.
    pub first_received_ns: u64,
    pub last_received_ns: u64,
    /// The longest time between two arriving payloads, and when it ended: a
    /// transfer that stalled shows here even if the teardown brought more bytes.
    pub longest_silence_ns: u64,
    pub longest_silence_end_ns: u64,
    /// When payload was last sent: a request on a connection that then gets no
    /// answer starts a silence too.
    pub last_sent_ns: u64,
}

/// Value of the `MODULE_CACHES` map, keyed by build: the build's GOMODCACHE as
/// its processes name it (userspace resolves it from the build's configuration).
/// Under it, the kernel summarises the files extracted into `<module>@<version>/`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleCache {
    /// Bytes of `path`.
    pub len: u32,
    pub _pad: u32,
    /// The path and a `/`, zero-padded (compared word by word).
    pub path: [u8; PATH_CAPTURE],
}

/// Key of the `EXTRACTIONS` map: a process and the FNV-1a hash ([`fnv1a`]) of a
/// module directory's name under the cache, `<escaped module>@<version>`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractionKey {
    pub pid: u32,
    pub _pad: u32,
    pub dir: u64,
}

/// Files a process created in one module directory: when the first and the last
/// were opened (CLOCK_MONOTONIC ns), and how many.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extraction {
    pub first_ns: u64,
    pub last_ns: u64,
    pub files: u64,
}

/// FNV-1a, 64 bits: the hash of module directory paths, built byte by byte.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
#[inline(always)]
pub fn fnv1a(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Whether `path` holds `pattern` at `at`.
#[inline(always)]
fn holds_at<const N: usize>(path: &[u8; PATH_CAPTURE], at: usize, pattern: &[u8; N]) -> bool {
    let mut j = 0;
    while j < N {
        if path.get(at + j) != Some(&pattern[j]) {
            return false;
        }
        j += 1;
    }
    true
}

// The scans below read the part of a path after `$GOMODCACHE/` (the programs
// compare the cache's own part word by word first), index it only by the loop
// counter plus constants, and keep their state in flags and hashes that no
// memory access depends on: the verifier prunes instead of walking every way
// through every iteration.

/// For a file inside a module directory, `<M>@<V>/…` (what follows
/// `$GOMODCACHE/`, NUL-terminated), the hash of `<M>@<V>`. Module paths hold no
/// `@`: the first one ends the module path, and the version runs to the next `/`.
/// `cache/` is not a module directory (a module path's first element has a dot).
#[inline(always)]
pub fn extraction_dir(rest: &[u8; PATH_CAPTURE]) -> Option<u64> {
    if holds_at(rest, 0, b"cache/") {
        return None;
    }
    let mut hash = FNV_OFFSET;
    let mut at = false;
    for &c in rest.iter() {
        if c == 0 {
            return None;
        }
        if c == b'/' && at {
            return Some(hash);
        }
        at |= c == b'@';
        hash = fnv1a(hash, c);
    }
    None
}

/// Whether an open of this file (what follows `$GOMODCACHE/`) tells the timeline
/// nothing: a module's version list (`cache/download/<M>/@v/list`, rewritten as
/// versions are fetched); the creation of its `.partial` marker (the first
/// extracted file, which is recorded, says the same; the marker's removal is
/// recorded); its `.ziphash` (written once the zip's checksum is verified, just
/// before the zip is renamed into place, which is recorded).
#[inline(always)]
pub fn uninformative_open(rest: &[u8; PATH_CAPTURE]) -> bool {
    const DOWNLOAD: &[u8; 15] = b"cache/download/";
    if !holds_at(rest, 0, DOWNLOAD) {
        return false;
    }
    for i in DOWNLOAD.len()..PATH_CAPTURE - 9 {
        let c = rest[i];
        if c == 0 {
            return false;
        }
        if c == b'/' && holds_at(rest, i + 1, b"@v/list\0") {
            return true;
        }
        if c == b'.' && (holds_at(rest, i + 1, b"partial\0") || holds_at(rest, i + 1, b"ziphash\0")) {
            return true;
        }
    }
    false
}

/// For `cache/download/<M>/@v/<V>.partial` (what follows `$GOMODCACHE/`), the
/// marker cmd/go removes when it has extracted M@V, the hash of `<M>@<V>` as
/// [`extraction_dir`] makes it.
#[inline(always)]
pub fn partial_dir(rest: &[u8; PATH_CAPTURE]) -> Option<u64> {
    const DOWNLOAD: &[u8; 15] = b"cache/download/";
    if !holds_at(rest, 0, DOWNLOAD) {
        return None;
    }
    let mut hash = FNV_OFFSET;
    // Past "/@v/": in the version.
    let mut version = false;
    // Bytes of "@v/" still to pass over.
    let mut skip = 0u32;
    for i in DOWNLOAD.len()..PATH_CAPTURE - 9 {
        let c = rest[i];
        if c == 0 {
            return None;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if !version && c == b'/' && holds_at(rest, i + 1, b"@v/") {
            version = true;
            skip = 3;
            hash = fnv1a(hash, b'@');
            continue;
        }
        if version && c == b'.' && holds_at(rest, i + 1, b"partial\0") {
            return Some(hash);
        }
        hash = fnv1a(hash, c);
    }
    None
}

/// Offsets of kernel struct fields, read by userspace from /sys/kernel/btf/vmlinux.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_exit_code: u32,
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub sock_cookie: u32,
    pub sock_err: u32,
    pub skb_sk: u32,
    pub _pad: u32,
}

/// Offsets of tracepoint fields, read by userspace from tracefs format files.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// `sched_process_exec`'s `filename` (a `__data_loc` field).
    pub exec_filename: u32,
    pub fork_child_pid: u32,
    pub state_skaddr: u32,
    pub state_oldstate: u32,
    pub state_newstate: u32,
    pub state_sport: u32,
    pub state_dport: u32,
    pub state_family: u32,
    pub state_protocol: u32,
    pub state_saddr: u32,
    pub state_daddr: u32,
    pub state_saddr_v6: u32,
    pub state_daddr_v6: u32,
    pub retransmit_skaddr: u32,
    pub retransmit_state: u32,
    pub reset_skaddr: u32,
    pub kfree_skbaddr: u32,
    pub kfree_rx_sk: u32,
    pub kfree_reason: u32,
    pub openat_filename: u32,
    pub openat_flags: u32,
    pub renameat_oldname: u32,
    pub renameat_newname: u32,
    pub renameat2_oldname: u32,
    pub renameat2_newname: u32,
    pub unlinkat_pathname: u32,
    /// `sys_exit_connect`'s `ret`.
    pub connect_ret: u32,
    /// `sys_enter_getsockopt`'s `level`, `optname`, `optval`.
    pub getsockopt_level: u32,
    pub getsockopt_optname: u32,
    pub getsockopt_optval: u32,
    /// `sys_exit_getsockopt`'s `ret`.
    pub getsockopt_ret: u32,
    /// `sys_enter_connect`'s `fd` and `uservaddr`: which socket a connect error
    /// belongs to, and whether it is an inet socket at all.
    pub connect_fd: u32,
    pub connect_addr: u32,
    /// `sys_enter_getsockopt`'s `fd`.
    pub getsockopt_fd: u32,
}

/// The one entry of the `CONFIG` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// `comm` of the Go command (NUL-padded): an exec of it starts a build.
    pub go_comm: [u8; TASK_COMM_LEN],
    /// 1: only Go commands exec'd by SCOPE processes start builds; 0: every one.
    pub scoped: u32,
    /// 1 once userspace has filled the offsets; the programs do nothing before.
    pub ready: u32,
    pub kernel: KernelOffsets,
    pub tracepoints: TracepointOffsets,
    /// 1 when tracepoint `kfree_skb` has an `rx_sk` field.
    pub kfree_has_rx_sk: u32,
    pub _pad: u32,
}

/// Where the go command's HTTP client keeps what the request uprobes read: byte
/// offsets of struct fields in one Go release (userspace's table, checked against
/// the DWARF of every installed toolchain). One entry of the `GO_OFFSETS` array
/// per probed executable; the uprobes find theirs from the attach cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoOffsets {
    /// `net/http.Request.Method` (string) and `.URL` (*url.URL).
    pub request_method: u32,
    pub request_url: u32,
    /// `net/url.URL.Scheme`, `.Host`, `.Path`, `.RawQuery` (strings).
    pub url_scheme: u32,
    pub url_host: u32,
    pub url_path: u32,
    pub url_raw_query: u32,
    /// `net/http.Response.StatusCode`, `.ProtoMajor`, `.ProtoMinor` (ints).
    pub response_status_code: u32,
    pub response_proto_major: u32,
    pub response_proto_minor: u32,
    /// `net/http.persistConn.conn` (net.Conn) and `.tlsState` (nil without TLS).
    pub persist_conn_conn: u32,
    pub persist_conn_tls_state: u32,
    /// `net/http.http2ClientConn.tconn` (net.Conn, always a *tls.Conn).
    pub h2_client_conn_tconn: u32,
    /// `crypto/tls.Conn.conn` (net.Conn).
    pub tls_conn_conn: u32,
    /// `net.conn.fd` (*net.netFD; net.TCPConn embeds net.conn).
    pub net_conn_fd: u32,
    /// `net.netFD.pfd` + `internal/poll.FD.Sysfd` (int): the socket's descriptor.
    pub net_fd_sysfd: u32,
    pub _pad: u32,
}

/// Start of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    pub cpu: u32,
    /// Per-CPU sequence number, counting reservations that failed too.
    pub seq: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Thread-group id and thread id of the current task; meaningless for events
    /// raised in softirq context (socket events carry a cookie instead).
    pub pid: u32,
    pub tid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: EventHeader,
    pub build: u32,
    pub argv_len: u32,
    pub comm: [u8; TASK_COMM_LEN],
    pub argv: [u8; ARGV_CAPTURE],
}

/// The environment of a build's root process, and the program it executed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvironmentRecord {
    pub header: EventHeader,
    pub build: u32,
    pub env_len: u32,
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; PATH_CAPTURE],
    /// NUL-separated `NAME=value` strings.
    pub env: [u8; ENV_CAPTURE],
}

/// A file a build process created, wrote, renamed or removed (the module cache's
/// activity is read from these). Files extracted into a module's directory are
/// summarised (see [`Extraction`]): the first one is recorded, and the removal of
/// the module's `.partial` marker carries the count.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileRecord {
    pub header: EventHeader,
    pub build: u32,
    pub op: u32,
    pub path_len: u32,
    pub path2_len: u32,
    /// The extraction this `.partial` removal ends (`files` 0: none).
    pub extraction: Extraction,
    /// The file (the old name, for a rename).
    pub path: [u8; PATH_CAPTURE],
    /// The new name of a rename.
    pub path2: [u8; PATH_CAPTURE],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: EventHeader,
    pub child: u32,
    pub build: u32,
}

/// A connect that failed as the process saw it: `connect()` returning an error
/// other than EINPROGRESS, or `getsockopt(SO_ERROR)` reporting one after a
/// non-blocking connect. Needed because an ICMP error wakes the process before
/// the socket's closing tracepoints run, and the process clears `sk_err` first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectErrorRecord {
    pub header: EventHeader,
    pub build: u32,
    /// A positive errno.
    pub errno: i32,
    /// Cookie of the socket the error belongs to (the one its `ConnectRecord`
    /// carries), from the fd the process passed; 0 when it is not known (a
    /// non-inet socket, or a connect the cgroup hooks did not see).
    pub cookie: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: EventHeader,
    /// `task_struct.exit_code`: a wait status (code << 8 | signal).
    pub exit_code: i32,
    pub build: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectRecord {
    pub header: EventHeader,
    pub cookie: u64,
    pub build: u32,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub protocol: u16,
    /// Destination port, host byte order.
    pub port: u16,
    pub hook: u16,
    pub _pad: u32,
    /// Destination address, network byte order; IPv4 in the first four bytes.
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpStateRecord {
    pub header: EventHeader,
    pub cookie: u64,
    pub old_state: i32,
    pub new_state: i32,
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub _pad: u16,
    /// `sk_err` when the socket closes (0 otherwise).
    pub sk_err: i32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub _pad2: u32,
    /// Counters of the connection, filled when it closes.
    pub counters: SocketEntry,
}

/// Retransmit, reset and drop signals on a tracked TCP socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SocketSignalRecord {
    pub header: EventHeader,
    pub cookie: u64,
    /// TCP state for retransmits and resets, the drop reason for drops.
    pub value: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PayloadRecord {
    pub header: EventHeader,
    pub cookie: u64,
    pub direction: u16,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub protocol: u16,
    /// Payload bytes the segment carried.
    pub segment_len: u32,
    /// Of those, bytes copied into `data`.
    pub captured_len: u32,
    pub _pad: u32,
    pub data: [u8; PAYLOAD_CAPTURE],
}

/// The go command's HTTP client starts a request (`net/http.(*Transport).roundTrip`
/// entry). Requests, their connection and their response are paired by
/// (process, goroutine): a goroutine runs one round trip at a time.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HttpRequestRecord {
    pub header: EventHeader,
    pub build: u32,
    /// Which probed executable (index of its `GO_OFFSETS` entry).
    pub binary: u32,
    /// The goroutine (its `g`, from R14).
    pub goroutine: u64,
    /// Full lengths; the arrays hold at most their size.
    pub method_len: u32,
    pub scheme_len: u32,
    pub host_len: u32,
    pub path_len: u32,
    pub query_len: u32,
    pub _pad: u32,
    pub method: [u8; HTTP_METHOD_CAPTURE],
    pub scheme: [u8; HTTP_SCHEME_CAPTURE],
    pub host: [u8; HTTP_HOST_CAPTURE],
    pub path: [u8; HTTP_PATH_CAPTURE],
    pub query: [u8; HTTP_QUERY_CAPTURE],
}

/// The connection a request is sent on (`persistConn.roundTrip` for HTTP/1.x,
/// `http2ClientConn.RoundTrip` for HTTP/2), by the socket's descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HttpConnectionRecord {
    pub header: EventHeader,
    pub build: u32,
    /// The socket's fd in the process (-1 when it could not be read).
    pub fd: i32,
    pub goroutine: u64,
    /// The socket's cookie (what its `ConnectRecord` carries), 0 when unknown.
    pub cookie: u64,
    /// 2 for HTTP/2, 1 for HTTP/1.x.
    pub http_major: u32,
    pub _pad: u32,
}

/// A request's round trip returned: a response (status) or an error.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HttpResponseRecord {
    pub header: EventHeader,
    pub build: u32,
    pub binary: u32,
    pub goroutine: u64,
    /// 0 when there is no response.
    pub status: i64,
    pub proto_major: u32,
    pub proto_minor: u32,
    /// The error's itab (its dynamic type), 0 for no error.
    pub error_itab: u64,
    /// Full length of the string the error value starts with, if it does.
    pub error_text_len: u32,
    pub _pad: u32,
    pub error_text: [u8; GO_ERROR_CAPTURE],
}

macro_rules! assert_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $n);
    };
}
assert_size!(EventHeader, 32);
assert_size!(ProcessEntry, 8);
assert_size!(SocketEntry, 96);
assert_size!(KernelOffsets, 40);
assert_size!(TracepointOffsets, 136);
assert_size!(ProbeConfig, 208);
assert_size!(GoOffsets, 64);
assert_size!(ConnectErrorRecord, 48);
assert_size!(FileRecord, 32 + 16 + 24 + 512);
assert_size!(ExecRecord, 32 + 8 + 16 + 256);
assert_size!(ForkRecord, 40);
assert_size!(EnvironmentRecord, 32 + 16 + 256 + 16 * 1024);
assert_size!(ExitRecord, 40);
assert_size!(ConnectRecord, 32 + 24 + 16);
assert_size!(TcpStateRecord, 32 + 8 + 8 + 8 + 4 + 32 + 4 + 96);
assert_size!(SocketSignalRecord, 48);
assert_size!(PayloadRecord, 32 + 24 + 2048);
assert_size!(HttpRequestRecord, 32 + 16 + 24 + 16 + 8 + 128 + 256 + 128);
assert_size!(HttpConnectionRecord, 32 + 32);
assert_size!(HttpResponseRecord, 32 + 48 + 96);

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain `#[repr(C)]` data with explicit padding and no pointers.
    unsafe impl aya::Pod for ProcessEntry {}
    unsafe impl aya::Pod for SocketEntry {}
    unsafe impl aya::Pod for ProbeConfig {}
    unsafe impl aya::Pod for GoOffsets {}
    unsafe impl aya::Pod for ModuleCache {}
    unsafe impl aya::Pod for ExtractionKey {}
    unsafe impl aya::Pod for Extraction {}
}
