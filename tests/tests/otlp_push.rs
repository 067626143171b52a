//! The daemon's OTLP push path without root or a kernel: recorded builds
//! (fixtures, replayed) offered to the exporter task, which posts them to the
//! OTLP/HTTP receiver of gomod_trace_lab::viewers::otlp. Retries end in one
//! delivery, an endpoint that is down costs counted drops after the bound, a full
//! queue drops at once (the correlator never waits), a Retry-After past every
//! bound costs one batch and nothing else, batches stay under a size cap and a
//! 413 splits them, and a stop sends what is queued at once and bounds the rest
//! by the flush time.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use gomod_trace::{
    correlate::Correlator,
    daemon::otlp::{self, OtlpConfig, Tuning},
    export::otlp::{ResourceInfo, trace_request},
    metrics::Metrics,
    record,
    timeline::{Build, Timeline},
};
use gomod_trace_lab::viewers::otlp::{Receiver, check, only_build};
use opentelemetry_proto::tonic::{collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value as Any};
use prost::Message as _;
use tokio::sync::watch;

fn fixture(name: &str) -> Build {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.jsonl"));
    Correlator::timeline(record::read(&path).unwrap(), Default::default()).builds.remove(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Short times, so that a test takes seconds.
fn quick() -> Tuning {
    Tuning {
        queue: 16,
        batch: 8,
        linger: Duration::from_millis(200),
        request_timeout: Duration::from_secs(2),
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        give_up_after: Duration::from_secs(10),
        flush: Duration::from_secs(2),
        ..Tuning::default()
    }
}

/// The value of one series of the metrics' text.
fn series(metrics: &Metrics, name: &str) -> f64 {
    let text = metrics.encode();
    let line = text.lines().find(|l| l.split_once(' ').is_some_and(|(n, _)| n == name));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn drops(metrics: &Metrics, reason: &str) -> f64 {
    series(metrics, &format!("gomod_trace_otlp_dropped_builds_total{{reason=\"{reason}\"}}"))
}

/// The build ids in a request, in order.
fn build_ids(request: &ExportTraceServiceRequest) -> Vec<String> {
    let spans = request.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()));
    spans
        .filter(|s| s.parent_span_id.is_empty())
        .filter_map(|s| {
            s.attributes.iter().find(|kv| kv.key == "gomod_trace.build.id").and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(id) => Some(id.clone()),
                _ => None,
            })
        })
        .collect()
}

fn four_builds() -> Vec<Build> {
    ["clean_download", "firewall_drop", "requests_clean_h2", "fallback_to_git"].into_iter().map(fixture).collect()
}

fn timeline_json(build: &Build) -> serde_json::Value {
    serde_json::to_value(Timeline { schema_version: 1, builds: vec![build.clone()] }).unwrap()
}

#[test]
fn retries_after_503_deliver_each_build_once() {
    let receiver = Receiver::start("127.0.0.1:0");
    receiver.answer_first(&[(503, None), (503, Some("1"))]);
    let env = |name: &str| (name == "OTEL_EXPORTER_OTLP_HEADERS").then(|| "x-api-key=s3cr%2Ct".to_string());
    let config = OtlpConfig::resolve(Some(&receiver.url()), &["x-tenant=a b".into()], env).unwrap().unwrap();
    let metrics = Metrics::new();
    let builds = [fixture("clean_download"), fixture("firewall_drop"), fixture("requests_clean_h2")];
    let runtime = runtime();
    let (_stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, quick(), metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    for build in &builds {
        offer.offer(build.clone());
    }
    let accepted = receiver.wait_for("the builds", Duration::from_secs(10), |r| !r.is_empty());
    // Nothing more comes: no duplicate of what was accepted.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(receiver.accepted().len(), 1, "one batch, accepted once");
    assert_eq!(receiver.attempts(), 3, "503, 503, then 200");
    let times = receiver.attempt_times();
    assert!(times[2] - times[1] >= Duration::from_secs(1), "Retry-After: 1 honoured: {:?}", times[2] - times[1]);
    let request = &accepted[0];
    assert_eq!((request.path.as_str(), request.content_type.as_str()), ("/v1/traces", "application/x-protobuf"));
    for header in [("x-api-key", "s3cr,t"), ("x-tenant", "a b")] {
        assert!(request.headers.contains(&(header.0.into(), header.1.into())), "{header:?} not in {:?}", request.headers);
    }
    let requests = [request.request.clone()];
    for build in &builds {
        check(&only_build(&requests, &build.id), &timeline_json(build));
    }
    assert_eq!(series(&metrics, "gomod_trace_otlp_exported_builds_total"), 3.0);
    assert_eq!(series(&metrics, "gomod_trace_otlp_failed_requests_total{reason=\"unavailable\"}"), 2.0);
    for reason in ["queue_full", "rejected", "retries_exhausted", "shutdown"] {
        assert_eq!(series(&metrics, &format!("gomod_trace_otlp_dropped_builds_total{{reason=\"{reason}\"}}")), 0.0, "{reason}");
    }
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await }).expect("the exporter ends").unwrap();
}

