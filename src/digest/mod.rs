//! The daily digest: one day of restore jobs (a calendar day in the backup server's zone)
//! in numbers, with every failure, the jobs still running or stuck, a per-owner breakdown,
//! the poller's health and what still waits in the outbox.
//!
//! [`Digest::compute`] is a pure function over job records, unit-tested without sled;
//! [`Digest::from_store`] feeds it from the store. The result is plain serde data because it
//! travels through the outbox as JSON inside [`EventKind::Digest`], like any other event, so
//! a digest is delivered exactly once and survives a Discord outage. [`render_digest`] turns
//! it into embeds: a summary card first, then one card per list, where a long list
//! continues over as many cards as it needs instead of being cut; the ordinary
//! [`crate::render::pack`] spreads those cards over messages.

use crate::acks::{Ack, Acks};
use crate::cbs::model::local_in;
use crate::cbs::model::JobKey;
use crate::cbs::model::{StatusClass, END_TIME_FIELD, START_TIME_FIELD};
use crate::event::{ClassCounts, Event, EventKind};
use crate::render::{
    class_colour, code_span, counts_line, cut, escape_markdown, pack, plural, to_text,
    unreadable_value, Embed, EmbedField, RenderOptions, COLOUR_INFO, COLOUR_STUCK,
    EMBED_FIELD_VALUE_MAX_CHARS, MESSAGE_EMBED_TOTAL_MAX_CHARS,
};
use crate::schedule::CronSchedule;
use crate::store::{DayHealth, JobRecord, Store, StoreError};
use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the job list shows a job whose owner field is empty (a sub-admin's own user).
pub const NO_OWNER_LABEL: &str = "(no owner)";

/// A login, owner or backup-set name in a list line, after escaping (characters): one
/// absurdly long name must not push the rest of the list out of a card.
const LIST_NAME_MAX_CHARS: usize = 80;

/// One day of restore jobs, ready to tell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// The calendar day, in the backup server's zone.
    pub date: NaiveDate,
    /// The backup server's zone name (`Europe/Berlin`).
    pub timezone: String,
    /// Jobs per class; classes without jobs are left out.
    pub totals: ClassCounts,
    /// Successes and warnings over finished jobs, 0.0 to 1.0; `None` without finished jobs.
    pub success_rate: Option<f64>,
    /// Failures, partial failures and unknown outcomes, by time (end, else start).
    pub failures: Vec<DigestJob>,
    /// Jobs still running, no stuck notice sent, by start time.
    pub running: Vec<DigestJob>,
    /// Jobs still running that were reported as stuck, by start time.
    pub stuck: Vec<DigestJob>,
    /// Jobs per class for each owner; the empty owner is a user without one.
    pub owners: BTreeMap<String, ClassCounts>,
    pub health: DigestHealth,
    /// Events in the outbox when the digest was built (the digest itself not included).
    pub undelivered: usize,
    /// Channels Discord refuses to let the bot post in, as the sink names them.
    pub refused_channels: Vec<String>,
}

/// One job as the digest lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigestJob {
    /// The backup server, when several are watched (else empty, and not shown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
    pub login_name: String,
    pub owner: String,
    /// The backup-set name, or its ID when the server sent no name.
    pub backup_set: String,
    /// The status code exactly as the server sent it.
    pub raw_status: String,
    pub class: StatusClass,
    /// Wall-clock times as the server reported them (its offset kept).
    pub start_time: Option<DateTime<FixedOffset>>,
    pub end_time: Option<DateTime<FixedOffset>>,
    /// The start and end times as sent, when the server sent ones that could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_raw: Option<String>,
    /// Was running, then left out of the server's list: its outcome is unknown.
    #[serde(default)]
    pub vanished: bool,
    /// Who acknowledged the failure (the alert's **Acknowledge** button), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<DigestAck>,
}

/// An acknowledgement as the digest shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestAck {
    /// The Discord name of who pressed the button.
    pub by: String,
    /// When, in the digest's zone.
    pub at: DateTime<FixedOffset>,
}

/// The poller's day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestHealth {
    pub cycles: u32,
    pub request_errors: u32,
    /// Minutes the backup server counted as down, a started minute counted in full so a
    /// short outage does not read as none.
    pub outage_minutes: i64,
    /// Each backup server's own day, when several are watched (the fields above are their
    /// sums); empty with one server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerHealth>,
}

