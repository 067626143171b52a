//! Checks of the export formats in the tools that read them (installed by
//! `cargo xtask setup`, see xtask/src/viewers.rs), each against the JSON
//! timeline of the same build.
pub mod html;
pub mod otlp;
pub mod perfetto;

use std::path::PathBuf;

/// Where `cargo xtask setup` installs the checkers' tools: `venv` (Python) and
/// `node` (npm packages).
pub fn tools_dir() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".local/share/gomod-trace")
}
