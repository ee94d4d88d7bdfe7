//! Test data for the unit tests: restore jobs as a CBS reports them, the policy the store
//! records them under, and a look-up of what an embed shows. Each builder fills in plain
//! defaults; a test overrides the fields it is about with struct update syntax, so it states
//! only what matters to it.

use crate::cbs::model::{parse_server_time, RestoreJob, StatusClass};
use crate::render::Embed;
use crate::store::Policy;
use crate::tz::Tz;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// Europe/Berlin (CET, CEST), the zone of most tests.
pub(crate) fn berlin() -> Tz {
    "Europe/Berlin".parse().unwrap()
}

/// A job of `login` (also its user ID, no owner) on server `cbs`, in backup set `set_id`
/// named `Set <id>`. `start` and `end` (`None`: still running) are local times in `tz` as
/// the CBS writes them, `yyyy-MM-dd HH:mm:ss` or dashed; the job ID is the dashed start.
/// `raw` is the status code (empty while running). Nothing restored, no client version,
/// destination or item lists.
pub(crate) fn job(
    login: &str,
    set_id: &str,
    tz: Tz,
    start: &str,
    end: Option<&str>,
    raw: &str,
) -> RestoreJob {
    RestoreJob {
        server: "cbs".into(),
        login_name: login.into(),
        owner: String::new(),
        user_id: login.into(),
        backup_set_id: set_id.into(),
        backup_set_name: format!("Set {set_id}"),
        job_id: start.replace([' ', ':'], "-"),
        start_time: parse_server_time(start, tz),
        end_time: end.and_then(|e| parse_server_time(e, tz)),
        restore_size_bytes: Some(0),
        client_version: None,
        destination_id: None,
        success_databases: vec![],
        missed_databases: vec![],
        success_virtual_machines: vec![],
        missed_virtual_machines: vec![],
        success_public_folders: vec![],
        missed_public_folders: vec![],
        raw_status: raw.into(),
        class: StatusClass::from_raw(raw),
        unreadable: Default::default(),
    }
}

/// Alerts on `alert_classes` as seen at `now`: a job running 12 hours is stuck, it is not a
/// baseline cycle and nothing is muted.
pub(crate) fn policy(now: DateTime<Utc>, alert_classes: &BTreeSet<StatusClass>) -> Policy<'_> {
    Policy {
        now,
        alert_classes,
        stuck_after: chrono::Duration::hours(12),
        baseline: false,
        muted: &|_| false,
        repeat: &|_| None,
    }
}

/// The value of `embed`'s field called `name`; panics, listing the fields, when none is.
pub(crate) fn field_value<'e>(embed: &'e Embed, name: &str) -> &'e str {
    &embed
        .fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name:?} in {:#?}", embed.fields))
        .value
}
