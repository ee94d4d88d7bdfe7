//! The digest's lists (failures, stuck and running jobs, owners) and how they are laid
//! out in cards within a budget of characters: lists that need little get all they need,
//! the rest share what is left, and a list cut short ends with one line counting the items
//! left out, by owner.

use super::lines::{failure_line, owner_line, running_line, NO_OWNER_LABEL};
use crate::cbs::model::StatusClass;
use crate::event::ClassCounts;
use crate::event::{Digest, DigestJob};
use crate::render::{
    class_colour, counts_line, cut, escape_markdown, plural, Embed, COLOUR_INFO, COLOUR_STUCK,
};
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// Characters of one list card's description. Cards are kept small so that messages fill
/// well: a message is only closed for a card that does not fit the rest of it.
const CARD_DESCRIPTION_MAX_CHARS: usize = 1900;
/// What a card's title costs at most (`Acknowledged failures (2000), part 2 of 3`).
const CARD_TITLE_ROOM_CHARS: usize = 100;
/// Characters of one list line (they are short by construction; this guards the card).
const LINE_MAX_CHARS: usize = 400;
/// Characters of the line that tells the part of a list not shown, and of its owners.
const REST_LINE_MAX_CHARS: usize = 500;
const REST_OWNERS_MAX_CHARS: usize = 300;

/// The digest's lists, in order, with what each shows for its lines left out.
pub(super) fn digest_lists(digest: &Digest, today: NaiveDate) -> Vec<List<'_>> {
    let date = digest.date;
    // Acknowledged failures are listed apart from the open ones; while none is, the one
    // list is just "Failures".
    let (acked, open): (Vec<&DigestJob>, Vec<&DigestJob>) =
        (digest.failures.iter()).partition(|j| j.acknowledged.is_some());
    let open_name = if acked.is_empty() {
        "Failures"
    } else {
        "Open failures"
    };
    let pointer = Pointer::Failures(crate::render::failures_command(date, today));
    let jobs =
        |name, jobs, line, colour, pointer| job_list(name, jobs, line, colour, pointer, date);
    let owners: Vec<(&String, &ClassCounts)> = digest.owners.iter().collect();
    let failure = class_colour(StatusClass::Failure);
    vec![
        jobs(open_name, open, failure_line, failure, pointer.clone()),
        jobs(
            "Acknowledged failures",
            acked,
            failure_line,
            COLOUR_INFO,
            pointer,
        ),
        jobs(
            "Stuck",
            digest.stuck.iter().collect(),
            running_line,
            COLOUR_STUCK,
            Pointer::Nothing,
        ),
        jobs(
            "Still running",
            digest.running.iter().collect(),
            running_line,
            class_colour(StatusClass::Running),
            Pointer::Nothing,
        ),
        List {
            name: "By owner",
            colour: COLOUR_INFO,
            lines: owners.iter().map(|(o, c)| owner_line(o, c)).collect(),
            rest: Rest::Owners(owners),
        },
    ]
    .into_iter()
    .filter(|list| !list.lines.is_empty())
    .collect()
}

fn job_list<'a>(
    name: &'static str,
    jobs: Vec<&'a DigestJob>,
    line: fn(&DigestJob, NaiveDate) -> String,
    colour: u32,
    pointer: Pointer,
    date: NaiveDate,
) -> List<'a> {
    List {
        name,
        colour,
        lines: jobs.iter().map(|j| line(j, date)).collect(),
        rest: Rest::Jobs { jobs, pointer },
    }
}

/// Where a job list's left-out jobs can be seen.
#[derive(Clone)]
enum Pointer {
    /// No command lists them all (running jobs: `/restores` per user).
    Nothing,
    /// `/failures days:N`; `None` when the date is older than it reaches.
    Failures(Option<String>),
}

/// One list of the digest: a line per item, and how to tell the items left out.
pub(super) struct List<'a> {
    name: &'static str,
    colour: u32,
    lines: Vec<String>,
    rest: Rest<'a>,
}

/// The items behind a list's lines, to count those left out.
enum Rest<'a> {
    /// Jobs, counted by owner; `pointer` is the command that lists them all.
    Jobs {
        jobs: Vec<&'a DigestJob>,
        pointer: Pointer,
    },
    /// Owners and their jobs, counted together.
    Owners(Vec<(&'a String, &'a ClassCounts)>),
}

