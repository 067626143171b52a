//! Sockets that build processes open: `cgroup/connect4|6` (TCP and connected UDP,
//! which is how Go's resolver asks DNS) and `cgroup/sendmsg4|6` (unconnected UDP,
//! as libc resolvers may use). Process context: the current tgid is the owner.
//! Always allow the operation: the tracer watches, it never decides. A connect's
//! socket cookie is also filed under the caller's fd, for its errors
//! (connect_result.rs).
use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_NOEXIST, bpf_sock_addr},
    helpers::generated::bpf_get_socket_cookie,
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use gomod_trace_ebpf::{ConnectRecord, SocketEntry, hook, kind};

use crate::{
    connect_result::remember_socket,
    wire::{SOCKETS, reserve, submit, tracked_build},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let _ = on_sock_addr(&ctx, AF_INET, hook::CONNECT);
    1
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let _ = on_sock_addr(&ctx, AF_INET6, hook::CONNECT);
    1
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    let _ = on_sock_addr(&ctx, AF_INET, hook::SENDMSG);
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    let _ = on_sock_addr(&ctx, AF_INET6, hook::SENDMSG);
    1
}

fn on_sock_addr(ctx: &SockAddrContext, family: u16, hook: u16) -> Option<()> {
    let tgid = ctx.tgid();
    let build = tracked_build(tgid)?;
    // SAFETY: a sock_addr context is a valid argument of this helper.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if hook == hook::CONNECT {
        // Whatever the protocol: a later error on this fd must name this socket,
        // not an older one that had the same fd number.
        remember_socket(tgid, cookie);
    }
    let sa: *const bpf_sock_addr = ctx.sock_addr;
    // Context fields are read one by one with plain loads at fixed offsets: the
    // verifier refuses loads through a pointer derived from the context.
    // SAFETY: the context the kernel passed to this program.
    let protocol = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*sa).protocol)) } as u16;
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return None;
    }
    let entry = SocketEntry { pid: tgid, build, ..Default::default() };
    // A datagram socket announces itself on its first sendmsg only.
    let flags = if hook == hook::SENDMSG { BPF_NOEXIST as u64 } else { 0 };
    SOCKETS.insert(&cookie, &entry, flags).ok()?;

    // SAFETY: as above; user_ip4 only for AF_INET, user_ip6 only for AF_INET6.
    let (words, port) = unsafe {
        let port = core::ptr::read_volatile(core::ptr::addr_of!((*sa).user_port));
        if family == AF_INET {
            ([core::ptr::read_volatile(core::ptr::addr_of!((*sa).user_ip4)), 0, 0, 0], port)
        } else {
            let ip6 = core::ptr::addr_of!((*sa).user_ip6) as *const u32;
            (
                [
                    core::ptr::read_volatile(ip6),
                    core::ptr::read_volatile(ip6.add(1)),
                    core::ptr::read_volatile(ip6.add(2)),
                    core::ptr::read_volatile(ip6.add(3)),
                ],
                port,
            )
        }
    };
    let mut addr = [0u8; 16];
    for (i, word) in words.iter().enumerate() {
        addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    let mut record = reserve::<ConnectRecord>(kind::CONNECT)?;
    let r = record.as_mut_ptr();
    // SAFETY: reserved record.
    unsafe {
        (*r).cookie = cookie;
        (*r).build = build;
        (*r).family = family;
        (*r).protocol = protocol;
        (*r).port = u16::from_be(port as u16);
        (*r).hook = hook;
        (*r)._pad = 0;
        (*r).addr = addr;
    }
    submit(record);
    Some(())
}
