//! The report of a cycle: its summary and counts, as the caller (the log, the metrics,
//! the heartbeat) sees them, and two servers' reports combined into one.

use crate::event::{CycleSummary, UNREADABLE_LISTED_MAX};

/// The result of one cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct CycleReport {
    pub summary: CycleSummary,
    /// Jobs recorded as a baseline (first cycle of a user).
    pub baselined: u32,
    pub pruned: usize,
    /// Servers whose user listing (`[discover]`) was attempted in the cycle and failed,
    /// wholly or for an owner, or listed nobody. Not among `summary.errors`, which are the
    /// polls' (a listing that fails keeps the last list, and polling goes on).
    pub discovery_errors: u32,
    /// Failures that tell about the server rather than one user: those an outage counts
    /// (no connection, a timeout, a 5xx, the system user's credentials refused; see
    /// [`crate::cbs::CbsError::outage_reason`]), including a failed user listing of a
    /// server with nobody else to ask. A per-user refusal (an unknown login) is among
    /// `summary.errors` but not here: the server answered it.
    pub server_errors: u32,
}

#[cfg(test)]
impl CycleReport {
    /// Test data: a cycle of `requests` requests, `errors` of which failed for a
    /// server-wide reason (the server could not be reached).
    pub(crate) fn with_errors(requests: u32, errors: usize) -> CycleReport {
        let error = crate::event::PollError {
            login_name: "obm".into(),
            date: chrono::NaiveDate::from_ymd_opt(2024, 6, 26).unwrap(),
            message: "cannot reach cbs".into(),
        };
        CycleReport {
            summary: CycleSummary {
                requests,
                errors: vec![error; errors],
                ..CycleSummary::default()
            },
            baselined: 0,
            pruned: 0,
            discovery_errors: 0,
            server_errors: errors as u32,
        }
    }
}

impl CycleReport {
    /// Two servers' cycles as one, for the log, the metrics and the heartbeat: counts add
    /// up, errors are listed together, the time span covers both.
    pub fn combine(mut self, other: CycleReport) -> CycleReport {
        let (a, b) = (&mut self.summary, other.summary);
        a.started_at = a.started_at.min(b.started_at);
        a.finished_at = a.finished_at.max(b.finished_at);
        a.users_polled = a.users_polled.saturating_add(b.users_polled);
        a.requests = a.requests.saturating_add(b.requests);
        for (class, n) in b.finished {
            let entry = a.finished.entry(class).or_default();
            *entry = entry.saturating_add(n);
        }
        a.started_running = a.started_running.saturating_add(b.started_running);
        a.alerts = a.alerts.saturating_add(b.alerts);
        a.muted = a.muted.saturating_add(b.muted);
        a.errors.extend(b.errors);
        a.unreadable_items = a.unreadable_items.saturating_add(b.unreadable_items);
        a.unreadable.extend(b.unreadable);
        a.unreadable.truncate(UNREADABLE_LISTED_MAX);
        self.baselined += other.baselined;
        self.pruned += other.pruned;
        self.discovery_errors += other.discovery_errors;
        self.server_errors = self.server_errors.saturating_add(other.server_errors);
        self
    }

    /// Whether every CBS request of the cycle succeeded.
    pub fn ok(&self) -> bool {
        self.summary.errors.is_empty()
    }

    /// Whether every backup server of the cycle answered: no failure for a server-wide
    /// reason, though some requests may have been refused for one user (an unknown login).
    pub fn servers_answered(&self) -> bool {
        self.server_errors == 0
    }
}