/// One backup server's poller day, when several are watched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    pub server: String,
    pub cycles: u32,
    pub request_errors: u32,
    pub outage_minutes: i64,
}

/// A started minute counts in full, so a short outage does not read as none.
fn outage_minutes(health: &DayHealth) -> i64 {
    (health.outage_secs.max(0) + 59) / 60
}

/// The poller's day on every configured backup server: the sum, and (with several
/// servers) each server's own, in the configuration's order.
pub fn day_health(
    store: &Store,
    date: NaiveDate,
) -> Result<(DayHealth, Vec<ServerHealth>), StoreError> {
    let servers = store.configured_servers()?;
    if servers.len() < 2 {
        return Ok((store.day_health(date)?, Vec::new()));
    }
    let mut total = DayHealth::default();
    let mut each = Vec::with_capacity(servers.len());
    for server in servers {
        let health = store.server_view(&server)?.day_health(date)?;
        total.cycles = total.cycles.saturating_add(health.cycles);
        total.request_errors = total.request_errors.saturating_add(health.request_errors);
        total.outage_secs = total.outage_secs.saturating_add(health.outage_secs);
        each.push(ServerHealth {
            cycles: health.cycles,
            request_errors: health.request_errors,
            outage_minutes: outage_minutes(&health),
            server,
        });
    }
    Ok((total, each))
}

impl DigestJob {
    fn from_record(record: &JobRecord, servers_named: bool) -> DigestJob {
        let job = &record.job;
        DigestJob {
            server: if servers_named {
                job.server.clone()
            } else {
                String::new()
            },
            login_name: job.login_name.clone(),
            owner: job.owner.clone(),
            backup_set: job.backup_set_label().to_owned(),
            raw_status: job.raw_status.clone(),
            class: job.class,
            start_time: job.start_time.map(|t| t.fixed_offset()),
            end_time: job.end_time.map(|t| t.fixed_offset()),
            start_raw: job.unreadable_field(START_TIME_FIELD).map(str::to_owned),
            end_raw: job.unreadable_field(END_TIME_FIELD).map(str::to_owned),
            vanished: record.vanished,
            acknowledged: None,
        }
    }
}

impl Digest {
    /// Builds the digest of `date` from the job records listed under it.
    pub fn compute(
        date: NaiveDate,
        tz: Tz,
        records: &[JobRecord],
        health: &DayHealth,
        undelivered: usize,
        refused_channels: Vec<String>,
    ) -> Digest {
        Digest::compute_naming(
            date,
            tz,
            records,
            health,
            undelivered,
            refused_channels,
            &BTreeMap::new(),
            false,
        )
    }

    /// [`Digest::compute`], with the failures' acknowledgements (by job), which the digest
    /// lists apart from the open failures; `servers_named`: each listed job says its backup
    /// server (several are watched).
    #[allow(clippy::too_many_arguments)]
    pub fn compute_naming(
        date: NaiveDate,
        tz: Tz,
        records: &[JobRecord],
        health: &DayHealth,
        undelivered: usize,
        refused_channels: Vec<String>,
        acks: &BTreeMap<JobKey, Ack>,
        servers_named: bool,
    ) -> Digest {
        let mut totals = ClassCounts::new();
        let mut owners: BTreeMap<String, ClassCounts> = BTreeMap::new();
        let mut failures = Vec::new();
        let mut running = Vec::new();
        let mut stuck = Vec::new();
        for record in records {
            let class = record.job.class;
            *totals.entry(class).or_default() += 1;
            *owners
                .entry(record.job.owner.clone())
                .or_default()
                .entry(class)
                .or_default() += 1;
            match class {
                StatusClass::Failure | StatusClass::PartialFailure | StatusClass::Unknown => {
                    let mut failure = DigestJob::from_record(record, servers_named);
                    failure.acknowledged = acks.get(&record.job.key()).map(|ack| DigestAck {
                        by: ack.user_name.clone(),
                        at: ack.at.with_timezone(&tz).fixed_offset(),
                    });
                    failures.push(failure);
                }
                StatusClass::Running if record.stuck_alerted => {
                    stuck.push(DigestJob::from_record(record, servers_named));
                }
                StatusClass::Running => running.push(DigestJob::from_record(record, servers_named)),
                StatusClass::Success | StatusClass::Warning | StatusClass::Cancelled => {}
            }
        }
        // Names and set break ties so the order does not depend on the store's key order.
        let tie = |j: &DigestJob| (j.login_name.clone(), j.backup_set.clone());
        failures.sort_by_key(|j| (j.end_time.or(j.start_time), tie(j)));
        running.sort_by_key(|j| (j.start_time, tie(j)));
        stuck.sort_by_key(|j| (j.start_time, tie(j)));

        let mut digest = Digest {
            date,
            timezone: tz.name().to_owned(),
            totals,
            success_rate: None,
            failures,
            running,
            stuck,
            owners,
            health: DigestHealth {
                cycles: health.cycles,
                request_errors: health.request_errors,
                outage_minutes: outage_minutes(health),
                servers: Vec::new(),
            },
            undelivered,
            refused_channels,
        };
        let finished = digest.finished_jobs();
        digest.success_rate =
            (finished > 0).then(|| digest.succeeded_jobs() as f64 / finished as f64);
        digest
    }

