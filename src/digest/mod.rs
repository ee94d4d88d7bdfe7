//! The daily digest: one day of restore jobs (a calendar day in the backup server's zone)
//! in numbers, with every failure, the jobs still running or stuck, a per-owner breakdown,
//! the poller's health and what still waits in the outbox.
//!
//! [`Digest::compute`] is a pure function over job records, unit-tested without sled;
//! [`Digest::from_store`] feeds it from the store. The result is plain serde data because it
//! travels through the outbox as JSON inside [`EventKind::Digest`], like any other event, so
//! a digest is delivered exactly once and survives a Discord outage.
//! [`crate::render::render_digest`] turns it into embeds: a summary card first, then one card
//! per list, where a long list continues over as many cards as it needs instead of being
//! cut; the ordinary [`crate::render::pack`] spreads those cards over messages.
//!
//! [`EventKind::Digest`]: crate::event::EventKind::Digest
//!
//! # Layout
//! - `mod.rs` (here): the digest computed from job records or from the store. Its data types
//!   live below, in `crate::event` (the event carries them), and are re-exported here.
//! - `schedule`: when digests are due ([`due_days`], [`catch_up`]) and queuing them.
//!
//! Rendering lives above, in `crate::render` (the digest's cards and text).

mod schedule;
#[cfg(test)]
pub(crate) mod test_support;

pub use crate::event::{Digest, DigestAck, DigestHealth, DigestJob, ServerHealth};
pub use schedule::{catch_up, day_over_in, digest_due, due_days, previous_day, queue_digest};

use crate::acks::{Ack, Acks};
use crate::cbs::model::JobKey;
use crate::cbs::model::{StatusClass, END_TIME_FIELD, START_TIME_FIELD};
use crate::event::ClassCounts;
use crate::store::{DayHealth, JobRecord, Store, StoreError};
use crate::tz::Tz;
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// A started minute counts in full, so a short outage does not read as none.
fn outage_minutes(health: &DayHealth) -> i64 {
    (health.outage_secs.max(0) + 59) / 60
}

/// The poller's day on every configured backup server: the sum, and (with several
/// servers) each server's own, in the configuration's order.
pub fn day_health(
    store: &Store,
    date: NaiveDate,
) -> Result<(DayHealth, Vec<ServerHealth>), StoreError> {
    let servers = store.configured_servers()?;
    if servers.len() < 2 {
        return Ok((store.day_health(date)?, Vec::new()));
    }
    let mut total = DayHealth::default();
    let mut each = Vec::with_capacity(servers.len());
    for server in servers {
        let health = store.server_view(&server)?.day_health(date)?;
        total.cycles = total.cycles.saturating_add(health.cycles);
        total.request_errors = total.request_errors.saturating_add(health.request_errors);
        total.outage_secs = total.outage_secs.saturating_add(health.outage_secs);
        each.push(ServerHealth {
            cycles: health.cycles,
            request_errors: health.request_errors,
            outage_minutes: outage_minutes(&health),
            server,
        });
    }
    Ok((total, each))
}

impl DigestJob {
    fn from_record(record: &JobRecord, servers_named: bool) -> DigestJob {
        let job = &record.job;
        DigestJob {
            server: if servers_named {
                job.server.clone()
            } else {
                String::new()
            },
            login_name: job.login_name.clone(),
            owner: job.owner.clone(),
            backup_set: job.backup_set_label().to_owned(),
            raw_status: job.raw_status.clone(),
            class: job.class,
            start_time: job.start_time.map(|t| t.fixed_offset()),
            end_time: job.end_time.map(|t| t.fixed_offset()),
            start_raw: job.unreadable_field(START_TIME_FIELD).map(str::to_owned),
            end_raw: job.unreadable_field(END_TIME_FIELD).map(str::to_owned),
            vanished: record.vanished,
            acknowledged: None,
        }
    }
}

