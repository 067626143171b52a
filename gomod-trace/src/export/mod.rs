//! Renders timelines; never changes them. JSON is the contract (contract.md), text
//! is for a person at a terminal.
mod text;

use crate::timeline::Timeline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A waterfall for the terminal (coloured when it is one).
    Text,
    /// The timeline JSON of contract.md (schema_version 1).
    Json,
}

pub fn render(timeline: &Timeline, format: Format, color: bool) -> String {
    match format {
        Format::Text => text::render(timeline, color),
        Format::Json => {
            let mut out = serde_json::to_string_pretty(timeline).expect("timelines serialize");
            out.push('\n');
            out
        }
    }
}
