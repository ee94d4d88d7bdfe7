//! The bot's notices about its own work: the baseline card (which users are now watched,
//! what was recorded for them, and what would have alerted) and the poll cycle summary.

use super::lists::{error_list, lines_of_within, lines_within};
use super::{COLOUR_INFO, COLOUR_WARNING};
use crate::event::{BaselineUser, ClassCounts, CycleSummary, StormJob};
use crate::render::embed::{
    Embed, EmbedField, EMBED_DESCRIPTION_MAX_CHARS, EMBED_FIELD_VALUE_MAX_CHARS,
};
use crate::render::storm;
use crate::render::text::{format_duration, format_time, list_name, plural};
use crate::render::RenderOptions;
use chrono::{DateTime, NaiveDate, Utc};

/// Counts as `10 success, 2 failure` in report order, or `none`.
pub fn counts_line(counts: &ClassCounts) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(class, n)| format!("{n} {}", class.label()))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Users a baseline card lists one line each; more get counts for the owner instead.
const BASELINE_USER_LINES_MAX: usize = 10;
/// Characters of the card's "would have alerted" lines.
const BASELINE_WOULD_ALERT_MAX_CHARS: usize = 1500;

/// A baseline's recorded jobs that would have alerted: the first ones kept, how many in
/// all, and the day the card is posted (server zone), which its pointer counts back from.
pub(super) struct WouldAlert<'a> {
    pub(super) jobs: &'a [StormJob],
    pub(super) total: usize,
    pub(super) today: NaiveDate,
}

/// One embed per owner however many users: a line per user for a few, counts for the owner
/// beyond [`BASELINE_USER_LINES_MAX`], and the recorded jobs that would have alerted.
pub(super) fn baseline(
    owner: &str,
    users: &[BaselineUser],
    would_alert: &WouldAlert<'_>,
    at: DateTime<Utc>,
) -> Embed {
    let owner = if owner.trim().is_empty() {
        String::new()
    } else {
        format!(" (owner {})", list_name(owner))
    };
    let recorded = |counts: &ClassCounts| {
        let total: u64 = counts.values().map(|n| u64::from(*n)).sum();
        if total == 0 {
            "no earlier jobs recorded".to_owned()
        } else {
            format!(
                "{} recorded: {}",
                plural(total, "earlier job", "earlier jobs"),
                counts_line(counts)
            )
        }
    };
    let (title, mut description) = match users {
        [one] => (
            String::new(),
            format!(
                "Now watching {}{owner}: {}",
                list_name(&one.login_name),
                recorded(&one.counts)
            ),
        ),
        few if few.len() <= BASELINE_USER_LINES_MAX => {
            let lines: Vec<String> = few
                .iter()
                .map(|u| format!("{}: {}", list_name(&u.login_name), recorded(&u.counts)))
                .collect();
            (
                format!(
                    "Now watching {}{owner}",
                    plural(few.len() as u64, "user", "users")
                ),
                // At most BASELINE_USER_LINES_MAX lines: they always fit.
                lines_within(&lines, EMBED_DESCRIPTION_MAX_CHARS, ""),
            )
        }
        many => {
            let mut total = ClassCounts::new();
            for u in many {
                for (class, n) in &u.counts {
                    *total.entry(*class).or_default() += n;
                }
            }
            let with_jobs = many.iter().filter(|u| u.counts.values().any(|n| *n > 0));
            (
                format!(
                    "Now watching {}{owner}",
                    plural(many.len() as u64, "user", "users")
                ),
                format!(
                    "{} with earlier jobs; {}.",
                    plural(with_jobs.count() as u64, "user", "users"),
                    recorded(&total)
                ),
            )
        }
    };
    if would_alert.total > 0 {
        let lines: Vec<String> = would_alert.jobs.iter().map(storm::job_line).collect();
        let pointer = storm::failures_pointer(would_alert.jobs, would_alert.today);
        description.push_str(&format!(
            "\n\nRecorded, not alerted; would have alerted ({}; {pointer} lists them):\n{}",
            would_alert.total,
            // The heading says where to see them all.
            lines_of_within(
                &lines,
                would_alert.total,
                BASELINE_WOULD_ALERT_MAX_CHARS,
                ""
            )
        ));
    }
    Embed {
        title,
        description,
        colour: COLOUR_INFO,
        timestamp: Some(at),
        ..Embed::default()
    }
}

