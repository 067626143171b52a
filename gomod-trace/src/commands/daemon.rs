//! `gomod-trace daemon`: the command line into the daemon's configuration.
use crate::{
    cli::DaemonArgs,
    commands::EXIT_TRACER_ERROR,
    daemon::{self, DaemonConfig, otlp::OtlpConfig},
    history::Retention,
};

pub async fn daemon(args: DaemonArgs) -> i32 {
    let otlp = match OtlpConfig::resolve(args.otlp_endpoint.as_deref(), &args.otlp_headers, |name| std::env::var(name).ok()) {
        Ok(otlp) => otlp,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    daemon::run(DaemonConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        retention: Retention { max_age: args.retention, max_builds: args.max_builds },
        idle_timeout: args.idle_timeout,
        go_command: args.go_command,
        settings: args.judge.settings(),
        otlp,
        limits: args.limits.limits(),
    })
    .await
}
