//! The daemon's long-lived tasks, in one `JoinSet`: the first to end while the
//! daemon runs (returned or panicked) is a failure that stops the daemon with a
//! non-zero status, so that systemd or Kubernetes restart it rather than leave a
//! daemon that answers but no longer traces.
use std::{collections::HashMap, future::Future};

use tokio::task::{Id, JoinSet};

#[derive(Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

/// How a task ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Ended {
    pub name: &'static str,
    /// The panic's message; `None` when the task returned.
    pub panic: Option<String>,
}

impl Ended {
    /// Why the daemon stops, when this task ended while it ran.
    pub fn as_failure(&self) -> String {
        match &self.panic {
            Some(message) => format!("the {} task panicked ({message}); exiting so that the daemon is restarted", self.name),
            None => format!("the {} task ended unexpectedly; exiting so that the daemon is restarted", self.name),
        }
    }
}

impl Tasks {
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, name);
    }

    /// A task that blocks (the history writer: SQLite), on the blocking pool.
    pub fn spawn_blocking(&mut self, name: &'static str, task: impl FnOnce() + Send + 'static) {
        let id = self.set.spawn_blocking(task).id();
        self.names.insert(id, name);
    }

    /// Waits for the next task to end; `None` when none is left.
    pub async fn next(&mut self) -> Option<Ended> {
        let (id, panic) = match self.set.join_next_with_id().await? {
            Ok((id, ())) => (id, None),
            Err(e) => {
                let id = e.id();
                let panic = if e.is_panic() {
                    let payload = e.into_panic();
                    payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .or(Some("no message".into()))
                } else {
                    Some("cancelled".into())
                };
                (id, panic)
            }
        };
        Some(Ended { name: self.names.remove(&id).unwrap_or("unnamed"), panic })
    }

    /// Aborts what is left (the blocking ones run to their end).
    pub fn abort_all(&mut self) {
        self.set.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_reported_by_name() {
        let mut tasks = Tasks::default();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("reader", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("ring buffer gone");
        });
        let ended = tokio::time::timeout(Duration::from_secs(5), tasks.next()).await.unwrap().unwrap();
        assert_eq!(ended, Ended { name: "reader", panic: Some("ring buffer gone".into()) });
        assert!(ended.as_failure().contains("the reader task panicked (ring buffer gone)"), "{}", ended.as_failure());
        tasks.spawn_blocking("writer", || {});
        let ended = tokio::time::timeout(Duration::from_secs(5), tasks.next()).await.unwrap().unwrap();
        assert_eq!(ended, Ended { name: "writer", panic: None });
        assert!(ended.as_failure().contains("writer task ended unexpectedly"));
        tasks.abort_all();
        assert_eq!(tasks.next().await.unwrap().panic.as_deref(), Some("cancelled"));
        assert!(tasks.next().await.is_none(), "none left");
    }
}
