//! `gomod-trace builds` and `gomod-trace export`: the recorded builds, from the
//! daemon's API or straight from its history database (WAL: safe while the
//! daemon writes it). Both print the same whichever they read.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use super::{Console, EXIT_TRACER_ERROR, write_timeline};
use crate::{
    cli::{BuildsArgs, DEFAULT_DATA_DIR, ExportArgs, HistoryArgs},
    daemon::{
        api::valid_build_id,
        auth::read_client_token,
        client::{self, ClientError},
        endpoint::ApiEndpoint,
    },
    history::{BuildSummary, Filter, History},
    timeline::{Build, FINDING_KINDS, SCHEMA_VERSION, Timeline},
};

/// Exit status when the asked-for build is not in the history.
pub const EXIT_NOT_FOUND: i32 = 1;

/// Where the recorded builds are read.
enum Source {
    /// The daemon's API (with its token, if one is given); with `fallback`, the
    /// default database when no daemon is there.
    Api { api: Api, fallback: bool },
    Database(PathBuf),
}

/// The daemon's builds API, and the token it wants.
struct Api {
    endpoint: ApiEndpoint,
    token: Option<String>,
}

impl Api {
    async fn get(&self, path: &str) -> Result<client::Answer, ClientError> {
        client::get(&self.endpoint, path, self.token.as_deref()).await
    }
}

impl Source {
    fn of(args: &HistoryArgs) -> Result<Source, String> {
        let token = args.api_token_file.as_deref().map(read_client_token).transpose()?;
        Ok(match (&args.daemon, &args.data_dir) {
            (_, Some(dir)) => Source::Database(dir.clone()),
            (Some(endpoint), None) => Source::Api { api: Api { endpoint: endpoint.clone(), token }, fallback: false },
            (None, None) => Source::Api { api: Api { endpoint: ApiEndpoint::default_socket(), token }, fallback: true },
        })
    }

    /// Asks the API (`api`) or reads the database (`database`), as chosen.
    async fn read<T, F>(
        self,
        api: impl FnOnce(Api) -> F,
        database: impl FnOnce(&History) -> Result<T, crate::history::HistoryError>,
    ) -> Result<T, String>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        let history = match self {
            Source::Database(dir) => open(&dir)?,
            Source::Api { api: daemon, fallback } => match api(daemon).await {
                Err(ClientError::NotRunning(endpoint)) if fallback => {
                    open(Path::new(DEFAULT_DATA_DIR)).map_err(|e| format!("no daemon answers at {endpoint}, and {e}"))?
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
async fn list_api(api: Api, args: &BuildsArgs) -> Result<Vec<BuildSummary>, ClientError> {
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
    Ok(api.get(&path).await?.json::<Listing>(&api.endpoint)?.builds)
}

/// The API's timeline of one build; `None` when it does not know the build.
async fn get_api(api: Api, id: &str) -> Result<Option<Build>, ClientError> {
    let answer = api.get(&format!("/api/v1/builds/{id}")).await?;
    if answer.status == 404 {
        return Ok(None);
    }
    Ok(answer.json::<Timeline>(&api.endpoint)?.builds.into_iter().next())
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
    let source = Source::of(&args.history);
    let builds = match async { source?.read(|api| list_api(api, args), |h| h.list(&filter)).await }.await {
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
    let source = Source::of(&args.history);
    match async { source?.read(|api| get_api(api, &args.id), |h| h.get(&args.id)).await }.await {
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