pub(super) fn cycle_summary(s: &CycleSummary, opts: &RenderOptions) -> Embed {
    let finished: u64 = s.finished.values().map(|n| u64::from(*n)).sum();
    let took = (s.finished_at - s.started_at).num_seconds();
    let description = format!(
        "Polled {} with {} in {}. {} finished, {} started running, {} queued.",
        plural(s.users_polled.into(), "user", "users"),
        plural(s.requests.into(), "request", "requests"),
        format_duration(took),
        plural(finished, "job", "jobs"),
        s.started_running,
        plural(s.alerts.into(), "alert", "alerts"),
    );
    let mut fields = vec![EmbedField::new("Finished", counts_line(&s.finished), false)];
    if s.muted > 0 {
        fields.push(EmbedField::new(
            "Muted",
            format!(
                "{} held back by /mute (listed in the digest)",
                plural(s.muted.into(), "alert", "alerts")
            ),
            false,
        ));
    }
    if s.unreadable_items > 0 {
        // The name carries the count; the first few items are listed with their text.
        fields.push(EmbedField::new(
            format!(
                "{} could not be read",
                plural(s.unreadable_items.into(), "job", "jobs")
            ),
            error_list(&s.unreadable, EMBED_FIELD_VALUE_MAX_CHARS),
            false,
        ));
    }
    if !s.errors.is_empty() {
        fields.push(EmbedField::new(
            format!("Errors ({})", s.errors.len()),
            error_list(&s.errors, EMBED_FIELD_VALUE_MAX_CHARS),
            false,
        ));
    }
    let (title, footer) = if s.cycles > 1 {
        (format!("Roll-up of {} poll cycles", s.cycles), "Since")
    } else {
        ("Poll cycle summary".to_owned(), "Cycle started")
    };
    Embed {
        title,
        description,
        colour: if s.errors.is_empty() {
            COLOUR_INFO
        } else {
            COLOUR_WARNING
        },
        fields,
        footer: Some(format!(
            "{footer} {}",
            format_time(&s.started_at.with_timezone(&opts.timezone))
        )),
        timestamp: Some(s.finished_at),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{one, utc};
    use super::*;
    use crate::cbs::model::StatusClass;
    use crate::event::{EventKind, PollError};
    use crate::test_data::field_value;

    #[test]
    fn baseline_is_one_line() {
        let counts = ClassCounts::from([(StatusClass::Success, 10), (StatusClass::Failure, 2)]);
        let e = one(EventKind::Baseline {
            owner: String::new(),
            would_alert: Vec::new(),
            would_alert_total: 0,
            server: String::new(),
            users: vec![BaselineUser {
                login_name: "obm".into(),
                counts,
            }],
        });
        assert_eq!(
            e.description,
            "Now watching obm: 12 earlier jobs recorded: 10 success, 2 failure"
        );
        assert!(e.fields.is_empty() && e.title.is_empty());
        let empty = one(EventKind::Baseline {
            owner: "res".into(),
            would_alert: Vec::new(),
            would_alert_total: 0,
            server: String::new(),
            users: vec![BaselineUser {
                login_name: "new_user".into(),
                counts: ClassCounts::new(),
            }],
        });
        assert_eq!(
            empty.description,
            "Now watching new\\_user (owner res): no earlier jobs recorded"
        );
    }

    #[test]
    fn many_users_baseline_in_one_embed_within_limits() {
        let users: Vec<BaselineUser> = (0..500)
            .map(|i| BaselineUser {
                login_name: format!("user{i:03}"),
                counts: ClassCounts::from([(StatusClass::Success, i % 3)]),
            })
            .collect();
        let e = one(EventKind::Baseline {
            owner: "reseller-a".into(),
            users,
            would_alert: Vec::new(),
            would_alert_total: 0,
            server: String::new(),
        });
        assert_eq!(e.title, "Now watching 500 users (owner reseller-a)");
        // Counts for the owner, no line per user.
        assert_eq!(
            e.description,
            "333 users with earlier jobs; 499 earlier jobs recorded: 499 success."
        );
    }
    /// A recorded job with a 5,000-character set name is cut short; it does not empty the
    /// "would have alerted" list, and a long login does not swamp the user lines.
    #[test]
    fn a_long_name_in_a_baseline_is_cut_and_the_rest_listed() {
        let job = |i: usize, set: String| StormJob {
            server: String::new(),
            ended: "2024-06-26 09:02".into(),
            login_name: format!("user{i}"),
            backup_set: set,
            job_id: format!("j{i}"),
            raw_status: "RESTORE_STOP_BY_ERROR".into(),
            ended_at: None,
            date: None,
        };
        let mut jobs = vec![job(0, "x".repeat(5000))];
        jobs.extend((1..7).map(|i| job(i, format!("Set{i}"))));
        let users = ["obm".to_owned(), "z".repeat(5000)].map(|login_name| BaselineUser {
            login_name,
            counts: ClassCounts::from([(StatusClass::Failure, 7)]),
        });
        let e = one(EventKind::Baseline {
            owner: String::new(),
            users: users.to_vec(),
            would_alert: jobs,
            would_alert_total: 7,
            server: String::new(),
        });
        assert!(!e.description.contains("more"), "{}", e.description);
        let listed: Vec<&str> = (e.description.lines())
            .filter(|l| l.contains(" · user"))
            .collect();
        assert_eq!(listed.len(), 7, "{}", e.description);
        assert!(listed[0].contains("xxx…") && listed[0].ends_with("`RESTORE_STOP_BY_ERROR`"));
        assert!(e.description.contains("zzz…: 7 earlier jobs"));
        assert!(e.description.chars().count() < 2000, "{}", e.description);
    }

    #[test]
    fn a_baseline_queued_before_the_total_was_kept_still_loads_and_counts_its_list() {
        let old = serde_json::json!({
            "type": "baseline", "owner": "", "users": [],
            "would_alert": [{
                "ended": "2024-06-26 09:02", "login_name": "obm", "backup_set": "Files",
                "job_id": "j", "raw_status": "RESTORE_STOP_BY_ERROR"
            }],
        });
        let kind: EventKind = serde_json::from_value(old).unwrap();
        let EventKind::Baseline {
            would_alert_total, ..
        } = &kind
        else {
            panic!("{kind:?}");
        };
        assert_eq!(*would_alert_total, 0);
        let e = one(kind);
        assert!(
            e.description.contains(
                "would have alerted (1; `/failures` lists them):\n2024-06-26 09:02 · obm"
            ),
            "{}",
            e.description
        );
    }

    #[test]
    fn summary_lists_counts_and_errors() {
        let summary = CycleSummary {
            server: String::new(),
            started_at: utc(11, 0, 0),
            finished_at: utc(11, 0, 3),
            users_polled: 5,
            requests: 7,
            finished: ClassCounts::from([
                (StatusClass::Failure, 1),
                (StatusClass::Success, 3),
                (StatusClass::Warning, 0),
            ]),
            started_running: 2,
            alerts: 1,
            muted: 2,
            cycles: 0,
            errors: vec![
                PollError {
                    login_name: "obm".into(),
                    date: NaiveDate::from_ymd_opt(2024, 6, 26).unwrap(),
                    message: "HTTP 502 Bad Gateway".into(),
                },
                PollError {
                    login_name: "acme_1".into(),
                    date: NaiveDate::from_ymd_opt(2024, 6, 25).unwrap(),
                    message: "reply is not JSON: <html>".into(),
                },
            ],
            unreadable_items: 2,
            unreadable: vec![PollError {
                login_name: "obm".into(),
                date: NaiveDate::from_ymd_opt(2024, 6, 26).unwrap(),
                message: "no job ID: {\"BackupSetID\":\"1\"}".into(),
            }],
        };
        let e = one(EventKind::CycleSummary(summary));
        assert_eq!(e.title, "Poll cycle summary");
        assert_eq!(
            e.description,
            "Polled 5 users with 7 requests in 3s. 4 jobs finished, 2 started running, \
             1 alert queued."
        );
        assert_eq!(field_value(&e, "Finished"), "3 success, 1 failure");
        assert_eq!(
            field_value(&e, "Muted"),
            "2 alerts held back by /mute (listed in the digest)"
        );
        assert_eq!(
            field_value(&e, "Errors (2)"),
            "• obm, 2024-06-26: HTTP 502 Bad Gateway\n\
             • acme\\_1, 2024-06-25: reply is not JSON: \\<html\\>"
        );
        assert_eq!(
            field_value(&e, "2 jobs could not be read"),
            "• obm, 2024-06-26: no job ID: {\"BackupSetID\":\"1\"}"
        );
        assert_eq!(e.colour, COLOUR_WARNING);
        assert_eq!(
            e.footer.as_deref(),
            Some("Cycle started 2024-06-26 13:00:00 (CEST)")
        );
    }
}
