//! The gomod-trace binary: parse the command line, set up logging, dispatch.
use clap::Parser as _;
use gomod_trace::{
    cli::{Cli, Command},
    commands::{self, EXIT_TRACER_ERROR},
};

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOMOD_TRACE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match cli.command {
        Command::Run(args) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(commands::run::run(&args)),
            Err(e) => {
                eprintln!("gomod-trace: cannot start the async runtime: {e}");
                EXIT_TRACER_ERROR
            }
        },
        Command::Replay(args) => commands::replay::replay(&args),
        Command::Doctor => commands::doctor::doctor(),
    };
    std::process::exit(code);
}
