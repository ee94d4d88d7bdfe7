//! The rules that turn a sighting of a job into its record and maybe an event: pure, over
//! plain data, so they are tested without a store. [`Store::observe`](super::Store::observe)
//! applies them and writes the outcome.

use super::JobRecord;
use crate::cbs::model::{RestoreJob, StatusClass};
use crate::event::EventKind;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeSet;

/// What to do with a job the poller just saw; decided by [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub record: JobRecord,
    /// `None`: nothing to tell.
    pub event: Option<EventKind>,
    pub change: Change,
    /// An alert was due but a mute held it back.
    pub muted: bool,
}

/// How a job changed since the store last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// First seen, still running.
    NewRunning,
    /// First seen or seen running before, and now ended.
    Finished(StatusClass),
    /// Recorded in a user's first cycle, not alerted.
    Baseline(StatusClass),
    /// Running past the stuck threshold: one notice.
    Stuck,
    /// Recorded as vanished, and listed again still running: polled for again.
    Reappeared,
    Unchanged,
}

/// The rules that turn a sighting into a record and maybe an event (pure; see DESIGN.md).
#[derive(Clone, Copy)]
pub struct Policy<'a> {
    pub now: DateTime<Utc>,
    pub alert_classes: &'a BTreeSet<StatusClass>,
    pub stuck_after: chrono::Duration,
    /// The user's first cycle: record finished jobs as a baseline, alert nothing.
    pub baseline: bool,
    /// Whether alerts for a job are muted from chat right now: recorded, not posted.
    /// [`Store::observe`](super::Store::observe) asks it before its transaction starts,
    /// since it may read the store itself (reading inside a sled transaction would deadlock).
    pub muted: &'a (dyn Fn(&RestoreJob) -> bool + Sync),
    /// A failure's place in its set's row (see [`crate::escalation`]); asked before the
    /// transaction, like `muted`.
    pub repeat: &'a (dyn Fn(&RestoreJob) -> Option<crate::event::Repeat> + Sync),
}

