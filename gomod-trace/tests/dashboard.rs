//! The Grafana dashboard and the alerting rules in deploy/ only query metrics
//! the daemon exports.
use std::collections::BTreeSet;

use gomod_trace::{correlate::{Correlator, Settings}, metrics::Metrics, record};

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

/// The metric families the daemon exports, after some builds.
fn exported() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut metrics = Metrics::new();
    for fixture in ["clean_download", "sumdb_dropped_remote", "fallback_to_git"] {
        let events = record::read(&root.join(format!("tests/fixtures/{fixture}.jsonl"))).unwrap();
        for build in &Correlator::timeline(events, Settings::default()).builds {
            metrics.observe(build);
        }
    }
    metrics.program_stats("connect4", 10, 0.001);
    metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)).unwrap()
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let exported = exported();
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy_file("grafana/gomod-trace.json")).unwrap();
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

#[test]
fn every_alerting_rule_names_an_exported_metric() {
    let exported = exported();
    let rules = deploy_file("prometheus/gomod-trace-rules.yml");
    let names = metric_names(&rules);
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        assert!(exported.contains(family(&name)), "{name} (alerting rules) is not exported: {exported:?}");
    }
}
