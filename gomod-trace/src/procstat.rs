//! When a process started, from its /proc/PID/stat: how a PID that was reused
//! is told from the process the events named.
use nix::time::{ClockId, clock_gettime};

/// When the process of a /proc/PID/stat text started, in CLOCK_MONOTONIC
/// nanoseconds, the events' clock. The kernel gives clock ticks since boot
/// (CLOCK_BOOTTIME, which counts suspend; the events' clock stops then).
pub fn start_monotonic_ns(stat: &str) -> Option<u64> {
    let per_second = u64::try_from(nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??).ok()?.max(1);
    let started_boot_ns = start_ticks(stat)?.checked_mul(1_000_000_000)? / per_second;
    let ns = |id| clock_gettime(id).ok().map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64));
    let suspended_ns = ns(ClockId::CLOCK_BOOTTIME)?.saturating_sub(ns(ClockId::CLOCK_MONOTONIC)?);
    Some(started_boot_ns.saturating_sub(suspended_ns))
}

/// One clock tick of /proc's start times, in nanoseconds: their resolution.
pub fn tick_ns() -> u64 {
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
    1_000_000_000 / per_second
}

/// Field 22 of /proc/PID/stat (start time in clock ticks), counted after the
/// command name's closing parenthesis (the name may hold spaces and parentheses).
fn start_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_read_after_the_name() {
        let stat = "4242 (go (build) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 123456 1000 10 18446744073709551615";
        assert_eq!(start_ticks(stat), Some(123_456));
        assert_eq!(start_ticks("garbage"), None);
    }

    #[test]
    fn this_process_started_before_now() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
        let now_ns = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
        let started = start_monotonic_ns(&stat).unwrap();
        assert!(started <= now_ns && started > 0, "{started} vs {now_ns}");
    }
}
