//! `gomod-trace daemon`: the command line into the daemon's configuration.
use crate::{
    cli::DaemonArgs,
    daemon::{self, DaemonConfig},
    history::Retention,
};

pub async fn daemon(args: DaemonArgs) -> i32 {
    daemon::run(DaemonConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        retention: Retention { max_age: args.retention, max_builds: args.max_builds },
        idle_timeout: args.idle_timeout,
        go_command: args.go_command,
        settings: args.judge.settings(),
    })
    .await
}
