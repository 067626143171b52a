//! One module per subcommand; each returns the process exit status.
pub mod daemon;
pub mod doctor;
pub mod history;
pub mod manual;
mod progress;
pub mod replay;
pub mod run;

use std::io::{IsTerminal as _, Write as _};

use crate::{
    cli::OutputArgs,
    export::{self, View},
    timeline::Timeline,
};

/// Exit status for errors of the tracer itself (contract.md: 70+).
pub const EXIT_TRACER_ERROR: i32 = 70;
/// Exit status of the daemon when this host cannot run the probes (EX_CONFIG):
/// the systemd unit and the DaemonSet do not restart on it.
pub const EXIT_UNSUPPORTED: i32 = 78;

/// Where a timeline goes when no --output is given: `run` keeps standard output
/// for the command it runs (`gomod-trace run -- go mod download -json | jq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Stdout,
    Stderr,
}

impl Console {
    fn is_terminal(self) -> bool {
        match self {
            Console::Stdout => std::io::stdout().is_terminal(),
            Console::Stderr => std::io::stderr().is_terminal(),
        }
    }

    fn write(self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Console::Stdout => std::io::stdout().lock().write_all(bytes).and_then(|()| std::io::stdout().flush()),
            Console::Stderr => std::io::stderr().lock().write_all(bytes),
        }
    }
}

/// Refuses, before any work is done, what could only fail at the end: a binary
/// format written to a terminal, or one for programs written to standard error,
/// where the traced command writes too (`2> timeline.json` would hold go's
/// messages as well).
pub fn check_output(output: &OutputArgs, console: Console) -> Result<(), String> {
    let name = || clap::ValueEnum::to_possible_value(&output.format).map(|v| v.get_name().to_string()).unwrap_or_default();
    if output.output.is_none() && console == Console::Stderr && !output.format.is_for_people() {
        return Err(format!(
            "the {} format is for programs: give --output FILE (run writes its report to standard error, which the command writes to too)",
            name()
        ));
    }
    if output.output.is_none() && output.format.is_binary() && console.is_terminal() {
        return Err(format!("the {} format is binary and will not be written to a terminal: give --output FILE", name()));
    }
    Ok(())
}

/// The terminal's width when `console` is one.
fn terminal_width(console: Console) -> Option<usize> {
    let (terminal_size::Width(width), _) = match console {
        Console::Stdout => terminal_size::terminal_size_of(std::io::stdout()),
        Console::Stderr => terminal_size::terminal_size_of(std::io::stderr()),
    }?;
    Some(usize::from(width))
}

/// Writes a rendered timeline where the user asked for it.
pub fn write_timeline(timeline: &Timeline, output: &OutputArgs, console: Console) -> Result<(), String> {
    check_output(output, console)?;
    let mut view = View { color: false, width: None, verbose: output.verbose, only_failures: output.only_failures };
    match &output.output {
        Some(path) => {
            let bytes = export::render(timeline, output.format, &view);
            std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => {
            if console.is_terminal() {
                view.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
                view.width = terminal_width(console);
            }
            let bytes = export::render(timeline, output.format, &view);
            let name = if console == Console::Stdout { "standard output" } else { "standard error" };
            match console.write(&bytes) {
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                written => written.map_err(|e| format!("cannot write to {name}: {e}")),
            }
        }
    }
}
