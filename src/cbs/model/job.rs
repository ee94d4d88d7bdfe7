//! The restore job as the model keeps it: its key, the status classes its codes fall into,
//! and the job itself with its server-zone times, stored as JSON in the job's own zone.

use crate::tz::Tz;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How long an unreadable field's raw text may be when kept with its job (characters).
pub const RAW_FIELD_MAX_CHARS: usize = 64;

/// The reply's field names whose unreadable text a job keeps (see [`RestoreJob::unreadable`]).
pub const START_TIME_FIELD: &str = "StartTime";
pub const END_TIME_FIELD: &str = "EndTime";
pub const RESTORE_SIZE_FIELD: &str = "RestoreSize";

/// The identity of a restore job: the job ID repeats across users and backup sets, so the
/// key is (server, login, backup set, job ID).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobKey {
    pub server: String,
    pub login_name: String,
    pub backup_set_id: String,
    pub job_id: String,
}

/// What a raw status code means to an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    Success,
    Warning,
    PartialFailure,
    Failure,
    Cancelled,
    Running,
    Unknown,
}

impl StatusClass {
    /// Every class, in the order reports list them.
    pub const ALL: [StatusClass; 7] = [
        StatusClass::Success,
        StatusClass::Warning,
        StatusClass::PartialFailure,
        StatusClass::Failure,
        StatusClass::Cancelled,
        StatusClass::Running,
        StatusClass::Unknown,
    ];

    /// Classifies a raw status code alone (see [`StatusClass::of_job`] for a job).
    pub fn from_raw(raw: &str) -> StatusClass {
        let code = raw.trim().to_ascii_uppercase();
        match code.as_str() {
            "" => StatusClass::Running,
            "RESTORE_STOP_SUCCESS" => StatusClass::Success,
            "RESTORE_STOP_SUCCESS_WITH_WARNING" => StatusClass::Warning,
            "RESTORE_STOP_SUCCESS_WITH_ERROR" => StatusClass::PartialFailure,
            "RESTORE_STOP_BY_USER" => StatusClass::Cancelled,
            "RESTORE_STOP_BY_ERROR" => StatusClass::Failure,
            c if c.ends_with("_RUNNING") || c.ends_with("_NOT_FINISHED") => StatusClass::Running,
            _ => StatusClass::Unknown,
        }
    }

    /// Classifies a job: an undocumented code on a job without an end time is taken as
    /// still running (ahsay-api.md: a missing EndTime means running), so the job's real
    /// outcome is still reported when it ends. Codes named like the final ones
    /// (`…_STOP_…`) are outcomes with or without an end time. `has_end`: the server sent
    /// an end time, readable or not.
    pub fn of_job(raw: &str, has_end: bool) -> StatusClass {
        match StatusClass::from_raw(raw) {
            StatusClass::Unknown if !has_end && !raw.to_ascii_uppercase().contains("_STOP") => {
                StatusClass::Running
            }
            class => class,
        }
    }

    /// Whether a job in this class has ended.
    pub fn is_finished(self) -> bool {
        self != StatusClass::Running
    }

