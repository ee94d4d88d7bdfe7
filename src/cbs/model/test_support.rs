//! Shared test data for the model: a Berlin CBS's decode context, and one reply item
//! decoded from its JSON.

use super::{decode_reply, DecodeContext, RestoreJob};

pub(super) use crate::test_data::berlin;

pub(super) fn cx() -> DecodeContext<'static> {
    DecodeContext {
        server: "cbs1",
        tz: berlin(),
        login_name: "obm",
        owner: "",
        date: chrono::NaiveDate::from_ymd_opt(2024, 6, 26).unwrap(),
    }
}

pub(super) fn one(item: &str) -> RestoreJob {
    let body = format!(r#"{{"Status":"OK","Data":[{item}]}}"#);
    let list = decode_reply(&body, &cx()).expect("reply decodes");
    assert!(list.skipped.is_empty(), "skipped: {:?}", list.skipped);
    assert_eq!(list.jobs.len(), 1);
    list.jobs.into_iter().next().unwrap()
}

pub(super) const BASE: &str =
    r#""ID":"2024-06-26-13-25-13","BackupSetID":"1687755057644","LoginName":"obm""#;
