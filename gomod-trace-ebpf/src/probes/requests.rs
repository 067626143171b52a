//! The go command's HTTP requests, read from its own memory by uprobes on its
//! `net/http` client: no TLS library hooks, no keys. Go's register ABI (amd64):
//! arguments and results in RAX, RBX, RCX…, the current goroutine in R14.
//!
//! - `(*Transport).roundTrip` entry: the request (method, scheme, host, path, raw
//!   query; never a header).
//! - `(*persistConn).roundTrip` / `(*http2ClientConn).RoundTrip` entry, on the same
//!   goroutine: the connection it goes out on, by fd, and from the fd the socket
//!   cookie that `connect()` filed (`connect_result`).
//! - every RET of `(*Transport).roundTrip` (uretprobes are unsafe on Go: stacks
//!   move): the response's status, or the error.
//!
//! Nothing is kept between the three: userspace pairs them by (process,
//! goroutine), as a goroutine runs one round trip at a time. Struct offsets come
//! from userspace per executable (`GO_OFFSETS`, indexed by the attach cookie).
use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_probe_read_user,
        generated::{bpf_get_attach_cookie, bpf_probe_read_user as probe_read_user_raw},
    },
    macros::{map, uprobe},
    maps::Array,
    programs::ProbeContext,
};
use gomod_trace_ebpf::{
    GO_BINARIES_MAX, GO_ERROR_CAPTURE, GoOffsets, HTTP_HOST_CAPTURE, HTTP_METHOD_CAPTURE, HTTP_PATH_CAPTURE,
    HTTP_QUERY_CAPTURE, HTTP_SCHEME_CAPTURE, HttpConnectionRecord, HttpRequestRecord, HttpResponseRecord, kind,
};

use crate::{
    connect_result::cookie_of,
    wire::{reserve, submit, tracked_build},
};

/// Struct offsets of each probed executable's Go release, by attach cookie.
#[map]
static GO_OFFSETS: Array<GoOffsets> = Array::with_max_entries(GO_BINARIES_MAX, 0);

/// Registers of the probed thread at the probe.
struct Regs {
    rax: u64,
    rbx: u64,
    rcx: u64,
    r14: u64,
}

#[inline(always)]
fn regs(ctx: &ProbeContext) -> Regs {
    // SAFETY: a uprobe's context is the probed thread's saved registers.
    let r = unsafe { &*ctx.regs };
    Regs { rax: r.rax, rbx: r.rbx, rcx: r.rcx, r14: r.r14 }
}

/// The build of the current process and this executable's offsets; `None` for a
/// process that is not part of a build (one map lookup) or an unknown cookie.
#[inline(always)]
fn probed(ctx: &ProbeContext) -> Option<(u32, u32, &'static GoOffsets)> {
    let build = tracked_build(ctx.tgid())?;
    // SAFETY: the helper reads the cookie of the link this program runs for.
    let binary = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let offsets = GO_OFFSETS.get(binary)?;
    Some((build, binary, offsets))
}

#[inline(always)]
fn read_user<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: a probe read, which fails cleanly on a bad address.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

/// Copies the Go string whose header (pointer, length) is at `header` into `buf`
/// (at most `N` bytes) and returns its full length (0 when unreadable).
#[inline(always)]
fn read_go_string<const N: usize>(header: u64, buf: &mut [u8; N]) -> u32 {
    let Some(data) = read_user::<u64>(header) else { return 0 };
    let Some(len) = read_user::<u64>(header + 8) else { return 0 };
    if data == 0 || len == 0 {
        return 0;
    }
    let n = if len >= N as u64 { N as u32 } else { len as u32 };
    // Bounds the size for the verifier (it is already ≤ N).
    if n == 0 || n as usize > N {
        return 0;
    }
    // SAFETY: `buf` holds N bytes and n ≤ N; a bad source address fails cleanly.
    let ret = unsafe { probe_read_user_raw(buf.as_mut_ptr() as *mut _, n, data as *const _) };
    if ret != 0 {
        return 0;
    }
    len.min(u32::MAX as u64) as u32
}

#[uprobe]
pub fn go_round_trip(ctx: ProbeContext) -> u32 {
    let _ = on_round_trip(&ctx);
    0
}