impl List<'_> {
    /// The line for the items from `listed` on: how many, where to see them, by owner.
    fn rest_line(&self, listed: usize) -> String {
        let left = self.lines.len() - listed;
        let head = if listed == 0 {
            format!("{left} not listed here")
        } else {
            format!("… and {left} more")
        };
        let line = match &self.rest {
            Rest::Jobs { jobs, pointer } => {
                let mut by_owner: BTreeMap<&str, u64> = BTreeMap::new();
                for job in &jobs[listed..] {
                    *by_owner.entry(job.owner.as_str()).or_default() += 1;
                }
                let pointer = match pointer {
                    Pointer::Failures(Some(command)) => format!(": {command} lists every one"),
                    Pointer::Failures(None) => " (older than `/failures` reaches)".to_owned(),
                    Pointer::Nothing => String::new(),
                };
                format!("{head}{pointer}. By owner: {}.", owner_counts(by_owner))
            }
            Rest::Owners(owners) => {
                let mut counts = ClassCounts::new();
                for (_, owner_counts) in &owners[listed..] {
                    for (class, n) in owner_counts.iter() {
                        *counts.entry(*class).or_default() += n;
                    }
                }
                let total: u64 = counts.values().map(|n| u64::from(*n)).sum();
                format!(
                    "{head}, with {} ({}).",
                    plural(total, "job", "jobs"),
                    counts_line(&counts)
                )
            }
        };
        cut(&line, REST_LINE_MAX_CHARS)
    }
}

/// `reseller-a 12, (no owner) 3, and 4 other owners 9`: most first, every job counted
/// once however many owners there are.
fn owner_counts(by_owner: BTreeMap<&str, u64>) -> String {
    let mut owners: Vec<(&str, u64)> = by_owner.into_iter().collect();
    owners.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = Vec::new();
    let mut chars = 0;
    for (i, (owner, n)) in owners.iter().enumerate() {
        let name = if owner.is_empty() {
            NO_OWNER_LABEL.to_owned()
        } else {
            cut(&escape_markdown(owner), 40)
        };
        let part = format!("{name} {n}");
        if chars + part.chars().count() > REST_OWNERS_MAX_CHARS && i + 1 < owners.len() {
            let others = &owners[i..];
            let jobs: u64 = others.iter().map(|(_, n)| n).sum();
            parts.push(format!(
                "and {} {jobs}",
                plural(others.len() as u64, "other owner", "other owners")
            ));
            break;
        }
        chars += part.chars().count() + 2;
        parts.push(part);
    }
    parts.join(", ")
}

