//! The perfetto export, checked in Perfetto's own protos against the JSON timeline
//! of the same recorded build (`gomod-trace replay`, no root needed).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use gomod_trace_lab::{gomod_trace_bin, viewers::perfetto};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.jsonl"))
}

fn replay(events: &Path, format: &str, output: &Path) {
    let out = Command::new(gomod_trace_bin())
        .arg("replay")
        .arg(events)
        .args(["--format", format, "--output"])
        .arg(output)
        .output()
        .expect("run gomod-trace replay");
    assert!(
        out.status.success(),
        "replay {} --format {format}: {}",
        events.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(output).is_ok_and(|m| m.len() > 0), "{} was written", output.display());
}

/// Both exports of a recording: (timeline JSON, trace).
fn export(events: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let (json, trace) = (dir.join("timeline.json"), dir.join("trace.pftrace"));
    replay(events, "json", &json);
    replay(events, "perfetto", &trace);
    (json, trace)
}

/// A number the summary gives before `what` (`33 spans`).
fn count(summary: &str, what: &str) -> usize {
    let words: Vec<&str> = summary.split_whitespace().collect();
    let at =
        words.iter().position(|w| w.trim_end_matches(',') == what).unwrap_or_else(|| panic!("{what} in {summary}"));
    words[at - 1]
        .trim_start_matches(['(', '+'])
        .parse()
        .unwrap_or_else(|_| panic!("a count before {what} in {summary}"))
}

/// Checks a recording's trace, and that the checker saw all the timeline holds.
fn check(events: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (json, trace) = export(events, dir.path());
    let summary = perfetto::check(&trace, &json);
    println!("{}: {summary}", events.file_stem().unwrap().to_string_lossy());
    let timeline: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let builds = timeline["builds"].as_array().unwrap();
    let total = |key: &str| builds.iter().map(|b| b[key].as_array().unwrap().len()).sum::<usize>();
    assert_eq!(count(&summary, "builds"), builds.len(), "{summary}");
    assert_eq!(count(&summary, "spans"), total("spans"), "{summary}");
    assert_eq!(count(&summary, "findings"), total("findings"), "{summary}");
    let requests = builds
        .iter()
        .flat_map(|b| b["spans"].as_array().unwrap())
        .filter(|s| s["kind"] == "http" && !s["parent"].is_null())
        .count();
    assert!(count(&summary, "request") <= requests, "{summary}");
    summary
}

#[test]
fn clean_download() {
    let summary = check(&fixture("clean_download"));
    // 24 modules, each a track of its own.
    assert!(count(&summary, "groups") >= 24, "{summary}");
}

#[test]
fn firewall_drop() {
    check(&fixture("firewall_drop"));
}

#[test]
fn fallback_to_git() {
    let summary = check(&fixture("fallback_to_git"));
    assert!(count(&summary, "request") > 0, "requests have flows: {summary}");
}

#[test]
fn stalled_transfer() {
    check(&fixture("stalled_transfer"));
}

#[test]
fn requests_clean_h2() {
    let summary = check(&fixture("requests_clean_h2"));
    assert_eq!(count(&summary, "request"), 9, "every request has its flow: {summary}");
    assert!(count(&summary, "overflow") > 0, "overlapping spans moved to lanes: {summary}");
}

#[test]
fn variant_concurrent_connects() {
    check(&fixture("variant_concurrent_connects"));
}

#[test]
fn requests_private_module_leak() {
    check(&fixture("requests_private_module_leak"));
}

/// Spans still open when the stream ended (closed as unfinished by the correlator).
#[test]
fn outside_search_list_refused_proxy() {
    check(&fixture("outside_search_list_refused_proxy"));
}

/// A recording cut short: the build has no end, its open spans are unfinished.
#[test]
fn a_build_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("clean_download")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, lines[..lines.len() / 2].join("\n") + "\n").unwrap();
    let (json, _) = export(&cut, dir.path());
    let timeline: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(timeline["builds"][0]["ended_at"].is_null(), "the cut build has no end");
    check(&cut);
}

/// Every recorded fixture.
#[test]
fn every_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() > 10);
    for events in fixtures {
        check(&events);
    }
}

// The checker can fail.

fn mismatch(trace: &Path, json: &Path) -> String {
    match perfetto::run(trace, json) {
        Ok(summary) => panic!("the checker passed a mismatched pair: {summary}"),
        Err(said) => said,
    }
}

