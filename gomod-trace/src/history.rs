//! Durable history of finished builds: an embedded SQLite database (WAL, full
//! sync: a build is on disk when `insert` returns, and survives `kill -9`), with
//! retention by age and by count. The daemon writes it; the API, `builds` and
//! `export` read it (several readers at once are fine in WAL mode).
use std::{path::Path, time::Duration};

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use crate::timeline::{Build, Severity};

/// The database file under the data directory.
pub const DATABASE: &str = "history.sqlite3";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("cannot create the history database {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("history database: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("history database: a stored timeline is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// How long and how many builds are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_builds: u64,
}

/// Which builds a listing returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only builds that failed (exit status other than 0, or never seen to end).
    pub failed: bool,
    /// Only builds started at or after this time (Unix ns).
    pub since_unix_ns: Option<i128>,
    /// Only builds with a finding of this kind.
    pub finding_kind: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSummary {
    pub id: String,
    pub command: Vec<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    pub complete: bool,
    /// Kinds of the build's findings of severity error or warning.
    pub findings: Vec<String>,
}

pub struct History {
    connection: Connection,
}

/// Creates the database file with mode 0600 before SQLite does (its journal and
/// WAL files take the database's mode), and tightens the files of a history
/// made by an older version: builds' argv and configuration are the owner's
/// business (redacted, but private). A file this process cannot change (a
/// reader that does not own it) is left as it is, with a warning.
fn owner_only(database: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(database) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut files = vec![database.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files {
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        if meta.permissions().mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!("{} is readable by others and cannot be made private: {e}", file.display());
        }
    }
    Ok(())
}

fn unix_ns(rfc3339: &str) -> Option<i128> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

impl History {
    /// Opens (creating if needed) the database in `dir`, readable by its owner
    /// only (see [`owner_only`]).
    pub fn open(dir: &Path) -> Result<History, HistoryError> {
        let path = dir.join(DATABASE);
        owner_only(&path).map_err(|source| HistoryError::Create { path: path.display().to_string(), source })?;
        let open_error = |source| HistoryError::Open { path: path.display().to_string(), source };
        let connection = Connection::open(&path).map_err(open_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS builds (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     id TEXT NOT NULL UNIQUE,
                     started_unix_ns INTEGER NOT NULL,
                     failed INTEGER NOT NULL,
                     finding_kinds TEXT NOT NULL,
                     summary TEXT NOT NULL,
                     timeline TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS builds_started ON builds (started_unix_ns);",
            )
            .map_err(open_error)?;
        Ok(History { connection })
    }

    /// Opens an existing database for reading; `None` when there is none yet.
    pub fn open_existing(dir: &Path) -> Result<Option<History>, HistoryError> {
        if !dir.join(DATABASE).exists() {
            return Ok(None);
        }
        History::open(dir).map(Some)
    }

    /// Stores a finished build (replacing one with the same id), then applies
    /// the retention limits. `now_unix_ns` is the wall clock.
    pub fn insert(&mut self, build: &Build, retention: Retention, now_unix_ns: i128) -> Result<(), HistoryError> {
        let summary = summarize(build);
        let started = unix_ns(&build.started_at).unwrap_or(now_unix_ns);
        let failed = build.exit_code != Some(0);
        let kinds: String = summary.findings.iter().map(|k| format!(",{k}")).collect::<String>() + ",";
        let transaction = self.connection.transaction()?;
        transaction.execute(
            "INSERT OR REPLACE INTO builds (id, started_unix_ns, failed, finding_kinds, summary, timeline)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                build.id,
                started as i64,
                failed,
                kinds,
                serde_json::to_string(&summary)?,
                serde_json::to_string(build)?
            ],
        )?;
        let oldest = now_unix_ns - retention.max_age.as_nanos() as i128;
        transaction.execute("DELETE FROM builds WHERE started_unix_ns < ?1", params![oldest as i64])?;
        transaction.execute(
            "DELETE FROM builds WHERE seq NOT IN (SELECT seq FROM builds ORDER BY seq DESC LIMIT ?1)",
            params![retention.max_builds as i64],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Builds matching `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<BuildSummary>, HistoryError> {
        let mut statement = self.connection.prepare(
            "SELECT summary FROM builds
             WHERE (?1 = 0 OR failed = 1)
               AND (?2 IS NULL OR started_unix_ns >= ?2)
               AND (?3 IS NULL OR instr(finding_kinds, ',' || ?3 || ',') > 0)
             ORDER BY started_unix_ns DESC, seq DESC
             LIMIT ?4 OFFSET ?5",
        )?;
        let rows = statement.query_map(
            params![
                filter.failed,
                filter.since_unix_ns.map(|t| t as i64),
                filter.finding_kind,
                filter.limit,
                filter.offset
            ],
            |row| row.get::<_, String>(0),
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?)?);
        }
        Ok(out)
    }

    /// The timeline of one build (contract.md's build object), as stored.
    pub fn get(&self, id: &str) -> Result<Option<Build>, HistoryError> {
        let text: Option<String> = self
            .connection
            .query_row("SELECT timeline FROM builds WHERE id = ?1", params![id], |row| row.get(0))
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    /// How many builds are stored.
    pub fn count(&self) -> Result<u64, HistoryError> {
        Ok(self.connection.query_row("SELECT count(*) FROM builds", [], |row| row.get::<_, i64>(0))? as u64)
    }

    /// SQLite's own consistency check: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, HistoryError> {
        Ok(self.connection.query_row("PRAGMA integrity_check", [], |row| row.get(0))?)
    }
}

pub fn summarize(build: &Build) -> BuildSummary {
    let mut findings: Vec<String> = build
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| f.kind.clone())
        .collect();
    findings.sort();
    findings.dedup();
    BuildSummary {
        id: build.id.clone(),
        command: build.command.clone(),
        started_at: build.started_at.clone(),
        ended_at: build.ended_at.clone(),
        exit_code: build.exit_code,
        complete: build.complete,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Finding;

    fn build(id: &str, started_at: &str, exit_code: i32, kinds: &[&str]) -> Build {
        Build {
            id: id.into(),
            command: vec!["go".into(), "mod".into(), "download".into()],
            pid: 1,
            started_at: started_at.into(),
            ended_at: Some(started_at.into()),
            exit_code: Some(exit_code),
            complete: true,
            state: None,
            notes: Vec::new(),
            config: Default::default(),
            spans: Vec::new(),
            findings: kinds
                .iter()
                .map(|k| Finding {
                    kind: k.to_string(),
                    severity: Severity::Error,
                    message: "m".into(),
                    remedy: "r".into(),
                    cost_ms: 0.0,
                    spans: Vec::new(),
                })
                .collect(),
        }
    }

    const KEEP: Retention = Retention { max_age: Duration::from_secs(3600), max_builds: 100 };
    const NOW: i128 = 1_795_000_000_000_000_000;

    fn at(seconds_before_now: i64) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(NOW - i128::from(seconds_before_now) * 1_000_000_000).unwrap();
        t.format(&time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn stores_lists_filters_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        h.insert(&build("a", &at(30), 0, &[]), KEEP, NOW).unwrap();
        h.insert(&build("b", &at(20), 1, &["firewall_drop", "sumdb_unreachable"]), KEEP, NOW).unwrap();
        h.insert(&build("c", &at(10), 0, &["slow_download"]), KEEP, NOW).unwrap();
        let all = |f: Filter| h.list(&Filter { limit: 10, ..f }).unwrap().into_iter().map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(all(Filter::default()), ["c", "b", "a"], "newest first");
        assert_eq!(all(Filter { failed: true, ..Default::default() }), ["b"]);
        assert_eq!(all(Filter { finding_kind: Some("sumdb_unreachable".into()), ..Default::default() }), ["b"]);
        assert_eq!(all(Filter { finding_kind: Some("sumdb".into()), ..Default::default() }), Vec::<String>::new());
        assert_eq!(all(Filter { since_unix_ns: Some(NOW - 25_000_000_000), ..Default::default() }), ["c", "b"]);
        assert_eq!(h.list(&Filter { limit: 1, offset: 1, ..Default::default() }).unwrap()[0].id, "b");
        assert_eq!(h.get("b").unwrap().unwrap(), build("b", &at(20), 1, &["firewall_drop", "sumdb_unreachable"]));
        assert!(h.get("nope").unwrap().is_none());
        assert_eq!(h.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn retention_by_age_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        let keep = Retention { max_age: Duration::from_secs(100), max_builds: 2 };
        h.insert(&build("old", &at(500), 0, &[]), keep, NOW).unwrap();
        assert_eq!(h.count().unwrap(), 0, "older than the age limit");
        for id in ["x", "y", "z"] {
            h.insert(&build(id, &at(10), 0, &[]), keep, NOW).unwrap();
        }
        let ids: Vec<String> = h.list(&Filter { limit: 10, ..Default::default() }).unwrap().into_iter().map(|b| b.id).collect();
        assert_eq!(ids, ["z", "y"]);
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        History::open(dir.path()).unwrap().insert(&build("a", &at(1), 0, &[]), KEEP, NOW).unwrap();
        let h = History::open_existing(dir.path()).unwrap().unwrap();
        assert_eq!(h.count().unwrap(), 1);
        assert!(History::open_existing(&dir.path().join("missing")).unwrap().is_none());
    }

    #[test]
    fn database_files_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        h.insert(&build("a", &at(1), 0, &[]), KEEP, NOW).unwrap();
        for name in [DATABASE, "history.sqlite3-wal", "history.sqlite3-shm"] {
            assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
        }
        drop(h);
        // A history an older version left readable by all is made private.
        let old = dir.path().join(DATABASE);
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        History::open(dir.path()).unwrap();
        assert_eq!(mode(&old), 0o600);
    }
}
