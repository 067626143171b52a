//! The command line (contract.md): parsed and validated here once, then handed to
//! the commands as plain values.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{daemon::endpoint::ApiEndpoint, export::Format};

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
    /// The report goes to standard error, so the command's standard output stays
    /// its own (`gomod-trace run -- go mod download -json | jq` works); formats
    /// other than text go to --output FILE (sudo gomod-trace run --format html
    /// --output build.html -- go build ./...). On a terminal, a live line shows
    /// the build's progress while it runs.
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
    /// Trace every Go build on this host, keep each finished build in a history
    /// database, and serve metrics and the builds over HTTP.
    ///
    /// Example: sudo gomod-trace daemon --listen 0.0.0.0:9464 --data-dir /var/lib/gomod-trace
    ///
    /// Two listeners. --listen (for Prometheus and probes): /metrics (OpenMetrics),
    /// /healthz, /readyz. --api-listen (the builds: their command lines, Go
    /// configuration and hosts, so root's unix socket by default): /api/v1/builds
    /// (?failed=true&since=6h&kind=KIND&limit=50&page=1), /api/v1/builds/ID
    /// (timeline JSON), /api/v1/running. The API listens off the host only with
    /// --api-token-file. SIGTERM or SIGINT: stop tracing, store the builds in
    /// progress (marked incomplete), exit 0. One daemon per data directory: a second
    /// one exits with an error.
    Daemon(DaemonArgs),
    /// List recorded builds, newest first: asks the daemon's API, or reads its
    /// history database when no daemon answers (see --daemon, --data-dir).
    ///
    /// Example: gomod-trace builds --failed --since 6h
    Builds(BuildsArgs),
    /// Write the timeline of one recorded build.
    ///
    /// Example: gomod-trace export 4242-1733 --format html --output build.html
    Export(ExportArgs),
    /// Print a shell completion script.
    ///
    /// Examples: gomod-trace completions bash > /etc/bash_completion.d/gomod-trace;
    /// gomod-trace completions zsh > "${fpath[1]}/_gomod-trace"
    Completions(CompletionsArgs),
    /// Write the manual pages (gomod-trace.1 and one per subcommand) into DIR.
    /// `cargo xtask man` runs it.
    #[command(hide = true)]
    ManPages(ManPagesArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManPagesArgs {
    /// Where to write the pages (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Where the daemon keeps its history (and its lock).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/gomod-trace";
/// Where the daemon serves its metrics and health.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Address of /metrics, /healthz and /readyz: for Prometheus and probes, it may
    /// listen on the network (e.g. 0.0.0.0:9464). The builds API is not served
    /// here (see --api-listen).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Where the builds API is served: unix:PATH (a socket created 0660, in a
    /// directory created 0750 when missing) or IP:PORT.
    ///
    /// An address off loopback (e.g. 0.0.0.0:9465) needs --api-token-file: the
    /// daemon refuses to start otherwise. To let a group of users read builds
    /// through the socket, give its directory that group and the setgid bit.
    #[arg(long, default_value_t = ApiEndpoint::default_socket(), value_name = "unix:PATH|ADDR")]
    pub api_listen: ApiEndpoint,
    /// Require `Authorization: Bearer TOKEN` on every builds API request, TOKEN
    /// being the content of FILE (surrounding whitespace trimmed; at least 16
    /// printable characters, e.g. from `openssl rand -hex 32`).
    ///
    /// The file must not be open to other users (0600 or 0640), or the daemon
    /// refuses to start. The token is read once, compared in constant time and
    /// never logged. Requests without it, or with another, get 401.
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Directory of the history database.
    #[arg(long, default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Builds older than this are deleted (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub retention: std::time::Duration,
    /// At most this many builds are kept (the oldest go first).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_builds: u64,
    /// A build with no event for this long is closed as it stands, marked
    /// incomplete (its end was never seen).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub idle_timeout: std::time::Duration,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Process name of the Go command: a process that executes it starts a build.
    #[arg(long, default_value = "go", value_name = "NAME")]
    pub go_command: String,
    #[command(flatten)]
    pub judge: JudgeArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// Also push every finished build as an OpenTelemetry trace to this OTLP/HTTP
    /// endpoint.
    ///
    /// Example: --otlp-endpoint http://collector:4318 (an OpenTelemetry Collector;
    /// Jaeger and Grafana Tempo take OTLP/HTTP on port 4318 too). A URL without a
    /// path gets /v1/traces; one with a path is used as it is. Without this flag
    /// the standard variables apply: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it
    /// is), else OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces). Only http:// for now:
    /// for TLS, send to a collector on the host that forwards. One trace per build
    /// (its spans are the timeline's, findings are span events), sent as protobuf,
    /// up to 64 builds a request or each second; retried with backoff on 429, 502,
    /// 503, 504 and connection errors (Retry-After honoured) for up to 2 minutes,
    /// then dropped. Tracing never waits for the endpoint: past 1,024 queued
    /// builds, more are dropped. See gomod_trace_otlp_exported_builds_total and
    /// gomod_trace_otlp_dropped_builds_total{reason} in /metrics.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// A header of every OTLP request (repeatable); values are never logged.
    ///
    /// Example: --otlp-header "authorization=Bearer $TOKEN" (curl's
    /// "Authorization: Bearer …" works too). Added to those of
    /// OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_TRACES_HEADERS (k=v,k2=v2,
    /// values URL-encoded), replacing one of the same name. For a secret, prefer
    /// the variables: a command line is visible to every user of the host.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    pub otlp_headers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct BuildsArgs {
    /// Only builds that failed (exit status other than 0, or never seen to end).
    #[arg(long)]
    pub failed: bool,
    /// Only builds started within this long (e.g. 30m, 6h, 7d).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub since: Option<std::time::Duration>,
    /// Only builds with a finding of this kind (e.g. sumdb_unreachable).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// At most this many builds.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// Where `builds` and `export` find the recorded builds. By default they ask the
/// daemon's API socket (/run/gomod-trace/api.sock) and, when no daemon is there,
/// read the database in /var/lib/gomod-trace.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Ask the daemon's builds API here (its --api-listen: unix:PATH or IP:PORT),
    /// and only here. Without --daemon or --data-dir: unix:/run/gomod-trace/api.sock,
    /// and when no daemon is there, the database in /var/lib/gomod-trace.
    #[arg(long, value_name = "unix:PATH|ADDR", conflicts_with = "data_dir")]
    pub daemon: Option<ApiEndpoint>,
    /// Send the token in FILE (`Authorization: Bearer …`), for a daemon started
    /// with --api-token-file.
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    pub api_token_file: Option<PathBuf>,
    /// Read the history database in this data directory (safe while the daemon
    /// writes it; needs read access to the directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A build id, as `gomod-trace builds` lists it.
    #[arg(value_name = "BUILD_ID")]
    pub id: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the timeline to FILE (created or replaced) instead of the terminal
    /// (for `run`, needed by every format but text).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Text format: every span on its own line, and every request as `go -x`
    /// prints it, instead of one line per endpoint and per module.
    #[arg(long, short)]
    pub verbose: bool,
    /// Text format: only what failed (endpoints, modules and spans with a failure,
    /// and the findings).
    #[arg(long)]
    pub only_failures: bool,
}

/// How findings are judged (the same for `run`, `replay` and the daemon).
#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// A connection that receives nothing for this long while a module's zip is
    /// arriving is a stalled transfer (cmd/go has no response timeout: it would
    /// wait forever). Counted to the close when nothing came after (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stall_threshold: std::time::Duration,
}