/// Events waiting in the outbox that are not digests (see [`Digest::undelivered`]), read a
/// window at a time.
fn undelivered_besides_digests(store: &Store) -> Result<usize, StoreError> {
    const WINDOW: usize = 256;
    let mut count = 0;
    let mut after = None;
    loop {
        let window = store.pending_events_after(after, WINDOW)?;
        count += (window.iter())
            .filter(|e| !matches!(e.kind, crate::event::EventKind::Digest(_)))
            .count();
        match window.last() {
            Some(last) if window.len() == WINDOW => after = Some(last.id),
            _ => return Ok(count),
        }
    }
}

impl Digest {
    /// Builds the digest of `date` from the job records listed under it.
    pub fn compute(
        date: NaiveDate,
        tz: Tz,
        records: &[JobRecord],
        health: &DayHealth,
        undelivered: usize,
        refused_channels: Vec<String>,
    ) -> Digest {
        Digest::compute_naming(
            date,
            tz,
            records,
            health,
            undelivered,
            refused_channels,
            &BTreeMap::new(),
            false,
        )
    }

    /// [`Digest::compute`], with the failures' acknowledgements (by job), which the digest
    /// lists apart from the open failures; `servers_named`: each listed job says its backup
    /// server (several are watched).
    #[allow(clippy::too_many_arguments)]
    pub fn compute_naming(
        date: NaiveDate,
        tz: Tz,
        records: &[JobRecord],
        health: &DayHealth,
        undelivered: usize,
        refused_channels: Vec<String>,
        acks: &BTreeMap<JobKey, Ack>,
        servers_named: bool,
    ) -> Digest {
        let mut totals = ClassCounts::new();
        let mut owners: BTreeMap<String, ClassCounts> = BTreeMap::new();
        let mut failures = Vec::new();
        let mut running = Vec::new();
        let mut stuck = Vec::new();
        for record in records {
            let class = record.job.class;
            *totals.entry(class).or_default() += 1;
            *owners
                .entry(record.job.owner.clone())
                .or_default()
                .entry(class)
                .or_default() += 1;
            match class {
                StatusClass::Failure | StatusClass::PartialFailure | StatusClass::Unknown => {
                    let mut failure = DigestJob::from_record(record, servers_named);
                    failure.acknowledged = acks.get(&record.job.key()).map(|ack| DigestAck {
                        by: ack.user_name.clone(),
                        at: ack.at.with_timezone(&tz).fixed_offset(),
                    });
                    failures.push(failure);
                }
                StatusClass::Running if record.stuck_alerted => {
                    stuck.push(DigestJob::from_record(record, servers_named));
                }
                StatusClass::Running => running.push(DigestJob::from_record(record, servers_named)),
                StatusClass::Success | StatusClass::Warning | StatusClass::Cancelled => {}
            }
        }
        // Names and set break ties so the order does not depend on the store's key order.
        let tie = |j: &DigestJob| (j.login_name.clone(), j.backup_set.clone());
        failures.sort_by_key(|j| (j.end_time.or(j.start_time), tie(j)));
        running.sort_by_key(|j| (j.start_time, tie(j)));
        stuck.sort_by_key(|j| (j.start_time, tie(j)));

        let mut digest = Digest {
            date,
            timezone: tz.name().to_owned(),
            totals,
            success_rate: None,
            failures,
            running,
            stuck,
            owners,
            health: DigestHealth {
                cycles: health.cycles,
                request_errors: health.request_errors,
                outage_minutes: outage_minutes(health),
                servers: Vec::new(),
            },
            undelivered,
            refused_channels,
        };
        let finished = digest.finished_jobs();
        digest.success_rate =
            (finished > 0).then(|| digest.succeeded_jobs() as f64 / finished as f64);
        digest
    }

    /// Builds the digest of `date` from what the store knows now.
    pub fn from_store(
        store: &Store,
        date: NaiveDate,
        tz: Tz,
        refused_channels: Vec<String>,
    ) -> Result<Digest, StoreError> {
        let (health, servers) = day_health(store, date)?;
        let mut digest = Digest::compute_naming(
            date,
            tz,
            &store.jobs_on(date)?,
            &health,
            undelivered_besides_digests(store)?,
            refused_channels,
            &Acks::open(store)?.on(date)?,
            !servers.is_empty(),
        );
        digest.health.servers = servers;
        Ok(digest)
    }

