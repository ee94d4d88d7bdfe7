//! Cron schedules in the backup server's time zone: when the poller and the digest fire.
//!
//! [`CronSchedule`] wraps the `cron` crate and takes the forms an operator knows:
//! - 5 fields, as in crontab: `min hour day-of-month month day-of-week` (seconds are 0);
//! - 6 fields, with seconds first: `sec min hour day-of-month month day-of-week`.
//!
//! Differences from the `cron` crate, so that a line copied from a crontab means the same:
//! - **Day-of-week numbers use crontab numbering**: 0 and 7 are Sunday, 1 is Monday, ...,
//!   6 is Saturday (the `cron` crate counts 1 = Sunday ... 7 = Saturday, so `1-5` would
//!   silently mean Sunday to Thursday). Numbers, lists, ranges and steps (`1-5`, `5-7`,
//!   `0,3`, `*/2`) are translated in both forms; names (`Mon-Fri`, `SUN`) pass through.
//!
//! Left as the `cron` crate does it, and worth knowing:
//! - When both day-of-month and day-of-week are restricted, a day must match **both**
//!   (crontab fires when either matches).
//!
//! Times are wall-clock times in the configured zone ("0 8 * * *" is 08:00 local all year).
//! Across DST changes, as cron does:
//! - A time that does not occur (the skipped hour in spring, e.g. 02:30 in Europe/Berlin)
//!   fires when the skip ends (03:00 there), so a daily digest set in that hour still goes
//!   out that day.
//! - A time that occurs twice (the repeated hour in autumn) fires once, at its first
//!   occurrence, when the schedule names its hours ("30 2 * * *": one digest); a schedule
//!   whose hour field is a wildcard (`*`, `*/2`: every hour, such as a `*/5` poll) fires in
//!   both passes of the repeated hour, so polling does not pause for an hour.

use crate::tz::Tz;
use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A checked cron schedule in a time zone; shows as the expression it was written as.
#[derive(Clone)]
pub struct CronSchedule {
    /// As written, for `/status` and logs.
    expr: String,
    tz: Tz,
    /// Always 6 fields, day-of-week already in the `cron` crate's numbering.
    schedule: cron::Schedule,
    /// The hour field is a wildcard (`*`, `*/n`): it fires in both passes of a repeated hour.
    every_hour: bool,
}

/// An expression that is not a schedule; says which and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{expr:?} is not a cron schedule (5 fields, or 6 with seconds): {reason}")]
pub struct ScheduleError {
    expr: String,
    reason: String,
}