#[test]
fn a_refused_request_is_not_retried() {
    let receiver = Receiver::start("127.0.0.1:0");
    receiver.answer_first(&[(400, None)]);
    let config = OtlpConfig::resolve(Some(&receiver.url()), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let runtime = runtime();
    let (_stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, quick(), metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    offer.offer(fixture("clean_download"));
    wait_until("the drop", Duration::from_secs(5), || series(&metrics, "gomod_trace_otlp_dropped_builds_total{reason=\"rejected\"}") == 1.0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((receiver.attempts(), receiver.accepted().len()), (1, 0));
    assert_eq!(series(&metrics, "gomod_trace_otlp_failed_requests_total{reason=\"rejected\"}"), 1.0);
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await }).expect("the exporter ends").unwrap();
}

#[test]
fn an_endpoint_that_is_down_costs_counted_drops_and_never_blocks_the_offer() {
    // A port nobody listens on: connections are refused.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = OtlpConfig::resolve(Some(&format!("http://{nobody}")), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let tuning = Tuning { queue: 2, batch: 1, linger: Duration::from_millis(10), give_up_after: Duration::from_millis(600), ..quick() };
    let runtime = runtime();
    let (_stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, tuning, metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    let build = fixture("clean_download");
    offer.offer(build.clone());
    // The exporter has taken it and is retrying; the queue holds two more.
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    for _ in 0..5 {
        offer.offer(build.clone());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(50), "offering never waits: {took:?}");
    assert_eq!(series(&metrics, "gomod_trace_otlp_dropped_builds_total{reason=\"queue_full\"}"), 3.0);
    // Each of the three others is given up after the bound (0.6 s), one after the other.
    wait_until("three builds given up", Duration::from_secs(6), || {
        series(&metrics, "gomod_trace_otlp_dropped_builds_total{reason=\"retries_exhausted\"}") == 3.0
    });
    assert!(started.elapsed() >= Duration::from_millis(1000), "not before the bound: {:?}", started.elapsed());
    assert!(series(&metrics, "gomod_trace_otlp_failed_requests_total{reason=\"connection\"}") >= 3.0);
    assert_eq!(series(&metrics, "gomod_trace_otlp_exported_builds_total"), 0.0);
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await }).expect("the exporter ends").unwrap();
}

