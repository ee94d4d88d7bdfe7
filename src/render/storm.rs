//! The storm card: "N restores failed", one line per job (ended · user · set · code; the
//! end as Discord's time tag),
//! cut to a size that leaves room for the first few individual alerts in the same message,
//! with the rest counted and a pointer to `/failures`. Every failure is listed or counted,
//! exactly once.

use super::embed::Embed;
use super::pointers::{failures_command, FAILURES_MAX_DAYS};
use super::text::{code_span, cut, list_name, plural, DASH};
use super::times::discord_time;
use crate::event::{Event, StormJob};
use crate::tz::Tz;
use chrono::NaiveDate;

/// Characters of the card's lines: the description's limit is 4,096, and the card shares a
/// message (6,000 characters) with the first few alerts.
pub const STORM_LINES_MAX_CHARS: usize = 3000;
const COLOUR_STORM: u32 = 0xED4245;

/// When a listed job ended: Discord's time tag (each reader's zone), else the server's
/// text (events queued before the tag was kept), else a dash.
pub fn ended_text(job: &StormJob) -> String {
    match job.ended_at {
        Some(at) => discord_time(at),
        None if job.ended.is_empty() => DASH.to_owned(),
        None => job.ended.clone(),
    }
}

/// One job's line (`ended · user · set · code`): its names cut short (with `…`), so no one
/// job's line can push the others out of a card.
pub fn job_line(job: &StormJob) -> String {
    format!(
        "{} · {} · {} · {}",
        ended_text(job),
        list_name(&job.login_name),
        list_name(&job.backup_set),
        code_span(&job.raw_status),
    )
}

/// `/failures days:N` (as code) reaching back to the oldest date of `jobs` from `today`
/// (the backup server's zone); just `/failures` for jobs queued without their date.
pub fn failures_pointer(jobs: &[StormJob], today: NaiveDate) -> String {
    match jobs.iter().filter_map(|j| j.date).min() {
        Some(oldest) => failures_command(oldest, today)
            .unwrap_or_else(|| format!("`/failures days:{FAILURES_MAX_DAYS}`")),
        None => "`/failures`".to_owned(),
    }
}

