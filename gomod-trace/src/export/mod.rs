//! Renders timelines; never changes them. JSON is the contract (contract.md), text
//! is for a person at a terminal, the others are for the tools people already
//! open: Perfetto UI, a browser, an OpenTelemetry backend.
mod html;
pub mod otlp;
mod perfetto;
mod text;

pub use text::{View, cut, human_duration};

use crate::timeline::Timeline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Findings, then one line per endpoint and per module (every span with
    /// --verbose); coloured on a terminal unless NO_COLOR is set.
    Text,
    /// The timeline JSON of contract.md (schema_version 1).
    Json,
    /// A Perfetto trace (protobuf): open it at https://ui.perfetto.dev.
    Perfetto,
    /// One self-contained HTML page (no network access): open it in a browser.
    Html,
    /// OTLP/JSON (an ExportTraceServiceRequest): one trace per build.
    Otlp,
}

impl Format {
    /// Binary formats are not written to a terminal.
    pub fn is_binary(self) -> bool {
        self == Format::Perfetto
    }

    /// Formats read by people (the others by programs: they need a file of
    /// their own when the terminal's stream is shared with a command).
    pub fn is_for_people(self) -> bool {
        self == Format::Text
    }
}

pub fn render(timeline: &Timeline, format: Format, view: &View) -> Vec<u8> {
    match format {
        Format::Text => text::render(timeline, view).into_bytes(),
        Format::Json => {
            let mut out = serde_json::to_string_pretty(timeline).expect("timelines serialize");
            out.push('\n');
            out.into_bytes()
        }
        Format::Perfetto => perfetto::render(timeline),
        Format::Html => html::render(timeline).into_bytes(),
        Format::Otlp => otlp::render_json(timeline).into_bytes(),
    }
}
