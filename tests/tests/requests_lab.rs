//! The go command's requests inside HTTPS, seen by the uprobes on its own
//! `net/http` client, checked against the oracle: what `go mod download -x`
//! prints for every request (`# get URL` when it starts, `# get URL: 200 OK
//! (0.031s)` when it ends). Over HTTP/2 and HTTP/1.1, with each of
//! [`GO_TOOLCHAINS`](gomod_trace_lab::GO_TOOLCHAINS); and proxies that answer
//! 401, 404 and 500 inside TLS, whose statuses the findings must quote. Needs
//! root; run one at a time (`--test-threads=1`).
use std::{collections::BTreeMap, time::Duration};

use gomod_trace_lab::{H1_PROXY_NAME, PROXY_NAME, TracedRun, only_build, serious_kinds, spans, with_each_go};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

/// What `-x` printed: the URLs in the order their requests started, and how
/// each ended (`200 OK`, or Go's error text), by URL (a URL asked twice ends
/// the same way in these scenarios).
struct Printed {
    started: Vec<String>,
    ended: BTreeMap<String, Vec<String>>,
}

fn go_x_requests(stderr: &str) -> Printed {
    let mut printed = Printed { started: Vec::new(), ended: BTreeMap::new() };
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("# get ") else { continue };
        match rest.split_once(": ") {
            None => printed.started.push(rest.to_string()),
            Some((url, result)) => {
                // "200 OK (0.031s)": the result without its time.
                let result = result.rsplit_once(" (").map_or(result, |(r, _)| r);
                printed.ended.entry(url.to_string()).or_default().push(result.to_string());
            }
        }
    }
    printed
}

/// The build's requests as traced: (url, status or error), in start order;
/// only the go command's own (the build root), as `-x` prints only those.
fn traced_requests(build: &Value) -> Vec<&Value> {
    spans(build, "http").into_iter().filter(|h| h["attrs"]["url"].is_string() && h["pid"] == build["pid"]).collect()
}

fn result_of(request: &Value) -> String {
    match (request["attrs"]["status"].as_u64(), request["attrs"]["error"].as_str()) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => error.to_string(),
        (None, None) => "no end".to_string(),
    }
}

/// The traced requests equal what `-x` printed: the same URLs, in the same
/// order when `ordered` (one request at a time), each with the status Go got.
fn assert_matches_go_x(what: &str, run: &TracedRun, ordered: bool) {
    let printed = go_x_requests(&run.stderr);
    assert!(!printed.started.is_empty(), "{what}: -x printed no request: {}", run.stderr);
    let build = only_build(&run.timeline);
    let traced = traced_requests(build);
    let mut traced_urls: Vec<String> = traced.iter().map(|h| h["attrs"]["url"].as_str().unwrap().to_string()).collect();
    let mut printed_urls = printed.started.clone();
    if !ordered {
        traced_urls.sort();
        printed_urls.sort();
    }
    assert_eq!(traced_urls, printed_urls, "{what}: traced requests differ from -x\n{}", run.waterfall());
    for request in &traced {
        let url = request["attrs"]["url"].as_str().unwrap();
        let ends = &printed.ended[url];
        let status = result_of(request);
        assert!(
            ends.iter().any(|end| end.split(' ').next() == Some(status.as_str()) || end == &status),
            "{what}: {url} traced as {status}, -x printed {ends:?}"
        );
    }
}

/// Every request of the build hangs under a TLS handshake with `host`, and
/// was carried by `proto`.
fn assert_carried_by(what: &str, run: &TracedRun, host: &str, proto: &str) {
    let build = only_build(&run.timeline);
    let all = build["spans"].as_array().unwrap();
    for request in traced_requests(build) {
        let parent = request["parent"].as_u64().and_then(|id| all.iter().find(|s| s["id"] == id));
        let parent = parent.unwrap_or_else(|| panic!("{what}: request without a connection: {request:#}\n{}", run.waterfall()));
        assert_eq!((parent["kind"].as_str(), parent["host"].as_str()), (Some("tls"), Some(host)), "{what}: {request:#}");
        assert_eq!(request["attrs"]["proto"], proto, "{what}: {request:#}");
        assert_eq!((request["role"].as_str(), request["host"].as_str()), (Some("proxy"), Some(host)), "{what}: {request:#}");
    }
}

#[test]
fn requests_match_what_go_x_prints() {
    with_each_go("requests_match_what_go_x_prints", |lab, go| {
        lab.require_modules(3);
        let argv = ["go", "mod", "download", "-x"];
        for (what, host, godebug, proto) in [
            ("HTTP/2", PROXY_NAME, "", "HTTP/2.0"),
            ("HTTP/1.1 (client side)", PROXY_NAME, "http2client=0", "HTTP/1.1"),
            ("HTTP/1.1 (server side)", H1_PROXY_NAME, "", "HTTP/1.1"),
        ] {
            let what = format!("go{go} {what}");
            let goproxy = format!("https://{host}");
            // Many requests in flight at once, as usual.
            let run = lab.traced(&argv, &[("GOPROXY", &goproxy), ("GODEBUG", godebug)], TIMEOUT);
            assert!(run.status.success(), "{what}: {}", run.stderr);
            assert_matches_go_x(&what, &run, false);
            assert_carried_by(&what, &run, host, proto);
            assert_eq!(serious_kinds(&run), Vec::<String>::new(), "{what}\n{}", run.waterfall());
            // One at a time: the same order too.
            let run = lab.traced(&argv, &[("GOPROXY", &goproxy), ("GODEBUG", godebug), ("GOMAXPROCS", "1")], TIMEOUT);
            assert!(run.status.success(), "{what}: {}", run.stderr);
            assert_matches_go_x(&format!("{what}, one at a time"), &run, true);
        }
    });
}

