//! Decoding a `ListRestoreJobStatus.do` reply into jobs: `Data` as a list, one object or
//! nothing; each item read field by field, keeping a job whose time or size is unreadable
//! and skipping only an item without an identity.

use super::envelope::{
    as_id, as_list, as_size, as_text, get, open_envelope, raw_text, snippet, ReplyError,
    SNIPPET_MAX_CHARS,
};
use super::job::{
    RestoreJob, ServerTime, StatusClass, END_TIME_FIELD, RESTORE_SIZE_FIELD, START_TIME_FIELD,
};
use super::time::{parse_server_time, parse_time_value, second_fold_reading};
use crate::tz::Tz;
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::BTreeMap;

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

/// What the decoder needs to know that the reply does not say.
#[derive(Clone, Debug)]
pub struct DecodeContext<'a> {
    pub server: &'a str,
    pub tz: Tz,
    /// The LoginName asked for: used when an item omits it.
    pub login_name: &'a str,
    /// The Owner asked for: used when an item omits it.
    pub owner: &'a str,
    /// The `RestoreDate` asked for: a job listed under it started that day, so a start or
    /// end far from it is not a time to compute with (it is kept as text, unreadable).
    pub date: NaiveDate,
}

/// Days a job's start may lie from the date it is listed under (zones, a clock a little
/// off); its end may lie up to [`END_AFTER_DATE_DAYS_MAX`] after (a restore may run long).
pub const START_FROM_DATE_DAYS_MAX: i64 = 2;
/// Days after its listing date a job's end may lie.
pub const END_AFTER_DATE_DAYS_MAX: i64 = 31;

