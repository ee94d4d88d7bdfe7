//! Simulated restore jobs and how the simulator renders them as `ListRestoreJobStatus` items.
//!
//! A [`SimJob`] is the simulator's truth about one restore: when it starts, when (if ever)
//! it ends and how. What a reply shows depends on "now": a job that has not started is not
//! listed, one that has not ended is shown as running. Each job also carries [`Quirks`], the
//! spellings real servers (and the vendor's own doc) use for the same field, so tests see
//! every variant the decoder must accept. [`SimJob::expected`] says what a correct client
//! should decode, which is the oracle the quirk tests compare against.

use crate::cbs::model::{
    snippet, RestoreJob, StatusClass, END_TIME_FIELD, RAW_FIELD_MAX_CHARS, RESTORE_SIZE_FIELD,
};
use crate::tz::Tz;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A backup user the simulated server knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimUser {
    pub login: String,
    /// Sub-admin/reseller; empty when the user has none.
    pub owner: String,
    pub user_id: String,
}

/// One restore job as the simulated server knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimJob {
    pub login: String,
    pub owner: String,
    pub user_id: String,
    pub backup_set_id: String,
    pub backup_set_name: String,
    /// Whole seconds are rendered; anything finer is dropped.
    pub start: DateTime<Utc>,
    /// `None`: the job runs forever.
    pub end: Option<DateTime<Utc>>,
    /// The code reported once the job has ended.
    pub final_status: String,
    pub size_bytes: u64,
    pub client_version: String,
    pub destination_id: Option<String>,
    pub success_databases: Vec<String>,
    pub missed_databases: Vec<String>,
    pub success_virtual_machines: Vec<String>,
    pub missed_virtual_machines: Vec<String>,
    pub success_public_folders: Vec<String>,
    pub missed_public_folders: Vec<String>,
    pub quirks: Quirks,
    /// The `RestoreDate` that lists the job when not its start day (`None`): a restore
    /// that ran over days, listed under a later one.
    pub listed_under: Option<NaiveDate>,
}

/// Which spelling a rendered item uses for each field that real replies spell differently.
/// The default is the vendor's OUTPUT example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Quirks {
    /// `RestoreJobStatus` (the doc table) instead of `Status` (the example).
    pub status_key_restore_job_status: bool,
    /// `UserID` (the doc table) instead of `UserId` (the example).
    pub user_id_upper: bool,
    /// `RestoreSize` as a string (the doc table) instead of a number (the example).
    pub size_as_string: bool,
    /// Times as `yyyy-MM-dd-HH-mm-ss` (the doc table) instead of `yyyy-MM-dd HH:mm:ss`.
    pub dashed_times: bool,
    /// `BackupSetName` as the boolean `true` (the doc table's type) instead of the name.
    pub set_name_as_bool: bool,
    /// Leave out empty optional fields instead of sending `""`.
    pub omit_empty: bool,
    /// Send the status key twice, a stale empty value first (some servers repeat keys).
    pub duplicate_status: bool,
    /// Times as ISO 8601 with a `T` (`2026-11-28T13:25:14`), as some proxies rewrite them.
    pub iso_times: bool,
    /// `EndTime` as epoch milliseconds (a number), the format `GetRestoreJobReport` uses.
    pub epoch_millis_end: bool,
    /// `RestoreSize` as `-1`, as servers send for a size they do not know.
    pub size_minus_one: bool,
    /// `RestoreSize` as `"n/a"`.
    pub size_not_available: bool,
    /// `EndTime` with the year `-0001`: a time no reader can place. The job must be kept.
    pub end_year_minus_one: bool,
    /// Leave out the job `ID`: an item without an identity, which a client must skip,
    /// count and report.
    pub no_identity: bool,
}

/// Switches one quirk on.
type SetQuirk = fn(&mut Quirks);

/// The quirk names used in scenario files, each with its setter.
const QUIRK_NAMES: [(&str, SetQuirk); 13] = [
    ("restore_job_status_key", |q| {
        q.status_key_restore_job_status = true
    }),
    ("user_id_upper", |q| q.user_id_upper = true),
    ("size_as_string", |q| q.size_as_string = true),
    ("dashed_times", |q| q.dashed_times = true),
    ("set_name_as_bool", |q| q.set_name_as_bool = true),
    ("omit_empty", |q| q.omit_empty = true),
    ("duplicate_status", |q| q.duplicate_status = true),
    ("iso_times", |q| q.iso_times = true),
    ("epoch_millis_end", |q| q.epoch_millis_end = true),
    ("size_minus_one", |q| q.size_minus_one = true),
    ("size_not_available", |q| q.size_not_available = true),
    ("end_year_minus_one", |q| q.end_year_minus_one = true),
    ("no_identity", |q| q.no_identity = true),
];