fn finding<'a>(run: &'a TracedRun, kind: &str) -> &'a str {
    only_build(&run.timeline)["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == kind))
        .and_then(|f| f["message"].as_str())
        .unwrap_or_else(|| panic!("no {kind} finding:\n{}", run.waterfall()))
}

/// Requests to `host` with `status`, all of role proxy and of the given entry.
fn assert_statuses(run: &TracedRun, host: &str, status: u64) {
    let build = only_build(&run.timeline);
    let answered: Vec<&Value> = traced_requests(build).into_iter().filter(|h| h["host"] == host).collect();
    assert!(!answered.is_empty(), "no request to {host}:\n{}", run.waterfall());
    for h in answered {
        assert_eq!(h["attrs"]["status"], status, "{h:#}");
        assert_eq!((h["role"].as_str(), h["attrs"]["entry"].as_str()), (Some("proxy"), Some(format!("GOPROXY[1] https://{host}").as_str())), "{h:#}");
        assert_eq!(h["outcome"], "error", "{h:#}");
    }
}

#[test]
fn statuses_inside_tls_are_quoted_by_the_findings() {
    with_each_go("statuses_inside_tls_are_quoted_by_the_findings", |lab, _go| {
        lab.require_modules(2);
        // 401 from the first entry, `|`: Go moves on to the next.
        let run = lab.traced_download(&format!("https://s401.lab.test|https://{PROXY_NAME}"), TIMEOUT);
        assert!(run.status.success(), "{}", run.stderr);
        assert_statuses(&run, "s401.lab.test", 401);
        assert!(finding(&run, "http_error").starts_with("s401.lab.test answered HTTP 401"), "{}", run.waterfall());
        assert!(finding(&run, "proxy_fallthrough").contains("which answered HTTP 401"), "{}", run.waterfall());
        assert_eq!(serious_kinds(&run), ["http_error", "proxy_fallthrough"]);

        // 500 with `|`.
        let run = lab.traced_download(&format!("https://s500.lab.test|https://{PROXY_NAME}"), TIMEOUT);
        assert!(run.status.success(), "{}", run.stderr);
        assert_statuses(&run, "s500.lab.test", 500);
        assert!(finding(&run, "proxy_fallthrough").contains("which answered HTTP 500"), "{}", run.waterfall());
        assert_eq!(serious_kinds(&run), ["http_error", "proxy_fallthrough"]);

        // 404 then `direct`: the 404 is what sent Go to git.
        let run = lab.traced_download("https://s404.lab.test,direct", TIMEOUT);
        assert!(run.status.success(), "{}", run.stderr);
        assert_statuses(&run, "s404.lab.test", 404);
        assert!(finding(&run, "fallback_to_direct").contains("which answered HTTP 404"), "{}", run.waterfall());
        assert_eq!(serious_kinds(&run), ["fallback_to_direct"]);
    });
}

/// A copy of Go 1.19's go command whose build information says `version`
/// instead (the bytes after the `\xff Go buildinf:` header hold the version
/// string inline since Go 1.18); the program itself is unchanged.
fn go_claiming(version: &str, to: &std::path::Path) {
    let mut bytes = std::fs::read("/usr/lib/go-1.19/bin/go").expect("Go 1.19's go command");
    let header = b"\xff Go buildinf:";
    let at = bytes.windows(header.len()).position(|w| w == header).expect("build information");
    let original = b"go1.19";
    let window = &mut bytes[at..at + 64];
    let start = window.windows(original.len()).position(|w| w == original).expect("a go1.19 version string");
    assert_eq!(version.len(), original.len());
    window[start..start + original.len()].copy_from_slice(version.as_bytes());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_unsupported_go_is_traced_without_its_requests_and_says_so() {
    if !gomod_trace_lab::lab_available("an_unsupported_go_is_traced_without_its_requests_and_says_so") {
        return;
    }
    let mut lab = gomod_trace_lab::Lab::start();
    lab.require_modules(2);
    let go = lab.path("old-go/bin/go");
    go_claiming("go1.17", &go);
    lab.use_go(go.parent().unwrap().to_str().unwrap());
    // A proxy that answers 410 then the lab's: without request data the status is
    // inferred from the separator, and says so.
    let run = lab.traced_download_env(
        &[("GOPROXY", &format!("https://s410.lab.test,https://{PROXY_NAME}")), ("GOROOT", "/usr/lib/go-1.19")],
        TIMEOUT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let build = only_build(&run.timeline);
    assert_eq!(build["notes"], serde_json::json!(["requests: not traced (go1.17.8 unsupported)"]), "{}", run.waterfall());
    assert!(traced_requests(build).is_empty(), "no request data from an unsupported go: {}", run.waterfall());
    assert!(finding(&run, "proxy_fallthrough").contains("404 or 410 (inferred"), "{}", run.waterfall());
}