    /// Every job of the day.
    pub fn total_jobs(&self) -> u64 {
        self.totals.values().map(|n| u64::from(*n)).sum()
    }

    /// Jobs that ended in success or with warnings: the restore did its work.
    pub fn succeeded_jobs(&self) -> u64 {
        [StatusClass::Success, StatusClass::Warning]
            .iter()
            .filter_map(|class| self.totals.get(class))
            .map(|n| u64::from(*n))
            .sum()
    }

    /// Jobs that have ended (all but the running ones).
    pub fn finished_jobs(&self) -> u64 {
        self.totals
            .iter()
            .filter(|(class, _)| class.is_finished())
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{
        berlin, day, ended, health, job, logins, record, records, running, tomorrow,
    };
    use super::*;
    use crate::cbs::model::RestoreJob;
    use crate::event::EventKind;
    // The digest's text tells whether the queued one reads back the same.
    use crate::render::digest_text;
    use crate::store::CycleRecord;
    use crate::test_data;
    use chrono::{DateTime, TimeZone, Utc};
    use std::collections::BTreeSet;

    #[test]
    fn compute_counts_every_class_and_lists_in_time_order() {
        let d = Digest::compute(day(), berlin(), &records(), &health(61), 4, vec![]);
        assert_eq!(d.date, day());
        assert_eq!(d.timezone, "Europe/Berlin");
        assert_eq!(
            d.totals,
            ClassCounts::from([
                (StatusClass::Success, 3),
                (StatusClass::Warning, 1),
                (StatusClass::PartialFailure, 1),
                (StatusClass::Failure, 1),
                (StatusClass::Cancelled, 1),
                (StatusClass::Running, 3),
                (StatusClass::Unknown, 1),
            ])
        );
        assert_eq!(
            (d.total_jobs(), d.finished_jobs(), d.succeeded_jobs()),
            (11, 8, 4)
        );
        // 3 success + 1 warning over 8 finished: cancelled jobs count as finished.
        assert_eq!(d.success_rate, Some(0.5));
        assert_eq!(logins(&d.failures), ["part", "unk", "fail"]);
        let unk = &d.failures[1];
        assert_eq!(
            (unk.raw_status.as_str(), unk.class, unk.backup_set.as_str()),
            ("RESTORE_STOP_WEIRD", StatusClass::Unknown, "set-unk")
        );
        assert_eq!(
            unk.end_time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-06-26T12:30:00+02:00")
        );
        assert_eq!(logins(&d.running), ["early", "late"]);
        assert_eq!(logins(&d.stuck), ["stuck"]);
        assert_eq!(
            d.owners,
            BTreeMap::from([
                (
                    String::new(),
                    ClassCounts::from([
                        (StatusClass::Success, 1),
                        (StatusClass::Running, 3),
                        (StatusClass::Unknown, 1),
                    ])
                ),
                (
                    "res-a".to_owned(),
                    ClassCounts::from([
                        (StatusClass::Success, 2),
                        (StatusClass::PartialFailure, 1),
                    ])
                ),
                (
                    "res-b".to_owned(),
                    ClassCounts::from([
                        (StatusClass::Warning, 1),
                        (StatusClass::Failure, 1),
                        (StatusClass::Cancelled, 1),
                    ])
                ),
            ])
        );
        assert_eq!(
            d.health,
            DigestHealth {
                cycles: 288,
                request_errors: 3,
                outage_minutes: 2,
                servers: Vec::new(),
            }
        );
        assert_eq!(d.undelivered, 4);
    }

    #[test]
    fn no_finished_job_has_no_success_rate_and_outage_minutes_round_up() {
        let only_running = [record(running("r", 8), false)];
        let d = Digest::compute(day(), berlin(), &only_running, &health(0), 0, vec![]);
        assert_eq!(d.success_rate, None);
        assert_eq!(d.health.outage_minutes, 0);
        let empty = Digest::compute(day(), berlin(), &[], &health(1), 0, vec![]);
        assert_eq!((empty.total_jobs(), empty.success_rate), (0, None));
        assert_eq!(empty.health.outage_minutes, 1);
        assert_eq!(
            Digest::compute(day(), berlin(), &[], &health(120), 0, vec![])
                .health
                .outage_minutes,
            2
        );
    }

    #[test]
    fn from_store_counts_only_the_days_jobs_across_the_zone_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let alert: BTreeSet<StatusClass> = [StatusClass::Failure].into();
        let observe = |j: &RestoreJob, date: NaiveDate, now: DateTime<Utc>| {
            store
                .observe(j, date, &test_data::policy(now, &alert))
                .unwrap();
        };
        let next_day = day().succ_opt().unwrap();
        // 22:40 UTC on the 26th is 00:40 on the 27th in Berlin.
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 22, 40, 0).unwrap();
        let late_failure = job(
            "obm",
            "res",
            "Files",
            "2024-06-26 23:30:00",
            Some("2024-06-26 23:50:00"),
            "RESTORE_STOP_BY_ERROR",
        );
        let morning = ended("ok", "", 10, "RESTORE_STOP_SUCCESS");
        let stuck = running("slow", 8);
        // Started 00:30 on the 27th in Berlin, still the 26th in UTC: not the 26th's job.
        let after_midnight = job(
            "obm",
            "res",
            "Files",
            "2024-06-27 00:30:00",
            Some("2024-06-27 00:35:00"),
            "RESTORE_STOP_BY_ERROR",
        );
        observe(&morning, day(), now);
        observe(&stuck, day(), now - chrono::Duration::hours(12));
        observe(&stuck, day(), now);
        observe(&late_failure, day(), now);
        observe(&after_midnight, next_day, now);
        let cycle = CycleRecord {
            started_at: now,
            finished_at: now,
            users: 3,
            requests: 4,
            errors: 1,
            unreadable_items: 0,
        };
        store.record_cycle(&cycle, day(), 90).unwrap();
        store.record_cycle(&cycle, day(), 0).unwrap();
        store.record_cycle(&cycle, next_day, 600).unwrap();
        assert_eq!(
            store.outbox_len().unwrap(),
            3,
            "two failure alerts and a stuck notice"
        );

