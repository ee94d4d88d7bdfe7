//! Time zones by IANA name, for chrono's `DateTime<Tz>`, from jiff's bundled copy of the
//! time zone database.
//!
//! chrono-tz compiled every zone's whole history into the binary as tables of pointers
//! (66,175 time spans, each naming its abbreviation): 1.3 MiB that the loader relocates at
//! every start and that then stays resident (BENCHMARKS.md, sessions 12 and 13). jiff
//! bundles the database as each zone's TZif bytes, read-only data of which the process
//! reads only the zones it uses, each parsed once and kept for the life of the process.

use chrono::{FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

/// A time zone of the IANA database, such as `Europe/Berlin`: small and `Copy`, as
/// chrono-tz's was. Zones are equal when their names are.
#[derive(Clone, Copy)]
pub struct Tz(&'static Zone);

struct Zone {
    /// The database's own spelling.
    name: &'static str,
    zone: jiff::tz::TimeZone,
}

static UTC_ZONE: Zone = Zone {
    name: "UTC",
    zone: jiff::tz::TimeZone::UTC,
};

impl Tz {
    pub const UTC: Tz = Tz(&UTC_ZONE);

    /// The zone's name as the database spells it.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The offset and abbreviation in force at `utc`.
    fn offset_at(self, utc: &NaiveDateTime) -> TzOffset {
        let secs = utc.and_utc().timestamp();
        let at = jiff::Timestamp::new(secs, 0).unwrap_or(if secs < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        let info = self.0.zone.to_offset_info(at);
        TzOffset {
            tz: self,
            fix: fixed(info.offset()),
            abbreviation: Abbreviation::new(info.abbreviation()),
        }
    }
}

/// The zones parsed so far, by their name as asked for in the database's spelling (other
/// spellings are looked up each time, so the map holds at most one entry per zone). Each
/// zone is leaked once: a process uses a handful.
fn zones() -> &'static Mutex<HashMap<&'static str, &'static Zone>> {
    static ZONES: OnceLock<Mutex<HashMap<&'static str, &'static Zone>>> = OnceLock::new();
    ZONES.get_or_init(Default::default)
}

/// A name that is no zone of the IANA database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownZone(String);

impl fmt::Display for UnknownZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a time zone of the IANA database", self.0)
    }
}

impl std::error::Error for UnknownZone {}

impl std::str::FromStr for Tz {
    type Err = UnknownZone;

    /// A zone by its IANA name (`Europe/Berlin`, `UTC`, `Etc/GMT+5`), in any case.
    fn from_str(name: &str) -> Result<Tz, UnknownZone> {
        let mut zones = zones().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(zone) = zones.get(name) {
            return Ok(Tz(zone));
        }
        let unknown = || UnknownZone(name.chars().take(64).collect());
        let zone = jiff::tz::db().get(name).map_err(|_| unknown())?;
        let canonical = zone.iana_name().ok_or_else(unknown)?;
        if let Some(known) = zones.get(canonical) {
            return Ok(Tz(known));
        }
        let zone: &'static Zone = Box::leak(Box::new(Zone {
            name: Box::leak(canonical.into()),
            zone: zone.clone(),
        }));
        zones.insert(zone.name, zone);
        Ok(Tz(zone))
    }
}

impl PartialEq for Tz {
    fn eq(&self, other: &Tz) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Tz {}

impl fmt::Debug for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn fixed(offset: jiff::tz::Offset) -> FixedOffset {
    // jiff's offsets are within ±25:59:59, chrono's within ±24h: anything beyond (no zone
    // has one) is cut to the largest chrono takes.
    let secs = offset.seconds().clamp(-86_399, 86_399);
    FixedOffset::east_opt(secs).expect("within a day")
}

/// A zone's abbreviation (`CET`, `+0530`), kept inline so that offsets stay `Copy`. TZif
/// abbreviations are 3 to 6 characters; longer ones are cut.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Abbreviation {
    bytes: [u8; 8],
    len: u8,
}

impl Abbreviation {
    fn new(text: &str) -> Abbreviation {
        let mut len = text.len().min(8);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; 8];
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Abbreviation {
            bytes,
            len: len as u8,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// The offset of a [`Tz`] at one instant, with its abbreviation (what `%Z` shows).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TzOffset {
    tz: Tz,
    fix: FixedOffset,
    abbreviation: Abbreviation,
}

impl TzOffset {
    /// The abbreviation in force, such as `CEST`.
    pub fn abbreviation(&self) -> &str {
        self.abbreviation.as_str()
    }
}

impl Offset for TzOffset {
    fn fix(&self) -> FixedOffset {
        self.fix
    }
}

impl fmt::Debug for TzOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.abbreviation())
    }
}

impl fmt::Display for TzOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.abbreviation())
    }
}

/// `local` as jiff's civil time; `None` beyond jiff's years (±9999).
fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    use chrono::{Datelike, Timelike};
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        local.month() as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        local.second().min(59) as i8,
        0,
    )
    .ok()
}

impl TimeZone for Tz {
    type Offset = TzOffset;

