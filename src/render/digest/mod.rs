//! The digest as the chat sees it: the summary card, then the list cards within a number
//! of messages, and the same as plain text for `restorewatch digest --print`. The digest
//! itself is computed in [`crate::digest`]; this side only reads it.
//!
//! - `lists`: the digest's lists and their layout in cards, a long list cut short with a
//!   line counting the rest.
//! - `lines`: the list lines, one failure, running job or owner each.

mod lines;
mod lists;

pub use lines::NO_OWNER_LABEL;

use crate::cbs::model::StatusClass;
use crate::event::Digest;
use crate::render::{
    class_colour, counts_line, cut, list_name, pack, plural, to_text, Embed, EmbedField,
    RenderOptions, COLOUR_INFO, COLOUR_STUCK, EMBED_FIELD_VALUE_MAX_CHARS,
    MESSAGE_EMBED_TOTAL_MAX_CHARS,
};
use chrono::NaiveDate;
use lists::{digest_lists, lay_out};

/// Messages the scheduled digest takes at most, however busy the day.
pub const DIGEST_MESSAGES_MAX: usize = 3;

/// The digest's cards: the summary first, then failures (open, then acknowledged), stuck
/// jobs, running jobs and the per-owner breakdown, within `messages_max` messages whatever
/// the day. A list that does not fit shows its first lines and ends with one line counting
/// the rest, by owner, and for failures the `/failures days:N` that lists every one
/// (`today` is the date the reader starts from, in the digest's zone). Every job is listed
/// or counted exactly once, and every card is within Discord's limits for one embed.
pub fn render_digest(digest: &Digest, today: NaiveDate, messages_max: usize) -> Vec<Embed> {
    let summary = summary(digest).fit();
    let lists = digest_lists(digest, today);
    let mut budget = messages_max.max(1) * MESSAGE_EMBED_TOTAL_MAX_CHARS;
    let opts = RenderOptions {
        mention_role: None,
        timezone: crate::tz::Tz::UTC,
        servers_named: false,
    };
    loop {
        let room = budget.saturating_sub(summary.char_count());
        let mut embeds = vec![summary.clone()];
        embeds.extend(lay_out(&lists, room));
        // Messages are not filled to the last character (a card that does not fit the
        // rest of one starts the next), so the budget shrinks until the cards fit the
        // messages. With no budget left, every list is one short card counting its items.
        if budget == 0 || pack(vec![(false, embeds.clone())], &opts).len() <= messages_max {
            return embeds;
        }
        budget = budget * 9 / 10;
    }
}

