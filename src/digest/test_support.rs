//! Test data shared by the digest's unit tests (and the digest cards' in
//! `crate::render`): a varied day of Berlin restore jobs, as job records.

use super::DigestJob;
use crate::cbs::model::RestoreJob;
use crate::store::{DayHealth, JobRecord};
use crate::test_data;
use chrono::{NaiveDate, TimeZone, Utc};

pub(crate) use crate::test_data::berlin;

pub(crate) fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 6, 26).unwrap()
}

/// The day the test day's digest is posted.
pub(crate) fn tomorrow() -> NaiveDate {
    day().succ_opt().unwrap()
}

/// A job of a Berlin server; times are `yyyy-MM-dd HH:mm:ss` local, `raw` its code.
pub(crate) fn job(
    login: &str,
    owner: &str,
    set: &str,
    start: &str,
    end: Option<&str>,
    raw: &str,
) -> RestoreJob {
    RestoreJob {
        owner: owner.into(),
        backup_set_name: set.into(),
        ..test_data::job(login, &format!("id-{set}"), berlin(), start, end, raw)
    }
}

/// A job that ended on the test day: started `hh:00`, ended half an hour later.
pub(crate) fn ended(login: &str, owner: &str, hour: u32, raw: &str) -> RestoreJob {
    job(
        login,
        owner,
        &format!("set-{login}"),
        &format!("2024-06-26 {hour:02}:00:00"),
        Some(&format!("2024-06-26 {hour:02}:30:00")),
        raw,
    )
}

pub(crate) fn running(login: &str, hour: u32) -> RestoreJob {
    let start = format!("2024-06-26 {hour:02}:00:00");
    job(login, "", &format!("set-{login}"), &start, None, "")
}

pub(crate) fn record(job: RestoreJob, stuck_alerted: bool) -> JobRecord {
    let seen = Utc.with_ymd_and_hms(2024, 6, 26, 22, 0, 0).unwrap();
    JobRecord {
        job,
        date: day(),
        first_seen: seen,
        last_seen: seen,
        baseline: false,
        stuck_alerted,
        alerted: false,
        vanished: false,
    }
}

/// A varied day: 3 success, 1 warning, 1 cancelled, one failure of each failing kind
/// (out of time order), two running and one stuck job.
pub(crate) fn records() -> Vec<JobRecord> {
    vec![
        record(ended("s1", "res-a", 1, "RESTORE_STOP_SUCCESS"), false),
        record(ended("fail", "res-b", 15, "RESTORE_STOP_BY_ERROR"), false),
        record(ended("s2", "res-a", 2, "RESTORE_STOP_SUCCESS"), false),
        record(running("late", 20), false),
        record(ended("unk", "", 12, "RESTORE_STOP_WEIRD"), false),
        record(ended("s3", "", 3, "RESTORE_STOP_SUCCESS"), false),
        record(running("stuck", 1), true),
        record(
            ended("warn", "res-b", 4, "RESTORE_STOP_SUCCESS_WITH_WARNING"),
            false,
        ),
        record(
            ended("part", "res-a", 9, "RESTORE_STOP_SUCCESS_WITH_ERROR"),
            false,
        ),
        record(running("early", 18), false),
        record(ended("cxl", "res-b", 5, "RESTORE_STOP_BY_USER"), false),
    ]
}

pub(crate) fn health(outage_secs: i64) -> DayHealth {
    DayHealth {
        cycles: 288,
        request_errors: 3,
        outage_secs,
    }
}

pub(crate) fn logins(jobs: &[DigestJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.login_name.as_str()).collect()
}