/// Each list's cards within `room` characters (all lists together): lists that need
/// little get all they need, the rest share what is left evenly.
pub(super) fn lay_out(lists: &[List<'_>], room: usize) -> Vec<Embed> {
    let needs: Vec<usize> = lists
        .iter()
        .map(|l| cost(&chunks(l.lines.iter().cloned())))
        .collect();
    let mut order: Vec<usize> = (0..lists.len()).collect();
    order.sort_by_key(|i| needs[*i]);
    let mut shares = vec![0; lists.len()];
    let mut left = room;
    for (k, i) in order.iter().enumerate() {
        let share = needs[*i].min(left / (lists.len() - k));
        shares[*i] = share;
        left -= share;
    }
    (lists.iter().zip(shares))
        .flat_map(|(list, share)| list_cards(list, share))
        .collect()
}

/// A list's cards within `room` characters: every line when they fit, else the first lines
/// and the line that tells the rest.
fn list_cards(list: &List<'_>, room: usize) -> Vec<Embed> {
    let lines = list.lines.iter().map(|l| cut(l, LINE_MAX_CHARS));
    let all = chunks(lines.clone());
    let descriptions = if cost(&all) <= room {
        all
    } else {
        // The rest line costs at most a card of its own.
        let keep = room.saturating_sub(CARD_TITLE_ROOM_CHARS + REST_LINE_MAX_CHARS + 1);
        // The cost of the lines so far as `chunks` would lay them out, line by line.
        let (mut spent, mut card) = (0, 0);
        let mut shown = Vec::new();
        for line in lines {
            let len = line.chars().count();
            let (next_card, add) = if card == 0 || card + 1 + len > CARD_DESCRIPTION_MAX_CHARS {
                (len, len + CARD_TITLE_ROOM_CHARS)
            } else {
                (card + 1 + len, len + 1)
            };
            if spent + add > keep {
                break;
            }
            (spent, card) = (spent + add, next_card);
            shown.push(line);
        }
        shown.push(list.rest_line(shown.len()));
        chunks(shown.into_iter())
    };
    let parts = descriptions.len();
    let title = format!("{} ({})", list.name, list.lines.len());
    (descriptions.into_iter().enumerate())
        .map(|(i, description)| Embed {
            title: if parts == 1 {
                title.clone()
            } else {
                format!("{title}, part {} of {parts}", i + 1)
            },
            description,
            colour: list.colour,
            ..Embed::default()
        })
        .collect()
}

/// Lines joined into card descriptions of whole lines, each within
/// [`CARD_DESCRIPTION_MAX_CHARS`].
fn chunks(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut current_chars = 0;
    for line in lines {
        let len = line.chars().count();
        if !current.is_empty() && current_chars + 1 + len > CARD_DESCRIPTION_MAX_CHARS {
            out.push(std::mem::take(&mut current));
            current_chars = 0;
        }
        if !current.is_empty() {
            current.push('\n');
            current_chars += 1;
        }
        current.push_str(&line);
        current_chars += len;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// What cards of these descriptions cost at most, titles included.
fn cost(descriptions: &[String]) -> usize {
    (descriptions.iter())
        .map(|d| d.chars().count() + CARD_TITLE_ROOM_CHARS)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::within_embed_limits;
    use super::*;
    use crate::acks::Ack;
    use crate::cbs::model::JobKey;
    use crate::digest::test_support::{berlin, day, health, job, record, running, tomorrow};
    use crate::render::{pack, RenderOptions, MESSAGE_EMBEDS_MAX, MESSAGE_EMBED_TOTAL_MAX_CHARS};
    use crate::render::{render_digest, DIGEST_MESSAGES_MAX};
    use crate::store::JobRecord;
    use crate::test_data::field_value;
    use chrono::{Days, TimeZone, Utc};

    /// `n` failures of the test day, each of its own user (owners `reseller_0` to `_6`,
    /// every tenth without), one a second.
    fn failures(n: usize) -> Vec<JobRecord> {
        (0..n)
            .map(|i| {
                let start = format!(
                    "2024-06-26 {:02}:{:02}:{:02}",
                    i / 3600,
                    i / 60 % 60,
                    i % 60
                );
                let owner = if i % 10 == 9 {
                    String::new()
                } else {
                    format!("reseller_{}", i % 7)
                };
                record(
                    job(
                        &format!("customer-login-{i:04}"),
                        &owner,
                        &format!("Mail & Files backup set {i:04}"),
                        &start,
                        Some(&start),
                        "RESTORE_STOP_BY_ERROR",
                    ),
                    false,
                )
            })
            .collect()
    }

    /// The digest's messages as posted, each within Discord's limits.
    fn messages(embeds: Vec<Embed>) -> Vec<Vec<Embed>> {
        let opts = RenderOptions {
            mention_role: None,
            timezone: berlin(),
            servers_named: false,
        };
        let packed = pack(vec![(false, embeds)], &opts);
        for p in &packed {
            let m = &p.message;
            assert!(m.embeds.len() <= MESSAGE_EMBEDS_MAX);
            let chars: usize = m.embeds.iter().map(Embed::char_count).sum();
            assert!(chars <= MESSAGE_EMBED_TOTAL_MAX_CHARS, "{chars}");
            m.embeds.iter().for_each(within_embed_limits);
        }
        packed.into_iter().map(|p| p.message.embeds).collect()
    }

    /// The lines of the cards titled `name…`, in order.
    fn lines_of(messages: &[Vec<Embed>], name: &str) -> Vec<String> {
        (messages.iter().flatten())
            .filter(|e| e.title.starts_with(name))
            .flat_map(|e| e.description.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    /// Checks that `lines` list failures 0, 1, … in order and end with a line counting the
    /// rest, by owner, that adds up to `total`; returns how many were listed.
    fn listed_or_counted(lines: &[String], total: usize, pointer: &str) -> usize {
        let (rest, listed) = lines.split_last().unwrap();
        for (i, line) in listed.iter().enumerate() {
            assert!(
                line.starts_with("• ")
                    && line.contains(&format!(
                        "customer-login-{i:04} / Mail & Files backup set {i:04}"
                    )),
                "failure {i} missing or out of order: {line}"
            );
        }
        let more = total - listed.len();
        assert!(
            rest.starts_with(&format!(
                "… and {more} more: {pointer} lists every one. By owner: "
            )),
            "{rest}"
        );
        let owners = rest
            .split("By owner: ")
            .nth(1)
            .unwrap()
            .trim_end_matches('.');
        let counted: usize = owners
            .split(", ")
            .map(|part| part.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(counted, more, "{rest}");
        // The owners of the left-out failures, exactly.
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        for i in listed.len()..total {
            let owner = if i % 10 == 9 {
                NO_OWNER_LABEL.to_owned()
            } else {
                format!("reseller\\_{}", i % 7)
            };
            *expected.entry(owner).or_default() += 1;
        }
        for (owner, n) in expected {
            assert!(
                owners.contains(&format!("{owner} {n}")),
                "{owner} {n}: {rest}"
            );
        }
        listed.len()
    }

    #[test]
    fn two_thousand_failures_fit_three_messages_each_listed_or_counted_once() {
        let d = Digest::compute(day(), berlin(), &failures(2000), &health(0), 0, vec![]);
        let scheduled = messages(render_digest(&d, tomorrow(), DIGEST_MESSAGES_MAX));
        assert!(
            scheduled.len() <= DIGEST_MESSAGES_MAX,
            "{}",
            scheduled.len()
        );
        let lines = lines_of(&scheduled, "Failures (2000)");
        let listed = listed_or_counted(&lines, 2000, "`/failures days:2`");
        assert!(listed >= 40, "the first failures are listed: {listed}");
        // The summary counts them all, and the owners list stays whole (8 owners).
        assert_eq!(field_value(&scheduled[0][0], "Failures"), "2000");
        assert_eq!(lines_of(&scheduled, "By owner (8)").len(), 8);

        // `/digest`, three days later, within its ten messages, shows more.
        let today = day().checked_add_days(Days::new(3)).unwrap();
        let on_demand = messages(render_digest(&d, today, 10));
        assert!(on_demand.len() <= 10, "{}", on_demand.len());
        let lines = lines_of(&on_demand, "Failures (2000)");
        let more = listed_or_counted(&lines, 2000, "`/failures days:4`");
        assert!(more > listed * 2, "{more} vs {listed}");

        // A few fit whole, in parts as before: no count line.
        let d = Digest::compute(day(), berlin(), &failures(30), &health(0), 0, vec![]);
        let few = messages(render_digest(&d, tomorrow(), DIGEST_MESSAGES_MAX));
        let lines = lines_of(&few, "Failures (30)");
        assert_eq!(lines.len(), 30);
        assert!(lines.iter().all(|l| l.starts_with("• ")));
    }

    #[test]
    fn every_list_and_many_owners_stay_within_three_messages() {
        // 2,000 failures (half acknowledged), 600 running, 300 stuck, 1,500 owners with
        // long names.
        let mut recs = failures(2000);
        for (i, r) in recs.iter_mut().enumerate() {
            r.job.owner = format!("{}-{i:04}", "owner-with-a-long-name".repeat(3));
        }
        for i in 0..900 {
            let mut r = record(
                running(&format!("running-{i:04}"), 1 + i as u32 % 20),
                i < 300,
            );
            r.job.owner = format!("other-owner-{i:04}");
            recs.push(r);
        }
        let acks: BTreeMap<JobKey, Ack> = (recs.iter().step_by(2).take(1000))
            .map(|r| {
                let ack = Ack {
                    user_id: 7,
                    user_name: "operator".into(),
                    at: Utc.with_ymd_and_hms(2024, 6, 26, 16, 5, 0).unwrap(),
                };
                (r.job.key(), ack)
            })
            .collect();
        let d = Digest::compute_naming(day(), berlin(), &recs, &health(0), 0, vec![], &acks, false);
        for (max, today) in [(DIGEST_MESSAGES_MAX, tomorrow()), (10, tomorrow())] {
            let posted = messages(render_digest(&d, today, max));
            assert!(posted.len() <= max, "{} > {max}", posted.len());
            for (name, total) in [
                ("Open failures (1000)", 1000),
                ("Acknowledged failures (1000)", 1000),
                ("Stuck (300)", 300),
                ("Still running (600)", 600),
                ("By owner (2900)", 2900),
            ] {
                let lines = lines_of(&posted, name);
                let (rest, listed) = lines.split_last().expect(name);
                let more: usize = rest
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|n| !n.is_empty())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(listed.len() + more, total, "{name}: {rest}");
                assert!(listed.iter().all(|l| l.starts_with("• ")), "{name}");
            }
        }
        // A digest older than `/failures` reaches says so.
        let late = day().checked_add_days(Days::new(40)).unwrap();
        let text = format!("{:?}", render_digest(&d, late, DIGEST_MESSAGES_MAX));
        assert!(
            text.contains("more (older than `/failures` reaches)"),
            "{text}"
        );
    }
}
