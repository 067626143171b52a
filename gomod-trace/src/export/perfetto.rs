//! The perfetto export: being built (issue 14).
use crate::timeline::Timeline;

pub fn render(_timeline: &Timeline) -> Vec<u8> {
    unimplemented!("the perfetto format is being built")
}