/// Decides what a sighting of `job` (listed under `date`) means, given what was known.
pub fn decide(
    known: Option<&JobRecord>,
    job: &RestoreJob,
    date: NaiveDate,
    policy: &Policy<'_>,
) -> Observation {
    let mut record = match known {
        Some(k) => JobRecord {
            job: job.clone(),
            last_seen: policy.now,
            ..k.clone()
        },
        None => JobRecord {
            job: job.clone(),
            date,
            first_seen: policy.now,
            last_seen: policy.now,
            baseline: false,
            stuck_alerted: false,
            alerted: false,
            vanished: false,
        },
    };
    // A vanished job's "unknown" was never its outcome, only the lack of one: when the
    // server lists the job again, what it says now is the job's real state, and its end
    // is decided (and alerted) like any other.
    let reappeared = known.is_some_and(|k| k.vanished);
    record.vanished = false;
    let was_finished = known.is_some_and(|k| k.job.class.is_finished()) && !reappeared;
    let (event, change) = if was_finished {
        // Once ended, a job's outcome is settled; later sightings change nothing.
        record.job = known.map(|k| k.job.clone()).unwrap_or_else(|| job.clone());
        (None, Change::Unchanged)
    } else if job.class.is_finished() {
        if policy.baseline && known.is_none() {
            record.baseline = true;
            (None, Change::Baseline(job.class))
        } else if policy.alert_classes.contains(&job.class) {
            record.alerted = true;
            let event = EventKind::JobFinished {
                job: job.clone(),
                repeat: (policy.repeat)(job),
                report: None,
                listed_on: Some(record.date),
                was_vanished: reappeared,
            };
            (Some(event), Change::Finished(job.class))
        } else {
            (None, Change::Finished(job.class))
        }
    } else {
        let since = job
            .start_time
            .map(|t| t.to_utc())
            .unwrap_or(record.first_seen);
        let running = policy.now - since;
        if !record.stuck_alerted && !policy.baseline && running > policy.stuck_after {
            record.stuck_alerted = true;
            let event = EventKind::JobStuck {
                job: job.clone(),
                running_secs: running.num_seconds(),
            };
            (Some(event), Change::Stuck)
        } else if known.is_none() {
            (None, Change::NewRunning)
        } else if reappeared {
            (None, Change::Reappeared)
        } else {
            (None, Change::Unchanged)
        }
    };
    // A muted alert is decided like any other (the record says it was dealt with, so it
    // does not come back when the mute ends) but not queued.
    let muted = event.is_some() && (policy.muted)(job);
    if muted {
        record.alerted = false;
    }
    Observation {
        record,
        event: if muted { None } else { event },
        change,
        muted,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{classes, day, job, policy};
    use super::*;

    #[test]
    fn new_failure_alerts_new_success_does_not() {
        let c = classes();
        let p = policy(&c, 14, false);
        let fail = decide(
            None,
            &job(
                "2024-06-26-13-00-00",
                "RESTORE_STOP_BY_ERROR",
                Some("2024-06-26 13:10:00"),
            ),
            day(),
            &p,
        );
        assert_eq!(fail.change, Change::Finished(StatusClass::Failure));
        assert!(matches!(fail.event, Some(EventKind::JobFinished { .. })));
        let ok = decide(
            None,
            &job(
                "2024-06-26-13-00-00",
                "RESTORE_STOP_SUCCESS",
                Some("2024-06-26 13:10:00"),
            ),
            day(),
            &p,
        );
        assert_eq!(
            (ok.change, ok.event),
            (Change::Finished(StatusClass::Success), None)
        );
    }

    #[test]
    fn baseline_records_without_alerting() {
        let c = classes();
        let obs = decide(
            None,
            &job(
                "2024-06-26-13-00-00",
                "RESTORE_STOP_BY_ERROR",
                Some("2024-06-26 13:10:00"),
            ),
            day(),
            &policy(&c, 14, true),
        );
        assert_eq!(obs.change, Change::Baseline(StatusClass::Failure));
        assert!(obs.event.is_none() && obs.record.baseline);
    }

    #[test]
    fn running_then_finished_then_unchanged() {
        let c = classes();
        let running = decide(
            None,
            &job("2024-06-26-13-00-00", "", None),
            day(),
            &policy(&c, 14, false),
        );
        assert_eq!(running.change, Change::NewRunning);
        let done_job = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 15:00:00"),
        );
        let done = decide(
            Some(&running.record),
            &done_job,
            day(),
            &policy(&c, 15, false),
        );
        assert_eq!(done.change, Change::Finished(StatusClass::Failure));
        assert!(done.event.is_some());
        assert_eq!(done.record.first_seen, running.record.first_seen);
        let again = decide(Some(&done.record), &done_job, day(), &policy(&c, 16, false));
        assert_eq!((again.change, again.event), (Change::Unchanged, None));
    }

    #[test]
    fn a_muted_failure_is_recorded_but_not_queued() {
        let c = classes();
        let muted = |j: &RestoreJob| j.backup_set_id == "1";
        let p = Policy {
            muted: &muted,
            ..policy(&c, 14, false)
        };
        let j = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 13:10:00"),
        );
        let obs = decide(None, &j, day(), &p);
        assert_eq!(obs.change, Change::Finished(StatusClass::Failure));
        assert!(obs.muted && obs.event.is_none() && !obs.record.alerted);
        let ok = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_SUCCESS",
            Some("2024-06-26 13:10:00"),
        );
        assert!(
            !decide(None, &ok, day(), &p).muted,
            "nothing to mute without an alert"
        );
    }

    #[test]
    fn stuck_once() {
        let c = classes();
        let j = job("2024-06-26-01-00-00", "", None);
        let first = decide(None, &j, day(), &policy(&c, 2, false));
        let stuck = decide(Some(&first.record), &j, day(), &policy(&c, 14, false));
        assert_eq!(stuck.change, Change::Stuck);
        assert!(matches!(
            stuck.event,
            Some(EventKind::JobStuck {
                running_secs: 46800,
                ..
            })
        ));
        let later = decide(Some(&stuck.record), &j, day(), &policy(&c, 15, false));
        assert_eq!((later.change, later.event), (Change::Unchanged, None));
    }

    #[test]
    fn a_vanished_job_listed_again_is_decided_anew() {
        let c = classes();
        let running = job("2024-06-26-13-00-00", "", None);
        let first = decide(None, &running, day(), &policy(&c, 14, false));
        let mut vanished = first.record;
        vanished.job.class = StatusClass::Unknown;
        vanished.vanished = true;
        let again = decide(Some(&vanished), &running, day(), &policy(&c, 15, false));
        assert_eq!(again.change, Change::Reappeared);
        assert!(!again.record.vanished && again.record.job.class == StatusClass::Running);
        let failed = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 15:00:00"),
        );
        let ended = decide(Some(&vanished), &failed, day(), &policy(&c, 16, false));
        assert_eq!(ended.change, Change::Finished(StatusClass::Failure));
        assert!(matches!(ended.event, Some(EventKind::JobFinished { .. })));
        assert!(!ended.record.vanished);
        let later = decide(Some(&ended.record), &failed, day(), &policy(&c, 17, false));
        assert_eq!((later.change, later.event), (Change::Unchanged, None));
    }
}
