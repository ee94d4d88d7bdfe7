//! The restore-job model and its tolerant decoder.
//!
//! `ListRestoreJobStatus.do` replies differ from the vendor's table in many small ways (see
//! `shared/reference/ahsay-api.md`): alternative key spellings, numbers as strings, two time
//! formats, `Data` as an array, one object or nothing, duplicate keys. The decoder therefore
//! reads the reply as a loose JSON tree first (where a duplicate key simply keeps its last
//! value) and then picks each field out by any of its known spellings, case-insensitively.
//! A job needs only its identity (LoginName, BackupSetID, ID): a time or size no reader
//! understands is kept as the text the server sent (see [`RestoreJob::unreadable`]) and the
//! job is still classified, recorded and alerted. Only an item without an identity is
//! skipped; the poller counts and reports it. The rest of the reply still counts.
//!
//! Times are read in every spelling seen in the wild (see [`parse_time_value`]); a year
//! outside [`MIN_YEAR`]..=[`MAX_YEAR`] counts as unreadable, so an absurd date can neither
//! break the store's records nor be rendered.

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// How long a raw snippet of a bad reply or item may be in logs and errors (characters).
pub const SNIPPET_MAX_CHARS: usize = 200;

/// The earliest year a job time may have; earlier ones count as unreadable.
pub const MIN_YEAR: i32 = 1970;
/// The latest year a job time may have; later ones count as unreadable.
pub const MAX_YEAR: i32 = 2200;
/// How long an unreadable field's raw text may be when kept with its job (characters).
pub const RAW_FIELD_MAX_CHARS: usize = 64;
/// An epoch number at least this large is milliseconds (as `GetRestoreJobReport` sends);
/// a smaller one is seconds. 10^11 seconds is far past [`MAX_YEAR`], and 10^11 ms is 1973.
const EPOCH_MILLIS_FROM: i64 = 100_000_000_000;

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

    /// Seconds between start and end, when both are known.
    pub fn duration_secs(&self) -> Option<i64> {
        match (self.start_time, self.end_time) {
            (Some(s), Some(e)) => Some((e - s).num_seconds().max(0)),
            _ => None,
        }
    }
}

/// Serde for `Option<DateTime<Tz>>`: stored as RFC 3339 plus the zone name, so a record
/// read back is in the same zone it was written in.
mod server_time_opt {
    use super::ServerTime;
    use chrono::DateTime;
    use chrono_tz::Tz;
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

/// A reply item that could not be read, kept for the log.
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedItem {
    pub reason: String,
    /// The item's raw JSON, cut to [`SNIPPET_MAX_CHARS`].
    pub raw: String,
}

/// A decoded `ListRestoreJobStatus` reply with `Status: OK`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobList {
    pub jobs: Vec<RestoreJob>,
    pub skipped: Vec<SkippedItem>,
}

/// Why a reply body could not be used at all.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyError {
    /// `Status: Error` with the server's Message and ExptType.
    Api {
        message: String,
        expt_type: Option<String>,
    },
    /// Not the documented envelope; `snippet` is the start of the body.
    Malformed { reason: String, snippet: String },
}

/// What the decoder needs to know that the reply does not say.
#[derive(Clone, Debug)]
pub struct DecodeContext<'a> {
    pub server: &'a str,
    pub tz: Tz,
    /// The LoginName asked for: used when an item omits it.
    pub login_name: &'a str,
    /// The Owner asked for: used when an item omits it.
    pub owner: &'a str,
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub fn snippet(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// The reply's envelope, every call's: a JSON object whose `Status` is `OK`. `Status:
/// Error` is the API's own refusal ([`ReplyError::Api`], its `Message` and `ExptType`);
/// anything else is malformed.
fn open_envelope(body: &str) -> Result<serde_json::Map<String, Value>, ReplyError> {
    let malformed = |reason: String| ReplyError::Malformed {
        reason,
        snippet: snippet(body, SNIPPET_MAX_CHARS),
    };
    let root: Value =
        serde_json::from_str(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let Value::Object(envelope) = root else {
        return Err(malformed("the reply is not a JSON object".into()));
    };
    let status = get(&envelope, &["Status"])
        .and_then(as_text)
        .unwrap_or_default();
    if status.eq_ignore_ascii_case("error") {
        return Err(ReplyError::Api {
            message: get(&envelope, &["Message"])
                .and_then(as_text)
                .unwrap_or_else(|| "(no message)".into()),
            expt_type: get(&envelope, &["ExptType"]).and_then(as_text),
        });
    }
    if !status.eq_ignore_ascii_case("ok") {
        return Err(malformed(format!(
            "envelope Status is {status:?}, not OK or Error"
        )));
    }
    Ok(envelope)
}

/// Decodes a whole reply body.
pub fn decode_reply(body: &str, cx: &DecodeContext<'_>) -> Result<JobList, ReplyError> {
    let malformed = |reason: String| ReplyError::Malformed {
        reason,
        snippet: snippet(body, SNIPPET_MAX_CHARS),
    };
    let envelope = open_envelope(body)?;
    let items: Vec<&Value> = match get(&envelope, &["Data"]) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(other) => {
            return Err(malformed(format!(
                "Data is neither a list nor an object: {}",
                snippet(&other.to_string(), 40)
            )))
        }
    };
    let mut list = JobList::default();
    for item in items {
        match decode_item(item, cx) {
            Ok(job) => list.jobs.push(job),
            Err(reason) => list.skipped.push(SkippedItem {
                reason,
                raw: snippet(&item.to_string(), SNIPPET_MAX_CHARS),
            }),
        }
    }
    Ok(list)
}

/// At most this many log lines of a job report are kept (the last error/warning ones).
pub const REPORT_LINES_MAX: usize = 5;
/// A kept report log line is cut to this many characters.
pub const REPORT_LINE_MAX_CHARS: usize = 300;

/// What `GetRestoreJobReport.do` adds to a failure alert: file count, size and the last
/// error or warning log lines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<u64>,
    /// The last error/warning log lines, oldest first, at most [`REPORT_LINES_MAX`].
    #[serde(default)]
    pub lines: Vec<String>,
}