impl CronSchedule {
    /// Parses a 5-field crontab line or a 6-field line with seconds; see the module docs for
    /// how day-of-week numbers are read.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let error = |reason: String| ScheduleError {
            expr: expr.to_owned(),
            reason,
        };
        let mut fields: Vec<&str> = expr.split_whitespace().collect();
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 => {}
            n => return Err(error(format!("found {n} fields"))),
        }
        let every_hour = fields[2].starts_with('*');
        let day_of_week = translate_day_of_week(fields[5]).map_err(error)?;
        fields[5] = &day_of_week;
        let schedule = cron::Schedule::from_str(&fields.join(" ")).map_err(|e| {
            // The crate's parse errors are the rewritten expression, a caret line and a
            // message that may be empty; only the message belongs in a one-line error.
            let text = e.to_string();
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            let message = match lines.iter().position(|l| l.starts_with('^')) {
                Some(caret) => lines[caret + 1..].join(" "),
                None => lines.join(" "),
            };
            error(if message.trim().is_empty() {
                "syntax not understood".to_owned()
            } else {
                message.trim().to_owned()
            })
        })?;
        Ok(CronSchedule {
            expr: expr.to_owned(),
            tz,
            schedule,
            every_hour,
        })
    }

    /// The first fire time strictly after `t`, or `None` when the schedule never fires
    /// again (a day that does not exist, such as 31 February).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let first = self.first_occurrence_after(t)?;
        if !self.every_hour {
            return Some(first);
        }
        // The passes of a repeated hour that the first occurrences leave out: the rest of
        // the one `t` is in, and the one after the clock goes back before `first`.
        let again = [self.at_offset_of(t), self.after_clock_goes_back(t, first)];
        let earlier = again.into_iter().flatten().filter(|&f| f > t && f < first);
        Some(earlier.min().unwrap_or(first))
    }

    /// The first fire after `t` counting each wall-clock time at its first occurrence.
    fn first_occurrence_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The `cron` crate walks wall-clock times; it is given them as if they were UTC so
        // that it sees every wall-clock time once, and the zone maps each to its instant
        // here. That mapping (first occurrence; a skipped time to the end of the skip)
        // never goes backwards, so the first instant after `t` is the answer. Wall-clock
        // times after `t`'s own can still map to instants before `t` when `t` lies in a
        // repeated hour: those are skipped, at most one hour's worth.
        let wall_now = t.with_timezone(&self.tz).naive_local();
        self.schedule
            .after(&Utc.from_utc_datetime(&wall_now))
            .filter_map(|wall| instant_of(self.tz, wall.naive_utc()))
            .find(|&fire| fire > t)
    }

    /// The zone's offset from UTC at `t`, in seconds.
    fn offset_at(&self, t: DateTime<Utc>) -> i64 {
        let offset = self.tz.offset_from_utc_datetime(&t.naive_utc());
        i64::from(offset.fix().local_minus_utc())
    }

    /// The first fire after `t` while the zone keeps `t`'s offset, when there is one.
    fn at_offset_of(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.first_at_offset(t.naive_utc(), self.offset_at(t), false)
    }

    /// The first fire at or after the UTC time `from` (strictly after, unless `inclusive`)
    /// counted at `offset`, when the zone is still at that offset then.
    fn first_at_offset(
        &self,
        from: NaiveDateTime,
        offset: i64,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        let mut wall = from + chrono::Duration::seconds(offset);
        if inclusive {
            // The `cron` crate finds times strictly after the one given; fires are on
            // whole seconds.
            wall -= chrono::Duration::seconds(1);
        }
        let next = self.schedule.after(&Utc.from_utc_datetime(&wall)).next()?;
        let fire = Utc.from_utc_datetime(&(next.naive_utc() - chrono::Duration::seconds(offset)));
        (self.offset_at(fire) == offset).then_some(fire)
    }

    /// When the zone's clock goes back between `t` and `until`, the first fire of the
    /// pass that follows (its wall-clock times were seen once already, before it).
    fn after_clock_goes_back(
        &self,
        t: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let before = self.offset_at(t);
        let after = self.offset_at(until);
        if after >= before {
            return None;
        }
        // The change, to the second: the zone is at `before` at `lo`, not at `hi`.
        let (mut lo, mut hi) = (t, until);
        while hi - lo > chrono::Duration::seconds(1) {
            let mid = lo + (hi - lo) / 2;
            if self.offset_at(mid) == before {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.first_at_offset(hi.naive_utc(), self.offset_at(hi), true)
    }

    /// The gap between the first two fire times after `t` (the schedule's period around
    /// `t`); `None` when it does not fire twice more.
    pub fn period_after(&self, t: DateTime<Utc>) -> Option<chrono::Duration> {
        let first = self.next_after(t)?;
        Some(self.next_after(first)? - first)
    }

    /// How many fire times lie in `(after, until]`, counting at most `cap`: the poll
    /// ticks that passed while a cycle was running, which the loop skips.
    pub fn fires_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, cap: u64) -> u64 {
        let mut count = 0;
        let mut t = after;
        while count < cap {
            match self.next_after(t) {
                Some(fire) if fire <= until => {
                    count += 1;
                    t = fire;
                }
                _ => break,
            }
        }
        count
    }
}

/// The longest run of wall-clock time a zone has skipped: a whole day (Samoa, 2011).
const MAX_SKIP_MINUTES: i64 = 24 * 60;

/// The instant a wall-clock time in `tz` stands for: its first occurrence, and for a time
/// the zone skips (the hour lost in spring), the instant the skip ends.
fn instant_of(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let at = |wall: NaiveDateTime| tz.from_local_datetime(&wall).earliest();
    if let Some(t) = at(wall) {
        return Some(t.to_utc());
    }
    // Zones change their offset on whole minutes: the first minute that exists again.
    let minute = wall.with_second(0)?.with_nanosecond(0)?;
    (1..=MAX_SKIP_MINUTES)
        .find_map(|m| at(minute + chrono::Duration::minutes(m)))
        .map(|t| t.to_utc())
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl fmt::Debug for CronSchedule {
    // The parsed `cron::Schedule` is a long dump of ordinal sets; the expression says it all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?} in {})", self.expr, self.tz.name())
    }
}

