//! `gomod-trace builds` and `gomod-trace export`: read the daemon's history
//! database (WAL: safe while the daemon writes it).
use std::io::Write as _;

use super::{EXIT_TRACER_ERROR, write_timeline};
use crate::{
    cli::{BuildsArgs, ExportArgs},
    daemon::api::FINDING_KINDS,
    history::{Filter, History},
    timeline::{SCHEMA_VERSION, Timeline},
};

/// Exit status when the asked-for build is not in the history.
pub const EXIT_NOT_FOUND: i32 = 1;

fn open(dir: &std::path::Path) -> Result<History, String> {
    match History::open_existing(dir) {
        Ok(Some(history)) => Ok(history),
        Ok(None) => Err(format!(
            "no history in {}: the daemon has not run with this data directory (see --data-dir)",
            dir.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}

pub fn builds(args: &BuildsArgs) -> i32 {
    if let Some(kind) = &args.kind
        && !FINDING_KINDS.contains(&kind.as_str())
    {
        eprintln!("gomod-trace: unknown finding kind {kind:?}; known: {}", FINDING_KINDS.join(", "));
        return 2;
    }
    let history = match open(&args.data_dir) {
        Ok(history) => history,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
    let filter = Filter {
        failed: args.failed,
        since_unix_ns: args.since.map(|ago| now - ago.as_nanos() as i128),
        finding_kind: args.kind.clone(),
        limit: args.limit,
        offset: 0,
    };
    let builds = match history.list(&filter) {
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
            out.push_str(&format!("{:<26} {:<31} {exit:>4}  {command:<22} {findings}{complete}\n", b.id, b.started_at));
        }
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).is_err() {
        return EXIT_TRACER_ERROR;
    }
    0
}

pub fn export(args: &ExportArgs) -> i32 {
    let history = match open(&args.data_dir) {
        Ok(history) => history,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    match history.get(&args.id) {
        Ok(Some(build)) => {
            let timeline = Timeline { schema_version: SCHEMA_VERSION, builds: vec![build] };
            match write_timeline(&timeline, &args.output) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("gomod-trace: {e}");
                    EXIT_TRACER_ERROR
                }
            }
        }
        Ok(None) => {
            eprintln!("gomod-trace: no build {} in {} (gomod-trace builds lists them)", args.id, args.data_dir.display());
            EXIT_NOT_FOUND
        }
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            EXIT_TRACER_ERROR
        }
    }
}