/// The text an `EndTime` carries under [`Quirks::end_year_minus_one`].
fn year_minus_one(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("-0001-%m-%d %H:%M:%S")
        .to_string()
}

impl Quirks {
    /// How many independent quirks there are ([`Quirks::from_bits`] takes that many bits).
    pub const COUNT: u32 = QUIRK_NAMES.len() as u32;

    /// The quirk names a scenario file may list.
    pub fn names() -> impl Iterator<Item = &'static str> {
        QUIRK_NAMES.iter().map(|(name, _)| *name)
    }

    /// Sets the quirk called `name`; `false` when there is no such quirk.
    pub fn set_by_name(&mut self, name: &str) -> bool {
        match QUIRK_NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, set)) => {
                set(self);
                true
            }
            None => false,
        }
    }

    /// One combination per number below `2^COUNT`: bit i switches on the i-th quirk, so
    /// iterating over all numbers covers every combination.
    pub fn from_bits(bits: u32) -> Quirks {
        let mut q = Quirks::default();
        for (i, (_, set)) in QUIRK_NAMES.iter().enumerate() {
            if bits & (1 << i) != 0 {
                set(&mut q);
            }
        }
        q
    }
}

/// A job's status at some moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    NotStarted,
    Running,
    Finished,
}

impl SimJob {
    /// A job of `login` (also its user ID, no owner) in backup set `backup_set_id`, named
    /// `Set <id>`, running from `start` to `end` (`None`: forever) and then reporting
    /// `final_status`. Nothing restored, client 10.1.0.0, no destination or item lists, the
    /// vendor example's spelling; set other fields with struct update syntax.
    pub fn new(
        login: &str,
        backup_set_id: &str,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        final_status: &str,
    ) -> SimJob {
        SimJob {
            login: login.to_owned(),
            owner: String::new(),
            user_id: login.to_owned(),
            backup_set_id: backup_set_id.to_owned(),
            backup_set_name: format!("Set {backup_set_id}"),
            start,
            end,
            final_status: final_status.to_owned(),
            size_bytes: 0,
            client_version: "10.1.0.0".to_owned(),
            destination_id: None,
            success_databases: Vec::new(),
            missed_databases: Vec::new(),
            success_virtual_machines: Vec::new(),
            missed_virtual_machines: Vec::new(),
            success_public_folders: Vec::new(),
            missed_public_folders: Vec::new(),
            quirks: Quirks::default(),
            listed_under: None,
        }
    }

    /// The job ID: the start timestamp in the server zone, as the CBS makes it.
    pub fn job_id(&self, tz: Tz) -> String {
        self.start
            .with_timezone(&tz)
            .format("%Y-%m-%d-%H-%M-%S")
            .to_string()
    }

    /// The `RestoreDate` that lists this job: the date of its start in the server zone,
    /// unless [`SimJob::listed_under`] says otherwise.
    pub fn listed_on(&self, tz: Tz) -> NaiveDate {
        self.listed_under
            .unwrap_or_else(|| self.start.with_timezone(&tz).date_naive())
    }

    /// Where the job stands at `now`. Times are compared in whole seconds, as rendered.
    pub fn phase(&self, now: DateTime<Utc>) -> Phase {
        let now = now.trunc_subsecs(0);
        if self.start.trunc_subsecs(0) > now {
            Phase::NotStarted
        } else if self.end.is_none_or(|end| end.trunc_subsecs(0) > now) {
            Phase::Running
        } else {
            Phase::Finished
        }
    }

