//! The dates of a cycle: for one user, which calendar days (in the backup server's zone)
//! to ask about: today, yesterday within the midnight grace, the catch-up after downtime
//! and every date that still has a running job.

use crate::tz::Tz;
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use std::collections::BTreeSet;
use std::time::Duration;

/// The calendar dates to ask about for one user, in the server's zone.
///
/// Today; yesterday while inside the grace window after midnight; every date where the
/// store still knows a running job; and after downtime the dates since the last success,
/// at most `max_catch_up_days` back.
pub fn dates_to_poll(
    now: DateTime<Utc>,
    tz: Tz,
    midnight_grace: Duration,
    max_catch_up_days: u32,
    last_success: Option<DateTime<Utc>>,
    running: &BTreeSet<NaiveDate>,
) -> BTreeSet<NaiveDate> {
    let local = now.with_timezone(&tz);
    let today = local.date_naive();
    let mut dates = BTreeSet::from([today]);
    // Real time since the local midnight: on the days the clocks change, the wall clock
    // shows an hour more or less than has passed. (A midnight the zone skips falls back to
    // the wall clock's reading.)
    let midnight = tz
        .from_local_datetime(&today.and_time(chrono::NaiveTime::MIN))
        .earliest();
    let since_midnight = match midnight {
        Some(midnight) => now.signed_duration_since(midnight),
        None => local.time().signed_duration_since(chrono::NaiveTime::MIN),
    };
    let grace = chrono::Duration::from_std(midnight_grace).unwrap_or(chrono::Duration::MAX);
    if since_midnight < grace {
        dates.extend(today.pred_opt());
    }
    let oldest = today
        .checked_sub_days(Days::new(max_catch_up_days.into()))
        .unwrap_or(today);
    if let Some(last) = last_success {
        let from = last.with_timezone(&tz).date_naive().max(oldest);
        dates.extend(from.iter_days().take_while(|d| *d < today));
    }
    dates.extend(running.iter().copied());
    dates
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn today_only_in_the_afternoon() {
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 14, 0, 0).unwrap();
        let dates = dates_to_poll(
            now,
            crate::tz::Tz::UTC,
            6 * HOUR,
            7,
            Some(now),
            &BTreeSet::new(),
        );
        assert_eq!(dates, BTreeSet::from([d("2024-06-26")]));
    }

    #[test]
    fn yesterday_within_grace_in_the_server_zone() {
        // 23:30 UTC is 01:30 in Berlin: inside the grace window of the Berlin day.
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 23, 30, 0).unwrap();
        let berlin = crate::test_data::berlin();
        let dates = dates_to_poll(now, berlin, 6 * HOUR, 7, Some(now), &BTreeSet::new());
        assert_eq!(dates, BTreeSet::from([d("2024-06-26"), d("2024-06-27")]));
        let utc = dates_to_poll(
            now,
            crate::tz::Tz::UTC,
            6 * HOUR,
            7,
            Some(now),
            &BTreeSet::new(),
        );
        assert_eq!(utc, BTreeSet::from([d("2024-06-26")]));
    }

    /// The grace window is real time after the local midnight, also on the days the clocks
    /// change: six hours after midnight is 07:00 on the spring day (the night is an hour
    /// short) and 05:00 on the autumn day (an hour long).
    #[test]
    fn the_grace_window_counts_real_hours_on_the_days_the_clocks_change() {
        let berlin = crate::test_data::berlin();
        let asks_yesterday = |y, m, d, h, min| {
            let now = berlin
                .with_ymd_and_hms(y, m, d, h, min, 0)
                .single()
                .unwrap()
                .with_timezone(&Utc);
            let dates = dates_to_poll(now, berlin, 6 * HOUR, 7, Some(now), &BTreeSet::new());
            dates.len() == 2
        };
        // 2024-03-31: 02:00 CET jumps to 03:00 CEST.
        assert!(asks_yesterday(2024, 3, 31, 6, 30), "5.5 h have passed");
        assert!(!asks_yesterday(2024, 3, 31, 7, 0), "6 h have passed");
        // 2024-10-27: 03:00 CEST falls back to 02:00 CET.
        assert!(
            asks_yesterday(2024, 10, 27, 4, 59),
            "5 h 59 min have passed"
        );
        assert!(!asks_yesterday(2024, 10, 27, 5, 0), "6 h have passed");
        // An ordinary day: the wall clock and real time agree.
        assert!(asks_yesterday(2024, 6, 26, 5, 59));
        assert!(!asks_yesterday(2024, 6, 26, 6, 0));
    }

    #[test]
    fn catch_up_is_bounded_and_running_dates_kept() {
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 14, 0, 0).unwrap();
        let last = Utc.with_ymd_and_hms(2024, 6, 1, 9, 0, 0).unwrap();
        let running = BTreeSet::from([d("2024-05-30")]);
        let dates = dates_to_poll(now, crate::tz::Tz::UTC, 6 * HOUR, 3, Some(last), &running);
        let want: BTreeSet<_> = [
            "2024-05-30",
            "2024-06-23",
            "2024-06-24",
            "2024-06-25",
            "2024-06-26",
        ]
        .into_iter()
        .map(d)
        .collect();
        assert_eq!(dates, want);
    }
}
