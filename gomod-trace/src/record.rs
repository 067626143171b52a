//! The event stream as JSON lines: what `--record` writes and `replay` reads.
//! A recording is readable by its owner only (it holds the build's argv,
//! configuration and the first bytes of its packets, redacted but private).
use std::{
    fs::{File, OpenOptions, Permissions},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    io::{BufRead, BufReader, BufWriter, Write},
    path::Path,
};

use crate::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: not a gomod-trace event: {source}")]
    Parse { path: String, line: usize, source: serde_json::Error },
    #[error("{path}: empty recording (no clock anchor)")]
    Empty { path: String },
}

pub struct Recorder {
    path: String,
    out: BufWriter<File>,
}

impl Recorder {
    /// Creates (or truncates) the recording, mode 0600 also when it existed.
    pub fn create(path: &Path) -> Result<Recorder, RecordError> {
        let display = path.display().to_string();
        let open_error = |source| RecordError::Open { path: display.clone(), source };
        let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(open_error)?;
        file.set_permissions(Permissions::from_mode(0o600)).map_err(open_error)?;
        Ok(Recorder { path: display, out: BufWriter::new(file) })
    }

    pub fn write(&mut self, event: &Event) -> Result<(), RecordError> {
        let line = serde_json::to_string(event).expect("events serialize");
        writeln!(self.out, "{line}").map_err(|source| RecordError::Write { path: self.path.clone(), source })
    }

    pub fn finish(mut self) -> Result<(), RecordError> {
        self.out.flush().map_err(|source| RecordError::Write { path: self.path, source })
    }
}

/// Reads a recording whole, redacted (one made by an older version may hold
/// what is redacted now); a malformed line is an error naming it.
pub fn read(path: &Path) -> Result<Vec<Event>, RecordError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(|source| RecordError::Open { path: display.clone(), source })?;
    let mut events = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| RecordError::Read { path: display.clone(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let mut event = serde_json::from_str(&line)
            .map_err(|source| RecordError::Parse { path: display.clone(), line: index + 1, source })?;
        crate::redact::event(&mut event);
        events.push(event);
    }
    if !matches!(events.first(), Some(Event::Clock { .. })) {
        return Err(RecordError::Empty { path: display });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn recordings_are_the_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let fresh = dir.path().join("fresh.jsonl");
        Recorder::create(&fresh).unwrap().finish().unwrap();
        assert_eq!(mode(&fresh), 0o600);
        // Written over, a file that was readable by all becomes private too.
        let old = dir.path().join("old.jsonl");
        std::fs::write(&old, "x").unwrap();
        std::fs::set_permissions(&old, Permissions::from_mode(0o644)).unwrap();
        Recorder::create(&old).unwrap().finish().unwrap();
        assert_eq!(mode(&old), 0o600);
    }

    #[test]
    fn replay_redacts_what_an_older_version_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"event":"clock","monotonic_ns":1,"realtime_ns":2}"#,
                "\n",
                r#"{"event":"exec","ts_ns":3,"cpu":0,"seq":1,"pid":9,"build":9,"comm":"go","argv":["go","env","-w","GOPROXY=https://p,https://u:S3cret@corp/go,direct"]}"#,
                "\n"
            ),
        )
        .unwrap();
        let events = read(&path).unwrap();
        let Event::Exec { argv, .. } = &events[1] else { panic!("{events:?}") };
        assert_eq!(argv[3], "GOPROXY=https://p,https://REDACTED@corp/go,direct");
    }
}
