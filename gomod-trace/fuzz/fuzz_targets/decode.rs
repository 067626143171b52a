//! Kernel records → events: `decode::decode` on any bytes returns an event or an
//! error, never panics (the daemon decodes every ring-buffer record with it).
#![no_main]
use gomod_trace::decode::{DecodeContext, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| {
    // A drop reason table as tracefs gives it, so that named and unnamed reasons
    // are both decoded.
    thread_local! {
        static CONTEXT: DecodeContext = DecodeContext {
            drop_reasons: [(2, "NOT_SPECIFIED".to_string()), (77, "NETFILTER_DROP".to_string())].into(),
            ..DecodeContext::default()
        };
    }
    CONTEXT.with(|context| {
        if let Ok(event) = decode(record, context) {
            // What `--record` writes of it reads back (replay and the history rely on it).
            let line = serde_json::to_string(&event).expect("decoded events serialize");
            let _: gomod_trace::event::Event = serde_json::from_str(&line).expect("recorded events read back");
        }
    });
});