/// The storm card of `jobs` (already in order); `tz` is the backup server's zone.
pub fn storm_card(owner: Option<&str>, jobs: &[StormJob], event: &Event, tz: Tz) -> Embed {
    let pointer = failures_pointer(jobs, event.created_at.with_timezone(&tz).date_naive());
    let mut description = String::new();
    let mut listed = 0;
    for job in jobs {
        let mut line = job_line(job);
        if listed == 0 {
            // Short by construction; should a first line still not fit, it is cut rather
            // than leaving the card with no line at all.
            line = cut(&line, STORM_LINES_MAX_CHARS - 1);
        }
        line.push('\n');
        if description.chars().count() + line.chars().count() > STORM_LINES_MAX_CHARS {
            break;
        }
        description.push_str(&line);
        listed += 1;
    }
    let rest = jobs.len() - listed;
    if rest > 0 {
        description.push_str(&format!(
            "… and {} not listed here: {pointer} shows every one.",
            plural(rest as u64, "more failure", "more failures")
        ));
    } else {
        description.push_str(&format!("{pointer} shows them with their details."));
    }
    Embed {
        title: format!(
            "{} failed",
            plural(jobs.len() as u64, "restore", "restores")
        ),
        description,
        colour: COLOUR_STORM,
        fields: Vec::new(),
        footer: Some(match owner {
            Some(owner) => format!("Owner {owner} · grouped: more than alerts.group_after"),
            None => "Grouped: more than alerts.group_after failures in one cycle".to_owned(),
        }),
        timestamp: Some(event.created_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use chrono::Utc;

    fn jobs(n: usize) -> Vec<StormJob> {
        (0..n)
            .map(|i| StormJob {
                server: "cbs".into(),
                ended: "2024-06-26 09:02".into(),
                login_name: format!("user{i:04}"),
                backup_set: "Files".into(),
                job_id: format!("job-{i}"),
                raw_status: "RESTORE_STOP_BY_ERROR".into(),
                ended_at: Some(Utc::now()),
                date: None,
            })
            .collect()
    }

    fn event() -> Event {
        Event {
            id: 1,
            created_at: Utc::now(),
            kind: EventKind::FailureStorm {
                owner: None,
                jobs: Vec::new(),
            },
        }
    }

    #[test]
    fn every_job_is_listed_or_counted_once() {
        for n in [6, 40, 2000] {
            let card = storm_card(None, &jobs(n), &event(), crate::tz::Tz::UTC);
            let listed = card.description.matches("user").count();
            let counted: usize = card
                .description
                .split("… and ")
                .nth(1)
                .map_or(0, |t| t.split(' ').next().unwrap().parse().unwrap());
            assert_eq!(listed + counted, n, "{n}");
            assert_eq!(card.title, format!("{n} restores failed"));
            assert!(card.description.chars().count() <= 4096);
            assert!(card.description.contains("/failures"));
        }
    }

    /// One absurdly long name (5,000 characters) is cut with `…`; it does not empty the
    /// card, and the other jobs are listed as usual.
    #[test]
    fn a_long_name_is_cut_and_every_other_job_still_listed() {
        let mut listed = jobs(7);
        listed[0].backup_set = "x".repeat(5000);
        listed[3].login_name = format!("user0003{}", "y".repeat(5000));
        let card = storm_card(None, &listed, &event(), crate::tz::Tz::UTC);
        let lines: Vec<&str> = card.description.lines().collect();
        assert_eq!(lines.len(), 8, "{}", card.description);
        assert!(!card.description.contains("more failure"));
        for (i, line) in lines[..7].iter().enumerate() {
            assert!(line.contains(&format!("user{i:04}")), "{line}");
            assert!(line.ends_with("`RESTORE_STOP_BY_ERROR`"), "{line}");
            assert!(line.chars().count() < 250, "{line}");
        }
        assert!(lines[0].contains("xxx…"));
        assert!(lines[3].contains("yyy…"));
    }

    #[test]
    fn the_pointer_reaches_the_oldest_date_listed() {
        use chrono::TimeZone;
        let date = |s: &str| s.parse::<NaiveDate>().unwrap();
        let mut listed = jobs(8);
        listed[0].date = Some(date("2024-06-26"));
        listed[5].date = Some(date("2024-06-25"));
        let mut at = event();
        // 00:30 on the 27th in Berlin, still the 26th in UTC.
        at.created_at = Utc.with_ymd_and_hms(2024, 6, 26, 22, 30, 0).unwrap();
        let card = storm_card(None, &listed, &at, crate::test_data::berlin());
        assert!(
            card.description
                .ends_with("`/failures days:3` shows them with their details."),
            "{}",
            card.description
        );
        let card = storm_card(None, &listed, &at, crate::tz::Tz::UTC);
        assert!(card.description.contains("`/failures days:2`"));
        // Queued without dates (an earlier version): the bare command.
        let card = storm_card(None, &jobs(8), &at, crate::tz::Tz::UTC);
        assert!(card
            .description
            .ends_with("`/failures` shows them with their details."));
    }

    #[test]
    fn times_are_discord_tags_and_older_events_keep_their_text() {
        let mut listed = jobs(1);
        let at = Utc::now();
        listed[0].ended_at = Some(at);
        let card = storm_card(None, &listed, &event(), crate::tz::Tz::UTC);
        let tag = format!("<t:{}:f> · user0000 · Files · ", at.timestamp());
        assert!(card.description.starts_with(&tag), "{}", card.description);
        // Queued by an earlier version: no `ended_at` in the stored record.
        let old: StormJob = serde_json::from_value(serde_json::json!({
            "ended": "2024-06-26 09:02", "login_name": "obm", "backup_set": "Files",
            "job_id": "j", "raw_status": "RESTORE_STOP_BY_ERROR"
        }))
        .unwrap();
        assert_eq!(ended_text(&old), "2024-06-26 09:02");
        let unsent = StormJob {
            ended: String::new(),
            ..old
        };
        assert_eq!(ended_text(&unsent), DASH);
    }
}
