//! `gomod-trace completions SHELL` and the manual pages, both generated from the
//! command line's own definition (cli.rs), so they never disagree with --help.
use std::{io::Write as _, path::Path};

use clap::CommandFactory as _;

use super::EXIT_TRACER_ERROR;
use crate::cli::Cli;

pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gomod-trace", &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("gomod-trace: cannot write the completion script: {e}");
            EXIT_TRACER_ERROR
        }
    }
}

pub fn man_pages(dir: &Path) -> i32 {
    let written = std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gomod-trace: cannot write the manual pages into {}: {e}", dir.display());
            EXIT_TRACER_ERROR
        }
    }
}
