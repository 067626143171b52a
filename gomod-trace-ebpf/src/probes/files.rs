//! Files build processes create, rename and remove: `syscalls:sys_enter_openat`
//! (for writing), `_renameat`, `_renameat2` (Go's os.Rename uses renameat),
//! `_unlinkat`. The module cache's file sequence tells when each module@version
//! was fetched, and how. Paths are copied as given; userspace keeps those under the
//! build's GOMODCACHE.
//!
//! Extracting a module writes every file of its zip into `$GOMODCACHE/<M>@<V>/`:
//! thousands of files for one module, where the timeline needs one span. Once
//! userspace has told the build's GOMODCACHE (`MODULE_CACHES`), those files are
//! summarised in `EXTRACTIONS`: the first one is recorded, the others are counted,
//! and the removal of `cache/download/<M>/@v/<V>.partial`, which ends the
//! extraction, carries the count and the time of the last file.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_ktime_get_ns, generated},
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use gomod_trace_ebpf::{
    Extraction, ExtractionKey, FileRecord, ModuleCache, PATH_CAPTURE, extraction_dir, file_op, kind, partial_dir,
    uninformative_open,
};

use crate::wire::{config, reserve, submit, tracepoint_u64, tracked_build};

/// Each build's GOMODCACHE, by build (written and removed by userspace).
#[map]
pub static MODULE_CACHES: LruHashMap<u32, ModuleCache> = LruHashMap::with_max_entries(1024, 0);

/// Extractions under way. LRU: one cut short by its process's death is never
/// ended by a `.partial` removal.
#[map]
pub static EXTRACTIONS: LruHashMap<ExtractionKey, Extraction> = LruHashMap::with_max_entries(4096, 0);

/// Where a path is compared with the build's GOMODCACHE (as words) and the rest
/// of it examined.
#[repr(C)]
pub struct PathScratch {
    cache: [u64; PATH_CAPTURE / 8],
    rest: [u8; PATH_CAPTURE],
}

#[map]
static PATH_SCRATCH: PerCpuArray<PathScratch> = PerCpuArray::with_max_entries(1, 0);

/// What follows `$GOMODCACHE/` in the user-space string at `path`, in the
/// scratch space, if the string starts with the build's module cache.
///
/// # Safety
/// `scratch` must be this CPU's `PATH_SCRATCH` slot.
#[inline(always)]
unsafe fn under_cache(scratch: *mut PathScratch, cache: &ModuleCache, path: u64) -> Option<&[u8; PATH_CAPTURE]> {
    let n = cache.len as usize;
    if n == 0 || n >= PATH_CAPTURE {
        return None;
    }
    // SAFETY: upheld by the caller; the helpers fault cleanly on bad sources.
    unsafe {
        for word in (*scratch).cache.iter_mut() {
            *word = 0;
        }
        if generated::bpf_probe_read_user(core::ptr::addr_of_mut!((*scratch).cache) as *mut _, n as u32, path as *const _) != 0 {
            return None;
        }
        let expected = &*(core::ptr::addr_of!(cache.path) as *const [u64; PATH_CAPTURE / 8]);
        let mut differ = 0;
        for (word, expected) in (*scratch).cache.iter().zip(expected.iter()) {
            differ |= word ^ expected;
        }
        if differ != 0 || user_string(core::ptr::addr_of_mut!((*scratch).rest), path + n as u64) == 0 {
            return None;
        }
        Some(&(*scratch).rest)
    }
}

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
        (*r).extraction = Extraction::default();
        if op == file_op::UNLINK
            && let Some(cache) = MODULE_CACHES.get(&build)
            && let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0)
            && let Some(rest) = under_cache(scratch, cache, path)
            && let Some(dir) = partial_dir(rest)
        {
            let key = ExtractionKey { pid: ctx.tgid(), _pad: 0, dir };
            if let Some(extraction) = EXTRACTIONS.get(&key) {
                (*r).extraction = *extraction;
                let _ = EXTRACTIONS.remove(&key);
            }
        }
    }
    submit(record);
    Some(())
}

/// Whether an open under the build's module cache needs no record: a file
/// extracted into a module directory after the first (counted instead), or an
/// open that tells nothing (`uninformative_open`).
fn summarised(tgid: u32, build: u32, filename: u64) -> bool {
    // SAFETY: map values are copied or updated in place by this CPU's program only.
    unsafe {
        let Some(cache) = MODULE_CACHES.get(&build) else { return false };
        let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0) else { return false };
        let Some(rest) = under_cache(scratch, cache, filename) else { return false };
        let Some(dir) = extraction_dir(rest) else { return uninformative_open(rest) };
        let key = ExtractionKey { pid: tgid, _pad: 0, dir };
        let now = bpf_ktime_get_ns();
        if let Some(extraction) = EXTRACTIONS.get_ptr_mut(&key) {
            (*extraction).last_ns = now;
            (*extraction).files += 1;
            return true;
        }
        let _ = EXTRACTIONS.insert(&key, &Extraction { first_ns: now, last_ns: now, files: 1 }, 0);
        false
    }
}

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let _ = on_openat(&ctx);
    0
}

fn on_openat(ctx: &TracePointContext) -> Option<()> {
    // The one lookup first: most opens on a machine are not a build's.
    let build = tracked_build(ctx.tgid())?;
    let t = &config()?.tracepoints;
    if tracepoint_u64(ctx, t.openat_flags)? & (O_WRONLY | O_RDWR | O_CREAT) == 0 {
        return None;
    }
    let filename = tracepoint_u64(ctx, t.openat_filename)?;
    if summarised(ctx.tgid(), build, filename) {
        return None;
    }
    emit(ctx, file_op::OPEN, filename, 0)
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
