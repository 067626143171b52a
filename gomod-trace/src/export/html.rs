//! The html export: being built (issue 14).
use crate::timeline::Timeline;

pub fn render(_timeline: &Timeline) -> String {
    unimplemented!("the html format is being built")
}
