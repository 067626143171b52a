//! Payload prefixes and byte counts of build sockets: `cgroup_skb/egress|ingress`
//! on the cgroup v2 root. The first few payload-bearing segments of each direction
//! are copied (DNS messages, TLS handshake records, HTTP/1 first lines, CONNECT);
//! the rest are only counted. Parsing happens in userspace. Always lets the packet
//! through.
use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_get_socket_cookie, bpf_skb_load_bytes},
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use gomod_trace_ebpf::{
    PAYLOAD_CAPTURE, PayloadRecord, TCP_SEGMENTS_CAPTURED, UDP_DATAGRAMS_CAPTURED, direction, kind,
};

use crate::wire::{SOCKETS, reserve, submit};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[cgroup_skb(egress)]
pub fn skb_egress(ctx: SkBuffContext) -> i32 {
    let _ = on_skb(&ctx, direction::EGRESS);
    1
}

#[cgroup_skb(ingress)]
pub fn skb_ingress(ctx: SkBuffContext) -> i32 {
    let _ = on_skb(&ctx, direction::INGRESS);
    1
}

/// Atomic add: ingress and egress of one socket may run on two CPUs at once. The
/// BPF target has no `core::sync::atomic` read-modify-write, hence the intrinsic.
#[inline(always)]
fn add(counter: *mut u64, n: u64) {
    // SAFETY: `counter` points into a map value that outlives this program run.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            counter, n,
        );
    }
}

fn on_skb(ctx: &SkBuffContext, dir: u16) -> Option<()> {
    // SAFETY: an skb context is a valid argument of this helper.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb as *mut _) };
    let entry = SOCKETS.get_ptr_mut(&cookie)?;

    // cgroup_skb sees the packet from its network header on.
    let first: u8 = ctx.load(0).ok()?;
    let (protocol, l4) = match first >> 4 {
        4 => (ctx.load::<u8>(9).ok()?, ((first & 0x0f) as usize) * 4),
        6 => (ctx.load::<u8>(6).ok()?, 40),
        _ => return None,
    };
    let payload_at = match protocol {
        IPPROTO_TCP => l4 + ((ctx.load::<u8>(l4 + 12).ok()? >> 4) as usize) * 4,
        IPPROTO_UDP => l4 + 8,
        _ => return None,
    };
    let len = ctx.len() as usize;
    if len <= payload_at {
        return None;
    }
    let payload_len = (len - payload_at) as u32;

    // SAFETY: `entry` points into the map value.
    let (bytes, segments, captured) = unsafe {
        if dir == direction::EGRESS {
            (
                core::ptr::addr_of_mut!((*entry).bytes_sent),
                core::ptr::addr_of_mut!((*entry).segments_sent),
                core::ptr::addr_of_mut!((*entry).captured_sent),
            )
        } else {
            (
                core::ptr::addr_of_mut!((*entry).bytes_received),
                core::ptr::addr_of_mut!((*entry).segments_received),
                core::ptr::addr_of_mut!((*entry).captured_received),
            )
        }
    };
    add(bytes, payload_len as u64);
    add(segments, 1);
    if dir == direction::INGRESS {
        // SAFETY: `entry` points into the map value; plain 64-bit stores (a racing
        // segment on another CPU writes a time just as good).
        unsafe {
            let now = bpf_ktime_get_ns();
            let last = (*entry).last_received_ns;
            if last == 0 {
                (*entry).first_received_ns = now;
            } else if now > last && now - last > (*entry).longest_silence_ns {
                (*entry).longest_silence_ns = now - last;
                (*entry).longest_silence_end_ns = now;
            }
            (*entry).last_received_ns = now;
        }
    } else {
        // SAFETY: as above.
        unsafe { (*entry).last_sent_ns = bpf_ktime_get_ns() };
    }
    let limit = if protocol == IPPROTO_TCP { TCP_SEGMENTS_CAPTURED } else { UDP_DATAGRAMS_CAPTURED };
    // SAFETY: a plain read of the map value; a racing increment only lets one
    // more segment be copied.
    if unsafe { captured.read_volatile() } >= limit {
        return None;
    }
    add(captured, 1);

    let copy = payload_len.min(PAYLOAD_CAPTURE as u32);
    // The identity on 1..=PAYLOAD_CAPTURE, written so that the verifier sees those
    // bounds on the length it is given (PAYLOAD_CAPTURE is a power of two).
    let copy = ((copy.wrapping_sub(1)) & (PAYLOAD_CAPTURE as u32 - 1)) + 1;
    let mut record = reserve::<PayloadRecord>(kind::PAYLOAD)?;
    let r = record.as_mut_ptr();
    // SAFETY: reserved record; `copy` is within 1..=PAYLOAD_CAPTURE.
    unsafe {
        (*r).cookie = cookie;
        (*r).direction = dir;
        (*r).protocol = protocol as u16;
        (*r).segment_len = payload_len;
        (*r)._pad = 0;
        let dst = core::ptr::addr_of_mut!((*r).data) as *mut core::ffi::c_void;
        let ok = bpf_skb_load_bytes(ctx.skb.skb as *const _, payload_at as u32, dst, copy) == 0;
        (*r).captured_len = if ok { copy } else { 0 };
    }
    submit(record);
    Some(())
}
