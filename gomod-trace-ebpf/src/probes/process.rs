//! Which processes belong to a build: `sched:sched_process_exec`, `_fork`, `_exit`.
//! A build starts when a SCOPE process (or, unscoped, any process) execs the Go
//! command; everything a build's process forks belongs to the same build.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::info;
use gomod_trace_ebpf::{
    ARGV_CAPTURE, ENV_CAPTURE, EnvironmentRecord, ExecRecord, ExitRecord, ForkRecord, PATH_CAPTURE,
    ProcessEntry, kind, process_state,
};

use crate::wire::{PROCESSES, config, read_kernel, reserve, submit, submit_now};

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = on_exec(&ctx);
    0
}

fn on_exec(ctx: &TracePointContext) -> Option<()> {
    let tgid = ctx.tgid();
    // SAFETY: copied out at once.
    let entry = unsafe { PROCESSES.get(&tgid) }.copied();
    let mut new_build = false;
    let build = match entry {
        Some(ProcessEntry { state: process_state::TRACKED, build }) => build,
        entry => {
            let config = config()?;
            if entry.is_none() && config.scoped == 1 {
                return None;
            }
            let comm = bpf_get_current_comm().ok()?;
            if comm != config.go_comm {
                return None;
            }
            let entry = ProcessEntry { state: process_state::TRACKED, build: tgid };
            PROCESSES.insert(&tgid, &entry, 0).ok()?;
            info!(ctx, "build {} started", tgid);
            new_build = true;
            tgid
        }
    };
    let offsets = config()?.kernel;
    let mut record = reserve::<ExecRecord>(kind::EXEC)?;
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record; fields are written before submit.
    unsafe {
        (*r).build = build;
        (*r).comm = bpf_get_current_comm().unwrap_or_default();
        (*r).argv_len = 0;
        let task = bpf_get_current_task();
        let mm = read_kernel::<u64>(task, offsets.task_mm).unwrap_or(0);
        if mm != 0 {
            let start = read_kernel::<u64>(mm, offsets.mm_arg_start).unwrap_or(0);
            let end = read_kernel::<u64>(mm, offsets.mm_arg_end).unwrap_or(0);
            let dst = core::ptr::addr_of_mut!((*r).argv) as *mut core::ffi::c_void;
            // The whole window first (arguments are followed by the environment on
            // the stack, so it is there); the first string alone if that fails.
            if generated::bpf_probe_read_user(dst, ARGV_CAPTURE as u32, start as *const _) == 0 {
                (*r).argv_len = end.saturating_sub(start).min(ARGV_CAPTURE as u64) as u32;
            } else {
                let n = generated::bpf_probe_read_user_str(
                    dst,
                    ARGV_CAPTURE as u32,
                    start as *const _,
                );
                if n > 0 {
                    (*r).argv_len = n as u32;
                }
            }
        }
    }
    submit_now(record);
    if new_build {
        let _ = environment(ctx, build);
    }
    Some(())
}

/// The environment block and executable path of a build's root: where its Go
/// configuration comes from. Read here because the process may be gone before
/// userspace could look at /proc.
fn environment(ctx: &TracePointContext, build: u32) -> Option<()> {
    let config = config()?;
    let mut record = reserve::<EnvironmentRecord>(kind::ENVIRONMENT)?;
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record; fields are written before submit.
    unsafe {
        (*r).build = build;
        (*r).env_len = 0;
        (*r).path_len = 0;
        (*r)._pad = 0;
        // `filename` is a __data_loc field: offset in the low 16 bits.
        let loc: u32 = ctx.read_at(config.tracepoints.exec_filename as usize).unwrap_or(0);
        let path = core::ptr::addr_of_mut!((*r).path) as *mut core::ffi::c_void;
        let n = generated::bpf_probe_read_kernel_str(
            path,
            PATH_CAPTURE as u32,
            (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) as *const _,
        );
        if n > 0 {
            (*r).path_len = n as u32;
        }
        let task = bpf_get_current_task();
        let mm = read_kernel::<u64>(task, config.kernel.task_mm).unwrap_or(0);
        let start = read_kernel::<u64>(mm, config.kernel.mm_env_start).unwrap_or(0);
        let end = read_kernel::<u64>(mm, config.kernel.mm_env_end).unwrap_or(0);
        let len = end.saturating_sub(start).min(ENV_CAPTURE as u64) as u32;
        if len > 0 {
            // The identity on 1..=ENV_CAPTURE, in a form whose bounds the verifier sees.
            let len = ((len - 1) & (ENV_CAPTURE as u32 - 1)) + 1;
            let env = core::ptr::addr_of_mut!((*r).env) as *mut core::ffi::c_void;
            if generated::bpf_probe_read_user(env, len, start as *const _) == 0 {
                (*r).env_len = len;
            }
        }
    }
    submit_now(record);
    Some(())
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let _ = on_fork(&ctx);
    0
}

fn on_fork(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: copied out at once.
    let entry = unsafe { PROCESSES.get(&ctx.tgid()) }.copied()?;
    let offsets = config()?.tracepoints;
    // SAFETY: offset from the tracepoint's format file.
    let child = unsafe { ctx.read_at::<i32>(offsets.fork_child_pid as usize) }.ok()? as u32;
    PROCESSES.insert(&child, &entry, 0).ok()?;
    if entry.state == process_state::TRACKED {
        let mut record = reserve::<ForkRecord>(kind::FORK)?;
        let r = record.as_mut_ptr();
        // SAFETY: reserved record.
        unsafe {
            (*r).child = child;
            (*r).build = entry.build;
        }
        submit(record);
    }
    Some(())
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = on_exit(&ctx);
    0
}

fn on_exit(_ctx: &TracePointContext) -> Option<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // Keyed by thread id: threads of tracked processes have entries of their own.
    // SAFETY: copied out at once.
    let entry = unsafe { PROCESSES.get(&tid) }.copied()?;
    let _ = PROCESSES.remove(&tid);
    if tid != tgid || entry.state != process_state::TRACKED {
        return None;
    }
    let offsets = config()?.kernel;
    let mut record = reserve::<ExitRecord>(kind::EXIT)?;
    let r = record.as_mut_ptr();
    // SAFETY: reserved record.
    unsafe {
        let task = bpf_get_current_task();
        (*r).exit_code = read_kernel::<i32>(task, offsets.task_exit_code).unwrap_or(-1);
        (*r).build = entry.build;
    }
    submit(record);
    Some(())
}
