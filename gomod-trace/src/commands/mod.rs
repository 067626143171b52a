//! One module per subcommand; each returns the process exit status.
pub mod daemon;
pub mod doctor;
pub mod history;
pub mod replay;
pub mod run;

use std::{io::IsTerminal as _, io::Write as _};

use crate::{cli::OutputArgs, export, timeline::Timeline};

/// Exit status for errors of the tracer itself (contract.md: 70+).
pub const EXIT_TRACER_ERROR: i32 = 70;

/// Writes a rendered timeline where the user asked for it.
pub fn write_timeline(timeline: &Timeline, output: &OutputArgs) -> Result<(), String> {
    match &output.output {
        Some(path) => {
            let text = export::render(timeline, output.format, false);
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let text = export::render(timeline, output.format, color);
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()).map_err(|e| format!("cannot write to standard output: {e}"))
        }
    }
}
