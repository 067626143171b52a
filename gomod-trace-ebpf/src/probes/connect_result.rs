//! How a build's connects ended, as the process saw it: `syscalls:sys_exit_connect`
//! (a connect that failed at once, e.g. ENETUNREACH) and `getsockopt(SO_ERROR)`
//! after a non-blocking connect (how Go, curl and most programs learn the result).
//! An ICMP error (EHOSTUNREACH…) wakes the process before the socket's closing
//! tracepoint runs, and the process's SO_ERROR read clears `sk_err`: this is the
//! one place where that error is still seen.
//!
//! Each error carries the cookie of its socket, so that two connects of one
//! process that fail differently are not mixed up. Syscalls see an fd, the cgroup
//! connect hooks see the socket (its cookie) but no fd; both run in the calling
//! thread, so `sys_enter_connect` notes the thread's fd, the hook files the
//! cookie under (tgid, fd), and the error paths look it up by the fd they see.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::TracePointContext,
};
use gomod_trace_ebpf::{ConnectErrorRecord, kind};

use crate::wire::{config, reserve, submit, tracepoint_u64, tracked_build};

const EINPROGRESS: i64 = 115;
const SOL_SOCKET: u64 = 1;
const SO_ERROR: u64 = 4;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// A `getsockopt(SO_ERROR)` in progress: where it writes the error, on which fd.
#[repr(C)]
#[derive(Clone, Copy)]
struct SoErrorRead {
    optval: u64,
    fd: u32,
    _pad: u32,
}

/// Thread id → its `getsockopt(SO_ERROR)` in progress.
#[map]
static SO_ERROR_READS: HashMap<u32, SoErrorRead> = HashMap::with_max_entries(4096, 0);

/// Thread id → the fd of its `connect()` in progress, for inet sockets only (the
/// cgroup hooks read it). Removed at the syscall's exit; LRU so that an entry a
/// thread never got to remove cannot fill the map.
#[map]
static CONNECT_FDS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(4096, 0);

/// (tgid << 32 | fd) → cookie of the socket last connected through that fd. Nothing
/// sees an fd close: a reused fd's entry is overwritten by its next connect, and
/// LRU lets the entries of long-gone sockets go first when the map is full.
#[map]
static SOCKET_FDS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16_384, 0);

#[inline(always)]
fn fd_key(tgid: u32, fd: u32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd)
}

/// The cookie of the socket a tracked process connected through `fd`, 0 if unknown.
#[inline(always)]
pub fn cookie_of(tgid: u32, fd: u32) -> u64 {
    // SAFETY: the value is copied out at once.
    unsafe { SOCKET_FDS.get(&fd_key(tgid, fd)) }.copied().unwrap_or(0)
}

/// Called by the cgroup connect hooks for a tracked process: files the socket's
/// cookie under the fd the current thread's `connect()` was called on. Does
/// nothing when the thread is not inside `connect()` (TCP Fast Open's sendmsg,
/// io_uring): its errors then carry no cookie rather than a wrong one.
#[inline(always)]
pub fn remember_socket(tgid: u32, cookie: u64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(fd) = unsafe { CONNECT_FDS.get(&tid) }.copied() else { return };
    let _ = SOCKET_FDS.insert(&fd_key(tgid, fd), &cookie, 0);
}

fn emit(build: u32, errno: i32, cookie: u64) -> Option<()> {
    let mut record = reserve::<ConnectErrorRecord>(kind::CONNECT_ERROR)?;
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record.
    unsafe {
        (*r).build = build;
        (*r).errno = errno;
        (*r).cookie = cookie;
    }
    submit(record);
    Some(())
}

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = on_connect_enter(&ctx);
    0
}

fn on_connect_enter(ctx: &TracePointContext) -> Option<()> {
    tracked_build(ctx.tgid())?;
    let t = &config()?.tracepoints;
    // Only inet connects reach the cgroup hooks: for any other family (a Unix
    // socket) an fd entry could only find the cookie of an earlier socket that
    // had the same fd number.
    let addr = tracepoint_u64(ctx, t.connect_addr)?;
    // SAFETY: a checked read of the address the process passed (a bad pointer
    // fails here, and the connect fails with EFAULT).
    let family: u16 = unsafe { bpf_probe_read_user(addr as *const u16) }.ok()?;
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let fd = tracepoint_u64(ctx, t.connect_fd)? as u32;
    let tid = bpf_get_current_pid_tgid() as u32;
    CONNECT_FDS.insert(&tid, &fd, 0).ok()
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let _ = on_connect_exit(&ctx);
    0
}

fn on_connect_exit(ctx: &TracePointContext) -> Option<()> {
    let tgid = ctx.tgid();
    let build = tracked_build(tgid)?;
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out before it is removed.
    let fd = unsafe { CONNECT_FDS.get(&tid) }.copied();
    if fd.is_some() {
        let _ = CONNECT_FDS.remove(&tid);
    }
    let ret = tracepoint_u64(ctx, config()?.tracepoints.connect_ret)? as i64;
    if ret >= 0 || ret == -EINPROGRESS {
        return None;
    }
    // A connect repeated on a socket that is already connecting does not run the
    // hooks again; the entry of its first connect still names it.
    emit(build, (-ret) as i32, fd.map_or(0, |fd| cookie_of(tgid, fd)))
}

#[tracepoint]
pub fn sys_enter_getsockopt(ctx: TracePointContext) -> u32 {
    let _ = on_getsockopt_enter(&ctx);
    0
}

fn on_getsockopt_enter(ctx: &TracePointContext) -> Option<()> {
    tracked_build(ctx.tgid())?;
    let t = &config()?.tracepoints;
    if tracepoint_u64(ctx, t.getsockopt_level)? as u32 as u64 != SOL_SOCKET
        || tracepoint_u64(ctx, t.getsockopt_optname)? as u32 as u64 != SO_ERROR
    {
        return None;
    }
    let read = SoErrorRead {
        optval: tracepoint_u64(ctx, t.getsockopt_optval)?,
        fd: tracepoint_u64(ctx, t.getsockopt_fd)? as u32,
        _pad: 0,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    SO_ERROR_READS.insert(&tid, &read, 0).ok()
}

#[tracepoint]
pub fn sys_exit_getsockopt(ctx: TracePointContext) -> u32 {
    let _ = on_getsockopt_exit(&ctx);
    0
}

fn on_getsockopt_exit(ctx: &TracePointContext) -> Option<()> {
    let tgid = ctx.tgid();
    let build = tracked_build(tgid)?;
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out before it is removed.
    let read = *unsafe { SO_ERROR_READS.get(&tid) }?;
    let _ = SO_ERROR_READS.remove(&tid);
    if tracepoint_u64(ctx, config()?.tracepoints.getsockopt_ret)? as i64 != 0 {
        return None;
    }
    // SAFETY: a checked read of user memory the syscall just wrote.
    let errno: i32 = unsafe { bpf_probe_read_user(read.optval as *const i32) }.ok()?;
    if errno == 0 {
        return None;
    }
    emit(build, errno, cookie_of(tgid, read.fd))
}
