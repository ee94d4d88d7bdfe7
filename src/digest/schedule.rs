//! When digests are due: the days whose scheduled digest has not gone out yet (a tick
//! missed during a long cycle, a restart or an outage still counts), held back until the
//! day is over on every backup server, and queued in the outbox with the day recorded as
//! digested; and the day a digest sent now is about.

use super::Digest;
use crate::cbs::model::local_in;
use crate::event::{Event, EventKind};
use crate::schedule::CronSchedule;
use crate::store::{Store, StoreError};
use crate::tz::Tz;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};

/// Builds the digest of `date` and queues it in the outbox, so it is delivered like any
/// other event (and not lost while Discord is down).
pub fn queue_digest(
    store: &Store,
    date: NaiveDate,
    tz: Tz,
    refused_channels: Vec<String>,
    now: DateTime<Utc>,
) -> Result<Event, StoreError> {
    let digest = Digest::from_store(store, date, tz, refused_channels)?;
    store.push_event(EventKind::Digest(digest), now)
}

/// The days whose scheduled digest is due at `now` and not yet queued, oldest first.
///
/// A day's digest is due once `schedule` has fired during the next day (server zone), up
/// to `now`: a tick missed during a long cycle, a restart or an outage still counts. Days
/// up to and including `last_digested` are done. The oldest day considered is `max_days`
/// before today, so a long downtime posts at most that many late digests.
pub fn due_days(
    schedule: &CronSchedule,
    tz: Tz,
    now: DateTime<Utc>,
    max_days: u32,
    last_digested: Option<NaiveDate>,
) -> Vec<NaiveDate> {
    let today = now.with_timezone(&tz).date_naive();
    let oldest = today
        .checked_sub_days(Days::new(max_days.into()))
        .unwrap_or(today);
    let start_of = |day: NaiveDate| local_in(tz, day.and_time(NaiveTime::MIN)).map(|t| t.to_utc());
    oldest
        .iter_days()
        .take_while(|day| *day < today)
        .filter(|day| last_digested.is_none_or(|last| *day > last))
        .filter(|day| {
            // Did the schedule fire during the next day, by now?
            let (Some(next), Some(from)) = (day.succ_opt(), day.succ_opt().and_then(start_of))
            else {
                return false;
            };
            let until = next.succ_opt().and_then(start_of);
            schedule
                .next_after(from - chrono::Duration::nanoseconds(1))
                .is_some_and(|fire| fire <= now && until.is_none_or(|u| fire < u))
        })
        .collect()
}

/// Whether `day` is over at `now` in each of `zones`: a backup server whose zone is
/// behind the digest's is still polling its `day` when the digest's tick fires.
pub fn day_over_in(day: NaiveDate, zones: &[Tz], now: DateTime<Utc>) -> bool {
    let Some(next) = day.succ_opt() else {
        return false;
    };
    zones
        .iter()
        .all(|tz| local_in(*tz, next.and_time(NaiveTime::MIN)).is_some_and(|t| t <= now))
}

/// Queues the digest of every day [`due_days`] finds, oldest first, each with its day
/// recorded as digested in the same transaction. A day is held back until it is over in
/// every one of `other_zones` (the other backup servers' zones), so that a server behind
/// the digest's zone has its whole day in it: its digest goes out after the first tick
/// past that server's midnight. A fresh store (no day digested yet) records the latest due
/// day without posting: it has no history to digest. Returns the days queued.
pub fn catch_up(
    store: &Store,
    schedule: &CronSchedule,
    tz: Tz,
    now: DateTime<Utc>,
    max_days: u32,
    refused_channels: &[String],
    other_zones: &[Tz],
) -> Result<Vec<NaiveDate>, StoreError> {
    let (last, due) = due_now(store, schedule, tz, now, max_days, other_zones)?;
    if last.is_none() {
        if let Some(latest) = due.last() {
            store.set_last_digest_day(*latest)?;
        }
        return Ok(Vec::new());
    }
    for day in &due {
        let digest = Digest::from_store(store, *day, tz, refused_channels.to_vec())?;
        store.push_digest(*day, EventKind::Digest(digest), now)?;
    }
    Ok(due)
}