/// Decodes a `GetRestoreJobReport.do` reply: `Data` is one Report object. Unknown or
/// unreadable fields are left out rather than failing the report.
pub fn decode_report(body: &str) -> Result<JobReport, ReplyError> {
    let malformed = |reason: String| ReplyError::Malformed {
        reason,
        snippet: snippet(body, SNIPPET_MAX_CHARS),
    };
    let envelope = open_envelope(body)?;
    let data = match get(&envelope, &["Data"]) {
        Some(Value::Object(map)) => map,
        Some(Value::Array(items)) => match items.first() {
            Some(Value::Object(map)) => map,
            _ => return Err(malformed("Data holds no Report object".into())),
        },
        _ => return Err(malformed("Data is not a Report object".into())),
    };
    let mut report = JobReport {
        file_count: get(data, &["TotalFileCount", "FileCount"]).and_then(as_size),
        total_size: get(data, &["TotalFileSize", "FileSize"]).and_then(as_size),
        lines: Vec::new(),
    };
    let logs = match get(data, &["Logs", "Log"]) {
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    let mut kept: Vec<String> = logs.iter().filter_map(report_line).collect();
    let skip = kept.len().saturating_sub(REPORT_LINES_MAX);
    report.lines = kept.drain(skip..).collect();
    Ok(report)
}

/// One log entry as a line, if it is an error or warning. The text field's name is not
/// documented: any string field other than the type and time ones is taken.
fn report_line(entry: &Value) -> Option<String> {
    let Value::Object(map) = entry else {
        return None;
    };
    let text: Vec<&str> = map
        .iter()
        .filter(|(k, _)| {
            !["type", "time", "timestamp", "id"]
                .iter()
                .any(|skip| k.eq_ignore_ascii_case(skip))
        })
        .filter_map(|(_, v)| v.as_str())
        .filter(|s| !s.trim().is_empty())
        .collect();
    let text = text.join(" ");
    let kind = get(map, &["Type", "Level"])
        .and_then(as_text)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let lower = text.to_ascii_lowercase();
    let is_problem = ["error", "warn", "fail", "fatal"]
        .iter()
        .any(|w| kind.contains(w) || lower.contains(w));
    (is_problem && !text.is_empty()).then(|| snippet(text.trim(), REPORT_LINE_MAX_CHARS))
}

fn decode_item(item: &Value, cx: &DecodeContext<'_>) -> Result<RestoreJob, String> {
    let Value::Object(map) = item else {
        return Err("the item is not a JSON object".into());
    };
    let text = |keys: &[&str]| get(map, keys).and_then(as_text);
    let job_id = text(&["ID"]).filter(|s| !s.is_empty()).ok_or("no job ID")?;
    let backup_set_id = text(&["BackupSetID", "BackupSetId"])
        .filter(|s| !s.is_empty())
        .ok_or("no BackupSetID")?;
    let raw_status = text(&["RestoreJobStatus", "Status"]).unwrap_or_default();
    let mut unreadable = BTreeMap::new();
    // A time: `None` when absent or empty; unreadable text is kept in `unreadable`.
    let mut time = |field: &'static str| -> (Option<ServerTime>, bool) {
        match get(map, &[field]) {
            None | Some(Value::Null) => (None, false),
            Some(Value::String(s)) if s.trim().is_empty() => (None, false),
            Some(v) => {
                let parsed = parse_time_value(v, cx.tz);
                if parsed.is_none() {
                    unreadable.insert(field.to_owned(), raw_text(v));
                }
                (parsed, true)
            }
        }
    };
    let (start_time, start_sent) = time(START_TIME_FIELD);
    let (end_time, end_sent) = time(END_TIME_FIELD);
    // The job ID is the start timestamp: use it when StartTime is missing.
    let start_time = start_time.or_else(|| {
        (!start_sent)
            .then(|| parse_server_time(&job_id, cx.tz))
            .flatten()
    });
    let restore_size_bytes = match get(map, &[RESTORE_SIZE_FIELD]) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(v) => {
            let size = as_size(v);
            if size.is_none() {
                unreadable.insert(RESTORE_SIZE_FIELD.to_owned(), raw_text(v));
            }
            size
        }
    };
    let list = |keys: &[&str]| get(map, keys).map(as_list).unwrap_or_default();
    Ok(RestoreJob {
        server: cx.server.to_owned(),
        login_name: text(&["LoginName"])
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| cx.login_name.to_owned()),
        owner: text(&["Owner"]).unwrap_or_else(|| cx.owner.to_owned()),
        user_id: text(&["UserID", "UserId"]).unwrap_or_default(),
        backup_set_id,
        // The doc types the name as Boolean; a boolean carries no name, so the set ID
        // stands in for it (see `RestoreJob::backup_set_label`).
        backup_set_name: get(map, &["BackupSetName"])
            .filter(|v| !v.is_boolean())
            .and_then(as_text)
            .unwrap_or_default(),
        job_id,
        start_time,
        end_time,
        restore_size_bytes,
        client_version: text(&["RunVersion"]).filter(|s| !s.is_empty()),
        destination_id: text(&["DestinationID", "DestinationId"]).filter(|s| !s.is_empty()),
        success_databases: list(&["SuccessDatabase"]),
        missed_databases: list(&["MissedDatabase"]),
        success_virtual_machines: list(&["SuccessVirtualMachine"]),
        missed_virtual_machines: list(&["MissedVirtualMachine"]),
        success_public_folders: list(&["SuccessPublicFolder"]),
        missed_public_folders: list(&["MissedPublicFolder"]),
        class: StatusClass::of_job(&raw_status, end_sent),
        raw_status,
        unreadable,
    })
}