    /// Builds the digest of `date` from what the store knows now.
    pub fn from_store(
        store: &Store,
        date: NaiveDate,
        tz: Tz,
        refused_channels: Vec<String>,
    ) -> Result<Digest, StoreError> {
        let (health, servers) = day_health(store, date)?;
        let mut digest = Digest::compute_naming(
            date,
            tz,
            &store.jobs_on(date)?,
            &health,
            store.outbox_len(),
            refused_channels,
            &Acks::open(store)?.on(date)?,
            !servers.is_empty(),
        );
        digest.health.servers = servers;
        Ok(digest)
    }

    /// Every job of the day.
    pub fn total_jobs(&self) -> u64 {
        self.totals.values().map(|n| u64::from(*n)).sum()
    }

    /// Jobs that ended in success or with warnings: the restore did its work.
    pub fn succeeded_jobs(&self) -> u64 {
        [StatusClass::Success, StatusClass::Warning]
            .iter()
            .filter_map(|class| self.totals.get(class))
            .map(|n| u64::from(*n))
            .sum()
    }

    /// Jobs that have ended (all but the running ones).
    pub fn finished_jobs(&self) -> u64 {
        self.totals
            .iter()
            .filter(|(class, _)| class.is_finished())
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

/// Builds the digest of `date` and queues it in the outbox, so it is delivered like any
/// other event (and not lost while Discord is down).
pub fn queue_digest(
    store: &Store,
    date: NaiveDate,
    tz: Tz,
    refused_channels: Vec<String>,
    now: DateTime<Utc>,
) -> Result<Event, StoreError> {
    let digest = Digest::from_store(store, date, tz, refused_channels)?;
    store.push_event(EventKind::Digest(digest), now)
}

/// The days whose scheduled digest is due at `now` and not yet queued, oldest first.
///
/// A day's digest is due once `schedule` has fired during the next day (server zone), up
/// to `now`: a tick missed during a long cycle, a restart or an outage still counts. Days
/// up to and including `last_digested` are done. The oldest day considered is `max_days`
/// before today, so a long downtime posts at most that many late digests.
pub fn due_days(
    schedule: &CronSchedule,
    tz: Tz,
    now: DateTime<Utc>,
    max_days: u32,
    last_digested: Option<NaiveDate>,
) -> Vec<NaiveDate> {
    let today = now.with_timezone(&tz).date_naive();
    let oldest = today
        .checked_sub_days(Days::new(max_days.into()))
        .unwrap_or(today);
    let start_of = |day: NaiveDate| local_in(tz, day.and_time(NaiveTime::MIN)).map(|t| t.to_utc());
    oldest
        .iter_days()
        .take_while(|day| *day < today)
        .filter(|day| last_digested.is_none_or(|last| *day > last))
        .filter(|day| {
            // Did the schedule fire during the next day, by now?
            let (Some(next), Some(from)) = (day.succ_opt(), day.succ_opt().and_then(start_of))
            else {
                return false;
            };
            let until = next.succ_opt().and_then(start_of);
            schedule
                .next_after(from - chrono::Duration::nanoseconds(1))
                .is_some_and(|fire| fire <= now && until.is_none_or(|u| fire < u))
        })
        .collect()
}

/// Whether `day` is over at `now` in each of `zones`: a backup server whose zone is
/// behind the digest's is still polling its `day` when the digest's tick fires.
pub fn day_over_in(day: NaiveDate, zones: &[Tz], now: DateTime<Utc>) -> bool {
    let Some(next) = day.succ_opt() else {
        return false;
    };
    zones
        .iter()
        .all(|tz| local_in(*tz, next.and_time(NaiveTime::MIN)).is_some_and(|t| t <= now))
}

/// Queues the digest of every day [`due_days`] finds, oldest first, each with its day
/// recorded as digested in the same transaction. A day is held back until it is over in
/// every one of `other_zones` (the other backup servers' zones), so that a server behind
/// the digest's zone has its whole day in it: its digest goes out after the first tick
/// past that server's midnight. A fresh store (no day digested yet) records the latest due
/// day without posting: it has no history to digest. Returns the days queued.
pub fn catch_up(
    store: &Store,
    schedule: &CronSchedule,
    tz: Tz,
    now: DateTime<Utc>,
    max_days: u32,
    refused_channels: &[String],
    other_zones: &[Tz],
) -> Result<Vec<NaiveDate>, StoreError> {
    let last = store.last_digest_day()?;
    let due: Vec<NaiveDate> = due_days(schedule, tz, now, max_days, last)
        .into_iter()
        .take_while(|day| day_over_in(*day, other_zones, now))
        .collect();
    if last.is_none() {
        if let Some(latest) = due.last() {
            store.set_last_digest_day(*latest)?;
        }
        return Ok(Vec::new());
    }
    for day in &due {
        let digest = Digest::from_store(store, *day, tz, refused_channels.to_vec())?;
        store.push_digest(*day, EventKind::Digest(digest), now)?;
    }
    Ok(due)
}

/// The day before today in the backup server's zone: the day a digest sent now is about.
pub fn previous_day(now: DateTime<Utc>, tz: Tz) -> NaiveDate {
    let today = now.with_timezone(&tz).date_naive();
    // Only the first representable day has no predecessor; no clock reads that.
    today.pred_opt().unwrap_or(today)
}

/// Messages the scheduled digest takes at most, however busy the day.
pub const DIGEST_MESSAGES_MAX: usize = 3;
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
        timezone: chrono_tz::UTC,
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

/// The digest's lists, in order, with what each shows for its lines left out.
fn digest_lists(digest: &Digest, today: NaiveDate) -> Vec<List<'_>> {
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
struct List<'a> {
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
fn lay_out(lists: &[List<'_>], room: usize) -> Vec<Embed> {
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

/// The digest as plain text, as `restorewatch digest --print` shows it (as the scheduled
/// digest would post it on `today`).
pub fn digest_text(digest: &Digest, today: NaiveDate) -> String {
    let opts = RenderOptions {
        mention_role: None,
        // Packing does not read the zone; the digest's times already carry theirs.
        timezone: chrono_tz::UTC,
        servers_named: false,
    };
    // Time tags, if any, read in the digest's own zone.
    let zone = digest.timezone.parse().unwrap_or(chrono_tz::UTC);
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

/// `92.7%`, rounded down: a day with a failure must never read as 100%.
fn percent(rate: f64) -> String {
    format!("{:.1}%", (rate * 1000.0).floor() / 10.0)
}

/// A name from the backup server, escaped and kept short.
fn list_name(text: &str) -> String {
    cut(&escape_markdown(text), LIST_NAME_MAX_CHARS)
}

/// `13:25` on the digest's day, `2024-06-27 01:10` on another, `?` when unknown.
/// A time of the day as `HH:MM` (with its date when another), the text the server sent
/// when it could not be read, or `?`.
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
fn failure_line(job: &DigestJob, date: NaiveDate) -> String {
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
    format!(
        "• {}–{} {class}{code}: {}{acked}",
        clock(job.start_time, job.start_raw.as_deref(), date),
        clock(job.end_time, job.end_raw.as_deref(), date),
        who(job)
    )
}

/// `• since 12:23: obm / Files`
fn running_line(job: &DigestJob, date: NaiveDate) -> String {
    let since = clock(job.start_time, job.start_raw.as_deref(), date);
    format!("• since {since}: {}", who(job))
}

/// `• reseller-a: 12 jobs (10 success, 2 failure)`
fn owner_line(owner: &str, counts: &ClassCounts) -> String {
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
    use crate::cbs::model::RestoreJob;
    use crate::render::{
        render_event, wants_ping, EMBED_DESCRIPTION_MAX_CHARS, EMBED_FIELDS_MAX,
        EMBED_FIELD_NAME_MAX_CHARS, EMBED_FIELD_VALUE_MAX_CHARS, EMBED_TITLE_MAX_CHARS,
        MESSAGE_EMBEDS_MAX, MESSAGE_EMBED_TOTAL_MAX_CHARS,
    };
    use crate::store::CycleRecord;
    use crate::test_data::{self, field_value};
    use chrono::TimeZone;
    use std::collections::BTreeSet;

    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 6, 26).unwrap()
    }

    /// The day the test day's digest is posted.
    fn tomorrow() -> NaiveDate {
        day().succ_opt().unwrap()
    }

    /// A job of a Berlin server; times are `yyyy-MM-dd HH:mm:ss` local, `raw` its code.
    fn job(
        login: &str,
        owner: &str,
        set: &str,
        start: &str,
        end: Option<&str>,
        raw: &str,
    ) -> RestoreJob {
        RestoreJob {
            owner: owner.into(),
            backup_set_name: set.into(),
            ..test_data::job(login, &format!("id-{set}"), BERLIN, start, end, raw)
        }
    }

    /// A job that ended on the test day: started `hh:00`, ended half an hour later.
    fn ended(login: &str, owner: &str, hour: u32, raw: &str) -> RestoreJob {
        job(
            login,
            owner,
            &format!("set-{login}"),
            &format!("2024-06-26 {hour:02}:00:00"),
            Some(&format!("2024-06-26 {hour:02}:30:00")),
            raw,
        )
    }

    fn running(login: &str, hour: u32) -> RestoreJob {
        let start = format!("2024-06-26 {hour:02}:00:00");
        job(login, "", &format!("set-{login}"), &start, None, "")
    }

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
        let d = Digest::compute_naming(day(), BERLIN, &recs, &health(0), 0, vec![], &acks, false);
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
        let plain = Digest::compute(day(), BERLIN, &recs, &health(0), 0, vec![]);
        let plain = digest_text(&plain, tomorrow());
        assert!(plain.contains("== Failures (3) =="), "{plain}");
        assert!(!plain.contains("Open failures"));
    }

    fn record(job: RestoreJob, stuck_alerted: bool) -> JobRecord {
        let seen = Utc.with_ymd_and_hms(2024, 6, 26, 22, 0, 0).unwrap();
        JobRecord {
            job,
            date: day(),
            first_seen: seen,
            last_seen: seen,
            baseline: false,
            stuck_alerted,
            alerted: false,
            vanished: false,
        }
    }

    /// A varied day: 3 success, 1 warning, 1 cancelled, one failure of each failing kind
    /// (out of time order), two running and one stuck job.
    fn records() -> Vec<JobRecord> {
        vec![
            record(ended("s1", "res-a", 1, "RESTORE_STOP_SUCCESS"), false),
            record(ended("fail", "res-b", 15, "RESTORE_STOP_BY_ERROR"), false),
            record(ended("s2", "res-a", 2, "RESTORE_STOP_SUCCESS"), false),
            record(running("late", 20), false),
            record(ended("unk", "", 12, "RESTORE_STOP_WEIRD"), false),
            record(ended("s3", "", 3, "RESTORE_STOP_SUCCESS"), false),
            record(running("stuck", 1), true),
            record(
                ended("warn", "res-b", 4, "RESTORE_STOP_SUCCESS_WITH_WARNING"),
                false,
            ),
            record(
                ended("part", "res-a", 9, "RESTORE_STOP_SUCCESS_WITH_ERROR"),
                false,
            ),
            record(running("early", 18), false),
            record(ended("cxl", "res-b", 5, "RESTORE_STOP_BY_USER"), false),
        ]
    }

    fn health(outage_secs: i64) -> DayHealth {
        DayHealth {
            cycles: 288,
            request_errors: 3,
            outage_secs,
        }
    }

    fn logins(jobs: &[DigestJob]) -> Vec<&str> {
        jobs.iter().map(|j| j.login_name.as_str()).collect()
    }

    fn within_embed_limits(e: &Embed) {
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

    #[test]
    fn compute_counts_every_class_and_lists_in_time_order() {
        let d = Digest::compute(day(), BERLIN, &records(), &health(61), 4, vec![]);
        assert_eq!(d.date, day());
        assert_eq!(d.timezone, "Europe/Berlin");
        assert_eq!(
            d.totals,
            ClassCounts::from([
                (StatusClass::Success, 3),
                (StatusClass::Warning, 1),
                (StatusClass::PartialFailure, 1),
                (StatusClass::Failure, 1),
                (StatusClass::Cancelled, 1),
                (StatusClass::Running, 3),
                (StatusClass::Unknown, 1),
            ])
        );
        assert_eq!(
            (d.total_jobs(), d.finished_jobs(), d.succeeded_jobs()),
            (11, 8, 4)
        );
        // 3 success + 1 warning over 8 finished: cancelled jobs count as finished.
        assert_eq!(d.success_rate, Some(0.5));
        assert_eq!(logins(&d.failures), ["part", "unk", "fail"]);
        let unk = &d.failures[1];
        assert_eq!(
            (unk.raw_status.as_str(), unk.class, unk.backup_set.as_str()),
            ("RESTORE_STOP_WEIRD", StatusClass::Unknown, "set-unk")
        );
        assert_eq!(
            unk.end_time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-06-26T12:30:00+02:00")
        );
        assert_eq!(logins(&d.running), ["early", "late"]);
        assert_eq!(logins(&d.stuck), ["stuck"]);
        assert_eq!(
            d.owners,
            BTreeMap::from([
                (
                    String::new(),
                    ClassCounts::from([
                        (StatusClass::Success, 1),
                        (StatusClass::Running, 3),
                        (StatusClass::Unknown, 1),
                    ])
                ),
                (
                    "res-a".to_owned(),
                    ClassCounts::from([
                        (StatusClass::Success, 2),
                        (StatusClass::PartialFailure, 1),
                    ])
                ),
                (
                    "res-b".to_owned(),
                    ClassCounts::from([
                        (StatusClass::Warning, 1),
                        (StatusClass::Failure, 1),
                        (StatusClass::Cancelled, 1),
                    ])
                ),
            ])
        );
        assert_eq!(
            d.health,
            DigestHealth {
                cycles: 288,
                request_errors: 3,
                outage_minutes: 2,
                servers: Vec::new(),
            }
        );
        assert_eq!(d.undelivered, 4);
    }

    #[test]
    fn a_failure_with_an_unreadable_end_is_listed_with_the_text_sent() {
        let mut odd = ended("odd", "", 7, "RESTORE_STOP_BY_ERROR");
        odd.end_time = None;
        odd.unreadable = [(END_TIME_FIELD.to_owned(), "-0001-06-26 07:30:00".to_owned())].into();
        let d = Digest::compute(day(), BERLIN, &[record(odd, false)], &health(0), 0, vec![]);
        assert_eq!(logins(&d.failures), ["odd"]);
        assert_eq!(
            failure_line(&d.failures[0], day()),
            "• 07:00–`-0001-06-26 07:30:00` (unreadable) failure `RESTORE_STOP_BY_ERROR`: odd / set-odd"
        );
    }

    #[test]
    fn no_finished_job_has_no_success_rate_and_outage_minutes_round_up() {
        let only_running = [record(running("r", 8), false)];
        let d = Digest::compute(day(), BERLIN, &only_running, &health(0), 0, vec![]);
        assert_eq!(d.success_rate, None);
        assert_eq!(d.health.outage_minutes, 0);
        let empty = Digest::compute(day(), BERLIN, &[], &health(1), 0, vec![]);
        assert_eq!((empty.total_jobs(), empty.success_rate), (0, None));
        assert_eq!(empty.health.outage_minutes, 1);
        assert_eq!(
            Digest::compute(day(), BERLIN, &[], &health(120), 0, vec![])
                .health
                .outage_minutes,
            2
        );
    }

    #[test]
    fn due_days_follow_the_schedule_the_last_digested_day_and_the_bound() {
        let eight = CronSchedule::parse("0 8 * * *", BERLIN).unwrap();
        let d = |n: u32| NaiveDate::from_ymd_opt(2024, 6, n).unwrap();
        // 09:00 and 07:00 in Berlin on the 26th.
        let after_tick = Utc.with_ymd_and_hms(2024, 6, 26, 7, 0, 0).unwrap();
        let before_tick = Utc.with_ymd_and_hms(2024, 6, 26, 5, 0, 0).unwrap();
        assert_eq!(
            due_days(&eight, BERLIN, after_tick, 3, Some(d(24))),
            [d(25)]
        );
        assert_eq!(due_days(&eight, BERLIN, after_tick, 3, Some(d(25))), []);
        assert_eq!(
            due_days(&eight, BERLIN, before_tick, 3, Some(d(23))),
            [d(24)]
        );
        assert_eq!(
            due_days(&eight, BERLIN, after_tick, 3, Some(d(1))),
            [d(23), d(24), d(25)],
            "at most 3 days back, oldest first"
        );
        assert_eq!(
            due_days(&eight, BERLIN, after_tick, 1, None),
            [d(25)],
            "a fresh store"
        );
        // Mondays only: the days before other weekdays were never scheduled.
        let mondays = CronSchedule::parse("0 8 * * 1", BERLIN).unwrap();
        let monday = Utc.with_ymd_and_hms(2024, 6, 24, 7, 0, 0).unwrap();
        assert_eq!(due_days(&mondays, BERLIN, monday, 7, Some(d(1))), [d(23)]);
    }

    #[test]
    fn catch_up_queues_each_missed_day_once_and_a_fresh_store_starts_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let eight = CronSchedule::parse("0 8 * * *", BERLIN).unwrap();
        let at = |day: u32| Utc.with_ymd_and_hms(2024, 6, day, 7, 0, 0).unwrap();
        let d = |n: u32| NaiveDate::from_ymd_opt(2024, 6, n).unwrap();
        assert_eq!(
            catch_up(&store, &eight, BERLIN, at(20), 3, &[], &[]).unwrap(),
            []
        );
        assert_eq!(store.last_digest_day().unwrap(), Some(d(19)));
        assert_eq!(store.outbox_len(), 0);
        // Down from the 20th to the 26th: only the 3 days before the 26th are posted.
        let days = catch_up(&store, &eight, BERLIN, at(26), 3, &[], &[]).unwrap();
        assert_eq!(days, [d(23), d(24), d(25)]);
        let queued: Vec<NaiveDate> = store
            .pending_events(10)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Digest(digest) => Some(digest.date),
                _ => None,
            })
            .collect();
        assert_eq!(queued, days);
        assert_eq!(
            catch_up(&store, &eight, BERLIN, at(26), 3, &[], &[]).unwrap(),
            []
        );
        assert_eq!(store.outbox_len(), 3, "each day exactly once");
    }