/// The last day digested, and the days [`catch_up`] finds due at `now`.
fn due_now(
    store: &Store,
    schedule: &CronSchedule,
    tz: Tz,
    now: DateTime<Utc>,
    max_days: u32,
    other_zones: &[Tz],
) -> Result<(Option<NaiveDate>, Vec<NaiveDate>), StoreError> {
    let last = store.last_digest_day()?;
    let due = due_days(schedule, tz, now, max_days, last)
        .into_iter()
        .take_while(|day| day_over_in(*day, other_zones, now))
        .collect();
    Ok((last, due))
}

/// Whether [`catch_up`] would queue a digest at `now` (a fresh store queues none).
pub fn digest_due(
    store: &Store,
    schedule: &CronSchedule,
    tz: Tz,
    now: DateTime<Utc>,
    max_days: u32,
    other_zones: &[Tz],
) -> Result<bool, StoreError> {
    let (last, due) = due_now(store, schedule, tz, now, max_days, other_zones)?;
    Ok(last.is_some() && !due.is_empty())
}

/// The day before today in the backup server's zone: the day a digest sent now is about.
pub fn previous_day(now: DateTime<Utc>, tz: Tz) -> NaiveDate {
    let today = now.with_timezone(&tz).date_naive();
    // Only the first representable day has no predecessor; no clock reads that.
    today.pred_opt().unwrap_or(today)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::test_support::{berlin, day};
    use chrono::TimeZone;

    #[test]
    fn a_digest_set_in_the_hour_spring_skips_still_goes_out_that_day() {
        // 2024-03-31 in Berlin has no 02:30: the tick fires at 03:00 CEST (01:00 UTC).
        let half_two = CronSchedule::parse("30 2 * * *", berlin()).unwrap();
        let d = |n: u32| NaiveDate::from_ymd_opt(2024, 3, n).unwrap();
        let before = Utc.with_ymd_and_hms(2024, 3, 31, 0, 59, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2024, 3, 31, 1, 0, 0).unwrap();
        assert_eq!(due_days(&half_two, berlin(), before, 3, Some(d(29))), []);
        assert_eq!(
            due_days(&half_two, berlin(), after, 3, Some(d(29))),
            [d(30)]
        );
        // And the day after, the 31st is due too: no day is left behind.
        let next_day = Utc.with_ymd_and_hms(2024, 4, 1, 1, 0, 0).unwrap();
        assert_eq!(
            due_days(&half_two, berlin(), next_day, 3, Some(d(29))),
            [d(30), d(31)]
        );
    }

    #[test]
    fn due_days_follow_the_schedule_the_last_digested_day_and_the_bound() {
        let eight = CronSchedule::parse("0 8 * * *", berlin()).unwrap();
        let d = |n: u32| NaiveDate::from_ymd_opt(2024, 6, n).unwrap();
        // 09:00 and 07:00 in Berlin on the 26th.
        let after_tick = Utc.with_ymd_and_hms(2024, 6, 26, 7, 0, 0).unwrap();
        let before_tick = Utc.with_ymd_and_hms(2024, 6, 26, 5, 0, 0).unwrap();
        assert_eq!(
            due_days(&eight, berlin(), after_tick, 3, Some(d(24))),
            [d(25)]
        );
        assert_eq!(due_days(&eight, berlin(), after_tick, 3, Some(d(25))), []);
        assert_eq!(
            due_days(&eight, berlin(), before_tick, 3, Some(d(23))),
            [d(24)]
        );
        assert_eq!(
            due_days(&eight, berlin(), after_tick, 3, Some(d(1))),
            [d(23), d(24), d(25)],
            "at most 3 days back, oldest first"
        );
        assert_eq!(
            due_days(&eight, berlin(), after_tick, 1, None),
            [d(25)],
            "a fresh store"
        );
        // Mondays only: the days before other weekdays were never scheduled.
        let mondays = CronSchedule::parse("0 8 * * 1", berlin()).unwrap();
        let monday = Utc.with_ymd_and_hms(2024, 6, 24, 7, 0, 0).unwrap();
        assert_eq!(due_days(&mondays, berlin(), monday, 7, Some(d(1))), [d(23)]);
        // Mondays at midnight: the tick that opens Monday is Sunday's, not Saturday's too
        // (the next day's first instant belongs to the next day).
        let midnights = CronSchedule::parse("0 0 * * 1", berlin()).unwrap();
        let just_after = Utc.with_ymd_and_hms(2024, 6, 23, 22, 0, 1).unwrap();
        assert_eq!(
            due_days(&midnights, berlin(), just_after, 7, Some(d(1))),
            [d(23)]
        );
    }

    #[test]
    fn catch_up_queues_each_missed_day_once_and_a_fresh_store_starts_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let eight = CronSchedule::parse("0 8 * * *", berlin()).unwrap();
        let at = |day: u32| Utc.with_ymd_and_hms(2024, 6, day, 7, 0, 0).unwrap();
        let d = |n: u32| NaiveDate::from_ymd_opt(2024, 6, n).unwrap();
        assert_eq!(
            catch_up(&store, &eight, berlin(), at(20), 3, &[], &[]).unwrap(),
            []
        );
        assert_eq!(store.last_digest_day().unwrap(), Some(d(19)));
        assert_eq!(store.outbox_len().unwrap(), 0);
        // Down from the 20th to the 26th: only the 3 days before the 26th are posted.
        let days = catch_up(&store, &eight, berlin(), at(26), 3, &[], &[]).unwrap();
        assert_eq!(days, [d(23), d(24), d(25)]);
        let queued: Vec<(NaiveDate, usize)> = store
            .pending_events(10)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Digest(digest) => Some((digest.date, digest.undelivered)),
                _ => None,
            })
            .collect();
        // The digests queued before each are not counted as undelivered events.
        assert_eq!(queued, days.iter().map(|d| (*d, 0)).collect::<Vec<_>>());
        assert_eq!(
            catch_up(&store, &eight, berlin(), at(26), 3, &[], &[]).unwrap(),
            []
        );
        assert_eq!(store.outbox_len().unwrap(), 3, "each day exactly once");
    }

    /// A second server eight hours behind Berlin (Los Angeles) is still in the 25th at
    /// the 08:00 tick on the 26th: that digest waits for the first tick after its
    /// midnight (09:00 in Berlin), and then goes out once.
    #[test]
    fn a_digest_waits_until_its_day_is_over_on_every_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let eight = CronSchedule::parse("0 8 * * *", berlin()).unwrap();
        let la = ["America/Los_Angeles".parse::<crate::tz::Tz>().unwrap()];
        let d = |n: u32| NaiveDate::from_ymd_opt(2024, 6, n).unwrap();
        store.set_last_digest_day(d(24)).unwrap();
        // 08:05 and 08:55 in Berlin on the 26th: 23:05 and 23:55 on the 25th in LA.
        for minute in [5, 55] {
            let now = Utc.with_ymd_and_hms(2024, 6, 26, 6, minute, 0).unwrap();
            assert_eq!(
                catch_up(&store, &eight, berlin(), now, 3, &[], &la).unwrap(),
                []
            );
        }
        assert_eq!(store.outbox_len().unwrap(), 0);
        // 09:00 in Berlin: midnight in LA.
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 7, 0, 0).unwrap();
        assert_eq!(
            catch_up(&store, &eight, berlin(), now, 3, &[], &la).unwrap(),
            [d(25)]
        );
        assert_eq!(
            catch_up(&store, &eight, berlin(), now, 3, &[], &la).unwrap(),
            []
        );
        assert_eq!(store.outbox_len().unwrap(), 1);
        // A zone ahead of the digest's holds nothing back.
        let tokyo = ["Asia/Tokyo".parse::<crate::tz::Tz>().unwrap()];
        assert!(day_over_in(
            d(25),
            &tokyo,
            Utc.with_ymd_and_hms(2024, 6, 26, 6, 5, 0).unwrap()
        ));
    }

    #[test]
    fn previous_day_is_taken_in_the_server_zone() {
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 23, 30, 0).unwrap();
        // 01:30 on the 27th in Berlin already: yesterday there is the 26th.
        assert_eq!(previous_day(now, berlin()), day());
        assert_eq!(
            previous_day(now, crate::tz::Tz::UTC),
            day().pred_opt().unwrap()
        );
    }
}
