//! gomod-trace: an eBPF tracer that explains what the Go toolchain does on the
//! network while it fetches modules.
//!
//! Data flows one way: `probe` (kernel) → `decode` → `event` stream (recordable) →
//! `correlate` → `timeline` → `export`. Only `probe` touches the kernel.
pub mod buildfs;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod correlate;
pub mod daemon;
pub mod decode;
pub mod event;
pub mod export;
pub mod goenv;
/// Reads Go executables: build version, struct offsets and uprobe attach points.
pub mod gobin;
pub mod goerrors;
pub mod history;
pub mod metrics;
pub mod probe;
pub mod procstat;
pub mod proto;
pub mod record;
pub mod redact;
pub mod terminal;
pub mod timeline;
