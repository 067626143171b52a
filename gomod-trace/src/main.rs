//! The gomod-trace binary: parse the command line, set up logging, dispatch.
use clap::Parser as _;
use gomod_trace::{
    cli::{Cli, Command, LogFormat},
    commands::{self, EXIT_TRACER_ERROR},
};

/// Runs an async command on a runtime of its own.
fn runtime<F: std::future::Future<Output = i32>>(command: impl FnOnce() -> F) -> i32 {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime.block_on(command()),
        Err(e) => {
            eprintln!("gomod-trace: cannot start the async runtime: {e}");
            EXIT_TRACER_ERROR
        }
    }
}

fn main() {
    let cli = Cli::parse();
    // The daemon logs what it does (info); the one-shot commands only problems.
    let (default_level, json) = match &cli.command {
        Command::Daemon(args) => ("info", args.log_format == LogFormat::Json),
        _ => ("warn", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GOMOD_TRACE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    let code = match cli.command {
        Command::Run(args) => runtime(|| commands::run::run(&args)),
        Command::Daemon(args) => runtime(|| commands::daemon::daemon(args)),
        Command::Replay(args) => commands::replay::replay(&args),
        Command::Doctor => commands::doctor::doctor(),
        Command::Builds(args) => runtime(|| commands::history::builds(&args)),
        Command::Export(args) => runtime(|| commands::history::export(&args)),
        Command::Completions(args) => commands::manual::completions(args.shell),
        Command::ManPages(args) => commands::manual::man_pages(&args.dir),
    };
    std::process::exit(code);
}