/// The digest as plain text, as `restorewatch digest --print` shows it (as the scheduled
/// digest would post it on `today`).
pub fn digest_text(digest: &Digest, today: NaiveDate) -> String {
    let opts = RenderOptions {
        mention_role: None,
        // Packing does not read the zone; the digest's times already carry theirs.
        timezone: crate::tz::Tz::UTC,
        servers_named: false,
    };
    // Time tags, if any, read in the digest's own zone.
    let zone = digest.timezone.parse().unwrap_or(crate::tz::Tz::UTC);
    let cards = render_digest(digest, today, DIGEST_MESSAGES_MAX);
    pack(vec![(false, cards)], &opts)
        .iter()
        .map(|p| to_text(&p.message, zone))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn summary(d: &Digest) -> Embed {
    let date = d.date.format("%Y-%m-%d");
    let total = d.total_jobs();
    let description = if total == 0 {
        format!("No restore jobs on {date}.")
    } else {
        format!(
            "{} on {date}: {}.",
            plural(total, "restore job", "restore jobs"),
            counts_line(&d.totals)
        )
    };
    let mut fields = Vec::new();
    if total > 0 {
        let rate = match d.success_rate {
            Some(rate) => format!(
                "{} ({} of {} finished jobs succeeded)",
                percent(rate),
                d.succeeded_jobs(),
                d.finished_jobs()
            ),
            None => "— (no job finished)".to_owned(),
        };
        fields.push(EmbedField::new("Success rate", rate, true));
        let acked = d.failures.iter().filter(|j| j.acknowledged.is_some());
        let failures = match acked.count() {
            0 => d.failures.len().to_string(),
            n => format!("{} ({n} acknowledged)", d.failures.len()),
        };
        fields.push(EmbedField::new("Failures", failures, true));
        fields.push(EmbedField::new(
            "Running / stuck",
            format!("{} / {}", d.running.len(), d.stuck.len()),
            true,
        ));
    }
    let poller = if d.health.servers.is_empty() {
        poller_day(
            d.health.cycles,
            d.health.request_errors,
            d.health.outage_minutes,
        )
    } else {
        // Each server on its own line, so a down server is named, not summed away.
        let lines: Vec<String> = (d.health.servers.iter())
            .map(|s| {
                format!(
                    "{}: {}",
                    list_name(&s.server),
                    poller_day(s.cycles, s.request_errors, s.outage_minutes)
                )
            })
            .collect();
        cut(&lines.join("\n"), EMBED_FIELD_VALUE_MAX_CHARS)
    };
    fields.push(EmbedField::new("Poller", poller, true));
    fields.push(EmbedField::new(
        "Undelivered events",
        d.undelivered.to_string(),
        true,
    ));
    if !d.refused_channels.is_empty() {
        let channels: Vec<String> = d.refused_channels.iter().map(|c| list_name(c)).collect();
        fields.push(EmbedField::new(
            "Channels refusing the bot",
            channels.join(", "),
            false,
        ));
    }
    let colour = if !d.failures.is_empty() {
        class_colour(StatusClass::Failure)
    } else if !d.stuck.is_empty() || !d.refused_channels.is_empty() {
        COLOUR_STUCK
    } else if total == 0 {
        COLOUR_INFO
    } else {
        class_colour(StatusClass::Success)
    };
    Embed {
        title: format!("Restore digest for {date} ({})", d.timezone),
        description,
        colour,
        fields,
        footer: None,
        timestamp: None,
    }
}

/// One poller's day: `288 cycles, 3 request errors, CBS down 10 min`.
fn poller_day(cycles: u32, request_errors: u32, outage_minutes: i64) -> String {
    let outage = if outage_minutes == 0 {
        "no CBS outage".to_owned()
    } else {
        format!("CBS down {outage_minutes} min")
    };
    format!(
        "{}, {}, {outage}",
        plural(cycles.into(), "cycle", "cycles"),
        plural(request_errors.into(), "request error", "request errors"),
    )
}

/// `92.7%`, rounded to the nearest tenth, except that a day with a failure never reads as
/// 100% and a day with a success never as 0%.
fn percent(rate: f64) -> String {
    let mut tenths = (rate * 1000.0).round();
    if rate < 1.0 {
        tenths = tenths.min(999.0);
    }
    if rate > 0.0 {
        tenths = tenths.max(1.0);
    }
    format!("{:.1}%", tenths / 10.0)
}

/// Asserts that a digest card keeps within Discord's limits and that fitting it would cut
/// nothing (the tests of this module and of `lists`).
#[cfg(test)]
fn within_embed_limits(e: &Embed) {
    use crate::render::{
        EMBED_DESCRIPTION_MAX_CHARS, EMBED_FIELDS_MAX, EMBED_FIELD_NAME_MAX_CHARS,
        EMBED_TITLE_MAX_CHARS,
    };
    assert!(e.title.chars().count() <= EMBED_TITLE_MAX_CHARS);
    assert!(e.description.chars().count() <= EMBED_DESCRIPTION_MAX_CHARS);
    assert!(e.fields.len() <= EMBED_FIELDS_MAX);
    for f in &e.fields {
        assert!(f.name.chars().count() <= EMBED_FIELD_NAME_MAX_CHARS);
        assert!(f.value.chars().count() <= EMBED_FIELD_VALUE_MAX_CHARS);
    }
    assert!(e.char_count() <= MESSAGE_EMBED_TOTAL_MAX_CHARS);
    assert_eq!(e, &e.clone().fit(), "fitting must not have to cut anything");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acks::Ack;
    use crate::digest::test_support::{berlin, day, health, job, record, records, tomorrow};
    use crate::event::{Event, EventKind};
    use crate::render::{render_event, wants_ping};
    use crate::test_data::field_value;
    use chrono::{TimeZone, Utc};

    #[test]
    fn acknowledged_failures_are_listed_apart_from_open_ones() {
        let recs = records();
        let acked = recs
            .iter()
            .find(|r| r.job.login_name == "fail")
            .unwrap()
            .job
            .key();
        let ack = Ack {
            user_id: 7,
            user_name: "operator".into(),
            at: Utc.with_ymd_and_hms(2024, 6, 26, 16, 5, 0).unwrap(),
        };
        let acks = [(acked, ack)].into();
        let d = Digest::compute_naming(day(), berlin(), &recs, &health(0), 0, vec![], &acks, false);
        let text = digest_text(&d, tomorrow());
        let open = text.split("== Open failures (2) ==").nth(1).expect(&text);
        let open = open
            .split("== Acknowledged failures (1) ==")
            .next()
            .unwrap();
        assert!(!open.contains("fail /"), "{text}");
        let acked = text
            .split("== Acknowledged failures (1) ==")
            .nth(1)
            .unwrap();
        let line = acked.lines().nth(1).unwrap();
        assert!(line.contains("fail / "), "{line}");
        assert!(
            line.ends_with("acknowledged by operator at 18:05"),
            "Berlin time: {line}"
        );
        assert!(text.contains("Failures: 3 (1 acknowledged)"), "{text}");
        // Without acknowledgements the one list keeps its name.
        let plain = Digest::compute(day(), berlin(), &recs, &health(0), 0, vec![]);
        let plain = digest_text(&plain, tomorrow());
        assert!(plain.contains("== Failures (3) =="), "{plain}");
        assert!(!plain.contains("Open failures"));
    }

    #[test]
    fn success_rate_rounds_to_nearest_but_never_to_all_or_nothing() {
        assert_eq!(percent(1.0 / 18.0), "5.6%");
        assert_eq!(percent(17.0 / 18.0), "94.4%");
        assert_eq!(percent(2.0 / 3.0), "66.7%");
        assert_eq!(percent(0.9996), "99.9%");
        assert_eq!(percent(0.0001), "0.1%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.5), "50.0%");
        assert_eq!(percent(0.0), "0.0%");
    }

    #[test]
    fn summary_and_lists_read_at_a_glance() {
        let mut recs = records();
        recs.push(record(
            job(
                "**x**",
                "[evil](http://e)",
                "@everyone",
                "2024-06-26 23:00:00",
                Some("2024-06-27 00:10:00"),
                "RESTORE_STOP_BY_ERROR",
            ),
            false,
        ));
        let d = Digest::compute(
            day(),
            berlin(),
            &recs,
            &health(600),
            2,
            vec!["#alerts".into()],
        );
        let embeds = render_digest(&d, tomorrow(), DIGEST_MESSAGES_MAX);
        embeds.iter().for_each(within_embed_limits);
        let titles: Vec<&str> = embeds.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Restore digest for 2024-06-26 (Europe/Berlin)",
                "Failures (4)",
                "Stuck (1)",
                "Still running (2)",
                "By owner (4)",
            ]
        );
        let s = &embeds[0];
        assert_eq!(
            s.description,
            "12 restore jobs on 2024-06-26: 3 success, 1 warning, 1 partial failure, \
             2 failure, 1 cancelled, 3 running, 1 unknown."
        );
        assert_eq!(
            field_value(s, "Success rate"),
            "44.4% (4 of 9 finished jobs succeeded)"
        );
        assert_eq!(field_value(s, "Failures"), "4");
        assert_eq!(field_value(s, "Running / stuck"), "2 / 1");
        assert_eq!(
            field_value(s, "Poller"),
            "288 cycles, 3 request errors, CBS down 10 min"
        );
        assert_eq!(field_value(s, "Undelivered events"), "2");
        assert_eq!(field_value(s, "Channels refusing the bot"), "\\#alerts");
        assert_eq!(s.colour, class_colour(StatusClass::Failure));
        assert_eq!(
            embeds[1].description,
            "• 09:00–09:30 partial failure `RESTORE_STOP_SUCCESS_WITH_ERROR`: part / set-part, \
             owner res-a\n\
             • 12:00–12:30 unknown `RESTORE_STOP_WEIRD`: unk / set-unk\n\
             • 15:00–15:30 failure `RESTORE_STOP_BY_ERROR`: fail / set-fail, owner res-b\n\
             • 23:00–2024-06-27 00:10 failure `RESTORE_STOP_BY_ERROR`: \\*\\*x\\*\\* / \
             @\u{200B}everyone, owner \\[evil\\]\\(http\\://e\\)"
        );
        assert_eq!(embeds[2].description, "• since 01:00: stuck / set-stuck");
        assert_eq!(
            embeds[3].description,
            "• since 18:00: early / set-early\n• since 20:00: late / set-late"
        );
        assert_eq!(
            embeds[4].description,
            "• (no owner): 5 jobs (1 success, 3 running, 1 unknown)\n\
             • \\[evil\\]\\(http\\://e\\): 1 job (1 failure)\n\
             • res-a: 3 jobs (2 success, 1 partial failure)\n\
             • res-b: 3 jobs (1 warning, 1 failure, 1 cancelled)"
        );
    }

    #[test]
    fn a_day_without_jobs_says_so() {
        let d = Digest::compute(day(), berlin(), &[], &health(0), 0, vec![]);
        let embeds = render_digest(&d, tomorrow(), DIGEST_MESSAGES_MAX);
        assert_eq!(embeds.len(), 1);
        assert_eq!(embeds[0].description, "No restore jobs on 2024-06-26.");
        assert_eq!(
            embeds[0]
                .fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            ["Poller", "Undelivered events"]
        );
        assert_eq!(
            digest_text(&d, tomorrow()),
            "== Restore digest for 2024-06-26 (Europe/Berlin) ==\n\
             No restore jobs on 2024-06-26.\n\
             Poller: 288 cycles, 3 request errors, no CBS outage\n\
             Undelivered events: 0"
        );
    }

    #[test]
    fn the_digest_event_renders_through_render_event_without_a_ping() {
        let d = Digest::compute(day(), berlin(), &records(), &health(0), 0, vec![]);
        let at = Utc.with_ymd_and_hms(2024, 6, 27, 6, 0, 0).unwrap();
        let event = Event {
            id: 1,
            created_at: at,
            kind: EventKind::Digest(d.clone()),
        };
        let embeds = render_event(
            &event,
            &RenderOptions {
                mention_role: Some(42),
                timezone: berlin(),
                servers_named: false,
            },
        );
        assert_eq!(
            embeds.len(),
            render_digest(&d, tomorrow(), DIGEST_MESSAGES_MAX).len()
        );
        assert_eq!(embeds[0].timestamp, Some(at));
        assert!(!wants_ping(&event));
    }
}
