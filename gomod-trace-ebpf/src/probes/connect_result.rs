//! How a build's connects ended, as the process saw it: `syscalls:sys_exit_connect`
//! (a connect that failed at once, e.g. ENETUNREACH) and `getsockopt(SO_ERROR)`
//! after a non-blocking connect (how Go, curl and most programs learn the result).
//! An ICMP error (EHOSTUNREACH…) wakes the process before the socket's closing
//! tracepoint runs, and the process's SO_ERROR read clears `sk_err`: this is the
//! one place where that error is still seen.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use gomod_trace_ebpf::{ConnectErrorRecord, kind};

use crate::wire::{config, reserve, tracepoint_u64, tracked_build};

const EINPROGRESS: i64 = 115;
const SOL_SOCKET: u64 = 1;
const SO_ERROR: u64 = 4;

/// Thread id → where its `getsockopt(SO_ERROR)` writes the error.
#[map]
static SO_ERROR_READS: HashMap<u32, u64> = HashMap::with_max_entries(4096, 0);

fn emit(build: u32, errno: i32) -> Option<()> {
    let mut record = reserve::<ConnectErrorRecord>(kind::CONNECT_ERROR)?;
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record.
    unsafe {
        (*r).build = build;
        (*r).errno = errno;
    }
    record.submit(0);
    Some(())
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let _ = on_connect_exit(&ctx);
    0
}

fn on_connect_exit(ctx: &TracePointContext) -> Option<()> {
    let build = tracked_build(ctx.tgid())?;
    let ret = tracepoint_u64(ctx, config()?.tracepoints.connect_ret)? as i64;
    if ret >= 0 || ret == -EINPROGRESS {
        return None;
    }
    emit(build, (-ret) as i32)
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
    let optval = tracepoint_u64(ctx, t.getsockopt_optval)?;
    let tid = bpf_get_current_pid_tgid() as u32;
    SO_ERROR_READS.insert(&tid, &optval, 0).ok()
}

#[tracepoint]
pub fn sys_exit_getsockopt(ctx: TracePointContext) -> u32 {
    let _ = on_getsockopt_exit(&ctx);
    0
}

fn on_getsockopt_exit(ctx: &TracePointContext) -> Option<()> {
    let build = tracked_build(ctx.tgid())?;
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out before it is removed.
    let optval = *unsafe { SO_ERROR_READS.get(&tid) }?;
    let _ = SO_ERROR_READS.remove(&tid);
    if tracepoint_u64(ctx, config()?.tracepoints.getsockopt_ret)? as i64 != 0 {
        return None;
    }
    // SAFETY: a checked read of user memory the syscall just wrote.
    let errno: i32 = unsafe { bpf_probe_read_user(optval as *const i32) }.ok()?;
    if errno == 0 {
        return None;
    }
    emit(build, errno)
}