    /// The configuration and command spelling (`partial_failure`).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Success => "success",
            StatusClass::Warning => "warning",
            StatusClass::PartialFailure => "partial_failure",
            StatusClass::Failure => "failure",
            StatusClass::Cancelled => "cancelled",
            StatusClass::Running => "running",
            StatusClass::Unknown => "unknown",
        }
    }

    /// Parses the configuration spelling.
    pub fn parse_name(name: &str) -> Option<StatusClass> {
        StatusClass::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// A human label (`partial failure`).
    pub fn label(self) -> &'static str {
        match self {
            StatusClass::PartialFailure => "partial failure",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for StatusClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A time reported by the backup server, in the server's configured zone.
pub type ServerTime = DateTime<Tz>;

/// One restore job as the backup server reported it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreJob {
    /// The configured name of the backup server (not sent by the CBS).
    pub server: String,
    pub login_name: String,
    pub owner: String,
    pub user_id: String,
    pub backup_set_id: String,
    pub backup_set_name: String,
    pub job_id: String,
    #[serde(with = "server_time_opt")]
    pub start_time: Option<ServerTime>,
    #[serde(with = "server_time_opt")]
    pub end_time: Option<ServerTime>,
    // Empty lists and absent values are left out of the stored JSON (and read back as
    // empty): most jobs have them, and every retained job record carries them.
    /// `None`: the server sent no size, or one that is not a non-negative integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_databases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missed_databases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_virtual_machines: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missed_virtual_machines: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_public_folders: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missed_public_folders: Vec<String>,
    /// The status code exactly as the server sent it (empty while running).
    pub raw_status: String,
    pub class: StatusClass,
    /// Fields the server sent that could not be read, by reply field name
    /// ([`START_TIME_FIELD`], [`END_TIME_FIELD`], [`RESTORE_SIZE_FIELD`]), with the text as
    /// sent (cut to [`RAW_FIELD_MAX_CHARS`]): shown instead of the value, never dropped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreadable: BTreeMap<String, String>,
}

impl RestoreJob {
    /// The text the server sent for `field` when it could not be read.
    pub fn unreadable_field(&self, field: &str) -> Option<&str> {
        self.unreadable.get(field).map(String::as_str)
    }

    pub fn key(&self) -> JobKey {
        JobKey {
            server: self.server.clone(),
            login_name: self.login_name.clone(),
            backup_set_id: self.backup_set_id.clone(),
            job_id: self.job_id.clone(),
        }
    }

    /// The backup-set name, or its ID when the server sent no name.
    pub fn backup_set_label(&self) -> &str {
        if self.backup_set_name.is_empty() {
            &self.backup_set_id
        } else {
            &self.backup_set_name
        }
    }

    /// Seconds between start and end, when both are known and the end is not before the
    /// start (a server clock set back would otherwise read as a job that took no time).
    pub fn duration_secs(&self) -> Option<i64> {
        match (self.start_time, self.end_time) {
            (Some(s), Some(e)) if e >= s => Some((e - s).num_seconds()),
            _ => None,
        }
    }

    /// Whether the server sent an end time before the start time.
    pub fn ends_before_start(&self) -> bool {
        matches!((self.start_time, self.end_time), (Some(s), Some(e)) if e < s)
    }
}

/// Serde for `Option<DateTime<Tz>>`: stored as RFC 3339 plus the zone name, so a record
/// read back is in the same zone it was written in.
mod server_time_opt {
    use super::ServerTime;
    use crate::tz::Tz;
    use chrono::DateTime;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Stored {
        at: String,
        tz: String,
    }

    pub fn serialize<S: Serializer>(t: &Option<ServerTime>, s: S) -> Result<S::Ok, S::Error> {
        t.map(|t| Stored {
            at: t.to_rfc3339(),
            tz: t.timezone().name().to_owned(),
        })
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ServerTime>, D::Error> {
        let Some(stored) = Option::<Stored>::deserialize(d)? else {
            return Ok(None);
        };
        let tz: Tz = stored.tz.parse().map_err(serde::de::Error::custom)?;
        let at = DateTime::parse_from_rfc3339(&stored.at).map_err(serde::de::Error::custom)?;
        Ok(Some(at.with_timezone(&tz)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{berlin, one, BASE};
    use super::*;

    #[test]
    fn classes_of_documented_codes() {
        use StatusClass::*;
        for (raw, class) in [
            ("RESTORE_STOP_SUCCESS", Success),
            ("RESTORE_STOP_SUCCESS_WITH_WARNING", Warning),
            ("RESTORE_STOP_SUCCESS_WITH_ERROR", PartialFailure),
            ("RESTORE_STOP_BY_USER", Cancelled),
            ("RESTORE_STOP_BY_ERROR", Failure),
            ("RESTORE_STILL_RUNNING", Running),
            ("RESTORE_NOT_FINISHED", Running),
            ("SOMETHING_ELSE", Unknown),
        ] {
            assert_eq!(StatusClass::from_raw(raw), class, "{raw}");
        }
    }

    #[test]
    fn job_round_trips_through_serde_in_its_zone() {
        let job = one(&format!(r#"{{{BASE},"EndTime":"2024-06-26 14:00:00"}}"#));
        let back: RestoreJob = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        assert_eq!(back.end_time.unwrap().timezone(), berlin());
    }

    /// A job as the poller stores it, with an unreadable field: it reads back the same.
    #[test]
    fn a_job_with_unreadable_fields_round_trips() {
        let job = one(&format!(
            r#"{{{BASE},"EndTime":"-0001-01-01 00:00:00","RestoreSize":"n/a"}}"#
        ));
        let back: RestoreJob = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }
}
