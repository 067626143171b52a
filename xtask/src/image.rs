//! `cargo xtask image`: the container image of deploy/container/Containerfile,
//! built with podman (no daemon needed). The binary in it is a release build
//! linked statically against glibc, so the image needs no base layer.
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use gomod_trace_lab::{IMAGE, image_tag};

use crate::{cargo, output, status, step, workspace_root};

/// Builds the static binary; returns its path.
fn static_binary() -> Result<PathBuf> {
    let host = output(std::process::Command::new("rustc").arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")?;
    step(&format!("building a static release binary for {host}"));
    // Only the host target gets crt-static: the eBPF programs, built by the
    // build script for their own target, are not touched.
    let flags = format!("CARGO_TARGET_{}_RUSTFLAGS", host.to_uppercase().replace('-', "_"));
    status(cargo().args(["build", "--release", "-p", "gomod-trace", "--target", &host]).env(flags, "-C target-feature=+crt-static"))?;
    Ok(workspace_root().join("target").join(&host).join("release/gomod-trace"))
}

/// Builds the image; returns its versioned tag, the one the DaemonSet names
/// (`check-deploy` holds it to that); `latest` is only a convenience.
pub fn build() -> Result<String> {
    let binary = static_binary()?;
    let context = tempfile::tempdir()?;
    std::fs::copy(&binary, context.path().join("gomod-trace")).context("copying the binary into the build context")?;
    let tag = image_tag();
    step(&format!("building the image {tag} with podman"));
    status(
        std::process::Command::new("podman")
            .args(["build", "--quiet", "--file"])
            .arg(workspace_root().join("deploy/container/Containerfile"))
            .args(["--tag", &tag, "--tag", &format!("{IMAGE}:latest")])
            .arg(context.path()),
    )?;
    Ok(tag)
}
