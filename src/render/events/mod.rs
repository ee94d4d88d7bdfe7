//! How each [`Event`] looks in the chat: one embed per event, built from plain data.
//!
//! Strings from the backup server are escaped here, at the one place they enter markdown;
//! the embed is then fitted to Discord's limits ([`Embed::fit`]).
//!
//! This file picks the card for each kind of event and holds the colours; the cards live
//! beside it by kind: `job` (a job finished, stuck or vanished), `notices` (baselines and
//! cycle summaries, the bot's own work), `outage` (the backup server unreachable and back)
//! and `lists` (bounded lists that count what they leave out).

mod job;
mod lists;
mod notices;
mod outage;
#[cfg(test)]
mod test_support;

pub use notices::counts_line;

use super::embed::Embed;
use super::text::escape_markdown;
use super::RenderOptions;
use crate::cbs::model::StatusClass;
use crate::event::{Event, EventKind};
use crate::render::{render_digest, DIGEST_MESSAGES_MAX};
use job::{job_finished, job_stuck, job_vanished};
use notices::{baseline, cycle_summary, WouldAlert};
use outage::{cbs_recovered, cbs_unreachable};

/// Embed colours (`0xRRGGBB`), Discord's own palette where it has one.
pub const COLOUR_FAILURE: u32 = 0xED4245;
pub const COLOUR_PARTIAL_FAILURE: u32 = 0xE67E22;
pub const COLOUR_UNKNOWN: u32 = 0x9B59B6;
pub const COLOUR_WARNING: u32 = 0xFEE75C;
pub const COLOUR_CANCELLED: u32 = 0x95A5A6;
pub const COLOUR_SUCCESS: u32 = 0x57F287;
pub const COLOUR_RUNNING: u32 = 0x3498DB;
/// A job running far too long: darker than partial failure, it is not an outcome yet.
pub const COLOUR_STUCK: u32 = 0xA84300;
/// Notices about the bot's own work (baselines, summaries without errors).
pub const COLOUR_INFO: u32 = 0x5865F2;
/// The embeds that show `event`: one, except a digest, whose lists may need several.
pub fn render_event(event: &Event, opts: &RenderOptions) -> Vec<Embed> {
    let embed = match &event.kind {
        EventKind::Digest(digest) => {
            // The reader starts from the day the digest was queued, in its zone.
            let zone: crate::tz::Tz = digest.timezone.parse().unwrap_or(opts.timezone);
            let today = event.created_at.with_timezone(&zone).date_naive();
            let mut embeds = render_digest(digest, today, DIGEST_MESSAGES_MAX);
            if let Some(summary) = embeds.first_mut() {
                summary.timestamp = Some(event.created_at);
            }
            return embeds;
        }
        EventKind::JobFinished {
            job,
            repeat,
            report,
            was_vanished,
            ..
        } => job_finished(
            job,
            repeat.as_ref(),
            report.as_ref(),
            *was_vanished,
            event.created_at,
        ),
        EventKind::JobStuck { job, running_secs } => job_stuck(job, *running_secs, event),
        EventKind::FailureStorm { owner, jobs } => {
            super::storm::storm_card(owner.as_deref(), jobs, event, opts.timezone)
        }
        EventKind::JobVanished { job, missing_since } => job_vanished(job, *missing_since, event),
        EventKind::Baseline {
            owner,
            users,
            would_alert,
            would_alert_total,
            ..
        } => {
            let today = event.created_at.with_timezone(&opts.timezone).date_naive();
            let total = (*would_alert_total).max(would_alert.len());
            let would_alert = WouldAlert {
                jobs: would_alert,
                total,
                today,
            };
            baseline(owner, users, &would_alert, event.created_at)
        }
        EventKind::CycleSummary(summary) => cycle_summary(summary, opts),
        EventKind::CbsUnreachable {
            since,
            reason,
            error,
            again_after,
            ..
        } => cbs_unreachable(*since, *reason, error, *again_after, opts),
        EventKind::CbsRecovered {
            down_since,
            recovered_at,
            caught_up,
            reason,
            ..
        } => cbs_recovered(*down_since, *recovered_at, caught_up, *reason, opts),
    };
    let mut embed = embed;
    if opts.servers_named {
        if let Some(server) = event_server(&event.kind).filter(|s| !s.is_empty()) {
            // In front, so that a long title cut to Discord's limit still names it; a card
            // without a title (one user's baseline) gets the server's name as its title.
            embed.title = if embed.title.is_empty() {
                escape_markdown(server)
            } else {
                format!("{} · {}", escape_markdown(server), embed.title)
            };
        }
    }
    vec![embed.fit()]
}

/// The backup server an event is about, when it is about one.
pub fn event_server(kind: &EventKind) -> Option<&str> {
    match kind {
        EventKind::JobFinished { job, .. }
        | EventKind::JobStuck { job, .. }
        | EventKind::JobVanished { job, .. } => Some(&job.server),
        EventKind::FailureStorm { jobs, .. } => jobs.first().map(|j| j.server.as_str()),
        EventKind::Baseline {
            server,
            would_alert,
            ..
        } => Some(server.as_str())
            .filter(|s| !s.is_empty())
            .or_else(|| would_alert.first().map(|j| j.server.as_str())),
        EventKind::CycleSummary(s) => Some(&s.server),
        EventKind::CbsUnreachable { server, .. } | EventKind::CbsRecovered { server, .. } => {
            server.as_deref()
        }
        EventKind::Digest(_) => None,
    }
}

