//! The exports and the terminal view of real lab builds: each format as `run
//! --format X` writes it, read back by the tool it is made for (Perfetto's own
//! protos, headless Chromium, an OTLP decoder), against the JSON timeline of the
//! same build; and `run`'s live line on a terminal while a build stalls. Needs
//! root; one at a time.
use std::{path::Path, process::Command, time::Duration};

use gomod_trace_lab::{Lab, gomod_trace_bin, lab_available, viewers};

/// One build of the lab that has a bit of everything: a proxy that answers 404
/// (so the go command goes direct, to the vanity host and git), the checksum
/// database, DNS; findings of two severities.
fn fallback_build(lab: &Lab, format: &str, report: &Path) -> gomod_trace_lab::TracedRun {
    lab.require_modules(2);
    let run = lab.traced_to(
        format,
        report,
        &["go", "mod", "download"],
        &[("GOPROXY", "https://s404.lab.test,direct")],
        &[],
        Duration::from_secs(120),
    );
    assert!(run.status.success(), "{}", run.stderr);
    run
}

#[test]
fn each_format_of_run_is_read_by_its_own_tool() {
    if !lab_available("each_format_of_run_is_read_by_its_own_tool") {
        return;
    }
    let lab = Lab::start();
    let dir = tempfile::tempdir().expect("tempdir");
    for format in ["perfetto", "html", "otlp"] {
        let report = dir.path().join(format!("report.{format}"));
        let run = fallback_build(&lab, format, &report);
        let timeline = dir.path().join(format!("timeline-{format}.json"));
        std::fs::write(&timeline, &run.json).expect("timeline");
        let kinds: Vec<&str> =
            run.timeline["builds"][0]["findings"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
        assert!(kinds.contains(&"fallback_to_direct"), "the scenario: {kinds:?}\n{}", run.waterfall());
        let summary = match format {
            "perfetto" => viewers::perfetto::check(&report, &timeline),
            "html" => {
                let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/html-export-lab.png");
                let summary = viewers::html::check(&report, &timeline, Some(&screenshot));
                // README's picture of the page is this one (after a click on the first finding).
                if std::env::var_os("GOMOD_TRACE_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
                    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
                    std::fs::create_dir_all(&docs).unwrap();
                    std::fs::copy(&screenshot, docs.join("html-export.png")).unwrap();
                }
                summary
            }
            _ => {
                viewers::otlp::check_json(&report, &timeline);
                "OTLP/JSON decoded; spans, parents and attributes match".to_string()
            }
        };
        println!("{format}: {summary}");
    }
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// On a terminal, `run` says while the build runs what it is doing: the module
/// being fetched, the connection open, and the stall as soon as it is one.
#[test]
fn a_terminal_shows_the_build_progress_and_its_stall() {
    if !lab_available("a_terminal_shows_the_build_progress_and_its_stall") {
        return;
    }
    let lab = Lab::start();
    lab.require_modules(1);
    let bin = gomod_trace_bin();
    let command = lab.client_command(
        &[bin.to_str().unwrap(), "run", "--stall-threshold", "2s", "--", "timeout", "-k", "2", "7", "go", "mod", "download"],
        &[("GOPROXY", "https://stall.lab.test")],
    );
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|w| shell_quote(&w.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    // A terminal 100 columns wide: the live line must fit it.
    let line = format!("stty rows 40 cols 100; {line}");
    let out = Command::new("timeout")
        .args(["60", "script", "-qec", &line, "/dev/null"])
        .current_dir(command.get_current_dir().unwrap())
        .env_remove("NO_COLOR")
        .output()
        .expect("script(1)");
    let shown = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<&str> = shown.split("\x1b[2K").filter(|f| f.starts_with("gomod-trace: ")).collect();
    assert!(
        frames.iter().any(|f| f.contains("modules 0 done, 1 fetching  connections 1 open")),
        "the module in flight and its connection: {frames:#?}"
    );
    println!("last live line: {:?}", frames.last());
    for frame in &frames {
        assert!(frame.trim_end_matches('\r').chars().count() < 100, "one screen row: {frame:?}");
    }
    assert!(
        frames.iter().any(|f| f.contains("stalled: stall.lab.test:443")),
        "the stall, while it lasts: {frames:#?}"
    );
    assert!(shown.contains("stalled_transfer"), "and in the report: {shown}");
}