    /// The item as the simulated server writes it at `now`, as `(key, value)` pairs in
    /// order; a key may repeat (see [`Quirks::duplicate_status`]).
    pub fn render(&self, tz: Tz, now: DateTime<Utc>) -> Vec<(&'static str, Value)> {
        let q = self.quirks;
        let finished = self.phase(now) == Phase::Finished;
        let time = |t: DateTime<Utc>| {
            let fmt = if q.iso_times {
                "%Y-%m-%dT%H:%M:%S"
            } else if q.dashed_times {
                "%Y-%m-%d-%H-%M-%S"
            } else {
                "%Y-%m-%d %H:%M:%S"
            };
            Value::from(t.with_timezone(&tz).format(fmt).to_string())
        };
        let end_time = |t: DateTime<Utc>| {
            if q.end_year_minus_one {
                Value::from(year_minus_one(t, tz))
            } else if q.epoch_millis_end {
                Value::from(t.timestamp() * 1000)
            } else {
                time(t)
            }
        };
        let status_key = if q.status_key_restore_job_status {
            "RestoreJobStatus"
        } else {
            "Status"
        };
        let status = if finished { &self.final_status } else { "" };
        let mut out: Vec<(&'static str, Value)> = Vec::new();
        // Optional text: omitted or sent empty, as the quirk says.
        let optional = |out: &mut Vec<(&'static str, Value)>, key, value: Option<Value>| match value
        {
            Some(v) => out.push((key, v)),
            None if q.omit_empty => {}
            None => out.push((key, Value::from(""))),
        };
        if q.duplicate_status {
            out.push((status_key, Value::from("")));
        }
        out.push((status_key, Value::from(status)));
        let set_name = if q.set_name_as_bool {
            Value::Bool(true)
        } else {
            Value::from(self.backup_set_name.as_str())
        };
        out.push(("BackupSetName", set_name));
        out.push(("LoginName", Value::from(self.login.as_str())));
        out.push(("Owner", Value::from(self.owner.as_str())));
        let end = self.end.filter(|_| finished).map(end_time);
        optional(&mut out, "EndTime", end);
        let user_id_key = if q.user_id_upper { "UserID" } else { "UserId" };
        out.push((user_id_key, Value::from(self.user_id.as_str())));
        let version = Some(self.client_version.as_str())
            .filter(|v| !v.is_empty())
            .map(Value::from);
        optional(&mut out, "RunVersion", version);
        out.push(("StartTime", time(self.start)));
        if !q.no_identity {
            out.push(("ID", Value::from(self.job_id(tz))));
        }
        out.push(("BackupSetID", Value::from(self.backup_set_id.as_str())));
        let size = if q.size_not_available {
            Value::from("n/a")
        } else if q.size_minus_one {
            Value::from(-1)
        } else if q.size_as_string {
            Value::from(self.size_bytes.to_string())
        } else {
            Value::from(self.size_bytes)
        };
        out.push(("RestoreSize", size));
        let destination = self.destination_id.as_deref().map(Value::from);
        optional(&mut out, "DestinationID", destination);
        for (key, list) in [
            ("SuccessDatabase", &self.success_databases),
            ("MissedDatabase", &self.missed_databases),
            ("SuccessVirtualMachine", &self.success_virtual_machines),
            ("MissedVirtualMachine", &self.missed_virtual_machines),
            ("SuccessPublicFolder", &self.success_public_folders),
            ("MissedPublicFolder", &self.missed_public_folders),
        ] {
            // Lists are only reported for jobs that ended, and only where the set has them.
            if finished && !list.is_empty() {
                // One name goes as a string, several as a list: both spellings occur.
                let value = match list.as_slice() {
                    [one] => Value::from(one.as_str()),
                    many => Value::from(many.to_vec()),
                };
                out.push((key, value));
            }
        }
        out
    }

    /// What a correct client decodes from this job's item at `now` (the test oracle).
    /// Returns `None` when the job is not listed yet, or listed without an identity (a
    /// correct client skips and counts that item).
    pub fn expected(&self, server: &str, tz: Tz, now: DateTime<Utc>) -> Option<RestoreJob> {
        let phase = self.phase(now);
        if phase == Phase::NotStarted || self.quirks.no_identity {
            return None;
        }
        let q = self.quirks;
        let finished = phase == Phase::Finished;
        let local = |t: DateTime<Utc>| t.trunc_subsecs(0).with_timezone(&tz);
        let lists = |l: &Vec<String>| if finished { l.clone() } else { Vec::new() };
        let raw_status = if finished {
            self.final_status.clone()
        } else {
            String::new()
        };
        let sent_end = self.end.filter(|_| finished);
        let mut unreadable = std::collections::BTreeMap::new();
        let end_time = match sent_end {
            Some(end) if q.end_year_minus_one => {
                let raw = snippet(&year_minus_one(end, tz), RAW_FIELD_MAX_CHARS);
                unreadable.insert(END_TIME_FIELD.to_owned(), raw);
                None
            }
            other => other.map(local),
        };
        let restore_size_bytes = if q.size_not_available || q.size_minus_one {
            let raw = if q.size_not_available { "n/a" } else { "-1" };
            unreadable.insert(RESTORE_SIZE_FIELD.to_owned(), raw.to_owned());
            None
        } else {
            Some(self.size_bytes)
        };
        Some(RestoreJob {
            server: server.to_owned(),
            login_name: self.login.clone(),
            owner: self.owner.clone(),
            user_id: self.user_id.clone(),
            backup_set_id: self.backup_set_id.clone(),
            // A boolean carries no name: the client falls back to the set ID.
            backup_set_name: if self.quirks.set_name_as_bool {
                String::new()
            } else {
                self.backup_set_name.clone()
            },
            job_id: self.job_id(tz),
            start_time: Some(local(self.start)),
            end_time,
            restore_size_bytes,
            client_version: Some(self.client_version.clone()).filter(|v| !v.is_empty()),
            destination_id: self.destination_id.clone().filter(|d| !d.is_empty()),
            success_databases: lists(&self.success_databases),
            missed_databases: lists(&self.missed_databases),
            success_virtual_machines: lists(&self.success_virtual_machines),
            missed_virtual_machines: lists(&self.missed_virtual_machines),
            success_public_folders: lists(&self.success_public_folders),
            missed_public_folders: lists(&self.missed_public_folders),
            class: sim_class(&raw_status, finished),
            raw_status,
            unreadable,
        })
    }
}

/// The simulator's own reading of the status codes, written from the vendor's list
/// (reference/ahsay-api.md), not taken from the client's classifier: the client's class is
/// checked against this table, so a wrong mapping in the client cannot agree with itself.
const STATUS_TABLE: [(&str, StatusClass); 5] = [
    ("RESTORE_STOP_SUCCESS", StatusClass::Success),
    ("RESTORE_STOP_SUCCESS_WITH_WARNING", StatusClass::Warning),
    (
        "RESTORE_STOP_SUCCESS_WITH_ERROR",
        StatusClass::PartialFailure,
    ),
    ("RESTORE_STOP_BY_USER", StatusClass::Cancelled),
    ("RESTORE_STOP_BY_ERROR", StatusClass::Failure),
];

/// The class a correct client gives a job the simulator renders with `raw` as its code: a
/// job shown before its end is running (its code is empty); an ended job with a documented
/// code has that code's class; an empty or `*_RUNNING` / `*_NOT_FINISHED` code still counts
/// as running; any other code is unknown.
fn sim_class(raw: &str, finished: bool) -> StatusClass {
    if !finished {
        return StatusClass::Running;
    }
    let code = raw.trim().to_ascii_uppercase();
    if let Some((_, class)) = STATUS_TABLE.iter().find(|(c, _)| *c == code) {
        return *class;
    }
    if code.is_empty() || code.ends_with("_RUNNING") || code.ends_with("_NOT_FINISHED") {
        StatusClass::Running
    } else {
        StatusClass::Unknown
    }
}

/// Writes one JSON object from ordered pairs, keeping repeated keys (which `serde_json`
/// maps cannot hold).
pub fn write_object(pairs: &[(&str, Value)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(*k), v))
        .collect();
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbs::model::{decode_reply, DecodeContext};
    use chrono::{Duration, TimeZone};

    use crate::test_data::berlin;

    fn job() -> SimJob {
        SimJob {
            backup_set_name: "default-backup-set-name-1".into(),
            client_version: "9.11.0.0".into(),
            destination_id: Some("1687755083984".into()),
            success_databases: vec!["db1".into()],
            missed_databases: vec!["db2".into(), "db3".into()],
            ..SimJob::new(
                "obm",
                "1687755057644",
                Utc.with_ymd_and_hms(2024, 6, 26, 11, 25, 13).unwrap(),
                Some(Utc.with_ymd_and_hms(2024, 6, 26, 11, 25, 21).unwrap()),
                "RESTORE_STOP_SUCCESS",
            )
        }
    }

    fn decode(j: &SimJob, now: DateTime<Utc>) -> RestoreJob {
        let body = format!(
            r#"{{"Status":"OK","Data":[{}]}}"#,
            write_object(&j.render(berlin(), now))
        );
        let cx = DecodeContext {
            server: "sim",
            tz: berlin(),
            login_name: "obm",
            owner: "",
            date: j.listed_on(berlin()),
        };
        let mut list = decode_reply(&body, &cx).expect("decodes");
        assert!(list.skipped.is_empty(), "{:?}", list.skipped);
        list.jobs.remove(0)
    }

    #[test]
    fn default_rendering_is_the_vendor_example_shape() {
        let j = job();
        let item = write_object(&j.render(berlin(), j.end.unwrap()));
        assert!(item.starts_with(r#"{"Status":"RESTORE_STOP_SUCCESS","BackupSetName":"default-backup-set-name-1","LoginName":"obm","Owner":"","EndTime":"2024-06-26 13:25:21","UserId":"obm","RunVersion":"9.11.0.0","StartTime":"2024-06-26 13:25:13","ID":"2024-06-26-13-25-13""#), "{item}");
        assert!(item.contains(r#""RestoreSize":0"#));
    }

    #[test]
    fn phases_follow_the_clock() {
        let j = job();
        assert_eq!(j.phase(j.start - Duration::seconds(1)), Phase::NotStarted);
        assert_eq!(j.phase(j.start), Phase::Running);
        assert_eq!(
            j.phase(j.end.unwrap() - Duration::seconds(1)),
            Phase::Running
        );
        assert_eq!(j.phase(j.end.unwrap()), Phase::Finished);
        let forever = SimJob { end: None, ..job() };
        assert_eq!(forever.phase(j.start + Duration::days(9)), Phase::Running);
    }

    #[test]
    fn running_job_has_no_status_and_no_end() {
        let j = job();
        let got = decode(&j, j.start + Duration::seconds(2));
        assert_eq!(got.class, StatusClass::Running);
        assert_eq!(got.end_time, None);
        assert_eq!(
            Some(got),
            j.expected("sim", berlin(), j.start + Duration::seconds(2))
        );
    }

    #[test]
    fn every_quirk_combination_decodes_to_the_oracle() {
        for bits in 0..(1 << Quirks::COUNT) {
            let quirks = Quirks::from_bits(bits);
            if quirks.no_identity {
                continue; // No job to compare: see the test below.
            }
            let j = SimJob {
                quirks,
                size_bytes: 123_456,
                ..job()
            };
            for now in [j.start, j.end.unwrap()] {
                assert_eq!(
                    Some(decode(&j, now)),
                    j.expected("sim", berlin(), now),
                    "quirks {:?}",
                    j.quirks
                );
            }
        }
    }

    #[test]
    fn odd_fields_keep_the_job_and_show_as_sent() {
        let q = |name| {
            let mut q = Quirks::default();
            assert!(q.set_by_name(name));
            SimJob {
                quirks: q,
                final_status: "RESTORE_STOP_BY_ERROR".into(),
                ..job()
            }
        };
        let end = job().end.unwrap();
        let got = decode(&q("epoch_millis_end"), end);
        assert_eq!(
            got.end_time.unwrap().to_rfc3339(),
            "2024-06-26T13:25:21+02:00"
        );
        let got = decode(&q("iso_times"), end);
        assert_eq!(
            got.start_time.unwrap().to_rfc3339(),
            "2024-06-26T13:25:13+02:00"
        );
        let got = decode(&q("size_minus_one"), end);
        assert_eq!(got.restore_size_bytes, None);
        assert_eq!(got.unreadable_field(RESTORE_SIZE_FIELD), Some("-1"));
        let got = decode(&q("size_not_available"), end);
        assert_eq!(got.unreadable_field(RESTORE_SIZE_FIELD), Some("n/a"));
        let got = decode(&q("end_year_minus_one"), end);
        assert_eq!(got.end_time, None);
        assert_eq!(got.class, StatusClass::Failure);
        assert_eq!(
            got.unreadable_field(END_TIME_FIELD),
            Some("-0001-06-26 13:25:21")
        );
    }

    #[test]
    fn an_item_without_identity_is_skipped_by_a_correct_client() {
        let mut quirks = Quirks::default();
        quirks.set_by_name("no_identity");
        let j = SimJob { quirks, ..job() };
        let end = j.end.unwrap();
        let body = format!(
            r#"{{"Status":"OK","Data":[{}]}}"#,
            write_object(&j.render(berlin(), end))
        );
        let cx = DecodeContext {
            server: "sim",
            tz: berlin(),
            login_name: "obm",
            owner: "",
            date: j.listed_on(berlin()),
        };
        let list = decode_reply(&body, &cx).unwrap();
        assert!(list.jobs.is_empty());
        assert_eq!(list.skipped.len(), 1);
        assert_eq!(j.expected("sim", berlin(), end), None);
    }

    #[test]
    fn quirk_names_round_trip() {
        let mut all = Quirks::default();
        for name in Quirks::names() {
            assert!(all.set_by_name(name), "{name}");
        }
        assert_eq!(all, Quirks::from_bits((1 << Quirks::COUNT) - 1));
        assert!(!all.set_by_name("no_such_quirk"));
    }

    #[test]
    fn listed_on_the_start_date_in_the_server_zone() {
        // 23:30 UTC on the 25th is 01:30 on the 26th in Berlin.
        let j = SimJob {
            start: Utc.with_ymd_and_hms(2024, 6, 25, 23, 30, 0).unwrap(),
            ..job()
        };
        assert_eq!(
            j.listed_on(berlin()),
            NaiveDate::from_ymd_opt(2024, 6, 26).unwrap()
        );
        assert_eq!(j.job_id(berlin()), "2024-06-26-01-30-00");
    }
}
