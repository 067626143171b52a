//! How much the correlator keeps: a build that opens millions of connections,
//! spawns millions of processes or starts endless builds cannot grow the daemon
//! without bound. What a limit refuses is counted ([`Dropped`]) and the build it
//! belonged to is marked incomplete with a note saying what was dropped.

/// The correlator's limits. The defaults are far above what a real build needs
/// (a `go build` of thousands of modules opens a few thousand connections and
/// some tens of thousands of spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Spans of one build; past it, events that would open more are dropped
    /// (checked before each event: one event may still open a few).
    pub spans_per_build: usize,
    /// Builds open at once; past it, a new build is not traced.
    pub open_builds: usize,
    /// Connections (sockets) tracked at once, over all builds.
    pub connections: usize,
    /// Processes tracked at once (the parent map of forks), over all builds.
    pub processes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            spans_per_build: 200_000,
            open_builds: 1_024,
            connections: 65_536,
            processes: 65_536,
        }
    }
}

/// What a limit refused, by kind (one build's, or the correlator's total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Events dropped because their build had reached its span limit.
    pub spans: u64,
    /// Builds not traced because too many were open.
    pub builds: u64,
    /// Connections not tracked because too many were.
    pub connections: u64,
    /// Processes not tracked because too many were.
    pub processes: u64,
}

impl Dropped {
    /// The `what` label of `gomod_trace_dropped_total` and the count of each.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("spans", self.spans),
            ("builds", self.builds),
            ("connections", self.connections),
            ("processes", self.processes),
        ]
    }

    pub fn any(&self) -> bool {
        self.by_kind().iter().any(|(_, n)| *n > 0)
    }

    /// The notes a build carries for what was dropped of it.
    pub fn notes(&self, limits: &Limits) -> Vec<String> {
        let mut notes = Vec::new();
        if self.spans > 0 {
            notes.push(format!(
                "limits: {} events dropped: the build reached {} spans (--max-spans-per-build)",
                self.spans, limits.spans_per_build
            ));
        }
        if self.connections > 0 {
            notes.push(format!(
                "limits: {} connections not traced: {} were tracked at once (--max-connections)",
                self.connections, limits.connections
            ));
        }
        if self.processes > 0 {
            notes.push(format!(
                "limits: {} processes not tracked: {} were tracked at once (--max-processes)",
                self.processes, limits.processes
            ));
        }
        notes
    }
}
