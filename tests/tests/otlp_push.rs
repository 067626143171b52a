//! The daemon's OTLP push path without root or a kernel: recorded builds
//! (fixtures, replayed) offered to the exporter task, which posts them to the
//! OTLP/HTTP receiver of gomod_trace_lab::viewers::otlp. Retries end in one
//! delivery, an endpoint that is down costs counted drops after the bound, a full
//! queue drops at once (the correlator never waits), and a stop flushes.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use gomod_trace::{
    correlate::Correlator,
    daemon::otlp::{self, OtlpConfig, Tuning},
    export::otlp::ResourceInfo,
    metrics::Metrics,
    record,
    timeline::{Build, Timeline},
};
use gomod_trace_lab::viewers::otlp::{Receiver, check, only_build};
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
fn a_stop_flushes_what_is_queued_within_the_flush_time() {
    // A healthy endpoint: builds waiting for their batch go out at once.
    let receiver = Receiver::start("127.0.0.1:0");
    let config = OtlpConfig::resolve(Some(&receiver.url()), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let tuning = Tuning { linger: Duration::from_secs(30), ..quick() };
    let runtime = runtime();
    let (stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, tuning, metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    let builds = [fixture("clean_download"), fixture("fallback_to_git")];
    for build in &builds {
        offer.offer(build.clone());
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(receiver.attempts(), 0, "still waiting for the batch to fill");
    let stopping = Instant::now();
    stop_tx.send(true).unwrap();
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(3), task).await }).expect("the exporter ends").unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2), "{:?}", stopping.elapsed());
    let requests: Vec<_> = receiver.accepted().into_iter().map(|r| r.request).collect();
    for build in &builds {
        check(&only_build(&requests, &build.id), &timeline_json(build));
    }
    assert_eq!(series(&metrics, "gomod_trace_otlp_exported_builds_total"), 2.0);

    // An endpoint that is down: the stop gives it the flush time, then counts the rest.
    drop(stop_tx);
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = OtlpConfig::resolve(Some(&format!("http://{nobody}")), &[], |_| None).unwrap().unwrap();
    let metrics = Metrics::new();
    let tuning = Tuning { flush: Duration::from_millis(300), batch: 1, ..quick() };
    let (stop_tx, stop) = watch::channel(false);
    let (offer, task) = runtime.block_on(async { otlp::spawn(config, tuning, metrics.otlp.clone(), ResourceInfo::this_host(), stop) });
    for build in &builds {
        offer.offer(build.clone());
    }
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    // (The stop signal's sender gone counts as a stop too.)
    drop(stop_tx);
    drop(offer);
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(3), task).await }).expect("the exporter ends").unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(1), "bounded by the flush time: {:?}", stopping.elapsed());
    assert_eq!(series(&metrics, "gomod_trace_otlp_dropped_builds_total{reason=\"shutdown\"}"), 2.0);
}
