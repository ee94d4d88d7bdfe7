//! Events: what the poller (and the digest) has to tell the chat.
//!
//! An event is written to the store's outbox in the same transaction as the job record that
//! caused it, and leaves the outbox only after a sink accepted it. Events are plain data;
//! sinks decide how they look.

mod digest;

pub use crate::cbs::OutageReason;
pub use digest::{Digest, DigestAck, DigestHealth, DigestJob, ServerHealth};

use crate::cbs::model::{RestoreJob, StatusClass};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Job counts per status class.
pub type ClassCounts = BTreeMap<StatusClass, u32>;

/// One thing to tell the chat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Outbox order: increases with every event queued.
    pub id: u64,
    pub created_at: DateTime<Utc>,
    pub kind: EventKind,
}

impl Event {
    /// The backup-user owner (sub-admin/reseller) the event belongs to, for routing.
    pub fn owner(&self) -> Option<&str> {
        match &self.kind {
            EventKind::JobFinished { job, .. }
            | EventKind::JobStuck { job, .. }
            | EventKind::JobVanished { job, .. } => Some(&job.owner),
            EventKind::Baseline { owner, .. } => Some(owner),
            EventKind::FailureStorm { owner, .. } => owner.as_deref(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A job in an alerting class ended.
    JobFinished {
        job: RestoreJob,
        /// Its place in the set's row of consecutive failures (absent in older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repeat: Option<Repeat>,
        /// Details from `GetRestoreJobReport.do` (absent when not fetched or refused).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<crate::cbs::model::JobReport>,
        /// The `RestoreDate` the job was listed under, by which the store keeps it: its
        /// buttons name it (absent in older records, whose buttons name the start day).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listed_on: Option<NaiveDate>,
        /// The job had been reported vanished (outcome unknown) before the server listed
        /// its end.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        was_vanished: bool,
    },
    /// More failures than `alerts.group_after` in one cycle for one channel: one card
    /// listing them all, instead of an alert each (the first few still get their own).
    /// `owner`: the routed owner whose channel they go to; `None`: the alert channel.
    FailureStorm {
        owner: Option<String>,
        jobs: Vec<StormJob>,
    },
    /// A job has been running longer than `poll.stuck_after`.
    JobStuck { job: RestoreJob, running_secs: i64 },
    /// A job recorded as running that its date's reply no longer lists (`poll.vanished_after`):
    /// its outcome will never be known. Class unknown.
    JobVanished {
        job: RestoreJob,
        missing_since: DateTime<Utc>,
    },
    /// The first cycle of these users (all of one owner) found these finished jobs;
    /// recorded, not alerted. One event per owner and cycle, however many users: adding
    /// hundreds of users must not flood the chat either.
    Baseline {
        owner: String,
        users: Vec<BaselineUser>,
        /// The recorded jobs that would have alerted (in an alerting class), in order; at
        /// most `BASELINE_WOULD_ALERT_MAX` of the owner's.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        would_alert: Vec<StormJob>,
        /// How many jobs would have alerted, `would_alert` and those beyond it (0 in events
        /// queued before it was kept: then `would_alert` holds them all, or the first 500).
        #[serde(default)]
        would_alert_total: usize,
        /// The backup server these users are on (empty in events queued before it was
        /// kept).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        server: String,
    },
    /// What one poll cycle saw, queued when anything changed.
    CycleSummary(CycleSummary),
    /// The backup server stopped answering (or refuses our credentials).
    CbsUnreachable {
        since: DateTime<Utc>,
        reason: OutageReason,
        error: String,
        /// Which backup server (absent in older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        /// When the server had last answered again, if that was less than
        /// [`FLAP_WINDOW_MINUTES`] before this outage: a flapping server, whose notice does
        /// not ping again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        again_after: Option<DateTime<Utc>>,
    },
    /// The backup server answers again.
    CbsRecovered {
        /// Which backup server (absent in older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        down_since: DateTime<Utc>,
        recovered_at: DateTime<Utc>,
        /// Past dates the recovering cycle read again (the catch-up), oldest first.
        #[serde(default)]
        caught_up: Vec<NaiveDate>,
        /// Why it counted as down when it recovered (absent in older records): an
        /// outage for a rejected password was no outage of the network.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<OutageReason>,
    },
    /// One day of restore jobs, built on the digest schedule.
    Digest(Digest),
}

/// An outage that opens within this many minutes of the last recovery is a flapping
/// server's: its notice says so and does not ping.
pub const FLAP_WINDOW_MINUTES: i64 = 60;

/// A failed restore's place in its set's row of failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repeat {
    /// 1 for the first failure after a success (or ever).
    pub count: u32,
    /// The day the row started (the first failure's end, in the server's zone).
    pub since: NaiveDate,
}

/// One failed restore in a storm card: what its line shows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StormJob {
    /// The backup server (absent in older records).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// When it ended, as the server reported it (its zone kept); empty when not sent.
    pub ended: String,
    pub login_name: String,
    pub backup_set: String,
    pub job_id: String,
    pub raw_status: String,
    /// The same end as a moment, for Discord's time tag (each reader's zone); absent in
    /// events queued by versions before it, whose lines show `ended`.
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// The date the server lists the job under (its start's, in the server's zone; its
    /// end's when the start could not be read), so a card's pointer to `/failures` reaches
    /// it; absent in events queued by earlier versions.
    #[serde(default)]
    pub date: Option<NaiveDate>,
}

impl StormJob {
    pub fn from_job(job: &RestoreJob) -> StormJob {
        StormJob {
            server: job.server.clone(),
            ended: job
                .end_time
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
            login_name: job.login_name.clone(),
            backup_set: job.backup_set_label().to_owned(),
            job_id: job.job_id.clone(),
            raw_status: job.raw_status.clone(),
            ended_at: job.end_time.map(|t| t.with_timezone(&Utc)),
            date: job.start_time.or(job.end_time).map(|t| t.date_naive()),
        }
    }
}

/// Jobs kept in a baseline event's `would_alert` list (the card says how many more).
pub const BASELINE_WOULD_ALERT_MAX: usize = 500;

/// One user's first cycle: how many finished jobs of each class it recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineUser {
    pub login_name: String,
    pub counts: ClassCounts,
}

/// A poll cycle in numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CycleSummary {
    /// The backup server polled; empty in a roll-up (and in older records).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub users_polled: u32,
    pub requests: u32,
    /// Jobs that ended since the last cycle, by class (baselines excluded).
    pub finished: ClassCounts,
    /// Jobs first seen running this cycle.
    pub started_running: u32,
    /// Alerts queued (job finished in an alerting class, or stuck).
    pub alerts: u32,
    /// Alerts held back by a mute from chat.
    #[serde(default)]
    pub muted: u32,
    /// Requests that failed: who, which date, what went wrong.
    pub errors: Vec<PollError>,
    /// Cycles rolled up into this summary (`summary.schedule`); 0 for a single cycle.
    #[serde(default)]
    pub cycles: u32,
    /// Reply items skipped because they carry no job identity (no ID or BackupSetID).
    #[serde(default)]
    pub unreadable_items: u32,
    /// The first few of them: whose reply, which date, why, and the item's raw text.
    #[serde(default)]
    pub unreadable: Vec<PollError>,
}

/// How many skipped items a summary lists one by one; the rest are counted.
pub const UNREADABLE_LISTED_MAX: usize = 5;

/// A failed CBS request, as shown to people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollError {
    pub login_name: String,
    pub date: NaiveDate,
    pub message: String,
}
