//! What `/healthz` knows of the cycles under way: for each backup server, when its running
//! cycle began and when it last had an answer from the server. A first cycle over
//! thousands of users on a slow server can take longer than two schedule periods; its
//! answers, coming in one after another, tell a poller at work from one that hangs.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Shared by the pollers (which write it) and the health listener (which reads it). In
/// memory only: after a restart, health counts from the start again.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<Mutex<BTreeMap<String, ServerProgress>>>);

/// One backup server's cycle under way.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerProgress {
    /// When its running cycle began; `None` between cycles.
    pub cycle_started: Option<DateTime<Utc>>,
    /// When a request of one of its cycles last ended (answered, refused or timed out).
    pub last_answer: Option<DateTime<Utc>>,
}

impl Progress {
    fn update(&self, server: &str, change: impl FnOnce(&mut ServerProgress)) {
        let mut servers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match servers.get_mut(server) {
            Some(progress) => change(progress),
            None => change(servers.entry(server.to_owned()).or_default()),
        }
    }

    /// Marks `server`'s cycle as running from `at` until the returned guard is dropped
    /// (the cycle ended, failed or was cut short by a stop).
    pub fn cycle_running(&self, server: &str, at: DateTime<Utc>) -> RunningCycle {
        self.update(server, |p| p.cycle_started = Some(at));
        RunningCycle {
            progress: self.clone(),
            server: server.to_owned(),
        }
    }

    /// Notes that a request to `server` ended at `at`.
    pub fn answered(&self, server: &str, at: DateTime<Utc>) {
        self.update(server, |p| p.last_answer = Some(at));
    }

    /// `server`'s progress; for `""` (`/healthz`'s name for the server of a store that
    /// names none, which has one poller), the latest of every server's.
    pub fn of(&self, server: &str) -> ServerProgress {
        let servers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match server {
            "" => servers
                .values()
                .fold(ServerProgress::default(), |a, b| ServerProgress {
                    cycle_started: a.cycle_started.max(b.cycle_started),
                    last_answer: a.last_answer.max(b.last_answer),
                }),
            name => servers.get(name).copied().unwrap_or_default(),
        }
    }

    /// When the cycle under way longest began, if one is.
    pub fn oldest_running(&self) -> Option<DateTime<Utc>> {
        let servers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        servers.values().filter_map(|p| p.cycle_started).min()
    }
}

/// A cycle under way (see [`Progress::cycle_running`]).
pub struct RunningCycle {
    progress: Progress,
    server: String,
}

impl Drop for RunningCycle {
    fn drop(&mut self) {
        self.progress
            .update(&self.server, |p| p.cycle_started = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_cycle_runs_until_its_guard_drops_and_answers_are_kept_per_server() {
        let progress = Progress::default();
        let running = progress.cycle_running("eu", at(0));
        progress.answered("eu", at(5));
        progress.answered("us", at(7));
        assert_eq!(
            progress.of("eu"),
            ServerProgress {
                cycle_started: Some(at(0)),
                last_answer: Some(at(5)),
            }
        );
        assert_eq!(progress.of("us").cycle_started, None);
        let other = progress.cycle_running("ap", at(3));
        assert_eq!(progress.oldest_running(), Some(at(0)));
        drop(other);
        assert_eq!(progress.of("ap"), ServerProgress::default());
        assert_eq!(
            progress.of(""),
            ServerProgress {
                cycle_started: Some(at(0)),
                last_answer: Some(at(7)),
            }
        );
        drop(running);
        assert_eq!(progress.of("eu").cycle_started, None);
        assert_eq!(progress.oldest_running(), None);
        assert_eq!(progress.of("eu").last_answer, Some(at(5)));
    }
}
