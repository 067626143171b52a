//! `gomod-trace run -- COMMAND`: attach, start the command, collect the events of
//! the builds it starts until it exits, then render their timelines. The command's
//! exit status is ours; tracer errors never hide it.
use std::{
    io::IsTerminal as _,
    os::unix::process::ExitStatusExt as _,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use nix::{sys::signal::Signal, time::ClockId, unistd::Pid};
use tokio::{io::unix::AsyncFd, signal::unix::{SignalKind, signal}};

use super::{Console, EXIT_TRACER_ERROR, write_timeline};
use crate::{
    capture::Capture,
    cli::RunArgs,
    correlate::Correlator,
    decode::DecodeContext,
    event::Event,
    probe::{Probe, ProbeOptions},
    record::Recorder,
};

/// How long at most to keep reading after the command exits: sockets of the build
/// close (and their last events arrive) as its processes exit, within 3 ms in
/// every recording of the lab's scenarios. Reading stops at the first drain, one
/// `SETTLE_STEP` after the last, that finds nothing new.
const SETTLE: Duration = Duration::from_millis(300);
const SETTLE_STEP: Duration = Duration::from_millis(50);

fn clock_ns(clock: ClockId) -> i64 {
    clock.now().map_or(0, |t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
}

/// The anchor that ties kernel timestamps to wall-clock time.
pub fn clock_anchor() -> Event {
    Event::Clock {
        monotonic_ns: clock_ns(ClockId::CLOCK_MONOTONIC) as u64,
        realtime_ns: clock_ns(ClockId::CLOCK_REALTIME),
    }
}

/// Reads the events the kernel has written so far.
struct Collector {
    capture: Capture,
    events: Vec<Event>,
}

impl Collector {
    fn drain(&mut self, ring: &mut RingBuf<MapData>, probe: &mut Probe) {
        let from = self.events.len();
        while let Some(item) = ring.next() {
            self.capture.record(&item, &mut self.events);
        }
        self.capture.completed(&mut self.events);
        probe.watch(&mut self.events, from);
    }

    fn check_lost(&mut self, probe: &Probe) {
        match probe.lost() {
            Ok(lost) => self.events.extend(self.capture.losses(lost)),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

fn status_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub async fn run(args: &RunArgs) -> i32 {
    if let Err(e) = super::check_output(&args.output, Console::Stderr) {
        eprintln!("gomod-trace: {e}");
        return EXIT_TRACER_ERROR;
    }
    let options = ProbeOptions { go_command: args.go_command.clone(), scope: Some(std::process::id()) };
    let mut probe = match Probe::attach(&options) {
        Ok(probe) => probe,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    let mut recorder = match args.record.as_deref().map(Recorder::create).transpose() {
        Ok(recorder) => recorder,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    let mut ring = match probe.take_events().map_err(|e| e.to_string()).and_then(|ring| {
        // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd lives.
        unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| format!("cannot poll the ring buffer: {e}"))
    }) {
        Ok(ring) => ring,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    let mut collector = Collector {
        capture: Capture::new(DecodeContext {
            drop_reasons: probe.drop_reasons.clone(),
            go_executables: probe.go_executables(),
        }),
        events: vec![clock_anchor()],
    };
    // Probed before the command starts, so that its first requests are seen.
    let command = std::path::Path::new(&args.command[0]);
    let go_command = command.file_name().is_some_and(|name| name == args.go_command.as_str());
    for toolchain in crate::probe::requests::known_toolchains(go_command.then_some(args.command[0].as_str()), false) {
        probe.trace_requests(&toolchain);
    }

    let mut child = match tokio::process::Command::new(&args.command[0]).args(&args.command[1..]).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("gomod-trace: cannot start {}: {e}", args.command[0]);
            return if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
        }
    };
    let child_pid = child.id().map(|id| Pid::from_raw(id as i32));
    let (mut sigint, mut sigterm) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        _ => {
            eprintln!("gomod-trace: cannot install signal handlers");
            let _ = child.kill().await;
            return EXIT_TRACER_ERROR;
        }
    };

    let mut live = std::io::stderr().is_terminal().then(|| super::progress::LiveLine::new(args.judge.settings()));
    let mut drain = tokio::time::interval(crate::probe::DRAIN_EVERY);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = drain.tick() => {
                collector.drain(ring.get_mut(), &mut probe);
                collector.check_lost(&probe);
                probe.flush_logs();
                if let Some(live) = &mut live {
                    live.update(&collector.events, &probe);
                }
            }
            guard = ring.readable_mut() => match guard {
                Ok(mut guard) => {
                    collector.drain(guard.get_inner_mut(), &mut probe);
                    guard.clear_ready();
                    collector.check_lost(&probe);
                    probe.flush_logs();
                }
                Err(e) => {
                    eprintln!("gomod-trace: cannot read the ring buffer: {e}; waiting for the command");
                    break child.wait().await;
                }
            },
            // Ctrl-C reaches the command too (same process group): wait for it.
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {
                if let Some(pid) = child_pid {
                    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
                }
            }
        }
    };
    if let Some(live) = &live {
        live.clear();
    }
    let code = match status {
        Ok(status) => status_code(status),
        Err(e) => {
            eprintln!("gomod-trace: cannot wait for {}: {e}", args.command[0]);
            EXIT_TRACER_ERROR
        }
    };

    let settle_until = tokio::time::Instant::now() + SETTLE;
    loop {
        tokio::time::sleep(SETTLE_STEP).await;
        let read = collector.events.len();
        collector.drain(ring.get_mut(), &mut probe);
        if collector.events.len() == read || tokio::time::Instant::now() >= settle_until {
            break;
        }
    }
    // The configuration files still being read (at most capture::READ_TIMEOUT).
    let from = collector.events.len();
    collector.capture.settle(&mut collector.events).await;
    probe.watch(&mut collector.events, from);
    collector.check_lost(&probe);
    drop(ring);
    probe.release_in_background();

    if let Some(mut recorder) = recorder.take() {
        let written = collector.events.iter().try_for_each(|e| recorder.write(e)).and_then(|()| recorder.finish());
        if let Err(e) = written {
            eprintln!("gomod-trace: {e}");
        }
    }
    let timeline = Correlator::timeline(collector.events, args.judge.settings());
    if let Err(e) = write_timeline(&timeline, &args.output, Console::Stderr) {
        eprintln!("gomod-trace: {e}");
    }
    code
}
