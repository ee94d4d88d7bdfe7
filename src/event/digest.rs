//! The digest's data: one day of restore jobs, as [`EventKind::Digest`](super::EventKind::Digest)
//! carries it through the outbox (plain serde data, so a digest is delivered exactly once,
//! like any other event).
//!
//! It lives here, below the event, because the event carries it: [`crate::digest`] computes
//! it from job records and the store, and [`crate::render`] turns it into cards.

use super::ClassCounts;
use crate::cbs::model::StatusClass;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One day of restore jobs, ready to tell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// The calendar day, in the backup server's zone.
    pub date: NaiveDate,
    /// The backup server's zone name (`Europe/Berlin`).
    pub timezone: String,
    /// Jobs per class; classes without jobs are left out.
    pub totals: ClassCounts,
    /// Successes and warnings over finished jobs, 0.0 to 1.0; `None` without finished jobs.
    pub success_rate: Option<f64>,
    /// Failures, partial failures and unknown outcomes, by time (end, else start).
    pub failures: Vec<DigestJob>,
    /// Jobs still running, no stuck notice sent, by start time.
    pub running: Vec<DigestJob>,
    /// Jobs still running that were reported as stuck, by start time.
    pub stuck: Vec<DigestJob>,
    /// Jobs per class for each owner; the empty owner is a user without one.
    pub owners: BTreeMap<String, ClassCounts>,
    pub health: DigestHealth,
    /// Events in the outbox when the digest was built, other digests (and this one) not
    /// included: a late digest queued beside it is no sign of trouble.
    pub undelivered: usize,
    /// Channels Discord refuses to let the bot post in, as the sink names them.
    pub refused_channels: Vec<String>,
}

/// One job as the digest lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigestJob {
    /// The backup server, when several are watched (else empty, and not shown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
    pub login_name: String,
    pub owner: String,
    /// The backup-set name, or its ID when the server sent no name.
    pub backup_set: String,
    /// The status code exactly as the server sent it.
    pub raw_status: String,
    pub class: StatusClass,
    /// Wall-clock times as the server reported them (its offset kept).
    pub start_time: Option<DateTime<FixedOffset>>,
    pub end_time: Option<DateTime<FixedOffset>>,
    /// The start and end times as sent, when the server sent ones that could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_raw: Option<String>,
    /// Was running, then left out of the server's list: its outcome is unknown.
    #[serde(default)]
    pub vanished: bool,
    /// Who acknowledged the failure (the alert's **Acknowledge** button), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<DigestAck>,
}

/// An acknowledgement as the digest shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestAck {
    /// The Discord name of who pressed the button.
    pub by: String,
    /// When, in the digest's zone.
    pub at: DateTime<FixedOffset>,
}

/// The poller's day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestHealth {
    pub cycles: u32,
    pub request_errors: u32,
    /// Minutes the backup server counted as down, a started minute counted in full so a
    /// short outage does not read as none.
    pub outage_minutes: i64,
    /// Each backup server's own day, when several are watched (the fields above are their
    /// sums); empty with one server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerHealth>,
}

/// One backup server's poller day, when several are watched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    pub server: String,
    pub cycles: u32,
    pub request_errors: u32,
    pub outage_minutes: i64,
}