#[test]
fn a_retry_after_past_every_bound_costs_that_batch_and_the_exporter_goes_on() {
    // Seconds that overflow any clock (u64::MAX, and a number past u64), and a
    // date eight thousand years away: each asks for a wait longer than the
    // exporter ever holds a batch, so that batch is dropped at once and counted.
    let receiver = Receiver::start("127.0.0.1:0");
    receiver.answer_first(&[
        (503, Some("18446744073709551615")),
        (429, Some("99999999999999999999999999")),
        (503, Some("Fri, 31 Dec 9999 23:59:59 GMT")),
    ]);
    let config = OtlpConfig::resolve(Some(&receiver.url()), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let tuning = Tuning { batch: 1, linger: Duration::from_millis(10), ..quick() };
    let runtime = runtime();
    let (_stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, tuning, metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    let builds = four_builds();
    let started = Instant::now();
    for build in &builds {
        offer.offer(build.clone());
    }
    // Long before the retry bound (10 s): the endpoint's wait is known to be longer.
    wait_until("three batches given up", Duration::from_secs(5), || drops(&metrics, "retries_exhausted") == 3.0);
    let accepted = receiver.wait_for("the fourth build", Duration::from_secs(5), |r| !r.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(build_ids(&accepted[0].request), [builds[3].id.clone()]);
    assert_eq!(receiver.attempts(), 4, "no retry of a batch the endpoint said to hold back");
    assert_eq!(series(&metrics, "gomod_trace_otlp_exported_builds_total"), 1.0);
    // Still running: the next build goes out too.
    offer.offer(builds[0].clone());
    receiver.wait_for("a later build", Duration::from_secs(5), |r| r.len() == 2);
    drop(offer);
    let ended = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await }).expect("the exporter ends");
    ended.expect("the exporter did not panic");
}

#[test]
fn a_413_splits_the_batch_and_a_build_still_too_large_alone_is_dropped() {
    let receiver = Receiver::start("127.0.0.1:0");
    // The four builds (one batch) are too large; then the first half (two) too;
    // then its first build alone too: that one is dropped, everything else arrives.
    receiver.answer_first(&[(413, None), (413, None), (413, None)]);
    let config = OtlpConfig::resolve(Some(&receiver.url()), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let runtime = runtime();
    let (_stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, quick(), metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    let builds = four_builds();
    for build in &builds {
        offer.offer(build.clone());
    }
    wait_until("every build accounted for", Duration::from_secs(5), || {
        series(&metrics, "gomod_trace_otlp_exported_builds_total") + drops(&metrics, "too_large") >= 4.0
    });
    let accepted: Vec<Vec<String>> = receiver.accepted().iter().map(|r| build_ids(&r.request)).collect();
    let ids: Vec<String> = builds.iter().map(|b| b.id.clone()).collect();
    assert_eq!(accepted, [vec![ids[1].clone()], vec![ids[2].clone(), ids[3].clone()]], "halves, in order, each once");
    assert_eq!(receiver.attempts(), 5, "4 → 2 → 1 refused, then 1 and 2 accepted: no retry of the same body");
    assert_eq!(drops(&metrics, "too_large"), 1.0);
    assert_eq!(series(&metrics, "gomod_trace_otlp_exported_builds_total"), 3.0);
    assert_eq!(series(&metrics, "gomod_trace_otlp_failed_requests_total{reason=\"too_large\"}"), 3.0);
    assert_eq!(drops(&metrics, "rejected"), 0.0);
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await }).expect("the exporter ends").unwrap();
}

#[test]
fn a_collector_body_limit_gets_every_build_in_requests_under_it() {
    // A collector that refuses bodies over the size of the largest build alone:
    // batches are split until each fits, nothing is lost or sent twice.
    let builds = four_builds();
    let resource = ResourceInfo::this_host();
    let alone = |b: &Build| trace_request(std::slice::from_ref(b), &resource).encoded_len();
    let limit = builds.iter().map(alone).max().unwrap();
    let receiver = Receiver::start("127.0.0.1:0");
    receiver.refuse_bodies_over(limit);
    let config = OtlpConfig::resolve(Some(&receiver.url()), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let runtime = runtime();
    let (_stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, quick(), metrics.otlp.clone(), resource.clone(), stop) });
    for build in &builds {
        offer.offer(build.clone());
    }
    wait_until("every build exported", Duration::from_secs(5), || series(&metrics, "gomod_trace_otlp_exported_builds_total") == 4.0);
    let accepted = receiver.accepted();
    assert!(accepted.iter().all(|r| r.body_len <= limit));
    let mut ids: Vec<String> = accepted.iter().flat_map(|r| build_ids(&r.request)).collect();
    ids.sort();
    let mut expected: Vec<String> = builds.iter().map(|b| b.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected, "each build once");
    for reason in ["too_large", "rejected", "retries_exhausted"] {
        assert_eq!(drops(&metrics, reason), 0.0, "{reason}");
    }
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await }).expect("the exporter ends").unwrap();
}

#[test]
fn a_stop_sends_what_is_queued_at_once_while_the_queue_is_still_open() {
    // A healthy endpoint, builds waiting for their batch to fill (30 s): the stop
    // sends them at once. The offer stays alive (in the daemon, the stop comes
    // when the correlator has offered its last build; here, it does not end the
    // queue): an exporter that ignores the stop waits out the linger, one that
    // drops what is queued at the stop delivers nothing.
    let receiver = Receiver::start("127.0.0.1:0");
    let config = OtlpConfig::resolve(Some(&receiver.url()), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let tuning = Tuning { linger: Duration::from_secs(30), flush: Duration::from_secs(2), ..quick() };
    let runtime = runtime();
    let (stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, tuning, metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    let builds = four_builds();
    for build in &builds[..2] {
        offer.offer(build.clone());
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(receiver.attempts(), 0, "still waiting for the batch to fill");
    let stopping = Instant::now();
    stop_tx.send(true).unwrap();
    receiver.wait_for("the queued builds", Duration::from_secs(2), |r| r.iter().map(|r| build_ids(&r.request).len()).sum::<usize>() == 2);
    assert!(stopping.elapsed() < Duration::from_secs(1), "at once, not after the linger: {:?}", stopping.elapsed());
    // Offered after the stop, within the flush time: sent at once too.
    offer.offer(builds[2].clone());
    let accepted = receiver.wait_for("the build offered after the stop", Duration::from_secs(2), |r| r.len() == 2);
    assert!(stopping.elapsed() < Duration::from_secs(2), "within the flush time: {:?}", stopping.elapsed());
    let requests: Vec<_> = accepted.into_iter().map(|r| r.request).collect();
    for build in &builds[..3] {
        check(&only_build(&requests, &build.id), &timeline_json(build));
    }
    assert_eq!(series(&metrics, "gomod_trace_otlp_exported_builds_total"), 3.0);
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(1), task).await }).expect("the exporter ends").unwrap();
}