/// Rewrites the numeric parts of a crontab day-of-week field (0 or 7 = Sunday) into the
/// `cron` crate's numbering (1 = Sunday). Numeric items become an explicit list, since a
/// crontab range such as `5-7` (Friday to Sunday) has no contiguous equivalent.
fn translate_day_of_week(field: &str) -> Result<String, String> {
    let mut items = Vec::new();
    for item in field.split(',') {
        if item == "*" || item == "?" || item.chars().any(|c| c.is_ascii_alphabetic()) {
            // Wildcards and names mean the same in both numberings.
            items.push(item.to_owned());
            continue;
        }
        let days = crontab_days(item)
            .map_err(|why| format!("day of week {item:?}: {why} (0-7, 0 and 7 are Sunday)"))?;
        items.extend(days.iter().map(|d| (d % 7 + 1).to_string()));
    }
    Ok(items.join(","))
}

/// The crontab days (0..=7) one numeric day-of-week item selects: `n`, `a-b`, `*/s`,
/// `a-b/s` or `a/s`.
fn crontab_days(item: &str) -> Result<BTreeSet<u32>, String> {
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{s:?} is not a number"))
    };
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(number(step)?)),
        None => (item, None),
    };
    let (first, last) = match (range, range.split_once('-')) {
        ("*", _) => (0, 7),
        (_, Some((a, b))) => (number(a)?, number(b)?),
        // `a/s` runs from `a` to the end, a bare `a` is one day.
        (a, None) => (number(a)?, if step.is_some() { 7 } else { number(a)? }),
    };
    if last > 7 {
        return Err(format!("{last} is out of range"));
    }
    if first > last {
        return Err(format!("range {first}-{last} runs backwards"));
    }
    let step = match step {
        Some(0) => return Err("a step of 0".to_owned()),
        Some(s) => s as usize,
        None => 1,
    };
    Ok((first..=last).step_by(step).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, tz: Tz, after: &str) -> DateTime<Utc> {
        CronSchedule::parse(expr, tz)
            .unwrap()
            .next_after(utc(after))
            .unwrap()
    }

    /// The next `n` fire times after `after`, each computed from the previous one as the
    /// scheduler loop does.
    fn fires(expr: &str, tz: Tz, after: &str, n: usize) -> Vec<DateTime<Utc>> {
        let schedule = CronSchedule::parse(expr, tz).unwrap();
        let mut t = utc(after);
        (0..n)
            .map(|_| {
                t = schedule.next_after(t).unwrap();
                t
            })
            .collect()
    }

    #[test]
    fn fires_between_counts_the_ticks_a_long_cycle_covered() {
        let s = CronSchedule::parse("*/5 * * * *", Tz::UTC).unwrap();
        let at = utc("2024-05-01T10:00:00Z");
        assert_eq!(s.fires_between(at, utc("2024-05-01T10:04:59Z"), 100), 0);
        assert_eq!(s.fires_between(at, utc("2024-05-01T10:05:00Z"), 100), 1);
        assert_eq!(s.fires_between(at, utc("2024-05-01T10:17:00Z"), 100), 3);
        assert_eq!(s.fires_between(at, utc("2024-05-02T10:00:00Z"), 10), 10);
    }

    #[test]
    fn five_fields_fire_on_whole_minutes() {
        assert_eq!(
            next("*/5 * * * *", Tz::UTC, "2024-05-01T10:02:30Z"),
            utc("2024-05-01T10:05:00Z")
        );
        // Strictly after: a fire time is not returned again.
        assert_eq!(
            next("*/5 * * * *", Tz::UTC, "2024-05-01T10:05:00Z"),
            utc("2024-05-01T10:10:00Z")
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        assert_eq!(
            next("30 */5 * * * *", Tz::UTC, "2024-05-01T10:05:31Z"),
            utc("2024-05-01T10:10:30Z")
        );
    }

    #[test]
    fn times_are_in_the_configured_zone() {
        let berlin = next(
            "0 8 * * *",
            crate::test_data::berlin(),
            "2024-05-01T00:00:00Z",
        );
        assert_eq!(berlin, utc("2024-05-01T06:00:00Z"), "08:00 CEST");
        let winter = next(
            "0 8 * * *",
            crate::test_data::berlin(),
            "2024-01-10T00:00:00Z",
        );
        assert_eq!(winter, utc("2024-01-10T07:00:00Z"), "08:00 CET");
        let plain = next("0 8 * * *", Tz::UTC, "2024-05-01T00:00:00Z");
        assert_eq!(plain, utc("2024-05-01T08:00:00Z"));
    }

    #[test]
    fn daily_time_stays_local_across_spring_forward() {
        // Europe/Berlin goes from CET to CEST at 01:00 UTC on 2024-03-31.
        let days = fires(
            "0 8 * * *",
            crate::test_data::berlin(),
            "2024-03-30T00:00:00Z",
            3,
        );
        assert_eq!(
            days,
            [
                utc("2024-03-30T07:00:00Z"),
                utc("2024-03-31T06:00:00Z"),
                utc("2024-04-01T06:00:00Z"),
            ]
        );
    }

    #[test]
    fn skipped_hour_fires_when_the_skip_ends_and_the_poll_goes_on() {
        // 01:55 CET, then the clock jumps from 02:00 to 03:00.
        let polls = fires(
            "*/5 * * * *",
            crate::test_data::berlin(),
            "2024-03-31T00:50:00Z",
            3,
        );
        assert_eq!(
            polls,
            [
                utc("2024-03-31T00:55:00Z"),
                utc("2024-03-31T01:00:00Z"), // 03:00 CEST
                utc("2024-03-31T01:05:00Z"),
            ]
        );
        // 02:30 does not exist on that day in Berlin: it fires when the skip ends, at
        // 03:00 CEST, as cron does, then at 02:30 again.
        let daily = fires(
            "30 2 * * *",
            crate::test_data::berlin(),
            "2024-03-30T12:00:00Z",
            2,
        );
        assert_eq!(
            daily,
            [utc("2024-03-31T01:00:00Z"), utc("2024-04-01T00:30:00Z")]
        );
        // A time in the skip and one after it: each fires once, in order, none lost.
        let both = fires(
            "0 10 2,3 * * *",
            crate::test_data::berlin(),
            "2024-03-30T12:00:00Z",
            2,
        );
        assert_eq!(
            both,
            [utc("2024-03-31T01:00:00Z"), utc("2024-03-31T01:10:00Z")]
        );
    }

    #[test]
    fn a_daily_time_in_the_repeated_hour_fires_once() {
        // 2024-10-27: 03:00 CEST becomes 02:00 CET at 01:00 UTC, so 02:xx occurs twice.
        let daily = fires(
            "30 2 * * *",
            crate::test_data::berlin(),
            "2024-10-26T12:00:00Z",
            2,
        );
        assert_eq!(
            daily,
            [utc("2024-10-27T00:30:00Z"), utc("2024-10-28T01:30:00Z")],
            "once, at the first 02:30"
        );
        // A schedule naming its hours fires once in the repeated hour, from either pass.
        assert_eq!(
            next(
                "*/5 2 * * *",
                crate::test_data::berlin(),
                "2024-10-27T01:10:00Z"
            ),
            utc("2024-10-28T01:00:00Z"),
            "the next day's 02:00 CET"
        );
    }

    #[test]
    fn an_every_hour_schedule_fires_in_both_passes_of_the_repeated_hour() {
        // 02:55 CEST, then the clock goes back from 03:00 CEST to 02:00 CET (01:00 UTC).
        let polls = fires(
            "*/5 * * * *",
            crate::test_data::berlin(),
            "2024-10-27T00:50:00Z",
            4,
        );
        assert_eq!(
            polls,
            [
                utc("2024-10-27T00:55:00Z"), // 02:55 CEST
                utc("2024-10-27T01:00:00Z"), // 02:00 CET
                utc("2024-10-27T01:05:00Z"),
                utc("2024-10-27T01:10:00Z"),
            ]
        );
        // From inside the second pass: on in five minutes, not at 03:00 CET.
        assert_eq!(
            next(
                "*/5 * * * *",
                crate::test_data::berlin(),
                "2024-10-27T01:10:00Z"
            ),
            utc("2024-10-27T01:15:00Z")
        );
        // To the end of it and on.
        let end = fires(
            "*/5 * * * *",
            crate::test_data::berlin(),
            "2024-10-27T01:50:00Z",
            3,
        );
        assert_eq!(
            end,
            [
                utc("2024-10-27T01:55:00Z"),
                utc("2024-10-27T02:00:00Z"), // 03:00 CET
                utc("2024-10-27T02:05:00Z"),
            ]
        );
        // Hourly: 02:00 CEST, 02:00 CET, 03:00 CET.
        let hourly = fires(
            "0 * * * *",
            crate::test_data::berlin(),
            "2024-10-26T23:30:00Z",
            3,
        );
        assert_eq!(
            hourly,
            [
                utc("2024-10-27T00:00:00Z"),
                utc("2024-10-27T01:00:00Z"),
                utc("2024-10-27T02:00:00Z"),
            ]
        );
        // Seconds, and a zone going back half an hour (Lord Howe, 2024-04-07 02:00 ->
        // 01:30, at 15:00 UTC the day before).
        let seconds = fires(
            "*/20 * * * * *",
            crate::test_data::berlin(),
            "2024-10-27T00:59:30Z",
            3,
        );
        assert_eq!(
            seconds,
            [
                utc("2024-10-27T00:59:40Z"),
                utc("2024-10-27T01:00:00Z"),
                utc("2024-10-27T01:00:20Z"),
            ]
        );
        let howe = fires(
            "*/15 * * * *",
            "Australia/Lord_Howe".parse::<Tz>().unwrap(),
            "2024-04-06T14:40:00Z",
            3,
        );
        assert_eq!(
            howe,
            [
                utc("2024-04-06T14:45:00Z"), // 01:45 +11
                utc("2024-04-06T15:00:00Z"), // 01:30 +10:30
                utc("2024-04-06T15:15:00Z"),
            ]
        );
    }

    #[test]
    fn day_of_week_numbers_are_crontab_numbers() {
        // 2024-05-05 is a Sunday.
        let weekday = next("0 9 * * 1-5", Tz::UTC, "2024-05-04T12:00:00Z");
        assert_eq!(weekday, utc("2024-05-06T09:00:00Z"));
        assert_eq!(weekday.weekday(), Weekday::Mon);
        for sunday in ["0", "7"] {
            let t = next(
                &format!("0 9 * * {sunday}"),
                Tz::UTC,
                "2024-05-01T00:00:00Z",
            );
            assert_eq!(t, utc("2024-05-05T09:00:00Z"), "{sunday}");
        }
        // Friday to Sunday, written with 7.
        let weekend = fires("0 9 * * 5-7", Tz::UTC, "2024-05-01T00:00:00Z", 4);
        let days: Vec<Weekday> = weekend.iter().map(|t| t.weekday()).collect();
        assert_eq!(
            days,
            [Weekday::Fri, Weekday::Sat, Weekday::Sun, Weekday::Fri]
        );
        // Six fields are translated too.
        let with_seconds = next("0 0 9 * * 6", Tz::UTC, "2024-05-01T00:00:00Z");
        assert_eq!(with_seconds.weekday(), Weekday::Sat);
        // Names pass through.
        let named = next("0 9 * * Mon-Fri", Tz::UTC, "2024-05-04T12:00:00Z");
        assert_eq!(named.weekday(), Weekday::Mon);
    }

    #[test]
    fn day_of_week_lists_and_steps() {
        assert_eq!(translate_day_of_week("1-5").unwrap(), "2,3,4,5,6");
        assert_eq!(translate_day_of_week("0,3").unwrap(), "1,4");
        assert_eq!(translate_day_of_week("*/2").unwrap(), "1,3,5,7");
        assert_eq!(translate_day_of_week("1-5/2").unwrap(), "2,4,6");
        assert_eq!(translate_day_of_week("Mon,3").unwrap(), "Mon,4");
        assert_eq!(translate_day_of_week("*").unwrap(), "*");
    }

    #[test]
    fn keeps_the_expression_for_display() {
        let s = CronSchedule::parse("0 9 * * 1-5", crate::test_data::berlin()).unwrap();
        assert_eq!(s.to_string(), "0 9 * * 1-5");
        assert_eq!(
            format!("{s:?}"),
            r#"CronSchedule("0 9 * * 1-5" in Europe/Berlin)"#
        );
    }

    #[test]
    fn bad_expressions_are_rejected_with_the_reason() {
        let err = |expr: &str| CronSchedule::parse(expr, Tz::UTC).unwrap_err().to_string();
        assert_eq!(
            err("*/5 * *"),
            r#""*/5 * *" is not a cron schedule (5 fields, or 6 with seconds): found 3 fields"#
        );
        assert!(err("").contains("found 0 fields"));
        assert!(err("0 0 9 * * * 2024").contains("found 7 fields"));
        assert_eq!(
            err("61 * * * *"),
            r#""61 * * * *" is not a cron schedule (5 fields, or 6 with seconds): Minutes must be less than 59. ('61' specified.)"#
        );
        assert!(err("0 25 * * *").contains("is not a cron schedule"));
        assert!(err("0 9 * * 8").contains(r#"day of week "8": 8 is out of range"#));
        assert!(err("0 9 * * 5-1").contains("runs backwards"));
        assert!(err("0 9 * * */0").contains("a step of 0"));
        assert!(err("0 9 * * Mon-").ends_with("seconds): syntax not understood"));
        for expr in ["0 9 * * Someday", "a b c d e", "0 9 * 13 *", "0 9 32 * *"] {
            let message = err(expr);
            assert!(message.contains("is not a cron schedule"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
