//! `--format otlp` against the timeline JSON of the same build, for recorded lab
//! scenarios replayed offline (no root): the OTLP/JSON is read with the
//! opentelemetry-proto crate's serde and checked span by span
//! (gomod_trace_lab::viewers::otlp). And the check itself fails on an export
//! that does not match.
use std::{path::PathBuf, process::Command};

use gomod_trace_lab::{gomod_trace_bin, viewers::otlp};
use serde_json::Value;

/// Replays a fixture to `FORMAT`; returns the output file.
fn replay(fixture: &str, format: &str, dir: &tempfile::TempDir) -> PathBuf {
    let bin = gomod_trace_bin();
    assert!(bin.exists(), "{} does not exist: build it first (cargo build -p gomod-trace)", bin.display());
    let events = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{fixture}.jsonl"));
    let out = dir.path().join(format!("{fixture}.{format}"));
    let status = Command::new(&bin).arg("replay").arg(&events).args(["--format", format, "--output"]).arg(&out).output().expect("run replay");
    assert!(status.status.success(), "replay {fixture} --format {format}: {}", String::from_utf8_lossy(&status.stderr));
    out
}

fn read_json(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn otlp_exports_of_lab_scenarios_match_their_timelines() {
    let dir = tempfile::tempdir().unwrap();
    for fixture in ["clean_download", "firewall_drop", "fallback_to_git", "requests_clean_h2", "private_module_leak"] {
        let timeline = replay(fixture, "json", &dir);
        let otlp_json = replay(fixture, "otlp", &dir);
        otlp::check_json(&otlp_json, &timeline);
        // Exported twice, the same trace: ids are derived from the build.
        let again = replay(fixture, "otlp", &dir);
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&otlp_json).unwrap(), "{fixture}: two exports differ");
        eprintln!("{fixture}: {} spans checked", read_json(&timeline)["builds"][0]["spans"].as_array().unwrap().len() + 1);
    }
}

#[test]
fn the_check_fails_on_an_export_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let clean = read_json(&replay("clean_download", "json", &dir));
    let dropped = read_json(&replay("firewall_drop", "json", &dir));
    let text = std::fs::read_to_string(replay("firewall_drop", "otlp", &dir)).unwrap();
    assert!(otlp::json_problems(&text, &dropped).is_empty(), "the unchanged export passes");

    // Another build's export.
    let problems = otlp::json_problems(&text, &clean);
    assert!(problems.iter().any(|p| p.contains("root spans with gomod_trace.build.id")), "{problems:#?}");

    let spans = |json: &mut Value| -> Vec<Value> { json["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap().clone() };
    let with_spans = |json: &Value, spans: Vec<Value>| {
        let mut json = json.clone();
        json["resourceSpans"][0]["scopeSpans"][0]["spans"] = Value::Array(spans);
        serde_json::to_string(&json).unwrap()
    };
    let original: Value = serde_json::from_str(&text).unwrap();

    // A span moved under the build's root instead of its parent.
    let mut all = spans(&mut original.clone());
    let root_id = all[0]["spanId"].clone();
    let moved = all.iter().position(|s| s["parentSpanId"] != root_id && s["parentSpanId"] != "").expect("a nested span");
    all[moved]["parentSpanId"] = root_id;
    let problems = otlp::json_problems(&with_spans(&original, all), &dropped);
    assert!(problems.iter().any(|p| p.contains("parent span id")), "{problems:#?}");

    // A finding's event lost.
    let mut all = spans(&mut original.clone());
    for span in &mut all {
        span["events"] = Value::Array(Vec::new());
    }
    let problems = otlp::json_problems(&with_spans(&original, all), &dropped);
    assert!(problems.iter().any(|p| p.contains("finding firewall_drop")), "{problems:#?}");

    // A failed connect shown as a success.
    let mut all = spans(&mut original.clone());
    let connect = all.iter().position(|s| s["name"] == "connect").unwrap();
    all[connect]["status"] = serde_json::json!({"code": 0});
    let problems = otlp::json_problems(&with_spans(&original, all), &dropped);
    assert!(problems.iter().any(|p| p.contains("status error false")), "{problems:#?}");

    // Not the OTLP/JSON encoding: a snake_case key, a time as a number.
    let problems = otlp::json_problems(&text.replacen("\"traceId\"", "\"trace_id\"", 1), &dropped);
    assert!(problems.iter().any(|p| p.contains("trace_id: not lowerCamelCase")), "{problems:#?}");
    let mut all = spans(&mut original.clone());
    let start = all[1]["startTimeUnixNano"].as_str().unwrap().parse::<u64>().unwrap();
    all[1]["startTimeUnixNano"] = start.into();
    let problems = otlp::json_problems(&with_spans(&original, all), &dropped);
    assert!(problems.iter().any(|p| p.contains("startTimeUnixNano is not a decimal string")), "{problems:#?}");
}
