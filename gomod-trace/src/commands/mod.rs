//! One module per subcommand; each returns the process exit status.
pub mod daemon;
pub mod doctor;
pub mod history;
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
/// format written to a terminal.
pub fn check_output(output: &OutputArgs, console: Console) -> Result<(), String> {
    if output.output.is_none() && output.format.is_binary() && console.is_terminal() {
        let format = format!("{:?}", output.format).to_lowercase();
        return Err(format!("the {format} format is binary and will not be written to a terminal: give --output FILE"));
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
            console.write(&bytes).map_err(|e| format!("cannot write to {name}: {e}"))
        }
    }
}
