//! Test data shared by the store's tests: a job of user `obm`, the alerting classes and a
//! policy at an hour of 2024-06-26.

use super::{Policy, Store};
use crate::cbs::model::{RestoreJob, StatusClass};
use crate::test_data;
use chrono::{NaiveDate, TimeZone, Utc};
use std::collections::BTreeSet;

pub(super) fn job(id: &str, raw: &str, end: Option<&str>) -> RestoreJob {
    RestoreJob {
        backup_set_name: "Files".into(),
        ..test_data::job("obm", "1", crate::tz::Tz::UTC, id, end, raw)
    }
}

pub(super) fn classes() -> BTreeSet<StatusClass> {
    [
        StatusClass::Failure,
        StatusClass::PartialFailure,
        StatusClass::Unknown,
    ]
    .into()
}

pub(super) fn policy(classes: &BTreeSet<StatusClass>, hour: u32, baseline: bool) -> Policy<'_> {
    let now = Utc.with_ymd_and_hms(2024, 6, 26, hour, 0, 0).unwrap();
    Policy {
        baseline,
        ..test_data::policy(now, classes)
    }
}

pub(super) fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 6, 26).unwrap()
}

/// The bytes stored for `job`'s record.
pub(super) fn raw_record(store: &Store, job: &RestoreJob) -> sled::IVec {
    let key = super::jobs::job_key_bytes(&job.key());
    store.t().unwrap().jobs.get(key).unwrap().expect("a record")
}