#[test]
fn a_stop_gives_a_failing_endpoint_the_flush_time_then_drops_without_trying() {
    // Every request answered 503: the stop leaves the flush time (0.5 s, much
    // less than the retry bound of 10 s), then everything still queued is
    // counted, and what comes later is dropped without a request.
    let receiver = Receiver::start("127.0.0.1:0");
    receiver.answer_first(&[(503, None); 200]);
    let config = OtlpConfig::resolve(Some(&receiver.url()), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let tuning = Tuning { flush: Duration::from_millis(500), batch: 1, linger: Duration::from_millis(10), ..quick() };
    let runtime = runtime();
    let (stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, tuning, metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    let builds = four_builds();
    for build in &builds[..2] {
        offer.offer(build.clone());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.attempts() >= 1, "retrying");
    let stopping = Instant::now();
    stop_tx.send(true).unwrap();
    wait_until("both builds given up", Duration::from_secs(2), || drops(&metrics, "shutdown") == 2.0);
    // (It may give up a little early: when the next backoff would end past the flush time.)
    let took = stopping.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(1000), "the flush time, not less or much more: {took:?}");
    // Past the flush time: dropped without a request.
    std::thread::sleep(Duration::from_millis(600).saturating_sub(stopping.elapsed()));
    let attempts = receiver.attempts();
    offer.offer(builds[2].clone());
    wait_until("the late build dropped", Duration::from_secs(1), || drops(&metrics, "shutdown") == 3.0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(receiver.attempts(), attempts, "nothing sent after the flush time");
    assert_eq!(drops(&metrics, "retries_exhausted"), 0.0);
    // The stop signal's sender gone counts as a stop too; the exporter ends with the queue.
    drop(stop_tx);
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(1), task).await }).expect("the exporter ends").unwrap();
}

#[test]
fn batches_are_capped_by_size_and_a_build_larger_than_the_cap_goes_alone() {
    // Five copies of one build (same size) and one much larger, under a cap of
    // two and a half small builds.
    let small = |i: usize| Build { id: format!("small-{i}"), ..fixture("clean_download") };
    let mut big = small(0);
    big.id = "big-0000".into();
    big.spans = (0..10).flat_map(|_| big.spans.clone()).collect();
    let resource = ResourceInfo::this_host();
    let size = |b: &Build| trace_request(std::slice::from_ref(b), &resource).encoded_len();
    let cap = size(&small(1)) * 5 / 2;
    assert!(size(&big) > cap);
    let receiver = Receiver::start("127.0.0.1:0");
    let config = OtlpConfig::resolve(Some(&receiver.url()), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let tuning = Tuning { batch_bytes: cap, ..quick() };
    let runtime = runtime();
    let (_stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, tuning, metrics.otlp.clone(), resource.clone(), stop) });
    let builds = [small(1), small(2), big.clone(), small(3), small(4), small(5)];
    for build in &builds {
        offer.offer(build.clone());
    }
    receiver.wait_for("every build", Duration::from_secs(5), |r| r.len() >= 4);
    std::thread::sleep(Duration::from_millis(300));
    let accepted: Vec<_> = receiver.accepted().into_iter().filter(|r| !build_ids(&r.request).is_empty()).collect();
    let batches: Vec<Vec<String>> = accepted.iter().map(|r| build_ids(&r.request)).collect();
    assert_eq!(batches, [vec!["small-1", "small-2"], vec!["big-0000"], vec!["small-3", "small-4"], vec!["small-5"]], "in order, each once");
    for request in accepted.iter().filter(|r| build_ids(&r.request).len() > 1) {
        assert!(request.body_len <= cap, "{} > {cap}", request.body_len);
    }
    assert_eq!(series(&metrics, "gomod_trace_otlp_exported_builds_total"), 6.0);
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await }).expect("the exporter ends").unwrap();
}

#[test]
fn a_stop_cuts_short_a_request_the_endpoint_never_answers() {
    // An endpoint that takes connections and never answers; the request timeout
    // (10 s) is far past the flush time (0.5 s): the stop ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let (connection, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(connection);
    });
    let config = OtlpConfig::resolve(Some(&format!("http://{addr}")), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let tuning = Tuning {
        request_timeout: Duration::from_secs(10),
        flush: Duration::from_millis(500),
        linger: Duration::from_millis(10),
        ..quick()
    };
    let runtime = runtime();
    let (stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, tuning, metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    offer.offer(fixture("clean_download"));
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    stop_tx.send(true).unwrap();
    wait_until("the build given up", Duration::from_secs(2), || drops(&metrics, "shutdown") == 1.0);
    let took = stopping.elapsed();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1000), "at the end of the flush time: {took:?}");
    assert_eq!(series(&metrics, "gomod_trace_otlp_failed_requests_total{reason=\"timeout\"}"), 1.0);
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(1), task).await }).expect("the exporter ends").unwrap();
    held.join().unwrap();
}
