//! The digest's list lines: one failure, running job or owner per line, with the names
//! from the backup server escaped and kept short.

use crate::event::ClassCounts;
use crate::event::DigestJob;
use crate::render::{
    code_span, counts_line, list_name, plural, unreadable_value, ENDED_BEFORE_START,
};
use chrono::{DateTime, FixedOffset, NaiveDate};

/// How the job list shows a job whose owner field is empty (a sub-admin's own user).
pub const NO_OWNER_LABEL: &str = "(no owner)";

/// A time as `13:25` on the digest's day and `2024-06-27 01:10` on another; the text the
/// server sent when it could not be read; `?` when there is none.
fn clock(at: Option<DateTime<FixedOffset>>, raw: Option<&str>, date: NaiveDate) -> String {
    match at {
        Some(t) if t.date_naive() == date => t.format("%H:%M").to_string(),
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => raw.map_or_else(|| "?".to_owned(), unreadable_value),
    }
}

/// `obm / Files, owner reseller-a` (the owner only when there is one), `on eu-1` after it
/// when several backup servers are watched.
fn who(job: &DigestJob) -> String {
    let owner = if job.owner.is_empty() {
        String::new()
    } else {
        format!(", owner {}", list_name(&job.owner))
    };
    let server = if job.server.is_empty() {
        String::new()
    } else {
        format!(" on {}", list_name(&job.server))
    };
    format!(
        "{} / {}{owner}{server}",
        list_name(&job.login_name),
        list_name(&job.backup_set)
    )
}

/// `• 12:23–13:25 failure `RESTORE_STOP_BY_ERROR`: obm / Files, owner reseller-a`
pub(super) fn failure_line(job: &DigestJob, date: NaiveDate) -> String {
    let code = if job.raw_status.trim().is_empty() {
        String::new()
    } else {
        format!(" {}", code_span(&job.raw_status))
    };
    let class = if job.vanished {
        "vanished (outcome unknown)"
    } else {
        job.class.label()
    };
    let acked = job.acknowledged.as_ref().map_or_else(String::new, |ack| {
        format!(
            " · acknowledged by {} at {}",
            list_name(&ack.by),
            clock(Some(ack.at), None, date)
        )
    });
    // The server's clock set back: said, rather than a range that runs backwards.
    let backwards = match (job.start_time, job.end_time) {
        (Some(start), Some(end)) if end < start => format!(" ({ENDED_BEFORE_START})"),
        _ => String::new(),
    };
    format!(
        "• {}–{}{backwards} {class}{code}: {}{acked}",
        clock(job.start_time, job.start_raw.as_deref(), date),
        clock(job.end_time, job.end_raw.as_deref(), date),
        who(job)
    )
}

/// `• since 12:23: obm / Files`
pub(super) fn running_line(job: &DigestJob, date: NaiveDate) -> String {
    let since = clock(job.start_time, job.start_raw.as_deref(), date);
    format!("• since {since}: {}", who(job))
}

/// `• reseller-a: 12 jobs (10 success, 2 failure)`
pub(super) fn owner_line(owner: &str, counts: &ClassCounts) -> String {
    let owner = if owner.is_empty() {
        NO_OWNER_LABEL.to_owned()
    } else {
        list_name(owner)
    };
    let total: u64 = counts.values().map(|n| u64::from(*n)).sum();
    format!(
        "• {owner}: {} ({})",
        plural(total, "job", "jobs"),
        counts_line(counts)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbs::model::END_TIME_FIELD;
    use crate::digest::test_support::{berlin, day, ended, health, logins, record};
    use crate::event::Digest;

    /// The day's digest of `job` alone, in Berlin, with no outage.
    fn digest_of(job: crate::cbs::model::RestoreJob) -> Digest {
        Digest::compute(
            day(),
            berlin(),
            &[record(job, false)],
            &health(0),
            0,
            vec![],
        )
    }

    #[test]
    fn a_failure_with_an_unreadable_end_is_listed_with_the_text_sent() {
        let mut odd = ended("odd", "", 7, "RESTORE_STOP_BY_ERROR");
        odd.end_time = None;
        odd.unreadable = [(END_TIME_FIELD.to_owned(), "-0001-06-26 07:30:00".to_owned())].into();
        let d = digest_of(odd);
        assert_eq!(logins(&d.failures), ["odd"]);
        assert_eq!(
            failure_line(&d.failures[0], day()),
            "• 07:00–`-0001-06-26 07:30:00` (unreadable) failure `RESTORE_STOP_BY_ERROR`: odd / set-odd"
        );
    }

    #[test]
    fn a_failure_that_ends_before_it_starts_says_so() {
        let back = crate::digest::test_support::job(
            "back",
            "",
            "set-back",
            "2024-06-26 07:00:00",
            Some("2024-06-26 05:00:00"),
            "RESTORE_STOP_BY_ERROR",
        );
        let d = digest_of(back);
        assert_eq!(
            failure_line(&d.failures[0], day()),
            "• 07:00–05:00 (ended before it started) failure `RESTORE_STOP_BY_ERROR`: back / set-back"
        );
    }
}
