//! The summary policy: which poll cycles post a cycle summary (`summary.when`), and the
//! optional roll-up on `summary.schedule` that replaces per-cycle summaries.
//!
//! A summary is worth posting when it tells the on-call something new. By default that is a
//! cycle that alerted or whose set of erroring users changed; jobs that only start or
//! succeed stay quiet. With a roll-up schedule every cycle's numbers are added to one record
//! in the store, and the roll-up tick queues it as one summary and starts a new one.

use crate::config::{SummarySettings, SummaryWhen};
use crate::event::{CycleSummary, EventKind};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};

/// The store tree holding the roll-up being collected.
const ROLLUP_TREE: &str = "summary_rollup";
const ROLLUP_KEY: &str = "current";
/// Errors kept in a roll-up: the newest ones (each cycle's summary logged them all).
const ROLLUP_ERRORS_MAX: usize = 50;

/// What to do with one cycle's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Queue it as a message now.
    Post,
    /// Add it to the roll-up (a `summary.schedule` is set).
    RollUp,
    /// Nothing worth a message.
    Skip,
}

/// Decides what happens to `summary`; `news`: the set of users whose requests failed
/// differs from the previous cycle's, or a reply item that could not be read was seen for
/// the first time. The same error or unreadable item in every cycle posts once, not every
/// cycle (the summary of a cycle posted for another reason still counts it).
pub fn disposition(settings: &SummarySettings, summary: &CycleSummary, news: bool) -> Disposition {
    if settings.schedule.is_some() {
        return Disposition::RollUp;
    }
    let alerted = summary.alerts > 0 || news;
    let changed = alerted
        || summary.started_running > 0
        || summary.muted > 0
        || summary.finished.values().any(|n| *n > 0);
    let post = match settings.when {
        SummaryWhen::Alerts => alerted,
        SummaryWhen::Changes => changed,
        SummaryWhen::Never => false,
    };
    if post {
        Disposition::Post
    } else {
        Disposition::Skip
    }
}

/// Adds one cycle to `total`: counts add up, the time span widens, errors are the latest.
pub fn merge(total: &mut CycleSummary, cycle: &CycleSummary) {
    if total.cycles == 0 {
        *total = CycleSummary {
            cycles: 1,
            ..cycle.clone()
        };
        return;
    }
    total.cycles += 1;
    total.started_at = total.started_at.min(cycle.started_at);
    total.finished_at = total.finished_at.max(cycle.finished_at);
    total.users_polled = total.users_polled.max(cycle.users_polled);
    total.requests = total.requests.saturating_add(cycle.requests);
    for (class, n) in &cycle.finished {
        let entry = total.finished.entry(*class).or_default();
        *entry = entry.saturating_add(*n);
    }
    total.started_running = total.started_running.saturating_add(cycle.started_running);
    total.alerts = total.alerts.saturating_add(cycle.alerts);
    total.muted = total.muted.saturating_add(cycle.muted);
    total.unreadable_items = total
        .unreadable_items
        .saturating_add(cycle.unreadable_items);
    total.unreadable.extend(cycle.unreadable.iter().cloned());
    total
        .unreadable
        .truncate(crate::event::UNREADABLE_LISTED_MAX);
    total.errors.extend(cycle.errors.iter().cloned());
    if total.errors.len() > ROLLUP_ERRORS_MAX {
        let extra = total.errors.len() - ROLLUP_ERRORS_MAX;
        total.errors.drain(..extra);
    }
}

/// Adds one cycle's summary to the roll-up in the store.
pub fn add_to_rollup(store: &Store, cycle: &CycleSummary) -> Result<(), StoreError> {
    let tree = store.tree(ROLLUP_TREE)?;
    let mut total = read(&tree)?;
    merge(&mut total, cycle);
    tree.insert(ROLLUP_KEY, encode(&total))?;
    Ok(())
}

/// Queues the roll-up collected since the last one as one summary and starts a new one.
/// Queues nothing when no cycle ran since. Returns whether it queued one.
pub fn queue_rollup(store: &Store, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let tree = store.tree(ROLLUP_TREE)?;
    let total = read(&tree)?;
    if total.cycles == 0 {
        return Ok(false);
    }
    // Queued before it is cleared: a crash in between posts it twice rather than never.
    store.push_event(EventKind::CycleSummary(total), now)?;
    tree.remove(ROLLUP_KEY)?;
    Ok(true)
}

