//! `gomod-trace daemon`: the command line into the daemon's configuration.
use crate::{
    cli::DaemonArgs,
    commands::EXIT_TRACER_ERROR,
    daemon::{self, DaemonConfig, auth::ApiToken, otlp::OtlpConfig},
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
    let api_token = match args.api_token_file.as_deref().map(ApiToken::read).transpose() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    daemon::run(DaemonConfig {
        listen: args.listen,
        api: args.api_listen,
        api_token,
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
