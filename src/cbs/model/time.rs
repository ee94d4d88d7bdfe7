//! Job times in every spelling seen in the wild (two CBS formats, ISO 8601, epoch seconds
//! or milliseconds), placed in the server's zone and kept within [`MIN_YEAR`]..=[`MAX_YEAR`].

use super::job::ServerTime;
use crate::tz::Tz;
use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

/// The earliest year a job time may have; earlier ones count as unreadable.
pub const MIN_YEAR: i32 = 1970;
/// The latest year a job time may have; later ones count as unreadable.
pub const MAX_YEAR: i32 = 2200;
/// An epoch number at least this large is milliseconds (as `GetRestoreJobReport` sends);
/// a smaller one is seconds. 10^11 seconds is far past [`MAX_YEAR`], and 10^11 ms is 1973.
const EPOCH_MILLIS_FROM: i64 = 100_000_000_000;

/// The formats of a job time without an offset: local in the server's zone.
const LOCAL_FORMATS: [&str; 3] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d-%H-%M-%S",
    "%Y-%m-%dT%H:%M:%S%.f",
];

/// Reads a job time from a reply value: a string in any format [`parse_server_time`]
/// reads, or epoch seconds or milliseconds as a JSON integer.
pub fn parse_time_value(v: &Value, tz: Tz) -> Option<ServerTime> {
    match v {
        Value::String(s) => parse_server_time(s, tz),
        Value::Number(n) => from_epoch(n.as_i64()?, tz),
        _ => None,
    }
}

/// Parses a job time as the CBS and the proxies in front of it write one:
/// `yyyy-MM-dd HH:mm:ss`, `yyyy-MM-dd-HH-mm-ss`, ISO 8601 with `T` (optional fraction and
/// offset), or epoch seconds or milliseconds. A time without an offset is local in `tz`
/// (a time in a daylight-saving gap is read an hour later, an ambiguous one as its earlier
/// instance, but see `second_fold_reading` for an end). A year outside [`MIN_YEAR`]..=[`MAX_YEAR`] is unreadable.
pub fn parse_server_time(s: &str, tz: Tz) -> Option<ServerTime> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return from_epoch(s.parse().ok()?, tz);
    }
    const WITH_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"];
    let t = if let Some(naive) = LOCAL_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    {
        local_in(tz, naive)?
    } else {
        let s = s
            .strip_suffix(['Z', 'z'])
            .map_or(s.to_owned(), |u| format!("{u}+00:00"));
        WITH_OFFSET
            .iter()
            .find_map(|f| DateTime::parse_from_str(&s, f).ok())?
            .with_timezone(&tz)
    };
    in_bounds(t)
}

/// An epoch number (seconds, or milliseconds from [`EPOCH_MILLIS_FROM`]) as a time in `tz`.
fn from_epoch(n: i64, tz: Tz) -> Option<ServerTime> {
    let utc = if n >= EPOCH_MILLIS_FROM {
        DateTime::<Utc>::from_timestamp_millis(n)?
    } else {
        DateTime::<Utc>::from_timestamp(n, 0)?
    };
    in_bounds(utc.with_timezone(&tz))
}

fn in_bounds(t: ServerTime) -> Option<ServerTime> {
    (MIN_YEAR..=MAX_YEAR).contains(&t.year()).then_some(t)
}

/// The second reading of `s` when it is a local wall-clock time (no offset, no epoch) that
/// happens twice in `tz`, in the hour a daylight-saving fall-back repeats; `None` for any
/// other text. [`parse_server_time`] reads such a time as its first instance; an end that
/// then comes before its start meant the second (02:50 CEST → 02:10 CET).
pub fn second_fold_reading(s: &str, tz: Tz) -> Option<ServerTime> {
    let s = s.trim();
    let naive = LOCAL_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Ambiguous(_, late) => in_bounds(late),
        _ => None,
    }
}