/// The roll-up so far; an unreadable one is logged and started afresh, never a stop.
fn read(tree: &sled::Tree) -> Result<CycleSummary, StoreError> {
    let Some(bytes) = tree.get(ROLLUP_KEY)? else {
        return Ok(CycleSummary::default());
    };
    Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the summary roll-up is unreadable; starting a new one");
        CycleSummary::default()
    }))
}

fn encode(summary: &CycleSummary) -> Vec<u8> {
    // Plain data always serializes.
    serde_json::to_vec(summary).expect("a summary serializes to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbs::model::StatusClass;
    use crate::event::PollError;
    use crate::schedule::CronSchedule;

    fn settings(when: SummaryWhen) -> SummarySettings {
        SummarySettings {
            when,
            ..SummarySettings::default()
        }
    }

    fn quiet_cycle() -> CycleSummary {
        CycleSummary {
            started_running: 2,
            finished: [(StatusClass::Success, 3)].into(),
            ..CycleSummary::default()
        }
    }

    #[test]
    fn successes_and_starts_are_quiet_by_default_but_not_with_changes() {
        let s = quiet_cycle();
        let default = SummarySettings::default();
        assert_eq!(disposition(&default, &s, false), Disposition::Skip);
        assert_eq!(
            disposition(&settings(SummaryWhen::Changes), &s, false),
            Disposition::Post
        );
        let nothing = CycleSummary::default();
        assert_eq!(
            disposition(&settings(SummaryWhen::Changes), &nothing, false),
            Disposition::Skip
        );
    }

    #[test]
    fn alerts_and_error_changes_post_unless_never() {
        let alerted = CycleSummary {
            alerts: 1,
            ..CycleSummary::default()
        };
        let default = SummarySettings::default();
        assert_eq!(disposition(&default, &alerted, false), Disposition::Post);
        let quiet = CycleSummary::default();
        assert_eq!(disposition(&default, &quiet, true), Disposition::Post);
        let never = settings(SummaryWhen::Never);
        assert_eq!(disposition(&never, &alerted, true), Disposition::Skip);
    }

    /// An unreadable item seen in every cycle is news once (the poller says when), not a
    /// summary every cycle.
    #[test]
    fn unreadable_items_post_only_when_new() {
        let repeat = CycleSummary {
            unreadable_items: 1,
            ..CycleSummary::default()
        };
        for when in [SummaryWhen::Alerts, SummaryWhen::Changes] {
            assert_eq!(
                disposition(&settings(when), &repeat, false),
                Disposition::Skip
            );
            assert_eq!(
                disposition(&settings(when), &repeat, true),
                Disposition::Post
            );
        }
    }

    #[test]
    fn a_schedule_rolls_every_cycle_up() {
        let rollup = SummarySettings {
            schedule: Some(CronSchedule::parse("0 * * * *", crate::tz::Tz::UTC).unwrap()),
            ..SummarySettings::default()
        };
        let quiet = CycleSummary::default();
        assert_eq!(disposition(&rollup, &quiet, false), Disposition::RollUp);
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_newest_errors() {
        let error = |i: u32| PollError {
            login_name: format!("u{i}"),
            date: "2024-06-26".parse().unwrap(),
            message: "timeout".into(),
        };
        let mut total = CycleSummary::default();
        for i in 0..60 {
            let cycle = CycleSummary {
                requests: 2,
                alerts: 1,
                finished: [(StatusClass::Failure, 1)].into(),
                errors: vec![error(i)],
                ..quiet_cycle()
            };
            merge(&mut total, &cycle);
        }
        assert_eq!(total.cycles, 60);
        assert_eq!(total.requests, 120);
        assert_eq!(total.alerts, 60);
        assert_eq!(total.started_running, 120);
        assert_eq!(total.finished[&StatusClass::Failure], 60);
        assert_eq!(total.errors.len(), ROLLUP_ERRORS_MAX);
        assert_eq!(total.errors.last().unwrap().login_name, "u59");
    }
}