impl JudgeArgs {
    pub fn settings(&self) -> crate::correlate::Settings {
        crate::correlate::Settings { stall_threshold_ns: self.stall_threshold.as_nanos() as u64 }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub judge: JudgeArgs,
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
    #[command(flatten)]
    pub judge: JudgeArgs,
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

/// How much the daemon keeps of what builds do: a build cannot grow it without
/// bound. What a limit refuses is counted in gomod_trace_dropped_total{what} and
/// the build it belonged to is marked incomplete, with a note. The defaults are
/// far above what real builds need.
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitsArgs {
    /// Spans of one build; past it, its events that would open more are dropped.
    #[arg(long, default_value_t = crate::correlate::Limits::default().spans_per_build, value_name = "N")]
    pub max_spans_per_build: usize,
    /// Builds traced at once; past it, a new build is not traced.
    #[arg(long, default_value_t = crate::correlate::Limits::default().open_builds, value_name = "N")]
    pub max_open_builds: usize,
    /// Connections of builds tracked at once; past it, new ones are not traced.
    #[arg(long, default_value_t = crate::correlate::Limits::default().connections, value_name = "N")]
    pub max_connections: usize,
    /// Processes of builds tracked at once; past it, new ones are not.
    #[arg(long, default_value_t = crate::correlate::Limits::default().processes, value_name = "N")]
    pub max_processes: usize,
}

impl LimitsArgs {
    pub fn limits(&self) -> crate::correlate::Limits {
        crate::correlate::Limits {
            spans_per_build: self.max_spans_per_build,
            open_builds: self.max_open_builds,
            connections: self.max_connections,
            processes: self.max_processes,
        }
    }
}