        let d = Digest::from_store(&store, day(), berlin(), vec!["#ops".into()]).unwrap();
        assert_eq!(d.total_jobs(), 3);
        assert_eq!(
            d.totals,
            ClassCounts::from([
                (StatusClass::Success, 1),
                (StatusClass::Failure, 1),
                (StatusClass::Running, 1),
            ])
        );
        assert_eq!(d.failures.len(), 1);
        assert_eq!(
            d.failures[0].start_time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-06-26T23:30:00+02:00")
        );
        assert_eq!(logins(&d.stuck), ["slow"]);
        assert!(d.running.is_empty());
        assert_eq!(
            d.health,
            DigestHealth {
                cycles: 2,
                request_errors: 2,
                outage_minutes: 2,
                servers: Vec::new(),
            }
        );
        assert_eq!(d.undelivered, 3);
        assert_eq!(d.refused_channels, ["#ops"]);
        let later = Digest::from_store(&store, next_day, berlin(), vec![]).unwrap();
        assert_eq!((later.total_jobs(), later.failures.len()), (1, 1));

        // Queued, the digest goes through the outbox as JSON and reads the same after.
        queue_digest(&store, day(), berlin(), vec!["#ops".into()], now).unwrap();
        let pending = store.pending_events(10).unwrap();
        assert_eq!(pending.len(), 4);
        let EventKind::Digest(queued) = &pending[3].kind else {
            panic!("the last queued event is not the digest: {:?}", pending[3]);
        };
        assert_eq!(digest_text(queued, tomorrow()), digest_text(&d, tomorrow()));
    }
}