/// A field's value as the server sent it, for showing: strings without their quotes.
fn raw_text(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    snippet(&text, RAW_FIELD_MAX_CHARS)
}

/// Looks a field up by any of its spellings, ignoring ASCII case; earlier spellings win.
fn get<'v>(map: &'v Map<String, Value>, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().find_map(|want| {
        map.get(*want).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(want))
                .map(|(_, v)| v)
        })
    })
}

/// A scalar as text: strings as they are, numbers and booleans written out.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A byte count: a non-negative integer, as a number or a string. Anything else (`-1`,
/// `"n/a"`, `1.5`) is unknown.
fn as_size(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// A database/VM/folder list: a JSON list, or one string (empty means none).
fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(as_text)
            .filter(|s| !s.is_empty())
            .collect(),
        other => as_text(other)
            .filter(|s| !s.is_empty())
            .into_iter()
            .collect(),
    }
}

/// Reads a job time from a reply value: a string in any format [`parse_server_time`]
/// reads, or epoch seconds or milliseconds as a JSON integer.
pub fn parse_time_value(v: &Value, tz: Tz) -> Option<ServerTime> {
    match v {
        Value::String(s) => parse_server_time(s, tz),
        Value::Number(n) => from_epoch(n.as_i64()?, tz),
        _ => None,
    }
}

/// Parses a job time as the CBS and the proxies in front of it write one:
/// `yyyy-MM-dd HH:mm:ss`, `yyyy-MM-dd-HH-mm-ss`, ISO 8601 with `T` (optional fraction and
/// offset), or epoch seconds or milliseconds. A time without an offset is local in `tz`
/// (a time in a daylight-saving gap is read an hour later, an ambiguous one as its earlier
/// instance). A year outside [`MIN_YEAR`]..=[`MAX_YEAR`] is unreadable.
pub fn parse_server_time(s: &str, tz: Tz) -> Option<ServerTime> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return from_epoch(s.parse().ok()?, tz);
    }
    const LOCAL: [&str; 3] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d-%H-%M-%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ];
    const WITH_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"];
    let t = if let Some(naive) = LOCAL
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    {
        local_in(tz, naive)?
    } else {
        let s = s
            .strip_suffix(['Z', 'z'])
            .map_or(s.to_owned(), |u| format!("{u}+00:00"));
        WITH_OFFSET
            .iter()
            .find_map(|f| DateTime::parse_from_str(&s, f).ok())?
            .with_timezone(&tz)
    };
    in_bounds(t)
}

/// An epoch number (seconds, or milliseconds from [`EPOCH_MILLIS_FROM`]) as a time in `tz`.
fn from_epoch(n: i64, tz: Tz) -> Option<ServerTime> {
    let utc = if n >= EPOCH_MILLIS_FROM {
        DateTime::<Utc>::from_timestamp_millis(n)?
    } else {
        DateTime::<Utc>::from_timestamp(n, 0)?
    };
    in_bounds(utc.with_timezone(&tz))
}

fn in_bounds(t: ServerTime) -> Option<ServerTime> {
    (MIN_YEAR..=MAX_YEAR).contains(&t.year()).then_some(t)
}

