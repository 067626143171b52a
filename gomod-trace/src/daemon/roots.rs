//! Whether a build's root process still runs, from /proc: the evidence on which
//! the daemon closes a build whose exit it never saw (lost events) long before
//! the idle timeout. A pid may have been reused: the process found must have
//! started no later than the build did. Needs the host's PID namespace (the
//! DaemonSet has `hostPID: true`), as the probes do.
use std::collections::HashSet;

/// Whether the process `pid` is the one that started a build at `build_start_ns`
/// (CLOCK_MONOTONIC, the events' clock). `None` when it cannot be told (then the
/// build is left to the idle timeout).
pub fn still_runs(pid: u32, build_start_ns: u64) -> Option<bool> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    let started_ns = crate::procstat::start_monotonic_ns(&stat)?;
    // A process forks before it executes go; one tick of slack for rounding.
    Some(started_ns <= build_start_ns + crate::procstat::tick_ns())
}

/// Builds whose root was found gone twice in a row: the first sighting may be
/// an exit whose event is still on its way (events wait to be put in order).
#[derive(Default)]
pub struct GoneRoots {
    suspects: HashSet<(u32, u64)>,
}

impl GoneRoots {
    /// From the open builds' (root, start), those gone at this look and the last.
    pub fn confirm(&mut self, open: &[(u32, u64)], still_runs: impl Fn(u32, u64) -> Option<bool>) -> Vec<(u32, u64)> {
        let gone: HashSet<(u32, u64)> = open.iter().copied().filter(|&(pid, start)| still_runs(pid, start) == Some(false)).collect();
        let confirmed = gone.intersection(&self.suspects).copied().collect();
        self.suspects = gone;
        confirmed
    }
}

#[cfg(test)]
mod tests {
    use nix::time::{ClockId, clock_gettime};

    use super::*;

    #[test]
    fn this_process_runs_and_a_reused_pid_does_not_count() {
        let me = std::process::id();
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
        let now_ns = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
        assert_eq!(still_runs(me, now_ns), Some(true), "started before now");
        // A build that started before this process did: the pid was reused.
        assert_eq!(still_runs(me, 1), Some(false));
        assert_eq!(still_runs(u32::MAX - 1, now_ns), Some(false), "no such process");
    }

    #[test]
    fn a_root_is_gone_only_when_seen_gone_twice() {
        let mut gone = GoneRoots::default();
        let open = [(1, 10), (2, 20)];
        let runs = |pid: u32, _| Some(pid == 1);
        assert!(gone.confirm(&open, runs).is_empty(), "seen once");
        assert_eq!(gone.confirm(&open, runs), vec![(2, 20)]);
        // Undecidable is not gone.
        assert!(gone.confirm(&open, |_, _| None).is_empty());
    }
}