    fn from_offset(offset: &TzOffset) -> Tz {
        offset.tz
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> LocalResult<TzOffset> {
        self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> LocalResult<TzOffset> {
        use jiff::tz::AmbiguousOffset;
        let at = |offset: jiff::tz::Offset| {
            let shift = chrono::Duration::seconds(i64::from(offset.seconds()));
            self.offset_at(&local.checked_sub_signed(shift).unwrap_or(*local))
        };
        // Beyond jiff's years the zone's first or last offset holds, with no gap or fold:
        // the one at that time read as UTC.
        let Some(civil) = civil(local) else {
            return LocalResult::Single(self.offset_at(local));
        };
        match self.0.zone.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => LocalResult::Single(at(offset)),
            AmbiguousOffset::Gap { .. } => LocalResult::None,
            AmbiguousOffset::Fold { before, after } => {
                LocalResult::Ambiguous(at(before), at(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> TzOffset {
        self.offset_at(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> TzOffset {
        self.offset_at(utc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn names_are_the_databases_in_any_case_and_equal_zones_are_one() {
        assert_eq!(tz("europe/berlin").name(), "Europe/Berlin");
        assert_eq!(tz("Europe/Berlin"), tz("EUROPE/BERLIN"));
        assert_eq!(
            format!("{} {:?}", tz("asia/kolkata"), Tz::UTC),
            "Asia/Kolkata UTC"
        );
        // Parsed once: every handle on a zone shares it.
        assert!(std::ptr::eq(tz("Europe/Berlin").0, tz("europe/berlin").0));
        assert_ne!(tz("Europe/Berlin"), tz("Europe/Paris"));
        assert_eq!(tz("UTC"), Tz::UTC);
        assert_eq!(tz("Etc/GMT+5").name(), "Etc/GMT+5");
        let err = "Europe/Berln".parse::<Tz>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"Europe/Berln\" is not a time zone of the IANA database"
        );
        assert!("".parse::<Tz>().is_err());
    }

    #[test]
    fn offsets_and_abbreviations_follow_the_rules_of_their_date() {
        let berlin = tz("Europe/Berlin");
        let winter = berlin.from_utc_datetime(&local("2024-01-15 12:00"));
        assert_eq!(
            winter.format("%H:%M %Z %:z").to_string(),
            "13:00 CET +01:00"
        );
        assert_eq!(format!("{winter:?}"), "2024-01-15T13:00:00CET");
        let summer = berlin.from_utc_datetime(&local("2024-07-15 12:00"));
        assert_eq!(
            summer.format("%H:%M %Z %:z").to_string(),
            "14:00 CEST +02:00"
        );
        let kolkata = tz("Asia/Kolkata").from_utc_datetime(&local("2024-07-15 12:00"));
        assert_eq!(kolkata.format("%H:%M %:z").to_string(), "17:30 +05:30");
        let utc = Tz::UTC.from_utc_datetime(&local("2024-07-15 12:00"));
        assert_eq!(utc.format("%H:%M %Z").to_string(), "12:00 UTC");
    }

    #[test]
    fn a_local_time_in_the_spring_gap_is_none_and_in_the_autumn_fold_both() {
        let berlin = tz("Europe/Berlin");
        assert_eq!(
            berlin.from_local_datetime(&local("2024-03-31 02:30")),
            LocalResult::None
        );
        let LocalResult::Ambiguous(early, late) =
            berlin.from_local_datetime(&local("2024-10-27 02:30"))
        else {
            panic!("02:30 on the last Sunday of October is twice in Berlin");
        };
        assert_eq!(
            early.with_timezone(&Utc).to_string(),
            "2024-10-27 00:30:00 UTC"
        );
        assert_eq!(
            late.with_timezone(&Utc).to_string(),
            "2024-10-27 01:30:00 UTC"
        );
        assert_eq!(
            (early.offset().abbreviation(), late.offset().abbreviation()),
            ("CEST", "CET")
        );
        let LocalResult::Single(noon) = berlin.from_local_datetime(&local("2024-10-27 12:00"))
        else {
            panic!("noon is once");
        };
        assert_eq!(
            noon.with_timezone(&Utc).to_string(),
            "2024-10-27 11:00:00 UTC"
        );
    }

    #[test]
    fn times_beyond_the_databases_years_take_its_first_or_last_offset() {
        let berlin = tz("Europe/Berlin");
        let far = NaiveDate::from_ymd_opt(200_000, 1, 1)
            .unwrap()
            .and_time(NaiveTime::MIN);
        assert_eq!(
            berlin
                .offset_from_utc_datetime(&far)
                .fix()
                .local_minus_utc(),
            3600
        );
        assert!(matches!(
            berlin.from_local_datetime(&far),
            LocalResult::Single(_)
        ));
        let before = NaiveDate::from_ymd_opt(-200_000, 1, 1)
            .unwrap()
            .and_time(NaiveTime::MIN);
        // Berlin's first offset, its local mean time (+0:53:28).
        let first = berlin.offset_from_utc_datetime(&before);
        assert_eq!(first.fix().local_minus_utc(), 3208);
        let local_first = berlin.offset_from_local_datetime(&before).single().unwrap();
        assert_eq!(local_first.fix().local_minus_utc(), 3208);
    }
}
