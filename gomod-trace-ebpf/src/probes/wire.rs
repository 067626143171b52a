//! The maps shared by all programs, and the one way records enter the ring buffer:
//! a per-CPU sequence number on every reservation, and a per-CPU count of the
//! reservations that failed (userspace turns those into an incomplete timeline).
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, ring_buf::RingBufEntry},
};
use gomod_trace_ebpf::{EventHeader, ProbeConfig, ProcessEntry, SocketEntry};

#[map]
pub static CONFIG: Array<ProbeConfig> = Array::with_max_entries(1, 0);

/// Processes of builds (TRACKED) and of the `run` command's scope (SCOPE), by tgid.
/// Thread ids of tracked processes land here too (a fork tracepoint cannot tell a
/// thread from a process); each is removed when its thread exits.
#[map]
pub static PROCESSES: HashMap<u32, ProcessEntry> = HashMap::with_max_entries(65_536, 0);

/// Sockets opened by tracked processes, by socket cookie. LRU: UDP sockets have no
/// close event, so the oldest go first when the map is full.
#[map]
pub static SOCKETS: LruHashMap<u64, SocketEntry> = LruHashMap::with_max_entries(65_536, 0);

/// Tracked TCP sockets by kernel address (what TCP tracepoints carry) → cookie.
#[map]
pub static TCP_SOCKETS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65_536, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

#[map]
pub static SEQUENCE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Reservations that failed because the ring buffer was full, per CPU.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn config() -> Option<&'static ProbeConfig> {
    let config = CONFIG.get(0)?;
    (config.ready == 1).then_some(config)
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// A 64-bit field of a tracepoint's record (a syscall argument or return value),
/// at an offset userspace read from the tracepoint's format.
#[inline(always)]
pub fn tracepoint_u64(ctx: &aya_ebpf::programs::TracePointContext, offset: u32) -> Option<u64> {
    // SAFETY: a probe read of the tracepoint's own record.
    unsafe { ctx.read_at::<u64>(offset as usize) }.ok()
}

/// The build a process belongs to, if it is TRACKED: the one lookup every
/// process-context program makes first.
#[inline(always)]
pub fn tracked_build(tgid: u32) -> Option<u32> {
    // SAFETY: the value is copied out before the map can change under it.
    let entry = unsafe { PROCESSES.get(&tgid) }?;
    (entry.state == gomod_trace_ebpf::process_state::TRACKED).then_some(entry.build)
}

/// Reserves a record of type `T` whose first field is an `EventHeader`, fills the
/// header, or counts the loss when the ring buffer is full.
#[inline(always)]
pub fn reserve<T: 'static>(kind: u32) -> Option<RingBufEntry<T>> {
    let seq = match SEQUENCE.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, programs do not nest on one CPU for the same map
        // slot within a program run.
        Some(seq) => unsafe {
            *seq += 1;
            *seq
        },
        None => 0,
    };
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        if let Some(lost) = LOST.get_ptr_mut(0) {
            // SAFETY: per-CPU slot.
            unsafe { *lost += 1 };
        }
        return None;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let header = EventHeader {
        kind,
        // SAFETY: helper without arguments.
        cpu: unsafe { bpf_get_smp_processor_id() },
        seq,
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
    };
    // SAFETY: every record type starts with an `EventHeader` (`#[repr(C)]`).
    unsafe { (entry.as_mut_ptr() as *mut EventHeader).write(header) };
    Some(entry)
}

/// Unread bytes in the ring buffer above which a record wakes the reader at once.
/// Below, records wake nobody: userspace drains the ring on its own clock, so a
/// busy build costs no wakeup (and context switch) per record.
const WAKE_READER_ABOVE: u64 = 1 << 20;

/// Submits a reserved record (see [`WAKE_READER_ABOVE`]).
#[inline(always)]
pub fn submit<T>(record: RingBufEntry<T>) {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    let flags = if EVENTS.query(BPF_RB_AVAIL_DATA.into()) > WAKE_READER_ABOVE { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    record.submit(flags.into());
}

/// Submits a reserved record and wakes the reader at once: for what userspace
/// must act on while the process still exists (an exec: its executable and its
/// configuration files are read through /proc/PID).
#[inline(always)]
pub fn submit_now<T>(record: RingBufEntry<T>) {
    record.submit(aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP.into());
}

/// Reads a `T` at `base + offset` from kernel memory.
#[inline(always)]
pub fn read_kernel<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: a probe read, which fails cleanly on a bad address.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}
