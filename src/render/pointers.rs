//! Pointers from a card to the command that lists what the card could not: a storm
//! card's, the baseline's and the digest's lists end with `/failures days:N`, where `N`
//! reaches back to the oldest date they list.

use chrono::NaiveDate;

/// The most dates `/failures days:` reaches back (today included).
pub const FAILURES_MAX_DAYS: i64 = 30;

/// `/failures days:N` (as code) listing every failure from `oldest` up to `today` (dates in
/// the backup server's zone), or `None` when `oldest` is further back than
/// [`FAILURES_MAX_DAYS`]. A date after `today` needs only today's list.
pub fn failures_command(oldest: NaiveDate, today: NaiveDate) -> Option<String> {
    let days = ((today - oldest).num_days() + 1).max(1);
    (days <= FAILURES_MAX_DAYS).then(|| format!("`/failures days:{days}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn days_reach_the_oldest_date() {
        let today = date("2024-06-27");
        let reach = |oldest| failures_command(date(oldest), today);
        assert_eq!(reach("2024-06-27").unwrap(), "`/failures days:1`");
        assert_eq!(reach("2024-06-26").unwrap(), "`/failures days:2`");
        assert_eq!(reach("2024-06-28").unwrap(), "`/failures days:1`");
        assert_eq!(reach("2024-05-29").unwrap(), "`/failures days:30`");
        assert_eq!(reach("2024-05-28"), None);
    }
}