/// Places a local wall-clock time in `tz` (gap: an hour later; fold: the earlier one).
pub fn local_in(tz: Tz, naive: NaiveDateTime) -> Option<ServerTime> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(early, _) => Some(early),
        LocalResult::None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest(),
    }
}

/// One backup user as `2/ListUsers.do` lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedUser {
    pub login: String,
    /// Sub-admin/reseller; empty when none.
    pub owner: String,
}

/// Decodes a `2/ListUsers.do` reply: the list is under `User` (not `Data`). Items without a
/// readable `LoginName` are skipped (there is nothing to poll for them); unknown fields are
/// ignored.
pub fn decode_users(body: &str) -> Result<Vec<ListedUser>, ReplyError> {
    let malformed = |reason: String| ReplyError::Malformed {
        reason,
        snippet: snippet(body, SNIPPET_MAX_CHARS),
    };
    let envelope = open_envelope(body)?;
    let items: Vec<&Value> = match get(&envelope, &["User"]) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return Err(malformed("User is not a list".into())),
    };
    Ok(items
        .into_iter()
        .filter_map(|item| {
            let Value::Object(item) = item else {
                return None;
            };
            let login = get(item, &["LoginName"]).and_then(as_text)?;
            let login = login.trim();
            (!login.is_empty()).then(|| ListedUser {
                login: login.to_owned(),
                owner: get(item, &["Owner"]).and_then(as_text).unwrap_or_default(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, SubsecRound, Timelike};

    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    fn cx() -> DecodeContext<'static> {
        DecodeContext {
            server: "cbs1",
            tz: BERLIN,
            login_name: "obm",
            owner: "",
        }
    }

    fn one(item: &str) -> RestoreJob {
        let body = format!(r#"{{"Status":"OK","Data":[{item}]}}"#);
        let list = decode_reply(&body, &cx()).expect("reply decodes");
        assert!(list.skipped.is_empty(), "skipped: {:?}", list.skipped);
        assert_eq!(list.jobs.len(), 1);
        list.jobs.into_iter().next().unwrap()
    }

    const BASE: &str =
        r#""ID":"2024-06-26-13-25-13","BackupSetID":"1687755057644","LoginName":"obm""#;

    /// The vendor's OUTPUT example, byte for byte.
    const VENDOR_OUTPUT: &str = "{\n\"Status\":\"OK\",\n\"Data\":[\n{\n\"Status\":\"RESTORE_STOP_SUCCESS\",\n\"BackupSetName\":\"default-backup-set-name-1\",\n\"LoginName\":\"obm\",\n\"Owner\":\"\",\n\"EndTime\":\"2024-06-26 13:25:21\",\n\"UserId\":\"obm\",\n\"RunVersion\":\"9.11.0.0\",\n\"StartTime\":\"2024-06-26 13:25:14\",\n\"ID\":\"2024-06-26-13-25-13\",\n\"BackupSetID\":\"1687755057644\",\n\"RestoreSize\":0,\n\"DestinationID\":\"1687755083984\"\n}\n]\n}";

    #[test]
    fn vendor_example_decodes_every_field() {
        let list = decode_reply(VENDOR_OUTPUT, &cx()).unwrap();
        assert!(list.skipped.is_empty());
        let job = &list.jobs[0];
        assert_eq!(list.jobs.len(), 1);
        assert_eq!(job.server, "cbs1");
        assert_eq!(job.login_name, "obm");
        assert_eq!(job.owner, "");
        assert_eq!(job.user_id, "obm");
        assert_eq!(job.backup_set_id, "1687755057644");
        assert_eq!(job.backup_set_name, "default-backup-set-name-1");
        assert_eq!(job.job_id, "2024-06-26-13-25-13");
        let start = job.start_time.unwrap();
        assert_eq!(start.timezone(), BERLIN);
        assert_eq!(start.naive_local().to_string(), "2024-06-26 13:25:14");
        assert_eq!(start.to_rfc3339(), "2024-06-26T13:25:14+02:00");
        assert_eq!(
            job.end_time.unwrap().naive_local().to_string(),
            "2024-06-26 13:25:21"
        );
        assert_eq!(job.duration_secs(), Some(7));
        assert_eq!(job.restore_size_bytes, Some(0));
        assert!(job.unreadable.is_empty());
        assert_eq!(job.client_version.as_deref(), Some("9.11.0.0"));
        assert_eq!(job.destination_id.as_deref(), Some("1687755083984"));
        assert_eq!(job.raw_status, "RESTORE_STOP_SUCCESS");
        assert_eq!(job.class, StatusClass::Success);
        assert!(job.missed_databases.is_empty() && job.success_virtual_machines.is_empty());
    }

    #[test]
    fn status_under_restore_job_status_key() {
        let job = one(&format!(
            r#"{{{BASE},"RestoreJobStatus":"RESTORE_STOP_BY_ERROR"}}"#
        ));
        assert_eq!(job.class, StatusClass::Failure);
        assert_eq!(job.raw_status, "RESTORE_STOP_BY_ERROR");
    }

    #[test]
    fn user_id_in_either_spelling() {
        assert_eq!(one(&format!(r#"{{{BASE},"UserID":"u1"}}"#)).user_id, "u1");
        assert_eq!(one(&format!(r#"{{{BASE},"UserId":"u2"}}"#)).user_id, "u2");
    }

    #[test]
    fn restore_size_as_number_or_numeric_string() {
        let n = one(&format!(r#"{{{BASE},"RestoreSize":1048576}}"#));
        assert_eq!(n.restore_size_bytes, Some(1_048_576));
        let s = one(&format!(r#"{{{BASE},"RestoreSize":"2048"}}"#));
        assert_eq!(s.restore_size_bytes, Some(2048));
        assert!(s.unreadable.is_empty());
    }

    #[test]
    fn an_odd_size_is_unknown_and_kept_as_sent() {
        for (sent, shown) in [
            ("-1", "-1"),
            (r#""n/a""#, "n/a"),
            ("1.5", "1.5"),
            (r#""-3""#, "-3"),
            ("true", "true"),
            (r#"{"x":1}"#, r#"{"x":1}"#),
        ] {
            let job = one(&format!(
                r#"{{{BASE},"RestoreSize":{sent},"Status":"RESTORE_STOP_BY_ERROR"}}"#
            ));
            assert_eq!(job.restore_size_bytes, None, "{sent}");
            assert_eq!(job.unreadable_field(RESTORE_SIZE_FIELD), Some(shown));
            assert_eq!(job.class, StatusClass::Failure);
        }
        for absent in [r#","RestoreSize":null"#, r#","RestoreSize":"""#, ""] {
            let job = one(&format!("{{{BASE}{absent}}}"));
            assert_eq!(job.restore_size_bytes, None);
            assert!(
                job.unreadable.is_empty(),
                "{absent}: nothing was sent to show"
            );
        }
    }

    #[test]
    fn times_in_every_listed_format() {
        // 2024-06-26 11:25:21 UTC is 13:25:21 in Berlin.
        let want = "2024-06-26T13:25:21+02:00";
        for sent in [
            r#""2024-06-26 13:25:21""#,
            r#""2024-06-26-13-25-21""#,
            r#""2024-06-26T13:25:21""#,
            r#""2024-06-26T13:25:21.000""#,
            r#""2024-06-26T11:25:21Z""#,
            r#""2024-06-26T11:25:21.5Z""#,
            r#""2024-06-26T13:25:21+02:00""#,
            r#""2024-06-26T09:25:21-0200""#,
            "1719401121",
            r#""1719401121""#,
            "1719401121000",
            r#""1719401121000""#,
        ] {
            let job = one(&format!(
                r#"{{{BASE},"EndTime":{sent},"Status":"RESTORE_STOP_BY_ERROR"}}"#
            ));
            let end = job.end_time.unwrap_or_else(|| panic!("{sent} unread"));
            assert_eq!(end.timezone(), BERLIN, "{sent}");
            assert_eq!(end.trunc_subsecs(0).to_rfc3339(), want, "{sent}");
            assert!(job.unreadable.is_empty(), "{sent}");
        }
    }

    #[test]
    fn an_unreadable_time_keeps_the_job_and_its_text() {
        for sent in [
            r#""-0001-06-26 13:25:14""#,
            r#""1969-12-31 23:59:59""#,
            r#""2201-01-01 00:00:00""#,
            r#""yesterday-ish""#,
            "99999999999999999",
            "-100000",
            "1719401121.5",
            "[1]",
        ] {
            let job = one(&format!(
                r#"{{{BASE},"StartTime":{sent},"EndTime":{sent},"Status":"RESTORE_STOP_BY_ERROR"}}"#
            ));
            assert_eq!((job.start_time, job.end_time), (None, None), "{sent}");
            let shown = sent.trim_matches('"');
            assert_eq!(job.unreadable_field(START_TIME_FIELD), Some(shown));
            assert_eq!(job.unreadable_field(END_TIME_FIELD), Some(shown));
            assert_eq!(job.class, StatusClass::Failure);
        }
        // An undocumented code with an end time sent has ended, readable or not.
        let job = one(&format!(
            r#"{{{BASE},"EndTime":"soon","Status":"RESTORE_FOO"}}"#
        ));
        assert_eq!(job.class, StatusClass::Unknown);
    }

    #[test]
    fn the_years_at_the_bounds_are_read() {
        for (s, ok) in [
            ("1970-01-01 12:00:00", true),
            ("2200-12-31 12:00:00", true),
            ("2201-01-01 12:00:00", false),
            ("1969-12-31 12:00:00", false),
        ] {
            assert_eq!(parse_server_time(s, BERLIN).is_some(), ok, "{s}");
        }
    }

    #[test]
    fn times_in_both_formats() {
        let job = one(&format!(
            r#"{{{BASE},"StartTime":"2024-06-26-13-25-14","EndTime":"2024-06-26 14:00:00"}}"#
        ));
        let start = job.start_time.unwrap();
        assert_eq!((start.hour(), start.minute(), start.second()), (13, 25, 14));
        assert_eq!(job.end_time.unwrap().hour(), 14);
        assert_eq!(job.duration_secs(), Some(34 * 60 + 46));
    }

    #[test]
    fn backup_set_name_as_bool_or_string() {
        let unnamed = one(&format!(r#"{{{BASE},"BackupSetName":true}}"#));
        assert_eq!(unnamed.backup_set_name, "");
        assert_eq!(unnamed.backup_set_label(), "1687755057644");
        assert_eq!(
            one(&format!(r#"{{{BASE},"BackupSetName":"Files"}}"#)).backup_set_name,
            "Files"
        );
    }

    #[test]
    fn data_as_single_object() {
        let body =
            format!(r#"{{"Status":"OK","Data":{{{BASE},"Status":"RESTORE_STOP_SUCCESS"}}}}"#);
        assert_eq!(decode_reply(&body, &cx()).unwrap().jobs.len(), 1);
    }

    #[test]
    fn data_absent_or_null_means_no_jobs() {
        for body in [
            r#"{"Status":"OK"}"#,
            r#"{"Status":"OK","Data":null}"#,
            r#"{"Status":"OK","Data":[]}"#,
        ] {
            let list = decode_reply(body, &cx()).unwrap();
            assert!(list.jobs.is_empty() && list.skipped.is_empty(), "{body}");
        }
    }

    #[test]
    fn owner_empty_string_is_no_owner() {
        assert_eq!(one(&format!(r#"{{{BASE},"Owner":""}}"#)).owner, "");
        assert_eq!(
            one(&format!(r#"{{{BASE},"Owner":"reseller-a"}}"#)).owner,
            "reseller-a"
        );
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let job = one(&format!("{{{BASE}}}"));
        assert_eq!(job.class, StatusClass::Running);
        assert_eq!(job.client_version, None);
        assert_eq!(job.destination_id, None);
        assert_eq!(job.end_time, None);
        // The ID is the start timestamp.
        assert_eq!(
            job.start_time.unwrap().naive_local().to_string(),
            "2024-06-26 13:25:13"
        );
    }

    #[test]
    fn database_vm_and_folder_lists() {
        let job = one(&format!(
            r#"{{{BASE},"SuccessDatabase":"db1","MissedDatabase":["db2","db3"],
               "SuccessVirtualMachine":"","MissedVirtualMachine":"vm9",
               "SuccessPublicFolder":["pf1"],"MissedPublicFolder":"pf2"}}"#
        ));
        assert_eq!(job.success_databases, ["db1"]);
        assert_eq!(job.missed_databases, ["db2", "db3"]);
        assert!(job.success_virtual_machines.is_empty());
        assert_eq!(job.missed_virtual_machines, ["vm9"]);
        assert_eq!(job.success_public_folders, ["pf1"]);
        assert_eq!(job.missed_public_folders, ["pf2"]);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let job = one(&format!(
            r#"{{{BASE},"Foo":{{"x":[1,2]}},"Status":"RESTORE_STOP_SUCCESS"}}"#
        ));
        assert_eq!(job.class, StatusClass::Success);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let job = one(&format!(
            r#"{{{BASE},"Status":"RESTORE_STOP_SUCCESS","Status":"RESTORE_STOP_BY_ERROR","RestoreSize":1,"RestoreSize":"5"}}"#
        ));
        assert_eq!(job.class, StatusClass::Failure);
        assert_eq!(job.restore_size_bytes, Some(5));
    }

    #[test]
    fn only_an_item_without_identity_is_skipped() {
        let body = format!(
            r#"{{"Status":"OK","Data":[{{{BASE},"Status":"RESTORE_STOP_SUCCESS"}},
                {{"ID":"x","BackupSetID":"1","StartTime":"yesterday-ish"}},
                {{"BackupSetID":"2","Status":"RESTORE_STOP_BY_ERROR"}}, 42,
                {{"ID":"2024-06-26-15-00-00","BackupSetID":"9","Status":"RESTORE_STOP_BY_ERROR"}}]}}"#
        );
        let list = decode_reply(&body, &cx()).unwrap();
        assert_eq!(list.jobs.len(), 3);
        assert_eq!(
            list.jobs[1].unreadable_field(START_TIME_FIELD),
            Some("yesterday-ish")
        );
        assert_eq!(list.jobs[2].backup_set_id, "9");
        assert_eq!(list.skipped.len(), 2);
        assert!(
            list.skipped[0].reason.contains("ID"),
            "{:?}",
            list.skipped[0]
        );
        assert!(list.skipped[0].raw.contains("RESTORE_STOP_BY_ERROR"));
        assert_eq!(list.skipped[1].raw, "42");
    }

    #[test]
    fn a_long_skipped_item_and_a_long_raw_field_are_cut_short() {
        let long = "x".repeat(5000);
        let body = format!(
            r#"{{"Status":"OK","Data":[{{"BackupSetID":"{long}"}},{{{BASE},"EndTime":"{long}"}}]}}"#
        );
        let list = decode_reply(&body, &cx()).unwrap();
        assert!(list.skipped[0].raw.chars().count() <= SNIPPET_MAX_CHARS + 1);
        let raw = list.jobs[0].unreadable_field(END_TIME_FIELD).unwrap();
        assert!(raw.chars().count() <= RAW_FIELD_MAX_CHARS + 1);
    }

    #[test]
    fn unknown_status_code_is_unknown_and_kept() {
        let job = one(&format!(
            r#"{{{BASE},"Status":"RESTORE_STOP_BY_QUOTA_EXCEEDED"}}"#
        ));
        assert_eq!(job.class, StatusClass::Unknown);
        assert_eq!(job.raw_status, "RESTORE_STOP_BY_QUOTA_EXCEEDED");
    }

    #[test]
    fn an_undocumented_code_without_end_time_is_running_until_it_ends() {
        let running = one(&format!(r#"{{{BASE},"Status":"RESTORE_IN_PROGRESS"}}"#));
        assert_eq!(running.class, StatusClass::Running);
        assert_eq!(running.raw_status, "RESTORE_IN_PROGRESS");
        let ended = one(&format!(
            r#"{{{BASE},"Status":"RESTORE_IN_PROGRESS","EndTime":"2024-06-26 14:00:00"}}"#
        ));
        assert_eq!(ended.class, StatusClass::Unknown);
        // A documented final code stands even without an end time.
        let failed = one(&format!(r#"{{{BASE},"Status":"RESTORE_STOP_BY_ERROR"}}"#));
        assert_eq!(failed.class, StatusClass::Failure);
    }

    #[test]
    fn empty_status_is_running() {
        let job = one(&format!(r#"{{{BASE},"Status":"","EndTime":""}}"#));
        assert_eq!(job.class, StatusClass::Running);
        assert_eq!(job.end_time, None);
        assert!(!job.class.is_finished());
    }

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
    fn error_envelope_is_an_api_error() {
        let body = r#"{"Status":"Error","Message":"Incorrect system username/password","ExptType":"com.ahsay.obs.core.dbs.c"}"#;
        assert_eq!(
            decode_reply(body, &cx()),
            Err(ReplyError::Api {
                message: "Incorrect system username/password".into(),
                expt_type: Some("com.ahsay.obs.core.dbs.c".into()),
            })
        );
    }

    #[test]
    fn non_json_is_malformed_with_a_snippet() {
        let Err(ReplyError::Malformed { snippet, .. }) = decode_reply("<html>oops</html>", &cx())
        else {
            panic!("expected malformed");
        };
        assert_eq!(snippet, "<html>oops</html>");
    }

    #[test]
    fn dst_gap_and_fold_times_parse() {
        // 2024-03-31 02:30 does not exist in Berlin; 2024-10-27 02:30 happens twice.
        let gap = parse_server_time("2024-03-31 02:30:00", BERLIN).unwrap();
        assert_eq!(gap.hour(), 3);
        let fold = parse_server_time("2024-10-27-02-30-00", BERLIN).unwrap();
        assert_eq!(fold.to_rfc3339(), "2024-10-27T02:30:00+02:00");
        assert_eq!(fold.day(), 27);
    }

    #[test]
    fn job_round_trips_through_serde_in_its_zone() {
        let job = one(&format!(r#"{{{BASE},"EndTime":"2024-06-26 14:00:00"}}"#));
        let back: RestoreJob = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        assert_eq!(back.end_time.unwrap().timezone(), BERLIN);
    }

    #[test]
    fn users_are_read_from_the_user_key() {
        let body = r#"{"Status":"OK","User":[{"ID":"1","LoginName":"alice","Owner":"res1","X":1},
            {"ID":"2","LoginName":"bob"},{"ID":"3"},{"LoginName":"  "},7]}"#;
        let users = decode_users(body).unwrap();
        assert_eq!(
            users,
            vec![
                ListedUser {
                    login: "alice".into(),
                    owner: "res1".into()
                },
                ListedUser {
                    login: "bob".into(),
                    owner: String::new()
                },
            ]
        );
        assert!(matches!(
            decode_users(r#"{"Status":"Error","Message":"no role"}"#),
            Err(ReplyError::Api { message, .. }) if message == "no role"
        ));
        assert!(matches!(
            decode_users(r#"{"Status":"OK","User":"x"}"#),
            Err(ReplyError::Malformed { .. })
        ));
        assert_eq!(decode_users(r#"{"Status":"OK"}"#).unwrap(), vec![]);
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

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn cx() -> DecodeContext<'static> {
        DecodeContext {
            server: "cbs1",
            tz: chrono_tz::Europe::Berlin,
            login_name: "obm",
            owner: "",
        }
    }

    /// Any JSON scalar a field might carry.
    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            "[0-9]{1,20}".prop_map(Value::from),
            "-?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}[ T-][0-9]{1,2}[:-][0-9]{1,2}[:-][0-9]{1,2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?"
                .prop_map(Value::from),
        ]
    }

    proptest! {
        /// Whatever a time field holds, decoding does not panic, and the job is kept:
        /// either the time is read, within the year bounds, or its text is kept.
        #[test]
        fn any_time_or_size_keeps_the_job(start in scalar(), end in scalar(), size in scalar()) {
            let item = serde_json::json!({
                "ID": "2024-06-26-13-25-13", "BackupSetID": "1", "Status": "RESTORE_STOP_BY_ERROR",
                "StartTime": start, "EndTime": end, "RestoreSize": size,
            });
            let body = serde_json::json!({"Status": "OK", "Data": [item]}).to_string();
            let list = decode_reply(&body, &cx()).unwrap();
            prop_assert_eq!(list.jobs.len(), 1);
            let job = &list.jobs[0];
            prop_assert_eq!(job.class, StatusClass::Failure);
            for (t, field) in [(job.start_time, START_TIME_FIELD), (job.end_time, END_TIME_FIELD)] {
                if let Some(t) = t {
                    prop_assert!((MIN_YEAR..=MAX_YEAR).contains(&t.year()));
                    prop_assert!(job.unreadable_field(field).is_none());
                }
            }
            if job.unreadable_field(END_TIME_FIELD).is_some() {
                prop_assert!(job.end_time.is_none());
            }
            // What is stored reads back as it was.
            let back: RestoreJob = serde_json::from_str(&serde_json::to_string(job).unwrap()).unwrap();
            prop_assert_eq!(&back, job);
        }

        /// Any text as a time: no panic, and a time read is within the bounds.
        #[test]
        fn any_text_parses_or_not_without_panic(s in ".{0,60}") {
            if let Some(t) = parse_server_time(&s, chrono_tz::Europe::Berlin) {
                prop_assert!((MIN_YEAR..=MAX_YEAR).contains(&t.year()));
            }
        }

        /// Every instant in the bounds, written in each listed format, reads back.
        #[test]
        fn every_format_reads_back(secs in 0i64..7_258_118_400) {
            let tz = chrono_tz::Europe::Berlin;
            let t = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            let local = t.with_timezone(&tz);
            // Milliseconds before 1973-03-03 look like seconds: they are read as seconds.
            let millis = (secs * 1000 >= EPOCH_MILLIS_FROM).then(|| (secs * 1000).to_string());
            for s in millis.into_iter().chain([
                secs.to_string(),
                t.to_rfc3339(),
                local.to_rfc3339(),
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ]) {
                prop_assert_eq!(parse_server_time(&s, tz).map(|p| p.to_utc()), Some(t), "{}", s);
            }
            // Local wall-clock formats are ambiguous in a fold; UTC has none.
            let u = chrono_tz::UTC;
            for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d-%H-%M-%S", "%Y-%m-%dT%H:%M:%S"] {
                let s = t.format(f).to_string();
                prop_assert_eq!(parse_server_time(&s, u).map(|p| p.to_utc()), Some(t), "{}", s);
            }
        }

        /// Any reply body: no panic, and a clear error when it is not a usable reply.
        #[test]
        fn any_body_decodes_or_errs_without_panic(body in ".{0,200}") {
            if let Err(ReplyError::Malformed { reason, .. }) = decode_reply(&body, &cx()) {
                prop_assert!(!reason.is_empty());
            }
        }
    }

    #[test]
    fn report_keeps_counts_and_last_problem_lines() {
        let logs: Vec<String> = (0..8)
            .map(|i| {
                format!(r#"{{"Type":"file","Time":1719379513000,"Msg":"[ERROR] file {i} failed"}}"#)
            })
            .chain([
                r#"{"Type":"info","Time":1719379513000,"Message":"Restore started"}"#.to_owned(),
            ])
            .collect();
        let body = format!(
            r#"{{"Status":"OK","Data":{{"ID":"2024-06-26-13-25-13","StartTime":1719379513000,"TotalFileCount":"42","TotalFileSize":1024,"Logs":[{}]}}}}"#,
            logs.join(",")
        );
        let r = decode_report(&body).unwrap();
        assert_eq!(r.file_count, Some(42));
        assert_eq!(r.total_size, Some(1024));
        assert_eq!(r.lines.len(), REPORT_LINES_MAX);
        assert_eq!(r.lines[0], "[ERROR] file 3 failed");
        assert_eq!(r.lines[4], "[ERROR] file 7 failed");
        let refused = decode_report(r#"{"Status":"Error","Message":"No permission"}"#);
        assert!(
            matches!(refused, Err(ReplyError::Api { .. })),
            "{refused:?}"
        );
        assert!(decode_report(r#"{"Status":"OK","Data":7}"#).is_err());
    }
}
