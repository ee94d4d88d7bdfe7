//! Repeat failures escalate: a count of consecutive failed restores per (server, user,
//! backup set), kept in the store. An alert carries its place in the row ("3rd failure in a
//! row since 2024-06-24"), a success resets the count, and `discord.mention_role` is pinged
//! only at the thresholds `alerts.ping` names, not on every repeat.
//!
//! The poller asks [`Streaks::next`] before it records a job (the alert is written with
//! its job in one transaction) and calls [`Streaks::record`] after. A crash in between
//! leaves the count one short; the next failure counts on from there.

use crate::cbs::model::{RestoreJob, StatusClass};
use crate::config::{AlertSettings, PingWhen};
use crate::event::{Event, EventKind, Repeat};
use crate::render::wants_ping;
use crate::store::{Store, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeSet;

const STREAK_TREE: &str = "failure_streaks";

/// The consecutive failure counts in the store.
#[derive(Clone)]
pub struct Streaks {
    store: Store,
}

fn key(job: &RestoreJob) -> Vec<u8> {
    [&job.server, &job.login_name, &job.backup_set_id]
        .map(|s| s.as_bytes())
        .join(&0u8)
}

/// The day a job ended, in the zone the server reported it in.
fn day_of(job: &RestoreJob, now: DateTime<Utc>) -> NaiveDate {
    job.end_time
        .map_or_else(|| now.date_naive(), |t| t.date_naive())
}

impl Streaks {
    pub fn open(store: &Store) -> Result<Streaks, StoreError> {
        Ok(Streaks {
            store: store.clone(),
        })
    }

    /// Its tree, taken for each use (see [`Store::tree`]).
    fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.store.tree(STREAK_TREE)
    }

    fn current(&self, job: &RestoreJob) -> Option<Repeat> {
        let bytes = self.tree().ok()?.get(key(job)).ok()??;
        // An unreadable count starts a new row rather than stopping an alert.
        serde_json::from_slice(&bytes).ok()
    }

    /// What `job`'s alert says if it is a failure: the row it would extend.
    pub fn next(&self, job: &RestoreJob, now: DateTime<Utc>) -> Repeat {
        match self.current(job) {
            Some(r) => Repeat {
                count: r.count.saturating_add(1),
                since: r.since,
            },
            None => Repeat {
                count: 1,
                since: day_of(job, now),
            },
        }
    }

    /// Records that `job` ended in `class`: an alerting class extends the row, a success
    /// (or warning) ends it; a cancelled job changes nothing.
    pub fn record(
        &self,
        job: &RestoreJob,
        alert_classes: &BTreeSet<StatusClass>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if alert_classes.contains(&job.class) {
            let next = self.next(job, now);
            let bytes = serde_json::to_vec(&next).expect("a count serializes");
            self.tree()?.insert(key(job), bytes)?;
        } else if matches!(job.class, StatusClass::Success | StatusClass::Warning) {
            self.tree()?.remove(key(job))?;
        }
        Ok(())
    }
}

/// Whether `event` pings the role under `alerts.ping`: with `thresholds`, a failure pings
/// at the first of its row and at the `escalate_after`-th; storm cards, stuck jobs and
/// outage notices always do.
pub fn pings(event: &Event, alerts: &AlertSettings) -> bool {
    match alerts.ping {
        PingWhen::Never => false,
        PingWhen::Every => wants_ping(event),
        PingWhen::Thresholds => match &event.kind {
            EventKind::JobFinished {
                repeat: Some(r), ..
            } => wants_ping(event) && (r.count <= 1 || r.count == alerts.escalate_after),
            _ => wants_ping(event),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::render::ordinal;
    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "101st", "111th"
            ]
        );
    }
}
