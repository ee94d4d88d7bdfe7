//! Scenario files: a hand-written workload in TOML (format documented in
//! `config/scenario.example.toml`).
//!
//! Dates may be relative (`today`, `yesterday`, `today-3`) so one file serves a demo on any
//! day; they are resolved against "now" in the scenario's zone when the file is loaded.
//! Times are wall-clock times in that zone, as the CBS shows them. Every mistake is
//! reported with where it is (`days[1].jobs[0]`) and what is wrong.

use super::job::{Quirks, SimJob, SimUser};
use super::workload::Workload;
use crate::cbs::model::local_in;
use crate::tz::Tz;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The client version jobs report when the backup set does not name one.
const DEFAULT_CLIENT_VERSION: &str = "10.1.4.0";

/// A loaded scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The server zone: the file's `timezone`, or the default given to the loader.
    pub timezone: Tz,
    pub workload: Workload,
}

/// A scenario that cannot be used; the message says where and why.
#[derive(Debug, thiserror::Error)]
#[error("scenario {origin}: {message}")]
pub struct ScenarioError {
    /// The file name (or `<text>`).
    pub origin: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    timezone: Option<String>,
    #[serde(default)]
    users: Vec<UserEntry>,
    #[serde(default)]
    backup_sets: Vec<SetEntry>,
    #[serde(default)]
    days: Vec<DayEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    login: String,
    #[serde(default)]
    owner: String,
    user_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetEntry {
    login: String,
    id: String,
    name: String,
    destination_id: Option<String>,
    client_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DayEntry {
    date: String,
    #[serde(default)]
    jobs: Vec<JobEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobEntry {
    login: String,
    backup_set: String,
    start: String,
    duration_secs: Option<u32>,
    #[serde(default)]
    running: bool,
    status: Option<String>,
    #[serde(default)]
    size_bytes: u64,
    #[serde(default)]
    success_databases: Vec<String>,
    #[serde(default)]
    missed_databases: Vec<String>,
    #[serde(default)]
    success_virtual_machines: Vec<String>,
    #[serde(default)]
    missed_virtual_machines: Vec<String>,
    #[serde(default)]
    success_public_folders: Vec<String>,
    #[serde(default)]
    missed_public_folders: Vec<String>,
    #[serde(default)]
    quirks: Vec<String>,
}

impl Scenario {
    /// Reads and checks a scenario file. `now` resolves relative dates.
    pub fn load(
        path: &Path,
        default_tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: origin.clone(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse_named(&text, &origin, default_tz, now)
    }

    /// Parses scenario text. `now` resolves relative dates.
    pub fn parse(
        text: &str,
        default_tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Scenario, ScenarioError> {
        Self::parse_named(text, "<text>", default_tz, now)
    }

    fn parse_named(
        text: &str,
        origin: &str,
        default_tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Scenario, ScenarioError> {
        let fail = |message: String| ScenarioError {
            origin: origin.to_owned(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        build(file, default_tz, now).map_err(fail)
    }
}

fn build(file: File, default_tz: Tz, now: DateTime<Utc>) -> Result<Scenario, String> {
    let tz = match &file.timezone {
        None => default_tz,
        Some(name) => name.parse().map_err(|_| {
            format!("timezone: {name:?} is not an IANA zone name like \"Europe/Berlin\"")
        })?,
    };
    let mut users = BTreeMap::new();
    for (i, u) in file.users.iter().enumerate() {
        if u.login.trim().is_empty() {
            return Err(format!("users[{i}].login is empty"));
        }
        let user = SimUser {
            login: u.login.clone(),
            owner: u.owner.clone(),
            user_id: u.user_id.clone().unwrap_or_else(|| u.login.clone()),
        };
        if users.insert(u.login.clone(), user).is_some() {
            return Err(format!("users[{i}]: login {:?} appears twice", u.login));
        }
    }
    let mut sets: HashMap<(&str, &str), &SetEntry> = HashMap::new();
    for (i, s) in file.backup_sets.iter().enumerate() {
        if !users.contains_key(&s.login) {
            return Err(format!(
                "backup_sets[{i}]: login {:?} is not in [[users]]",
                s.login
            ));
        }
        if s.id.trim().is_empty() {
            return Err(format!("backup_sets[{i}].id is empty"));
        }
        if sets.insert((&s.login, &s.id), s).is_some() {
            return Err(format!(
                "backup_sets[{i}]: {:?} has backup set {:?} twice",
                s.login, s.id
            ));
        }
    }
    let today = now.with_timezone(&tz).date_naive();
    let mut jobs = Vec::new();
    let mut ids = HashMap::new();
    for (d, day) in file.days.iter().enumerate() {
        let date = parse_date(&day.date, today).ok_or_else(|| {
            format!(
                "days[{d}].date: {:?} is not \"today\", \"yesterday\", \"today-N\" or yyyy-MM-dd",
                day.date
            )
        })?;
        for (j, entry) in day.jobs.iter().enumerate() {
            let at = format!("days[{d}].jobs[{j}]");
            let job =
                build_job(entry, date, tz, &users, &sets).map_err(|e| format!("{at}: {e}"))?;
            let id = (job.login.clone(), job.backup_set_id.clone(), job.job_id(tz));
            if let Some(first) = ids.insert(id, at.clone()) {
                return Err(format!(
                    "{at}: same login, backup set and start second as {first} (the job ID would repeat)"
                ));
            }
            jobs.push(job);
        }
    }
    Ok(Scenario {
        timezone: tz,
        workload: Workload {
            users: users.into_values().collect(),
            jobs,
        },
    })
}

fn build_job(
    e: &JobEntry,
    date: NaiveDate,
    tz: Tz,
    users: &BTreeMap<String, SimUser>,
    sets: &HashMap<(&str, &str), &SetEntry>,
) -> Result<SimJob, String> {
    let user = users
        .get(&e.login)
        .ok_or_else(|| format!("login {:?} is not in [[users]]", e.login))?;
    let set = sets
        .get(&(e.login.as_str(), e.backup_set.as_str()))
        .ok_or_else(|| {
            format!(
                "backup_set {:?} of {:?} is not in [[backup_sets]]",
                e.backup_set, e.login
            )
        })?;
    let time = NaiveTime::parse_from_str(&e.start, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(&e.start, "%H:%M"))
        .map_err(|_| format!("start: {:?} is not a time like \"08:15:00\"", e.start))?;
    let start = local_in(tz, date.and_time(time))
        .ok_or_else(|| format!("start: {} {} does not exist in {tz}", date, e.start))?
        .with_timezone(&Utc);
    let end = match (e.duration_secs, e.running) {
        (Some(secs), false) => Some(start + Duration::seconds(i64::from(secs))),
        (None, true) => None,
        (Some(_), true) => return Err("give duration_secs or running = true, not both".into()),
        (None, false) => {
            return Err("give duration_secs (or running = true for a job that never ends)".into())
        }
    };
    let mut quirks = Quirks::default();
    for q in &e.quirks {
        if !quirks.set_by_name(q) {
            let known: Vec<&str> = Quirks::names().collect();
            return Err(format!("unknown quirk {q:?}; known: {}", known.join(", ")));
        }
    }
    Ok(SimJob {
        login: user.login.clone(),
        owner: user.owner.clone(),
        user_id: user.user_id.clone(),
        backup_set_id: set.id.clone(),
        backup_set_name: set.name.clone(),
        start,
        end,
        final_status: e
            .status
            .clone()
            .unwrap_or_else(|| "RESTORE_STOP_SUCCESS".to_owned()),
        size_bytes: e.size_bytes,
        client_version: set
            .client_version
            .clone()
            .unwrap_or_else(|| DEFAULT_CLIENT_VERSION.to_owned()),
        destination_id: set.destination_id.clone(),
        success_databases: e.success_databases.clone(),
        missed_databases: e.missed_databases.clone(),
        success_virtual_machines: e.success_virtual_machines.clone(),
        missed_virtual_machines: e.missed_virtual_machines.clone(),
        success_public_folders: e.success_public_folders.clone(),
        missed_public_folders: e.missed_public_folders.clone(),
        quirks,
        listed_under: None,
    })
}

/// `today`, `yesterday`, `today-N`, `today+N` or `yyyy-MM-dd`.
fn parse_date(s: &str, today: NaiveDate) -> Option<NaiveDate> {
    let s = s.trim();
    match s {
        "today" => return Some(today),
        "yesterday" => return today.pred_opt(),
        _ => {}
    }
    if let Some(rest) = s.strip_prefix("today") {
        let days: i64 = match rest.as_bytes().first() {
            Some(b'-') => -rest[1..].parse::<i64>().ok()?,
            Some(b'+') => rest[1..].parse().ok()?,
            _ => return None,
        };
        return today.checked_add_signed(Duration::try_days(days)?);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    use crate::test_data::berlin;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, 10, 0, 0).unwrap()
    }

    const BASE: &str = r#"
        timezone = "Europe/Berlin"
        [[users]]
        login = "alice"
        [[backup_sets]]
        login = "alice"
        id = "100"
        name = "Documents"
    "#;

    fn parse(days: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&format!("{BASE}{days}"), crate::tz::Tz::UTC, now())
    }

    fn error(days: &str) -> String {
        parse(days).expect_err("should fail").to_string()
    }

    #[test]
    fn relative_and_absolute_dates() {
        let today = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        assert_eq!(parse_date("today", today), Some(today));
        assert_eq!(parse_date("yesterday", today), today.pred_opt());
        assert_eq!(
            parse_date("today-3", today),
            NaiveDate::from_ymd_opt(2025, 3, 11)
        );
        assert_eq!(
            parse_date("today+1", today),
            NaiveDate::from_ymd_opt(2025, 3, 15)
        );
        assert_eq!(
            parse_date("2024-06-26", today),
            NaiveDate::from_ymd_opt(2024, 6, 26)
        );
        for bad in ["tomorrow", "today-x", "today3", "26.06.2024"] {
            assert_eq!(parse_date(bad, today), None, "{bad}");
        }
    }

    #[test]
    fn a_job_in_local_time() {
        let s = parse(
            r#"[[days]]
            date = "yesterday"
            [[days.jobs]]
            login = "alice"
            backup_set = "100"
            start = "23:30:05"
            duration_secs = 3600
            status = "RESTORE_STOP_BY_ERROR"
            quirks = ["dashed_times", "user_id_upper"]"#,
        )
        .unwrap();
        assert_eq!(s.timezone, berlin());
        let j = &s.workload.jobs[0];
        assert_eq!(j.job_id(berlin()), "2025-03-13-23-30-05");
        assert_eq!(j.user_id, "alice");
        assert_eq!(j.final_status, "RESTORE_STOP_BY_ERROR");
        assert!(j.quirks.dashed_times && j.quirks.user_id_upper);
        assert_eq!((j.end.unwrap() - j.start).num_seconds(), 3600);
    }

    #[test]
    fn errors_say_where_and_what() {
        let job = |extra: &str| {
            format!(
                "[[days]]\ndate = \"today\"\n[[days.jobs]]\nlogin = \"alice\"\nbackup_set = \"100\"\nstart = \"08:00\"\n{extra}"
            )
        };
        for (days, wanted) in [
            (
                job("duration_secs = 5\nquirks = [\"nope\"]"),
                "days[0].jobs[0]: unknown quirk \"nope\"",
            ),
            (job(""), "days[0].jobs[0]: give duration_secs"),
            (job("duration_secs = 5\nrunning = true"), "not both"),
            (
                job("duration_secs = 5\ncolour = 1"),
                "unknown field `colour`",
            ),
            (
                job("running = true").replace("08:00", "8 o'clock"),
                "start: \"8 o'clock\"",
            ),
            (
                job("running = true").replace("\"100\"", "\"999\""),
                "backup_set \"999\"",
            ),
            (
                job("running = true").replace("today", "someday"),
                "days[0].date",
            ),
            (
                format!("{}\n{}", job("running = true"), job("running = true")),
                "days[1].jobs[0]: same login, backup set and start second as days[0].jobs[0]",
            ),
        ] {
            let message = error(&days);
            assert!(message.contains(wanted), "{message:?} lacks {wanted:?}");
        }
        let bad_zone = Scenario::parse("timezone = \"Mars/Olympus\"", berlin(), now());
        assert!(bad_zone.unwrap_err().to_string().contains("timezone"));
        let stray_user = "[[backup_sets]]\nlogin = \"bob\"\nid = \"1\"\nname = \"x\"";
        let e = Scenario::parse(stray_user, berlin(), now()).unwrap_err();
        assert!(
            e.to_string().contains("backup_sets[0]: login \"bob\""),
            "{e}"
        );
    }
}