/// Places a local wall-clock time in `tz` (gap: an hour later; fold: the earlier one).
pub fn local_in(tz: Tz, naive: NaiveDateTime) -> Option<ServerTime> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(early, _) => Some(early),
        LocalResult::None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{berlin, one, BASE};
    use super::*;
    use chrono::{SubsecRound, Timelike};

    #[test]
    fn times_in_every_listed_format() {
        // 2024-06-26 11:25:21 UTC is 13:25:21 in Berlin.
        let want = "2024-06-26T13:25:21+02:00";
        for sent in [
            r#""2024-06-26 13:25:21""#,
            r#""2024-06-26-13-25-21""#,
            r#""2024-06-26T13:25:21""#,
            r#""2024-06-26T13:25:21.000""#,
            r#""2024-06-26T11:25:21Z""#,
            r#""2024-06-26T11:25:21.5Z""#,
            r#""2024-06-26T13:25:21+02:00""#,
            r#""2024-06-26T09:25:21-0200""#,
            "1719401121",
            r#""1719401121""#,
            "1719401121000",
            r#""1719401121000""#,
        ] {
            let job = one(&format!(
                r#"{{{BASE},"EndTime":{sent},"Status":"RESTORE_STOP_BY_ERROR"}}"#
            ));
            let end = job.end_time.unwrap_or_else(|| panic!("{sent} unread"));
            assert_eq!(end.timezone(), berlin(), "{sent}");
            assert_eq!(end.trunc_subsecs(0).to_rfc3339(), want, "{sent}");
            assert!(job.unreadable.is_empty(), "{sent}");
        }
    }

    #[test]
    fn the_years_at_the_bounds_are_read() {
        for (s, ok) in [
            ("1970-01-01 12:00:00", true),
            ("2200-12-31 12:00:00", true),
            ("2201-01-01 12:00:00", false),
            ("1969-12-31 12:00:00", false),
        ] {
            assert_eq!(parse_server_time(s, berlin()).is_some(), ok, "{s}");
        }
    }

    #[test]
    fn times_in_both_formats() {
        let job = one(&format!(
            r#"{{{BASE},"StartTime":"2024-06-26-13-25-14","EndTime":"2024-06-26 14:00:00"}}"#
        ));
        let start = job.start_time.unwrap();
        assert_eq!((start.hour(), start.minute(), start.second()), (13, 25, 14));
        assert_eq!(job.end_time.unwrap().hour(), 14);
        assert_eq!(job.duration_secs(), Some(34 * 60 + 46));
    }

    #[test]
    fn dst_gap_and_fold_times_parse() {
        // 2024-03-31 02:30 does not exist in Berlin; 2024-10-27 02:30 happens twice.
        let gap = parse_server_time("2024-03-31 02:30:00", berlin()).unwrap();
        assert_eq!(gap.hour(), 3);
        let fold = parse_server_time("2024-10-27-02-30-00", berlin()).unwrap();
        assert_eq!(fold.to_rfc3339(), "2024-10-27T02:30:00+02:00");
        assert_eq!(fold.day(), 27);
        let second = second_fold_reading("2024-10-27-02-30-00", berlin()).unwrap();
        assert_eq!(second.to_rfc3339(), "2024-10-27T02:30:00+01:00");
        for once in [
            "2024-10-27 03:30:00",
            "2024-03-31 02:30:00",
            "2024-10-27T02:30:00+02:00",
            "1729989000",
        ] {
            assert_eq!(second_fold_reading(once, berlin()), None, "{once}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text as a time: no panic, and a time read is within the bounds.
        #[test]
        fn any_text_parses_or_not_without_panic(s in ".{0,60}") {
            if let Some(t) = parse_server_time(&s, crate::test_data::berlin()) {
                prop_assert!((MIN_YEAR..=MAX_YEAR).contains(&t.year()));
            }
        }

        /// Every instant in the bounds, written in each listed format, reads back.
        #[test]
        fn every_format_reads_back(secs in 0i64..7_258_118_400) {
            let tz = crate::test_data::berlin();
            let t = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            let local = t.with_timezone(&tz);
            // Milliseconds before 1973-03-03 look like seconds: they are read as seconds.
            let millis = (secs * 1000 >= EPOCH_MILLIS_FROM).then(|| (secs * 1000).to_string());
            for s in millis.into_iter().chain([
                secs.to_string(),
                t.to_rfc3339(),
                local.to_rfc3339(),
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ]) {
                prop_assert_eq!(parse_server_time(&s, tz).map(|p| p.to_utc()), Some(t), "{}", s);
            }
            // Local wall-clock formats are ambiguous in a fold; UTC has none.
            let u = crate::tz::Tz::UTC;
            for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d-%H-%M-%S", "%Y-%m-%dT%H:%M:%S"] {
                let s = t.format(f).to_string();
                prop_assert_eq!(parse_server_time(&s, u).map(|p| p.to_utc()), Some(t), "{}", s);
            }
        }
    }
}
