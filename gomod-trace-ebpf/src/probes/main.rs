//! The kernel programs: record facts about Go builds, never interpret them.
//! Every program's first step for a process or socket that is not part of a build
//! is one map lookup, after which it returns: the rest of the machine pays nothing
//! more. Field offsets come from userspace (`CONFIG`), never from this file.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", expect(internal_features, reason = "atomic_xadd"))]

#[cfg(target_arch = "bpf")]
mod connect_result;
#[cfg(target_arch = "bpf")]
mod files;
#[cfg(target_arch = "bpf")]
mod payload;
#[cfg(target_arch = "bpf")]
mod process;
#[cfg(target_arch = "bpf")]
mod requests;
#[cfg(target_arch = "bpf")]
mod socket;
#[cfg(target_arch = "bpf")]
mod tcp;
#[cfg(target_arch = "bpf")]
mod wire;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