fn on_round_trip(ctx: &ProbeContext) -> Option<()> {
    let (build, binary, offsets) = probed(ctx)?;
    let regs = regs(ctx);
    // roundTrip(t *Transport, req *Request): req in RBX.
    let request = regs.rbx;
    let url: u64 = read_user(request + offsets.request_url as u64)?;
    let mut record = reserve::<HttpRequestRecord>(kind::HTTP_REQUEST)?;
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record; every field is written.
    unsafe {
        (*r).build = build;
        (*r).binary = binary;
        (*r).goroutine = regs.r14;
        (*r)._pad = 0;
        (*r).method = [0; HTTP_METHOD_CAPTURE];
        (*r).scheme = [0; HTTP_SCHEME_CAPTURE];
        (*r).host = [0; HTTP_HOST_CAPTURE];
        (*r).path = [0; HTTP_PATH_CAPTURE];
        (*r).query = [0; HTTP_QUERY_CAPTURE];
        (*r).method_len = read_go_string(request + offsets.request_method as u64, &mut (*r).method);
        (*r).scheme_len = read_go_string(url + offsets.url_scheme as u64, &mut (*r).scheme);
        (*r).host_len = read_go_string(url + offsets.url_host as u64, &mut (*r).host);
        (*r).path_len = read_go_string(url + offsets.url_path as u64, &mut (*r).path);
        (*r).query_len = read_go_string(url + offsets.url_raw_query as u64, &mut (*r).query);
    }
    submit(record);
    Some(())
}

#[uprobe]
pub fn go_round_trip_return(ctx: ProbeContext) -> u32 {
    let _ = on_round_trip_return(&ctx);
    0
}

fn on_round_trip_return(ctx: &ProbeContext) -> Option<()> {
    let (build, binary, offsets) = probed(ctx)?;
    let regs = regs(ctx);
    // Results: (*Response in RAX, error in RBX (itab) and RCX (data)).
    let response = regs.rax;
    let mut record = reserve::<HttpResponseRecord>(kind::HTTP_RESPONSE)?;
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record; every field is written.
    unsafe {
        (*r).build = build;
        (*r).binary = binary;
        (*r).goroutine = regs.r14;
        (*r).status = read_user::<i64>(response + offsets.response_status_code as u64).filter(|_| response != 0).unwrap_or(0);
        (*r).proto_major = read_user::<i64>(response + offsets.response_proto_major as u64).unwrap_or(0) as u32;
        (*r).proto_minor = read_user::<i64>(response + offsets.response_proto_minor as u64).unwrap_or(0) as u32;
        (*r).error_itab = regs.rbx;
        (*r)._pad = 0;
        (*r).error_text = [0; GO_ERROR_CAPTURE];
        // Many errors (errors.New, fmt.Errorf without wrapping) point at a struct
        // that starts with their text; userspace keeps it only for those types.
        (*r).error_text_len = if regs.rbx != 0 { read_go_string(regs.rcx, &mut (*r).error_text) } else { 0 };
    }
    submit(record);
    Some(())
}

#[uprobe]
pub fn go_h1_connection(ctx: ProbeContext) -> u32 {
    let _ = on_connection(&ctx, 1);
    0
}

#[uprobe]
pub fn go_h2_connection(ctx: ProbeContext) -> u32 {
    let _ = on_connection(&ctx, 2);
    0
}

/// The socket under a `*tls.Conn` or `*net.TCPConn` (a `net.Conn`'s data word).
#[inline(always)]
fn socket_fd(offsets: &GoOffsets, conn: u64, tls: bool) -> Option<i64> {
    let tcp = if tls { read_user::<u64>(conn + offsets.tls_conn_conn as u64 + 8)? } else { conn };
    let net_fd: u64 = read_user(tcp + offsets.net_conn_fd as u64)?;
    read_user(net_fd + offsets.net_fd_sysfd as u64)
}

fn on_connection(ctx: &ProbeContext, http_major: u32) -> Option<()> {
    let (build, _, offsets) = probed(ctx)?;
    let regs = regs(ctx);
    // The receiver (*persistConn or *http2ClientConn) in RAX.
    let receiver = regs.rax;
    let fd = if http_major == 2 {
        // HTTP/2 runs over TLS: tconn is a *tls.Conn.
        let conn: u64 = read_user(receiver + offsets.h2_client_conn_tconn as u64 + 8)?;
        socket_fd(offsets, conn, true)
    } else {
        let conn: u64 = read_user(receiver + offsets.persist_conn_conn as u64 + 8)?;
        let tls_state: u64 = read_user(receiver + offsets.persist_conn_tls_state as u64)?;
        socket_fd(offsets, conn, tls_state != 0)
    };
    let fd = fd.filter(|fd| (0..=i32::MAX as i64).contains(fd)).map_or(-1, |fd| fd as i32);
    let cookie = if fd >= 0 { cookie_of(ctx.tgid(), fd as u32) } else { 0 };
    let mut record = reserve::<HttpConnectionRecord>(kind::HTTP_CONNECTION)?;
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record; every field is written.
    unsafe {
        (*r).build = build;
        (*r).fd = fd;
        (*r).goroutine = regs.r14;
        (*r).cookie = cookie;
        (*r).http_major = http_major;
        (*r)._pad = 0;
    }
    submit(record);
    Some(())
}
