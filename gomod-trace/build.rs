//! Builds the kernel programs (gomod-trace-ebpf's bins) for the BPF target with the
//! pinned nightly and bpf-linker (`cargo xtask setup` installs both), so that the
//! object embedded in the binary always matches its source.
fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "gomod-trace-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../gomod-trace-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::Nightly)
}
