//! TCP connections of build processes: `sock:inet_sock_set_state` (SYN_SENT →
//! ESTABLISHED or CLOSE, with the socket error at close), `tcp:tcp_retransmit_skb`
//! (unanswered SYNs), `tcp:tcp_receive_reset`, `skb:kfree_skb` (drop reasons).
//! These fire in softirq context too, so sockets are found by kernel address in
//! `TCP_SOCKETS`, filled when a tracked process moves a socket to SYN_SENT.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use gomod_trace_ebpf::{SocketEntry, SocketSignalRecord, TcpStateRecord, kind};

use crate::wire::{SOCKETS, TCP_SOCKETS, config, current_tgid, read_kernel, reserve, submit, tracked_build};

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;
// include/net/tcp_states.h: fixed since the first Linux TCP.
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;

/// Reads a tracepoint field at an offset userspace read from the format file.
#[inline(always)]
fn field<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    // SAFETY: a probe read of the tracepoint's own record.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = on_set_state(&ctx);
    0
}

fn on_set_state(ctx: &TracePointContext) -> Option<()> {
    let config = config()?;
    let t = &config.tracepoints;
    let new_state: i32 = field(ctx, t.state_newstate)?;
    let skaddr: u64 = field(ctx, t.state_skaddr)?;
    let cookie = if new_state == TCP_SYN_SENT {
        // In connect(), in the connecting process: the one lookup is its pid.
        tracked_build(current_tgid())?;
        if field::<u16>(ctx, t.state_protocol)? != IPPROTO_TCP {
            return None;
        }
        let cookie = read_kernel::<u64>(skaddr, config.kernel.sock_cookie)?;
        if cookie == 0 {
            return None;
        }
        TCP_SOCKETS.insert(&skaddr, &cookie, 0).ok()?;
        cookie
    } else {
        // Any other transition, in any context: the one lookup is the socket.
        // SAFETY: copied out at once.
        unsafe { TCP_SOCKETS.get(&skaddr) }.copied()?
    };
    let old_state: i32 = field(ctx, t.state_oldstate)?;

    let family: u16 = field(ctx, t.state_family)?;
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    if family == AF_INET {
        saddr[..4].copy_from_slice(&field::<[u8; 4]>(ctx, t.state_saddr)?);
        daddr[..4].copy_from_slice(&field::<[u8; 4]>(ctx, t.state_daddr)?);
    } else {
        saddr = field(ctx, t.state_saddr_v6)?;
        daddr = field(ctx, t.state_daddr_v6)?;
    }
    let closing = new_state == TCP_CLOSE;
    let counters = if closing {
        // SAFETY: copied out at once.
        unsafe { SOCKETS.get(&cookie) }.copied().unwrap_or_default()
    } else {
        SocketEntry::default()
    };
    let sk_err = if closing { read_kernel::<i32>(skaddr, config.kernel.sock_err).unwrap_or(0) } else { 0 };

    if let Some(mut record) = reserve::<TcpStateRecord>(kind::TCP_STATE) {
        let r = record.as_mut_ptr();
        // SAFETY: reserved record.
        unsafe {
            (*r).cookie = cookie;
            (*r).old_state = old_state;
            (*r).new_state = new_state;
            (*r).family = family;
            (*r).sport = field(ctx, t.state_sport).unwrap_or(0);
            (*r).dport = field(ctx, t.state_dport).unwrap_or(0);
            (*r)._pad = 0;
            (*r).sk_err = sk_err;
            (*r).saddr = saddr;
            (*r).daddr = daddr;
            (*r)._pad2 = 0;
            (*r).counters = counters;
        }
        submit(record);
    }
    if closing {
        let _ = TCP_SOCKETS.remove(&skaddr);
        let _ = SOCKETS.remove(&cookie);
    }
    Some(())
}

fn signal(kind: u32, cookie: u64, value: u32) -> Option<()> {
    let mut record = reserve::<SocketSignalRecord>(kind)?;
    let r = record.as_mut_ptr();
    // SAFETY: reserved record.
    unsafe {
        (*r).cookie = cookie;
        (*r).value = value;
        (*r)._pad = 0;
    }
    submit(record);
    Some(())
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let _ = on_retransmit(&ctx);
    0
}

fn on_retransmit(ctx: &TracePointContext) -> Option<()> {
    let t = &config()?.tracepoints;
    let skaddr: u64 = field(ctx, t.retransmit_skaddr)?;
    // SAFETY: copied out at once.
    let cookie = unsafe { TCP_SOCKETS.get(&skaddr) }.copied()?;
    let state: i32 = field(ctx, t.retransmit_state)?;
    signal(kind::TCP_RETRANSMIT, cookie, state as u32)
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let _ = on_reset(&ctx);
    0
}

fn on_reset(ctx: &TracePointContext) -> Option<()> {
    let t = &config()?.tracepoints;
    let skaddr: u64 = field(ctx, t.reset_skaddr)?;
    // SAFETY: copied out at once.
    let cookie = unsafe { TCP_SOCKETS.get(&skaddr) }.copied()?;
    signal(kind::TCP_RESET, cookie, 0)
}

#[tracepoint]
pub fn kfree_skb(ctx: TracePointContext) -> u32 {
    let _ = on_kfree_skb(&ctx);
    0
}

fn on_kfree_skb(ctx: &TracePointContext) -> Option<()> {
    let config = config()?;
    let t = &config.tracepoints;
    // Received packets name their socket in `rx_sk` (6.11+); sent ones own it.
    let mut sk: u64 = 0;
    if config.kfree_has_rx_sk == 1 {
        sk = field(ctx, t.kfree_rx_sk)?;
    }
    if sk == 0 {
        let skb: u64 = field(ctx, t.kfree_skbaddr)?;
        sk = read_kernel::<u64>(skb, config.kernel.skb_sk)?;
    }
    // SAFETY: copied out at once.
    let cookie = unsafe { TCP_SOCKETS.get(&sk) }.copied()?;
    let reason: u32 = field(ctx, t.kfree_reason)?;
    signal(kind::SKB_DROP, cookie, reason)
}
