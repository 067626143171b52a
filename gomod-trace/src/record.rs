//! The event stream as JSON lines: what `--record` writes and `replay` reads.
use std::{
    fs::File,
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
    pub fn create(path: &Path) -> Result<Recorder, RecordError> {
        let display = path.display().to_string();
        let file = File::create(path).map_err(|source| RecordError::Open { path: display.clone(), source })?;
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

/// Reads a recording whole; a malformed line is an error naming it.
pub fn read(path: &Path) -> Result<Vec<Event>, RecordError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(|source| RecordError::Open { path: display.clone(), source })?;
    let mut events = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| RecordError::Read { path: display.clone(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line)
            .map_err(|source| RecordError::Parse { path: display.clone(), line: index + 1, source })?;
        events.push(event);
    }
    if !matches!(events.first(), Some(Event::Clock { .. })) {
        return Err(RecordError::Empty { path: display });
    }
    Ok(events)
}