#[test]
fn checker_refuses_another_builds_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let (_, trace) = export(&fixture("clean_download"), dir.path());
    let other = tempfile::tempdir().unwrap();
    let (json, _) = export(&fixture("firewall_drop"), other.path());
    let said = mismatch(&trace, &json);
    assert!(said.contains("FAILED") && said.contains("process tracks named"), "{said}");
}

#[test]
fn checker_refuses_an_edited_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let (json, trace) = export(&fixture("fallback_to_git"), dir.path());
    let mut timeline: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let build = &mut timeline["builds"][0];
    // A span 1 ms longer, a finding that says something else, a request on
    // another connection.
    let span = build["spans"].as_array_mut().unwrap().iter_mut().find(|s| s["kind"] == "connect").unwrap();
    let end = span["end"].as_str().unwrap().to_string();
    let (head, frac) = end.trim_end_matches('Z').split_once('.').unwrap();
    let ns: u64 = format!("{frac:0<9}").parse().unwrap();
    assert!(ns < 999_000_000);
    span["end"] = format!("{head}.{:09}Z", ns + 1_000_000).into();
    let id = span["id"].clone();
    build["findings"][0]["message"] = "something else".into();
    let edited = dir.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_vec(&timeline).unwrap()).unwrap();
    let said = mismatch(&trace, &edited);
    assert!(said.contains(&format!("span {id} (connect): lasts")), "{said}");
    assert!(said.contains("has no instant"), "{said}");
}

/// Rewrites a trace with Perfetto's protos: `edit` is Python on `t`, the Trace.
fn corrupt(trace: &Path, edit: &str) -> PathBuf {
    let out = trace.with_extension("corrupt.pftrace");
    let code = format!(
        "import sys\nfrom perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb\n\
         t = pb.Trace.FromString(open(sys.argv[1], 'rb').read())\n{edit}\n\
         open(sys.argv[2], 'wb').write(t.SerializeToString())\n"
    );
    let status = Command::new(perfetto::python()).arg("-c").arg(code).arg(trace).arg(&out).status().unwrap();
    assert!(status.success(), "python edits the trace");
    out
}

#[test]
fn checker_refuses_a_broken_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (json, trace) = export(&fixture("requests_clean_h2"), dir.path());
    // A slice that never ends.
    let unbalanced = corrupt(
        &trace,
        "ends = [i for i, p in enumerate(t.packet) if p.HasField('track_event') and p.track_event.type == 2]\n\
         del t.packet[ends[-1]]",
    );
    assert!(mismatch(&unbalanced, &json).contains("never ends"));
    // A slice ending after its parent: the parent's end moved before the child's.
    let straddling = corrupt(
        &trace,
        "ends = [p for p in t.packet if p.HasField('track_event') and p.track_event.type == 2]\n\
         ends[-1].timestamp = ends[0].timestamp - 1",
    );
    let said = mismatch(&straddling, &json);
    assert!(said.contains("out of time order") && said.contains("lasts"), "{said}");
    // Events before their tracks are described.
    let late = corrupt(
        &trace,
        "d = [p for p in t.packet if p.HasField('track_descriptor')]\n\
         rest = [p for p in t.packet if not p.HasField('track_descriptor')]\n\
         del t.packet[:]\nt.packet.extend(rest + d)",
    );
    assert!(mismatch(&late, &json).contains("before (or without) its descriptor"));
    // A module's track named for something else.
    let renamed = corrupt(
        &trace,
        "d = next(p.track_descriptor for p in t.packet if p.track_descriptor.name.startswith('module '))\n\
         d.name = 'module elsewhere'",
    );
    assert!(mismatch(&renamed, &json).contains("is named 'module elsewhere'"));
    // Not a trace at all.
    let cut = dir.path().join("cut.pftrace");
    std::fs::write(&cut, &std::fs::read(&trace).unwrap()[..500]).unwrap();
    assert!(mismatch(&cut, &json).contains("cannot read"));
}

/// A binary trace is not written to a terminal (`script` gives the command one);
/// with --output it is written to the file.
#[test]
fn not_to_a_terminal() {
    let command =
        format!("{} replay {} --format perfetto", gomod_trace_bin().display(), fixture("firewall_drop").display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script (util-linux)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "refused: {said}");
    assert!(
        said.contains("the perfetto format is binary and will not be written to a terminal: give --output FILE"),
        "{said}"
    );
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("f.pftrace");
    replay(&fixture("firewall_drop"), "perfetto", &trace);
}
