//! `gomod-trace builds` and `gomod-trace export`: the recorded builds, from the
//! daemon's API or straight from its history database (WAL: safe while the
//! daemon writes it). Both print the same whichever they read.
use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use super::{Console, EXIT_TRACER_ERROR, write_timeline};
use crate::{
    cli::{BuildsArgs, DEFAULT_DATA_DIR, DEFAULT_LISTEN, ExportArgs, HistoryArgs},
    daemon::{
        api::valid_build_id,
        client::{self, ClientError},
    },
    history::{BuildSummary, Filter, History},
    timeline::{Build, FINDING_KINDS, SCHEMA_VERSION, Timeline},
};

/// Exit status when the asked-for build is not in the history.
pub const EXIT_NOT_FOUND: i32 = 1;

/// Where the recorded builds are read.
enum Source {
    /// The daemon's API; with `fallback`, the default database when nothing
    /// listens there.
    Api { addr: SocketAddr, fallback: bool },
    Database(PathBuf),
}

impl Source {
    fn of(args: &HistoryArgs) -> Source {
        match (args.daemon, &args.data_dir) {
            (_, Some(dir)) => Source::Database(dir.clone()),
            (Some(addr), None) => Source::Api { addr, fallback: false },
            (None, None) => Source::Api { addr: DEFAULT_LISTEN.parse().expect("the default address parses"), fallback: true },
        }
    }

    /// Asks the API (`api`) or reads the database (`database`), as chosen.
    async fn read<T, F>(
        self,
        api: impl FnOnce(SocketAddr) -> F,
        database: impl FnOnce(&History) -> Result<T, crate::history::HistoryError>,
    ) -> Result<T, String>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        let history = match self {
            Source::Database(dir) => open(&dir)?,
            Source::Api { addr, fallback } => match api(addr).await {
                Err(ClientError::NotRunning(_)) if fallback => {
                    open(Path::new(DEFAULT_DATA_DIR)).map_err(|e| format!("no daemon answers at {addr}, and {e}"))?
                }
                answer => return answer.map_err(|e| e.to_string()),
            },
        };
        database(&history).map_err(|e| e.to_string())
    }
}

fn open(dir: &Path) -> Result<History, String> {
    match History::open_existing(dir) {
        Ok(Some(history)) => Ok(history),
        Ok(None) => Err(format!(
            "no history in {}: no daemon has run with this data directory (see --daemon, --data-dir)",
            dir.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The API's listing: the same filter as query parameters.
async fn list_api(addr: SocketAddr, args: &BuildsArgs) -> Result<Vec<BuildSummary>, ClientError> {
    let mut path = format!("/api/v1/builds?limit={}", args.limit);
    if args.failed {
        path.push_str("&failed=true");
    }
    if let Some(since) = args.since {
        path.push_str(&format!("&since={}s", since.as_secs().max(1)));
    }
    if let Some(kind) = &args.kind {
        path.push_str(&format!("&kind={kind}"));
    }
    #[derive(serde::Deserialize)]
    struct Listing {
        builds: Vec<BuildSummary>,
    }
    Ok(client::get(addr, &path).await?.json::<Listing>(addr)?.builds)
}

/// The API's timeline of one build; `None` when it does not know the build.
async fn get_api(addr: SocketAddr, id: &str) -> Result<Option<Build>, ClientError> {
    let answer = client::get(addr, &format!("/api/v1/builds/{id}")).await?;
    if answer.status == 404 {
        return Ok(None);
    }
    Ok(answer.json::<Timeline>(addr)?.builds.into_iter().next())
}

pub async fn builds(args: &BuildsArgs) -> i32 {
    if let Some(kind) = &args.kind
        && !FINDING_KINDS.contains(&kind.as_str())
    {
        eprintln!("gomod-trace: unknown finding kind {kind:?}; known: {}", FINDING_KINDS.join(", "));
        return 2;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
    let filter = Filter {
        failed: args.failed,
        since_unix_ns: args.since.map(|ago| now - ago.as_nanos() as i128),
        finding_kind: args.kind.clone(),
        limit: args.limit,
        offset: 0,
    };
    let builds = match Source::of(&args.history).read(|addr| list_api(addr, args), |h| h.list(&filter)).await {
        Ok(builds) => builds,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    let mut out = String::new();
    if args.json {
        out = serde_json::to_string_pretty(&builds).unwrap_or_default();
        out.push('\n');
    } else {
        out.push_str(&format!("{:<26} {:<31} {:>4}  {:<22} {}\n", "ID", "STARTED", "EXIT", "COMMAND", "FINDINGS"));
        for b in &builds {
            let exit = b.exit_code.map_or("-".to_string(), |c| c.to_string());
            let mut command = b.command.join(" ");
            if command.chars().count() > 22 {
                command = command.chars().take(21).collect::<String>() + "…";
            }
            let findings = if b.findings.is_empty() { "-".to_string() } else { b.findings.join(",") };
            let complete = if b.complete { "" } else { " (incomplete)" };
            // Everything in the row came from the history or a daemon's answer.
            let row = format!("{:<26} {:<31} {exit:>4}  {command:<22} {findings}{complete}", b.id, b.started_at);
            out.push_str(&crate::terminal::printable(&row));
            out.push('\n');
        }
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).is_err() {
        return EXIT_TRACER_ERROR;
    }
    0
}

pub async fn export(args: &ExportArgs) -> i32 {
    if let Err(e) = super::check_output(&args.output, Console::Stdout) {
        eprintln!("gomod-trace: {e}");
        return EXIT_TRACER_ERROR;
    }
    if !valid_build_id(&args.id) {
        eprintln!("gomod-trace: {:?} is not a build id: ids are digits and dashes, as `gomod-trace builds` lists them", args.id);
        return 2;
    }
    match Source::of(&args.history).read(|addr| get_api(addr, &args.id), |h| h.get(&args.id)).await {
        Ok(Some(build)) => {
            let timeline = Timeline { schema_version: SCHEMA_VERSION, builds: vec![build] };
            match write_timeline(&timeline, &args.output, Console::Stdout) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("gomod-trace: {e}");
                    EXIT_TRACER_ERROR
                }
            }
        }
        Ok(None) => {
            eprintln!("gomod-trace: no build {} in the history (gomod-trace builds lists them)", args.id);
            EXIT_NOT_FOUND
        }
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            EXIT_TRACER_ERROR
        }
    }
}
