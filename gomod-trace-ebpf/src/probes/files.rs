//! Files build processes create, rename and remove: `syscalls:sys_enter_openat`
//! (for writing), `_renameat`, `_renameat2` (Go's os.Rename uses renameat),
//! `_unlinkat`. The module cache's file sequence tells when each module@version
//! was fetched, and how. Paths are copied as given; userspace keeps those under the
//! build's GOMODCACHE.
use aya_ebpf::{
    EbpfContext as _, helpers::generated, macros::tracepoint, programs::TracePointContext,
};
use gomod_trace_ebpf::{FileRecord, PATH_CAPTURE, file_op, kind};

use crate::wire::{config, reserve, tracepoint_u64, tracked_build};

const O_WRONLY: u64 = 0o1;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;

/// Copies a user-space string into a record field; returns its length.
///
/// # Safety
/// `dst` must point at `PATH_CAPTURE` writable bytes.
#[inline(always)]
unsafe fn user_string(dst: *mut [u8; PATH_CAPTURE], src: u64) -> u32 {
    // SAFETY: upheld by the caller; the helper faults cleanly on bad sources.
    let n = unsafe { generated::bpf_probe_read_user_str(dst as *mut _, PATH_CAPTURE as u32, src as *const _) };
    if n > 0 { n as u32 } else { 0 }
}

fn emit(ctx: &TracePointContext, op: u32, path: u64, path2: u64) -> Option<()> {
    let build = tracked_build(ctx.tgid())?;
    let mut record = reserve::<FileRecord>(kind::FILE)?;
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record; fields are written before submit.
    unsafe {
        (*r).build = build;
        (*r).op = op;
        (*r).path_len = user_string(core::ptr::addr_of_mut!((*r).path), path);
        (*r).path2_len = if path2 != 0 { user_string(core::ptr::addr_of_mut!((*r).path2), path2) } else { 0 };
    }
    record.submit(0);
    Some(())
}

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let _ = on_openat(&ctx);
    0
}

fn on_openat(ctx: &TracePointContext) -> Option<()> {
    // The one lookup first: most opens on a machine are not a build's.
    tracked_build(ctx.tgid())?;
    let t = &config()?.tracepoints;
    if tracepoint_u64(ctx, t.openat_flags)? & (O_WRONLY | O_RDWR | O_CREAT) == 0 {
        return None;
    }
    emit(ctx, file_op::OPEN, tracepoint_u64(ctx, t.openat_filename)?, 0)
}

#[tracepoint]
pub fn sys_enter_renameat(ctx: TracePointContext) -> u32 {
    let _ = on_rename(&ctx, false);
    0
}

#[tracepoint]
pub fn sys_enter_renameat2(ctx: TracePointContext) -> u32 {
    let _ = on_rename(&ctx, true);
    0
}

fn on_rename(ctx: &TracePointContext, two: bool) -> Option<()> {
    tracked_build(ctx.tgid())?;
    let t = &config()?.tracepoints;
    let (old, new) = if two {
        (t.renameat2_oldname, t.renameat2_newname)
    } else {
        (t.renameat_oldname, t.renameat_newname)
    };
    emit(ctx, file_op::RENAME, tracepoint_u64(ctx, old)?, tracepoint_u64(ctx, new)?)
}

#[tracepoint]
pub fn sys_enter_unlinkat(ctx: TracePointContext) -> u32 {
    let _ = on_unlinkat(&ctx);
    0
}

fn on_unlinkat(ctx: &TracePointContext) -> Option<()> {
    tracked_build(ctx.tgid())?;
    let t = &config()?.tracepoints;
    emit(ctx, file_op::UNLINK, tracepoint_u64(ctx, t.unlinkat_pathname)?, 0)
}