/// Whether `t`, the start (or, `end`, the end) of a job listed under `date`, is a time to
/// take as sent: 2099 or 1970 on today's job would read as a restore of 73 years, or one
/// stuck for 56. Outside the window it is kept as text, marked unreadable, like a time
/// that does not parse.
fn plausible(t: &ServerTime, date: NaiveDate, end: bool) -> bool {
    let days = (t.date_naive() - date).num_days();
    let after = if end {
        END_AFTER_DATE_DAYS_MAX
    } else {
        START_FROM_DATE_DAYS_MAX
    };
    (-START_FROM_DATE_DAYS_MAX..=after).contains(&days)
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

fn decode_item(item: &Value, cx: &DecodeContext<'_>) -> Result<RestoreJob, String> {
    let Value::Object(map) = item else {
        return Err("the item is not a JSON object".into());
    };
    let text = |keys: &[&str]| get(map, keys).and_then(as_text);
    let id = |keys: &[&str], name: &str| -> Result<String, String> {
        let value = get(map, keys).map(as_id).transpose();
        match value.map_err(|e| format!("{name}: {e}"))?.flatten() {
            Some(id) if !id.is_empty() => Ok(id),
            _ => Err(format!("no {name}")),
        }
    };
    let job_id = id(&["ID"], "job ID")?;
    let backup_set_id = id(&["BackupSetID", "BackupSetId"], "BackupSetID")?;
    let raw_status = text(&["RestoreJobStatus", "Status"]).unwrap_or_default();
    let mut unreadable = BTreeMap::new();
    // A time: `None` when absent or empty; unreadable text is kept in `unreadable`.
    let mut time = |field: &'static str| -> (Option<ServerTime>, bool) {
        match get(map, &[field]) {
            None | Some(Value::Null) => (None, false),
            Some(Value::String(s)) if s.trim().is_empty() => (None, false),
            Some(v) => {
                let end = field == END_TIME_FIELD;
                let parsed = parse_time_value(v, cx.tz).filter(|t| plausible(t, cx.date, end));
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
            .filter(|t| plausible(t, cx.date, false))
    });
    // A wall time in the hour a fall-back repeats is read as its first instance; an end
    // that then comes before its start (02:50 CEST → 02:10 CET) meant the second.
    let end_time = match (start_time, end_time) {
        (Some(start), Some(end)) if end < start => get(map, &[END_TIME_FIELD])
            .and_then(Value::as_str)
            .and_then(|s| second_fold_reading(s, cx.tz))
            .filter(|t| *t >= start && plausible(t, cx.date, true))
            .or(end_time),
        _ => end_time,
    };
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
    // The reply is the asked user's: an item naming another user (in another case it is
    // the same one) is not recorded, alerted or routed under a user nobody asked about.
    let login_name = match text(&["LoginName"]).filter(|s| !s.is_empty()) {
        Some(login) if !login.eq_ignore_ascii_case(cx.login_name) => {
            return Err(format!(
                "LoginName {:?} is not the user asked for",
                snippet(&login, SNIPPET_MAX_CHARS)
            ))
        }
        login => login.unwrap_or_else(|| cx.login_name.to_owned()),
    };
    Ok(RestoreJob {
        server: cx.server.to_owned(),
        login_name,
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

#[cfg(test)]
mod tests {
    use super::super::job::RAW_FIELD_MAX_CHARS;
    use super::super::test_support::{berlin, cx, one, BASE};
    use super::*;

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
        assert_eq!(start.timezone(), berlin());
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
    fn an_identity_number_is_one_identity_however_written_and_never_approximate() {
        let body = r#"{"Status":"OK","Data":[
            {"ID":"2024-06-26-13-25-13","BackupSetID":1687755057644},
            {"ID":"2024-06-26-13-25-13","BackupSetID":1687755057644.0},
            {"ID":"2024-06-26-13-25-13","BackupSetID":"1687755057644"},
            {"ID":2024,"BackupSetID":-7},
            {"ID":"2024-06-26-13-25-13","BackupSetID":123456789012345678901234567890},
            {"ID":1.5,"BackupSetID":"1"}]}"#;
        let list = decode_reply(body, &cx()).unwrap();
        let sets: Vec<&str> = list.jobs.iter().map(|j| j.backup_set_id.as_str()).collect();
        assert_eq!(
            sets,
            ["1687755057644", "1687755057644", "1687755057644", "-7"]
        );
        assert_eq!(list.jobs[3].job_id, "2024");
        let reasons: Vec<&str> = list.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "BackupSetID: the number 1.2345678901234568e+29 cannot be read exactly",
                "job ID: the number 1.5 cannot be read exactly",
            ]
        );
    }

    #[test]
    fn an_item_of_another_user_is_skipped() {
        // Asked for `obm` (see `cx`): `OBM` is the same user, `mallory` is not.
        let body = format!(
            r#"{{"Status":"OK","Data":[{{{BASE},"LoginName":"OBM"}},
                {{"ID":"m1","BackupSetID":"1","LoginName":"mallory","Owner":"resB",
                  "Status":"RESTORE_STOP_BY_ERROR"}}]}}"#
        );
        let list = decode_reply(&body, &cx()).unwrap();
        assert_eq!(list.jobs.len(), 1);
        assert_eq!(list.jobs[0].login_name, "OBM");
        assert_eq!(
            list.skipped[0].reason,
            r#"LoginName "mallory" is not the user asked for"#
        );
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

    /// A job listed under 2024-06-26 (the test context's date) with times far from it:
    /// kept as text and marked unreadable, never computed with (a 73-year restore, a job
    /// stuck since 1970). A restore that runs a few days is taken as sent.
    #[test]
    fn times_far_from_the_listing_date_are_kept_as_text_not_computed_with() {
        let job = |start: &str, end: &str| {
            one(&format!(
                r#"{{{BASE},"Status":"RESTORE_STOP_BY_ERROR","StartTime":"{start}","EndTime":"{end}"}}"#
            ))
        };
        let future_end = job("2024-06-26 13:25:14", "2099-12-31 23:59:00");
        assert!(future_end.start_time.is_some());
        assert_eq!(future_end.end_time, None);
        assert_eq!(
            future_end.unreadable_field(END_TIME_FIELD),
            Some("2099-12-31 23:59:00")
        );
        assert_eq!(future_end.class, StatusClass::Failure, "still alerted");
        let epoch_start = job("1970-01-01 00:00:00", "2024-06-26 14:00:00");
        assert_eq!(epoch_start.start_time, None);
        assert_eq!(
            epoch_start.unreadable_field(START_TIME_FIELD),
            Some("1970-01-01 00:00:00")
        );
        let long = job("2024-06-26 23:00:00", "2024-06-29 02:00:00");
        assert!(long.start_time.is_some() && long.end_time.is_some());
        let late_start = job("2024-06-29 13:00:00", "2024-06-29 14:00:00");
        assert_eq!(
            late_start.start_time, None,
            "three days after its listing date"
        );
        let too_long = job("2024-06-26 13:00:00", "2024-07-28 14:00:00");
        assert_eq!(too_long.end_time, None, "32 days after");
    }

    #[test]
    fn empty_status_is_running() {
        let job = one(&format!(r#"{{{BASE},"Status":"","EndTime":""}}"#));
        assert_eq!(job.class, StatusClass::Running);
        assert_eq!(job.end_time, None);
        assert!(!job.class.is_finished());
    }
}

#[cfg(test)]
mod proptests {
    use super::super::test_support::cx;
    use super::super::time::{MAX_YEAR, MIN_YEAR};
    use super::*;
    use chrono::Datelike;
    use proptest::prelude::*;

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

        /// Any reply body: no panic, and a clear error when it is not a usable reply.
        #[test]
        fn any_body_decodes_or_errs_without_panic(body in ".{0,200}") {
            if let Err(ReplyError::Malformed { reason, .. }) = decode_reply(&body, &cx()) {
                prop_assert!(!reason.is_empty());
            }
        }
    }
}