/// Whether the event should ping the on-call role: failed, unknown and stuck jobs and an
/// unreachable backup server need a person; summaries, digests, baselines, recoveries and
/// jobs that ended well enough (success, warning, cancelled) do not (a digest's failures
/// were each alerted when they happened).
pub fn wants_ping(event: &Event) -> bool {
    match &event.kind {
        EventKind::JobFinished { job, .. } => matches!(
            job.class,
            StatusClass::Failure | StatusClass::PartialFailure | StatusClass::Unknown
        ),
        EventKind::JobStuck { .. }
        | EventKind::FailureStorm { .. }
        | EventKind::JobVanished { .. }
        | EventKind::CbsUnreachable {
            again_after: None, ..
        } => true,
        // A flapping server pinged at its first outage; not again within the hour.
        EventKind::CbsUnreachable { .. } => false,
        EventKind::Baseline { .. }
        | EventKind::CycleSummary(_)
        | EventKind::CbsRecovered { .. }
        | EventKind::Digest(_) => false,
    }
}

/// The colour of a job's class.
pub fn class_colour(class: StatusClass) -> u32 {
    match class {
        StatusClass::Failure => COLOUR_FAILURE,
        StatusClass::PartialFailure => COLOUR_PARTIAL_FAILURE,
        StatusClass::Unknown => COLOUR_UNKNOWN,
        StatusClass::Warning => COLOUR_WARNING,
        StatusClass::Cancelled => COLOUR_CANCELLED,
        StatusClass::Success => COLOUR_SUCCESS,
        StatusClass::Running => COLOUR_RUNNING,
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{event, failed_job, finished, one, opts, utc};
    use super::*;
    use crate::event::{BaselineUser, ClassCounts, CycleSummary, OutageReason};

    #[test]
    fn colours_by_class() {
        for (class, colour) in [
            (StatusClass::Failure, 0xED4245),
            (StatusClass::PartialFailure, 0xE67E22),
            (StatusClass::Unknown, 0x9B59B6),
            (StatusClass::Warning, 0xFEE75C),
            (StatusClass::Cancelled, 0x95A5A6),
            (StatusClass::Success, 0x57F287),
        ] {
            let mut job = failed_job();
            job.class = class;
            assert_eq!(one(finished(job)).colour, colour, "{class}");
        }
    }

    #[test]
    fn pings_only_for_what_needs_a_person() {
        let alert = |class| {
            let mut job = failed_job();
            job.class = class;
            event(finished(job))
        };
        assert!(wants_ping(&alert(StatusClass::Failure)));
        assert!(wants_ping(&alert(StatusClass::PartialFailure)));
        assert!(wants_ping(&alert(StatusClass::Unknown)));
        assert!(!wants_ping(&alert(StatusClass::Warning)));
        assert!(!wants_ping(&alert(StatusClass::Success)));
        assert!(wants_ping(&event(EventKind::JobStuck {
            job: failed_job(),
            running_secs: 13 * 3600,
        })));
        assert!(wants_ping(&event(EventKind::CbsUnreachable {
            server: None,
            since: utc(10, 0, 0),
            reason: OutageReason::Unreachable,
            error: "timeout".into(),
            again_after: None,
        })));
        assert!(!wants_ping(&event(EventKind::CbsUnreachable {
            server: None,
            since: utc(10, 0, 0),
            reason: OutageReason::Unreachable,
            error: "timeout".into(),
            again_after: Some(utc(9, 30, 0)),
        })));
        assert!(!wants_ping(&event(EventKind::CbsRecovered {
            server: None,
            down_since: utc(10, 0, 0),
            recovered_at: utc(11, 0, 0),
            caught_up: vec![],
            reason: Some(OutageReason::Unreachable),
        })));
        assert!(!wants_ping(&event(EventKind::CycleSummary(
            CycleSummary::default()
        ))));
        assert!(!wants_ping(&event(EventKind::Baseline {
            owner: String::new(),
            users: Vec::new(),
            would_alert: Vec::new(),
            would_alert_total: 0,
            server: String::new(),
        })));
    }

    #[test]
    fn with_several_servers_every_baseline_names_its_server_even_untitled() {
        let named = RenderOptions {
            servers_named: true,
            ..opts()
        };
        let baseline = |logins: &[&str]| EventKind::Baseline {
            owner: String::new(),
            users: logins
                .iter()
                .map(|l| BaselineUser {
                    login_name: (*l).into(),
                    counts: ClassCounts::new(),
                })
                .collect(),
            would_alert: Vec::new(),
            would_alert_total: 0,
            server: "eu-1".into(),
        };
        let title = |kind| render_event(&event(kind), &named).remove(0).title;
        assert_eq!(title(baseline(&["obm"])), "eu-1");
        assert_eq!(title(baseline(&["a", "b"])), "eu-1 · Now watching 2 users");
    }
}
