//! Shared test data for the event cards: a failed restore as a CBS in Berlin reports it,
//! the events around it and the render options.

use super::render_event;
use crate::cbs::model::RestoreJob;
use crate::event::{Event, EventKind};
use crate::render::embed::Embed;
use crate::render::RenderOptions;
use crate::test_data;
use chrono::{DateTime, TimeZone, Utc};

pub(super) use crate::test_data::berlin;

pub(super) fn opts() -> RenderOptions {
    RenderOptions {
        mention_role: Some(42),
        timezone: berlin(),
        servers_named: false,
    }
}

pub(super) fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 26, h, m, s).unwrap()
}

/// A failed restore as a CBS in Berlin reports it.
pub(super) fn failed_job() -> RestoreJob {
    RestoreJob {
        server: "cbs-main".into(),
        owner: "reseller-a".into(),
        backup_set_name: "Files".into(),
        restore_size_bytes: Some(1_610_612_736),
        client_version: Some("9.11.0.0".into()),
        destination_id: Some("1687755083984".into()),
        success_databases: vec!["sales".into()],
        missed_databases: vec!["hr".into(), "payroll".into()],
        ..test_data::job(
            "obm",
            "1687755057644",
            berlin(),
            "2024-06-26 12:23:12",
            Some("2024-06-26 13:25:14"),
            "RESTORE_STOP_BY_ERROR",
        )
    }
}

/// The failure alert of `job`, with nothing more known (no repeat, report or listing day).
pub(super) fn finished(job: RestoreJob) -> EventKind {
    EventKind::JobFinished {
        job,
        repeat: None,
        report: None,
        listed_on: None,
        was_vanished: false,
    }
}

pub(super) fn event(kind: EventKind) -> Event {
    Event {
        id: 7,
        created_at: utc(11, 30, 0),
        kind,
    }
}

pub(super) fn one(kind: EventKind) -> Embed {
    let mut embeds = render_event(&event(kind), &opts());
    assert_eq!(embeds.len(), 1);
    embeds.remove(0)
}
