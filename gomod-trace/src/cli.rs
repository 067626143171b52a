//! The command line (contract.md): parsed and validated here once, then handed to
//! the commands as plain values.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::export::Format;

/// Explains what the Go toolchain does on the network while it fetches modules:
/// every DNS lookup, TCP connect, TLS handshake and HTTP exchange of a build, seen
/// from the kernel (eBPF), with findings that say what went wrong and what it cost.
#[derive(Debug, Parser)]
#[command(name = "gomod-trace", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command under the tracer and print the timeline of every Go build it
    /// started. Exits with the command's own status.
    ///
    /// Example: sudo gomod-trace run -- go mod download
    ///
    /// Tracing starts before the command does, so nothing it does is missed. Errors
    /// of the tracer itself (no privileges, no BTF, attach failure) are one line on
    /// stderr and exit status 70; the command is then not started.
    Run(RunArgs),
    /// Rebuild the timeline from events recorded with `run --record`: offline, no
    /// root needed, byte-identical to what the live run printed.
    Replay(ReplayArgs),
    /// Check what this host supports (privileges, BTF, tracepoints, cgroup v2) by
    /// loading and attaching the tracer's programs, and say what is missing.
    Doctor,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the timeline to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Also write the decoded kernel events as JSON lines (for `replay` and bug
    /// reports; secrets in URLs are not in it).
    #[arg(long, value_name = "EVENTS.jsonl")]
    pub record: Option<PathBuf>,
    /// Process name of the Go command: a process that executes it starts a build.
    #[arg(long, default_value = "go", value_name = "NAME")]
    pub go_command: String,
    /// The command to run, after `--`.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Events recorded with `gomod-trace run --record`.
    #[arg(value_name = "EVENTS.jsonl")]
    pub events: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let cli = Cli::try_parse_from(["gomod-trace", "run", "--format", "json", "--", "go", "mod", "download"]).unwrap();
        let Command::Run(run) = cli.command else { panic!() };
        assert_eq!(run.command, ["go", "mod", "download"]);
        assert_eq!(run.output.format, Format::Json);
        assert!(Cli::try_parse_from(["gomod-trace", "run"]).is_err());
        assert!(Cli::try_parse_from(["gomod-trace", "run", "--format", "xml", "--", "go"]).is_err());
    }
}