    /// A second server eight hours behind Berlin (Los Angeles) is still in the 25th at
    /// the 08:00 tick on the 26th: that digest waits for the first tick after its
    /// midnight (09:00 in Berlin), and then goes out once.
    #[test]
    fn a_digest_waits_until_its_day_is_over_on_every_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let eight = CronSchedule::parse("0 8 * * *", BERLIN).unwrap();
        let la = [chrono_tz::America::Los_Angeles];
        let d = |n: u32| NaiveDate::from_ymd_opt(2024, 6, n).unwrap();
        store.set_last_digest_day(d(24)).unwrap();
        // 08:05 and 08:55 in Berlin on the 26th: 23:05 and 23:55 on the 25th in LA.
        for minute in [5, 55] {
            let now = Utc.with_ymd_and_hms(2024, 6, 26, 6, minute, 0).unwrap();
            assert_eq!(
                catch_up(&store, &eight, BERLIN, now, 3, &[], &la).unwrap(),
                []
            );
        }
        assert_eq!(store.outbox_len(), 0);
        // 09:00 in Berlin: midnight in LA.
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 7, 0, 0).unwrap();
        assert_eq!(
            catch_up(&store, &eight, BERLIN, now, 3, &[], &la).unwrap(),
            [d(25)]
        );
        assert_eq!(
            catch_up(&store, &eight, BERLIN, now, 3, &[], &la).unwrap(),
            []
        );
        assert_eq!(store.outbox_len(), 1);
        // A zone ahead of the digest's holds nothing back.
        let tokyo = [chrono_tz::Asia::Tokyo];
        assert!(day_over_in(
            d(25),
            &tokyo,
            Utc.with_ymd_and_hms(2024, 6, 26, 6, 5, 0).unwrap()
        ));
    }

    #[test]
    fn previous_day_is_taken_in_the_server_zone() {
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 23, 30, 0).unwrap();
        // 01:30 on the 27th in Berlin already: yesterday there is the 26th.
        assert_eq!(previous_day(now, BERLIN), day());
        assert_eq!(previous_day(now, chrono_tz::UTC), day().pred_opt().unwrap());
    }

    #[test]
    fn success_rate_rounds_down() {
        assert_eq!(percent(0.9996), "99.9%");
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
            BERLIN,
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
        let d = Digest::compute(day(), BERLIN, &[], &health(0), 0, vec![]);
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
        let d = Digest::compute(day(), BERLIN, &records(), &health(0), 0, vec![]);
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
                timezone: BERLIN,
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
            timezone: BERLIN,
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
        let d = Digest::compute(day(), BERLIN, &failures(2000), &health(0), 0, vec![]);
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
        let d = Digest::compute(day(), BERLIN, &failures(30), &health(0), 0, vec![]);
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
        let d = Digest::compute_naming(day(), BERLIN, &recs, &health(0), 0, vec![], &acks, false);
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

    #[test]
    fn from_store_counts_only_the_days_jobs_across_the_zone_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let alert: BTreeSet<StatusClass> = [StatusClass::Failure].into();
        let observe = |j: &RestoreJob, date: NaiveDate, now: DateTime<Utc>| {
            store
                .observe(j, date, &test_data::policy(now, &alert))
                .unwrap();
        };
        let next_day = day().succ_opt().unwrap();
        // 22:40 UTC on the 26th is 00:40 on the 27th in Berlin.
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 22, 40, 0).unwrap();
        let late_failure = job(
            "obm",
            "res",
            "Files",
            "2024-06-26 23:30:00",
            Some("2024-06-26 23:50:00"),
            "RESTORE_STOP_BY_ERROR",
        );
        let morning = ended("ok", "", 10, "RESTORE_STOP_SUCCESS");
        let stuck = running("slow", 8);
        // Started 00:30 on the 27th in Berlin, still the 26th in UTC: not the 26th's job.
        let after_midnight = job(
            "obm",
            "res",
            "Files",
            "2024-06-27 00:30:00",
            Some("2024-06-27 00:35:00"),
            "RESTORE_STOP_BY_ERROR",
        );
        observe(&morning, day(), now);
        observe(&stuck, day(), now - chrono::Duration::hours(12));
        observe(&stuck, day(), now);
        observe(&late_failure, day(), now);
        observe(&after_midnight, next_day, now);
        let cycle = CycleRecord {
            started_at: now,
            finished_at: now,
            users: 3,
            requests: 4,
            errors: 1,
            unreadable_items: 0,
        };
        store.record_cycle(&cycle, day(), 90).unwrap();
        store.record_cycle(&cycle, day(), 0).unwrap();
        store.record_cycle(&cycle, next_day, 600).unwrap();
        assert_eq!(
            store.outbox_len(),
            3,
            "two failure alerts and a stuck notice"
        );

        let d = Digest::from_store(&store, day(), BERLIN, vec!["#ops".into()]).unwrap();
        assert_eq!(d.total_jobs(), 3);
        assert_eq!(
            d.totals,
            ClassCounts::from([
                (StatusClass::Success, 1),
                (StatusClass::Failure, 1),
                (StatusClass::Running, 1),
            ])
        );
        assert_eq!(d.failures.len(), 1);
        assert_eq!(
            d.failures[0].start_time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-06-26T23:30:00+02:00")
        );
        assert_eq!(logins(&d.stuck), ["slow"]);
        assert!(d.running.is_empty());
        assert_eq!(
            d.health,
            DigestHealth {
                cycles: 2,
                request_errors: 2,
                outage_minutes: 2,
                servers: Vec::new(),
            }
        );
        assert_eq!(d.undelivered, 3);
        assert_eq!(d.refused_channels, ["#ops"]);
        let later = Digest::from_store(&store, next_day, BERLIN, vec![]).unwrap();
        assert_eq!((later.total_jobs(), later.failures.len()), (1, 1));

        // Queued, the digest goes through the outbox as JSON and reads the same after.
        queue_digest(&store, day(), BERLIN, vec!["#ops".into()], now).unwrap();
        let pending = store.pending_events(10).unwrap();
        assert_eq!(pending.len(), 4);
        let EventKind::Digest(queued) = &pending[3].kind else {
            panic!("the last queued event is not the digest: {:?}", pending[3]);
        };
        assert_eq!(digest_text(queued, tomorrow()), digest_text(&d, tomorrow()));
    }
}
