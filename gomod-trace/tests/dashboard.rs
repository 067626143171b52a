//! The Grafana dashboard in deploy/ only queries metrics the daemon exports.
use std::collections::BTreeSet;

use gomod_trace::{correlate::Correlator, metrics::Metrics, record};

/// Metric names a PromQL expression mentions (gomod_trace_…).
fn metric_names(expr: &str) -> Vec<String> {
    expr.match_indices("gomod_trace_")
        .map(|(at, _)| expr[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
        .collect()
}

/// The family a sample name belongs to, as `# TYPE` lines name it.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count", "_total"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name)
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut metrics = Metrics::new();
    for fixture in ["clean_download", "sumdb_dropped_remote", "fallback_to_git"] {
        let events = record::read(&root.join(format!("tests/fixtures/{fixture}.jsonl"))).unwrap();
        for build in &Correlator::timeline(events).builds {
            metrics.observe(build);
        }
    }
    metrics.program_stats("connect4", 10, 0.001);
    let exported: BTreeSet<String> = metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/gomod-trace.json")).unwrap()).unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(exported.contains(family(&name)), "{name} (panel {}) is not exported: {exported:?}", panel["title"]);
                queried += 1;
            }
        }
    }
    assert!(queried >= 10);
}
