//! How each [`Event`] looks in the chat: one embed per event, built from plain data.
//!
//! Strings from the backup server are escaped here, at the one place they enter markdown;
//! the embed is then fitted to Discord's limits ([`Embed::fit`]).

use super::embed::{Embed, EmbedField, EMBED_DESCRIPTION_MAX_CHARS, EMBED_FIELD_VALUE_MAX_CHARS};
use super::text::ordinal;
use super::text::{
    code_span, cut, escape_markdown, escaped_or_dash, format_duration, format_size, format_time,
    plural, value_or_raw, DASH,
};
use super::times::{discord_time, discord_time_ago};
use super::RenderOptions;
use crate::cbs::model::{
    JobReport, RestoreJob, ServerTime, StatusClass, END_TIME_FIELD, RESTORE_SIZE_FIELD,
    START_TIME_FIELD,
};
use crate::digest::{render_digest, DIGEST_MESSAGES_MAX};
use crate::event::{
    BaselineUser, ClassCounts, CycleSummary, Event, EventKind, OutageReason, PollError, Repeat,
    StormJob,
};
use chrono::{DateTime, NaiveDate, Utc};

/// Embed colours (`0xRRGGBB`), Discord's own palette where it has one.
pub const COLOUR_FAILURE: u32 = 0xED4245;
pub const COLOUR_PARTIAL_FAILURE: u32 = 0xE67E22;
pub const COLOUR_UNKNOWN: u32 = 0x9B59B6;
pub const COLOUR_WARNING: u32 = 0xFEE75C;
pub const COLOUR_CANCELLED: u32 = 0x95A5A6;
pub const COLOUR_SUCCESS: u32 = 0x57F287;
pub const COLOUR_RUNNING: u32 = 0x3498DB;
/// A job running far too long: darker than partial failure, it is not an outcome yet.
pub const COLOUR_STUCK: u32 = 0xA84300;
/// Notices about the bot's own work (baselines, summaries without errors).
pub const COLOUR_INFO: u32 = 0x5865F2;

/// One database/VM/folder name in a list (characters); the rest of a long name is cut.
const LIST_ITEM_MAX_CHARS: usize = 200;
/// One poll error's message in the summary (characters).
const POLL_ERROR_MESSAGE_MAX_CHARS: usize = 300;

/// The embeds that show `event`: one, except a digest, whose lists may need several.
pub fn render_event(event: &Event, opts: &RenderOptions) -> Vec<Embed> {
    let embed = match &event.kind {
        EventKind::Digest(digest) => {
            // The reader starts from the day the digest was queued, in its zone.
            let zone: chrono_tz::Tz = digest.timezone.parse().unwrap_or(opts.timezone);
            let today = event.created_at.with_timezone(&zone).date_naive();
            let mut embeds = render_digest(digest, today, DIGEST_MESSAGES_MAX);
            if let Some(summary) = embeds.first_mut() {
                summary.timestamp = Some(event.created_at);
            }
            return embeds;
        }
        EventKind::JobFinished {
            job,
            repeat,
            report,
        } => job_finished(job, repeat.as_ref(), report.as_ref(), event.created_at),
        EventKind::JobStuck { job, running_secs } => job_stuck(job, *running_secs, event),
        EventKind::FailureStorm { owner, jobs } => {
            super::storm::storm_card(owner.as_deref(), jobs, event, opts.timezone)
        }
        EventKind::JobVanished { job, missing_since } => job_vanished(job, *missing_since, event),
        EventKind::Baseline {
            owner,
            users,
            would_alert,
            would_alert_total,
            ..
        } => {
            let today = event.created_at.with_timezone(&opts.timezone).date_naive();
            let total = (*would_alert_total).max(would_alert.len());
            let would_alert = WouldAlert {
                jobs: would_alert,
                total,
                today,
            };
            baseline(owner, users, &would_alert, event.created_at)
        }
        EventKind::CycleSummary(summary) => cycle_summary(summary, opts),
        EventKind::CbsUnreachable {
            since,
            reason,
            error,
            ..
        } => cbs_unreachable(*since, *reason, error, opts),
        EventKind::CbsRecovered {
            down_since,
            recovered_at,
            caught_up,
            ..
        } => cbs_recovered(*down_since, *recovered_at, caught_up, opts),
    };
    let mut embed = embed;
    if opts.servers_named {
        if let Some(server) = event_server(&event.kind).filter(|s| !s.is_empty()) {
            // In front, so that a long title cut to Discord's limit still names it; a card
            // without a title (one user's baseline) gets the server's name as its title.
            embed.title = if embed.title.is_empty() {
                escape_markdown(server)
            } else {
                format!("{} · {}", escape_markdown(server), embed.title)
            };
        }
    }
    vec![embed.fit()]
}

/// The backup server an event is about, when it is about one.
pub fn event_server(kind: &EventKind) -> Option<&str> {
    match kind {
        EventKind::JobFinished { job, .. }
        | EventKind::JobStuck { job, .. }
        | EventKind::JobVanished { job, .. } => Some(&job.server),
        EventKind::FailureStorm { jobs, .. } => jobs.first().map(|j| j.server.as_str()),
        EventKind::Baseline {
            server,
            would_alert,
            ..
        } => Some(server.as_str())
            .filter(|s| !s.is_empty())
            .or_else(|| would_alert.first().map(|j| j.server.as_str())),
        EventKind::CycleSummary(s) => Some(&s.server),
        EventKind::CbsUnreachable { server, .. } | EventKind::CbsRecovered { server, .. } => {
            server.as_deref()
        }
        EventKind::Digest(_) => None,
    }
}

/// Whether the event should ping the on-call role: failed, unknown and stuck jobs and an
/// unreachable backup server need a person; summaries, digests, baselines, recoveries and
/// jobs that ended well enough (success, warning, cancelled) do not (a digest's failures
/// were each alerted when they happened).
pub fn wants_ping(event: &Event) -> bool {
    match &event.kind {
        EventKind::JobFinished { job, .. } => matches!(
            job.class,
            StatusClass::Failure | StatusClass::PartialFailure | StatusClass::Unknown
        ),
        EventKind::JobStuck { .. }
        | EventKind::FailureStorm { .. }
        | EventKind::JobVanished { .. }
        | EventKind::CbsUnreachable { .. } => true,
        EventKind::Baseline { .. }
        | EventKind::CycleSummary(_)
        | EventKind::CbsRecovered { .. }
        | EventKind::Digest(_) => false,
    }
}

/// The colour of a job's class.
pub fn class_colour(class: StatusClass) -> u32 {
    match class {
        StatusClass::Failure => COLOUR_FAILURE,
        StatusClass::PartialFailure => COLOUR_PARTIAL_FAILURE,
        StatusClass::Unknown => COLOUR_UNKNOWN,
        StatusClass::Warning => COLOUR_WARNING,
        StatusClass::Cancelled => COLOUR_CANCELLED,
        StatusClass::Success => COLOUR_SUCCESS,
        StatusClass::Running => COLOUR_RUNNING,
    }
}

/// The title's opening words for a job that ended in `class`.
fn headline(class: StatusClass) -> &'static str {
    match class {
        StatusClass::Failure => "Restore failed",
        StatusClass::PartialFailure => "Restore partly failed",
        StatusClass::Unknown => "Restore ended with an unknown status",
        StatusClass::Warning => "Restore finished with warnings",
        StatusClass::Cancelled => "Restore cancelled",
        StatusClass::Success => "Restore succeeded",
        StatusClass::Running => "Restore running",
    }
}

/// `obm / Files`, escaped.
fn user_and_set(job: &RestoreJob) -> String {
    format!(
        "{} / {}",
        escape_markdown(&job.login_name),
        escape_markdown(job.backup_set_label())
    )
}

/// A job time as Discord's tag, which each reader sees in their own zone (`ago`: and how
/// long ago); else the text the server sent when it could not be read, or a dash.
fn time_or_dash(job: &RestoreJob, at: Option<ServerTime>, field: &str, ago: bool) -> String {
    let tag = |t: ServerTime| {
        let t = t.with_timezone(&Utc);
        if ago {
            discord_time_ago(t)
        } else {
            discord_time(t)
        }
    };
    value_or_raw(at, job.unreadable_field(field), tag, DASH)
}

/// A job card's footer: the server, and the job's times in the server's own zone (the
/// fields show them in each reader's zone).
fn job_footer(job: &RestoreJob) -> String {
    let mut parts = vec![job.server.clone()];
    if let Some(t) = job.start_time {
        parts.push(format!("started {}", format_time(&t)));
    }
    if let Some(t) = job.end_time {
        parts.push(format!("ended {}", format_time(&t)));
    }
    parts.join(" · ")
}

/// `failure (`RESTORE_STOP_BY_ERROR`)`: the label people read and the code to search for.
fn status_value(job: &RestoreJob) -> String {
    if job.raw_status.trim().is_empty() {
        job.class.label().to_owned()
    } else {
        format!("{} ({})", job.class.label(), code_span(&job.raw_status))
    }
}

/// `2024-06-26-13-25-13 (backup set 1687755057644)`: with the set ID, the job is
/// identifiable (the job ID alone repeats across sets).
fn job_value(job: &RestoreJob) -> String {
    format!(
        "{} (backup set {})",
        escape_markdown(&job.job_id),
        escape_markdown(&job.backup_set_id)
    )
}

/// Where the job ran and which one it is: the last fields of every job embed.
fn where_fields(job: &RestoreJob) -> [EmbedField; 3] {
    [
        EmbedField::new(
            "Client version",
            escaped_or_dash(job.client_version.as_deref()),
            true,
        ),
        EmbedField::new(
            "Destination",
            escaped_or_dash(job.destination_id.as_deref()),
            true,
        ),
        EmbedField::new("Job", job_value(job), true),
    ]
}

/// The job report's file count and size, and its last error/warning log lines (server
/// text, escaped, each cut so the field keeps to Discord's limit).
fn report_fields(report: &JobReport) -> Vec<EmbedField> {
    let mut fields = Vec::new();
    if let Some(n) = report.file_count {
        fields.push(EmbedField::new("Files", n.to_string(), true));
    }
    if let Some(bytes) = report.total_size {
        fields.push(EmbedField::new("Files size", format_size(bytes), true));
    }
    if !report.lines.is_empty() {
        let per_line = EMBED_FIELD_VALUE_MAX_CHARS / report.lines.len().max(1) - 1;
        let value = report
            .lines
            .iter()
            .map(|l| cut(&escape_markdown(l), per_line))
            .collect::<Vec<_>>()
            .join("\n");
        fields.push(EmbedField::new("Last log lines", value, false));
    }
    fields
}

fn job_finished(
    job: &RestoreJob,
    repeat: Option<&Repeat>,
    report: Option<&JobReport>,
    created_at: DateTime<Utc>,
) -> Embed {
    let mut fields = vec![
        EmbedField::new("Owner", escaped_or_dash(Some(&job.owner)), true),
        EmbedField::new("Status", status_value(job), true),
        EmbedField::new(
            "Duration",
            job.duration_secs()
                .map_or_else(|| DASH.to_owned(), format_duration),
            true,
        ),
        EmbedField::new(
            "Started",
            time_or_dash(job, job.start_time, START_TIME_FIELD, false),
            true,
        ),
        EmbedField::new(
            "Ended",
            time_or_dash(job, job.end_time, END_TIME_FIELD, true),
            true,
        ),
        EmbedField::new(
            "Restore size",
            value_or_raw(
                job.restore_size_bytes,
                job.unreadable_field(RESTORE_SIZE_FIELD),
                format_size,
                DASH,
            ),
            true,
        ),
    ];
    fields.extend(where_fields(job));
    if let Some(report) = report {
        fields.extend(report_fields(report));
    }
    // What was missed matters most, so those lists come first and keep their room when
    // the embed has to shrink.
    let lists = [
        ("Missed databases", &job.missed_databases),
        ("Missed virtual machines", &job.missed_virtual_machines),
        ("Missed public folders", &job.missed_public_folders),
        ("Restored databases", &job.success_databases),
        ("Restored virtual machines", &job.success_virtual_machines),
        ("Restored public folders", &job.success_public_folders),
    ];
    for (name, items) in lists {
        if !items.is_empty() {
            fields.push(EmbedField::new(
                format!("{name} ({})", items.len()),
                bullet_list(items, EMBED_FIELD_VALUE_MAX_CHARS),
                false,
            ));
        }
    }
    let mut description = if job.class == StatusClass::Unknown {
        "The backup server reported a status code restorewatch does not know. \
         Treat it as a failure until someone has looked at the job."
            .to_owned()
    } else {
        String::new()
    };
    if let Some(r) = repeat.filter(|r| r.count > 1) {
        if !description.is_empty() {
            description.push('\n');
        }
        description.push_str(&format!(
            "**{} failure in a row** since {}.",
            ordinal(r.count),
            r.since
        ));
    }
    Embed {
        title: format!("{}: {}", headline(job.class), user_and_set(job)),
        description,
        colour: class_colour(job.class),
        fields,
        footer: Some(job_footer(job)),
        timestamp: Some(job.end_time.map_or(created_at, |t| t.with_timezone(&Utc))),
    }
}

fn job_vanished(job: &RestoreJob, missing_since: DateTime<Utc>, event: &Event) -> Embed {
    let mut fields = vec![
        EmbedField::new("Owner", escaped_or_dash(Some(&job.owner)), true),
        EmbedField::new(
            "Started",
            time_or_dash(job, job.start_time, START_TIME_FIELD, true),
            true,
        ),
        EmbedField::new(
            "Missing for",
            format_duration((event.created_at - missing_since).num_seconds()),
            true,
        ),
    ];
    fields.extend(where_fields(job));
    Embed {
        title: format!("Restore vanished: {}", user_and_set(job)),
        description: "The job was running, and the backup server no longer lists it. Its \
                      outcome is unknown: check the job in CBS."
            .to_owned(),
        colour: COLOUR_UNKNOWN,
        fields,
        footer: Some(job_footer(job)),
        timestamp: Some(event.created_at),
    }
}

fn job_stuck(job: &RestoreJob, running_secs: i64, event: &Event) -> Embed {
    let running = format_duration(running_secs);
    let mut fields = vec![
        EmbedField::new("Owner", escaped_or_dash(Some(&job.owner)), true),
        EmbedField::new(
            "Started",
            time_or_dash(job, job.start_time, START_TIME_FIELD, true),
            true,
        ),
        EmbedField::new("Running for", running.as_str(), true),
    ];
    fields.extend(where_fields(job));
    Embed {
        title: format!(
            "Restore still running after {running}: {}",
            user_and_set(job)
        ),
        description: "The job has not ended yet. restorewatch reports it again once it ends."
            .to_owned(),
        colour: COLOUR_STUCK,
        fields,
        footer: Some(job_footer(job)),
        timestamp: Some(event.created_at),
    }
}

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
struct WouldAlert<'a> {
    jobs: &'a [StormJob],
    total: usize,
    today: NaiveDate,
}

/// One embed per owner however many users: a line per user for a few, counts for the owner
/// beyond [`BASELINE_USER_LINES_MAX`], and the recorded jobs that would have alerted.
fn baseline(
    owner: &str,
    users: &[BaselineUser],
    would_alert: &WouldAlert<'_>,
    at: DateTime<Utc>,
) -> Embed {
    let owner = if owner.trim().is_empty() {
        String::new()
    } else {
        format!(" (owner {})", escape_markdown(owner))
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
                escape_markdown(&one.login_name),
                recorded(&one.counts)
            ),
        ),
        few if few.len() <= BASELINE_USER_LINES_MAX => {
            let lines: Vec<String> = few
                .iter()
                .map(|u| {
                    format!(
                        "{}: {}",
                        escape_markdown(&u.login_name),
                        recorded(&u.counts)
                    )
                })
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
        let lines: Vec<String> = (would_alert.jobs.iter())
            .map(|j| {
                format!(
                    "{} · {} · {} · {}",
                    super::storm::ended_text(j),
                    escape_markdown(&j.login_name),
                    escape_markdown(&j.backup_set),
                    code_span(&j.raw_status)
                )
            })
            .collect();
        let pointer = super::storm::failures_pointer(would_alert.jobs, would_alert.today);
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

fn cycle_summary(s: &CycleSummary, opts: &RenderOptions) -> Embed {
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

fn cbs_unreachable(
    since: DateTime<Utc>,
    reason: OutageReason,
    error: &str,
    opts: &RenderOptions,
) -> Embed {
    let (title, advice) = match reason {
        OutageReason::Unreachable => (
            "Backup server unreachable",
            "restorewatch keeps trying every cycle and posts once it answers again. \
             Jobs that end meanwhile are reported then.",
        ),
        OutageReason::AuthFailed => (
            "Backup server rejects the API password",
            "Check the API (system) user name and password restorewatch is configured with, \
             and that the user has the Admin, API or Read-Only API role in CBS.",
        ),
        OutageReason::PasswordExpired => (
            "Backup server API password expired",
            "The API user's password has expired in CBS, so no restore jobs can be checked. \
             Change the API user's password in CBS (web console, system users), then put \
             the new password into restorewatch's configuration.",
        ),
    };
    Embed {
        title: title.to_owned(),
        description: format!("Since {}. {advice}", discord_time_ago(since)),
        colour: COLOUR_FAILURE,
        fields: vec![EmbedField::new(
            "Error",
            escaped_or_dash(Some(error)),
            false,
        )],
        footer: Some(format!(
            "Since {}",
            format_time(&since.with_timezone(&opts.timezone))
        )),
        timestamp: Some(since),
    }
}

fn cbs_recovered(
    down_since: DateTime<Utc>,
    recovered_at: DateTime<Utc>,
    caught_up: &[chrono::NaiveDate],
    opts: &RenderOptions,
) -> Embed {
    let zone = |at: DateTime<Utc>| format_time(&at.with_timezone(&opts.timezone));
    let caught_up = if caught_up.is_empty() {
        "No earlier date needed catching up.".to_owned()
    } else {
        let dates: Vec<String> = caught_up.iter().map(|d| d.to_string()).collect();
        format!("Caught up on {}.", dates.join(", "))
    };
    Embed {
        title: "Backup server answers again".to_owned(),
        description: format!(
            "It was unreachable for {}, from {} to {}. {caught_up} Jobs that ended \
             meanwhile are reported as the cycles pick them up.",
            format_duration((recovered_at - down_since).num_seconds()),
            discord_time(down_since),
            discord_time(recovered_at),
        ),
        colour: COLOUR_SUCCESS,
        footer: Some(format!(
            "Down from {} to {}",
            zone(down_since),
            zone(recovered_at)
        )),
        timestamp: Some(recovered_at),
        ..Embed::default()
    }
}

/// `• name` lines within `max_chars`; what does not fit is counted, with where to see it.
fn bullet_list(items: &[String], max_chars: usize) -> String {
    let lines: Vec<String> = items
        .iter()
        .map(|item| format!("• {}", cut(&escape_markdown(item), LIST_ITEM_MAX_CHARS)))
        .collect();
    lines_within(&lines, max_chars, MORE_IN_CBS)
}

/// `• obm, 2024-06-26: message` lines within `max_chars`; the log has every one.
fn error_list(errors: &[PollError], max_chars: usize) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "• {}, {}: {}",
                cut(&escape_markdown(&e.login_name), LIST_ITEM_MAX_CHARS),
                e.date.format("%Y-%m-%d"),
                cut(&escape_markdown(&e.message), POLL_ERROR_MESSAGE_MAX_CHARS),
            )
        })
        .collect();
    lines_within(&lines, max_chars, MORE_IN_LOG)
}

/// Where the rest of a job's list can be seen, after `… and N more`.
const MORE_IN_CBS: &str = " (the job in CBS lists all)";
/// Where the rest of a cycle's errors can be read: each is logged with its user and date.
const MORE_IN_LOG: &str = " (each is in restorewatch's log)";

/// Joins whole lines while they fit in `max_chars`, keeping room for the closing
/// `… and N more{where_}` line that says how many were left out and where they are.
fn lines_within(lines: &[String], max_chars: usize, where_: &str) -> String {
    lines_of_within(lines, lines.len(), max_chars, where_)
}

/// [`lines_within`] for the first `lines` of `total` items: the count of those left out
/// includes the items beyond `lines`.
fn lines_of_within(lines: &[String], total: usize, max_chars: usize, where_: &str) -> String {
    let beyond = total.saturating_sub(lines.len());
    let more = |left: usize| format!("… and {} more{where_}", left + beyond);
    let mut out = String::new();
    let mut used = 0;
    for (i, line) in lines.iter().enumerate() {
        let sep = usize::from(i > 0);
        let left_after = lines.len() - i - 1;
        let tail = if left_after + beyond > 0 {
            1 + more(left_after).chars().count()
        } else {
            0
        };
        let len = line.chars().count();
        if used + sep + len + tail > max_chars {
            let tail = more(lines.len() - i);
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&tail);
            // Only when even the first line did not fit can this be over: cut it then.
            return cut(&out, max_chars);
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line);
        used += sep + len;
    }
    if beyond > 0 {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&more(0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::embed::{
        EMBED_FIELDS_MAX, EMBED_FIELD_NAME_MAX_CHARS, EMBED_TITLE_MAX_CHARS,
        MESSAGE_EMBED_TOTAL_MAX_CHARS,
    };
    use crate::render::text::unescape_markdown;
    use crate::test_data::{self, field_value};
    use chrono::{NaiveDate, TimeZone};
    use chrono_tz::Tz;

    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    fn opts() -> RenderOptions {
        RenderOptions {
            mention_role: Some(42),
            timezone: BERLIN,
            servers_named: false,
        }
    }

    fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 26, h, m, s).unwrap()
    }

    /// A failed restore as a CBS in Berlin reports it.
    fn failed_job() -> RestoreJob {
        RestoreJob {
            server: "cbs-main".into(),
            owner: "reseller-a".into(),
            backup_set_name: "Files".into(),
            restore_size_bytes: Some(1_610_612_736),
            client_version: Some("9.11.0.0".into()),
            destination_id: Some("1687755083984".into()),
            success_databases: vec!["sales".into()],
            missed_databases: vec!["hr".into(), "payroll".into()],
            ..test_data::job(
                "obm",
                "1687755057644",
                BERLIN,
                "2024-06-26 12:23:12",
                Some("2024-06-26 13:25:14"),
                "RESTORE_STOP_BY_ERROR",
            )
        }
    }

    fn event(kind: EventKind) -> Event {
        Event {
            id: 7,
            created_at: utc(11, 30, 0),
            kind,
        }
    }

    fn one(kind: EventKind) -> Embed {
        let mut embeds = render_event(&event(kind), &opts());
        assert_eq!(embeds.len(), 1);
        embeds.remove(0)
    }

    #[test]
    fn unreadable_fields_show_as_sent() {
        let mut job = failed_job();
        job.end_time = None;
        job.restore_size_bytes = None;
        job.unreadable = [
            (END_TIME_FIELD.to_owned(), "-0001-06-26 13:25:14".to_owned()),
            (RESTORE_SIZE_FIELD.to_owned(), "n/a".to_owned()),
        ]
        .into();
        let e = one(EventKind::JobFinished {
            job,
            repeat: None,
            report: None,
        });
        assert_eq!(e.title, "Restore failed: obm / Files");
        assert_eq!(
            field_value(&e, "Ended"),
            "`-0001-06-26 13:25:14` (unreadable)"
        );
        assert_eq!(field_value(&e, "Restore size"), "`n/a` (unreadable)");
        assert_eq!(field_value(&e, "Duration"), DASH);
    }

    #[test]
    fn failure_embed_has_every_field() {
        let e = one(EventKind::JobFinished {
            job: failed_job(),
            repeat: None,
            report: None,
        });
        assert_eq!(e.title, "Restore failed: obm / Files");
        assert_eq!(e.colour, COLOUR_FAILURE);
        assert_eq!(e.description, "");
        let names: Vec<&str> = e.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Owner",
                "Status",
                "Duration",
                "Started",
                "Ended",
                "Restore size",
                "Client version",
                "Destination",
                "Job",
                "Missed databases (2)",
                "Restored databases (1)",
            ]
        );
        assert_eq!(field_value(&e, "Owner"), "reseller-a");
        assert_eq!(
            field_value(&e, "Status"),
            "failure (`RESTORE_STOP_BY_ERROR`)"
        );
        assert_eq!(field_value(&e, "Duration"), "1h 02m");
        // Discord shows these in each reader's zone; the footer keeps the server's.
        assert_eq!(field_value(&e, "Started"), "<t:1719397392:f>");
        assert_eq!(
            field_value(&e, "Ended"),
            "<t:1719401114:f> (<t:1719401114:R>)"
        );
        assert_eq!(field_value(&e, "Restore size"), "1.50 GiB");
        assert_eq!(field_value(&e, "Client version"), "9.11.0.0");
        assert_eq!(field_value(&e, "Destination"), "1687755083984");
        assert_eq!(
            field_value(&e, "Job"),
            "2024-06-26-12-23-12 (backup set 1687755057644)"
        );
        assert_eq!(field_value(&e, "Missed databases (2)"), "• hr\n• payroll");
        assert_eq!(field_value(&e, "Restored databases (1)"), "• sales");
        assert_eq!(
            e.footer.as_deref(),
            Some(
                "cbs-main · started 2024-06-26 12:23:12 (CEST) · ended 2024-06-26 13:25:14 (CEST)"
            )
        );
        // The job's end, 13:25:14 in Berlin summer time.
        assert_eq!(e.timestamp, Some(utc(11, 25, 14)));
        assert!(e.fields[..9].iter().all(|f| f.inline));
    }

    #[test]
    fn missing_values_show_a_dash() {
        let mut job = failed_job();
        job.owner = String::new();
        job.client_version = None;
        job.destination_id = None;
        job.end_time = None;
        job.missed_databases.clear();
        job.success_databases.clear();
        let e = one(EventKind::JobFinished {
            job,
            repeat: None,
            report: None,
        });
        for name in [
            "Owner",
            "Client version",
            "Destination",
            "Ended",
            "Duration",
        ] {
            assert_eq!(field_value(&e, name), DASH, "{name}");
        }
        assert_eq!(e.fields.len(), 9, "no empty lists");
        assert_eq!(e.timestamp, Some(utc(11, 30, 0)), "falls back to the event");
    }

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        const HOSTILE: &str = "@everyone **x** <@&1> [a](http://evil)";
        let mut job = failed_job();
        job.login_name = HOSTILE.into();
        job.owner = HOSTILE.into();
        job.backup_set_name = HOSTILE.into();
        job.client_version = Some(HOSTILE.into());
        job.destination_id = Some(HOSTILE.into());
        job.raw_status = HOSTILE.into();
        job.class = StatusClass::Unknown;
        job.job_id = HOSTILE.into();
        job.missed_virtual_machines = vec![HOSTILE.into()];
        let e = one(EventKind::JobFinished {
            job,
            repeat: None,
            report: None,
        });
        let texts = std::iter::once(e.title.as_str()).chain(
            e.fields
                .iter()
                .flat_map(|f| [f.name.as_str(), f.value.as_str()]),
        );
        for text in texts {
            assert!(!text.contains("@everyone"), "{text}");
            assert!(!text.contains("<@&"), "{text}");
            // Outside the status code span, markdown is escaped.
            if !text.contains('`') {
                assert!(!text.contains("**"), "{text}");
                assert!(!text.contains("[a]("), "{text}");
            }
        }
        assert_eq!(
            unescape_markdown(&e.title),
            format!("Restore ended with an unknown status: {HOSTILE} / {HOSTILE}")
        );
    }

    #[test]
    fn huge_names_and_lists_stay_within_every_limit() {
        let mut job = failed_job();
        job.backup_set_name = "*".repeat(5000);
        job.login_name = "_".repeat(300);
        job.raw_status = "X".repeat(5000);
        job.missed_databases = (0..2000).map(|i| format!("db_{i:04}")).collect();
        job.missed_virtual_machines = (0..2000).map(|i| "v".repeat(i % 300)).collect();
        job.missed_public_folders = job.missed_databases.clone();
        job.success_databases = job.missed_databases.clone();
        job.success_virtual_machines = job.missed_databases.clone();
        job.success_public_folders = job.missed_databases.clone();
        let e = one(EventKind::JobFinished {
            job,
            repeat: None,
            report: None,
        });
        assert!(e.title.chars().count() <= EMBED_TITLE_MAX_CHARS);
        assert!(e.fields.len() <= EMBED_FIELDS_MAX);
        for f in &e.fields {
            assert!(f.name.chars().count() <= EMBED_FIELD_NAME_MAX_CHARS);
            assert!(f.value.chars().count() <= EMBED_FIELD_VALUE_MAX_CHARS);
        }
        assert!(e.char_count() <= MESSAGE_EMBED_TOTAL_MAX_CHARS);
        let title_body = e.title.trim_end_matches('…');
        assert_eq!(
            title_body.chars().rev().take_while(|&c| c == '\\').count() % 2,
            0
        );
        // Every field survived; the status and times are untouched.
        assert_eq!(e.fields.len(), 15);
        assert_eq!(
            field_value(&e, "Ended"),
            "<t:1719401114:f> (<t:1719401114:R>)"
        );
        let missed = &e.fields[9];
        assert_eq!(missed.name, "Missed databases (2000)");
        assert!(missed.value.starts_with("• db\\_0000\n• db\\_0001\n"));
    }

    #[test]
    fn a_long_list_alone_ends_with_how_many_were_left_out() {
        let items: Vec<String> = (0..2000).map(|i| format!("db{i:04}")).collect();
        let list = bullet_list(&items, EMBED_FIELD_VALUE_MAX_CHARS);
        assert!(list.chars().count() <= EMBED_FIELD_VALUE_MAX_CHARS);
        let shown = list.lines().filter(|l| l.starts_with("• ")).count();
        assert_eq!(
            list.lines().last().unwrap(),
            format!("… and {} more (the job in CBS lists all)", 2000 - shown)
        );
        assert_eq!(bullet_list(&items[..2], 1024), "• db0000\n• db0001");
    }

    #[test]
    fn colours_by_class() {
        for (class, colour) in [
            (StatusClass::Failure, 0xED4245),
            (StatusClass::PartialFailure, 0xE67E22),
            (StatusClass::Unknown, 0x9B59B6),
            (StatusClass::Warning, 0xFEE75C),
            (StatusClass::Cancelled, 0x95A5A6),
            (StatusClass::Success, 0x57F287),
        ] {
            let mut job = failed_job();
            job.class = class;
            assert_eq!(
                one(EventKind::JobFinished {
                    job,
                    repeat: None,
                    report: None
                })
                .colour,
                colour,
                "{class}"
            );
        }
    }

    #[test]
    fn pings_only_for_what_needs_a_person() {
        let finished = |class| {
            let mut job = failed_job();
            job.class = class;
            event(EventKind::JobFinished {
                job,
                repeat: None,
                report: None,
            })
        };
        assert!(wants_ping(&finished(StatusClass::Failure)));
        assert!(wants_ping(&finished(StatusClass::PartialFailure)));
        assert!(wants_ping(&finished(StatusClass::Unknown)));
        assert!(!wants_ping(&finished(StatusClass::Warning)));
        assert!(!wants_ping(&finished(StatusClass::Success)));
        assert!(wants_ping(&event(EventKind::JobStuck {
            job: failed_job(),
            running_secs: 13 * 3600,
        })));
        assert!(wants_ping(&event(EventKind::CbsUnreachable {
            server: None,
            since: utc(10, 0, 0),
            reason: OutageReason::Unreachable,
            error: "timeout".into(),
        })));
        assert!(!wants_ping(&event(EventKind::CbsRecovered {
            server: None,
            down_since: utc(10, 0, 0),
            recovered_at: utc(11, 0, 0),
            caught_up: vec![],
        })));
        assert!(!wants_ping(&event(EventKind::CycleSummary(
            CycleSummary::default()
        ))));
        assert!(!wants_ping(&event(EventKind::Baseline {
            owner: String::new(),
            users: Vec::new(),
            would_alert: Vec::new(),
            would_alert_total: 0,
            server: String::new(),
        })));
    }

    #[test]
    fn stuck_notice_says_how_long() {
        let mut job = failed_job();
        job.end_time = None;
        job.raw_status = String::new();
        job.class = StatusClass::Running;
        let e = one(EventKind::JobStuck {
            job,
            running_secs: 13 * 3600,
        });
        assert_eq!(e.title, "Restore still running after 13h: obm / Files");
        assert_eq!(e.colour, COLOUR_STUCK);
        assert_eq!(field_value(&e, "Running for"), "13h");
        assert_eq!(
            field_value(&e, "Started"),
            "<t:1719397392:f> (<t:1719397392:R>)"
        );
        assert_eq!(
            e.footer.as_deref(),
            Some("cbs-main · started 2024-06-26 12:23:12 (CEST)")
        );
    }

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

    #[test]
    fn with_several_servers_every_baseline_names_its_server_even_untitled() {
        let named = RenderOptions {
            servers_named: true,
            ..opts()
        };
        let baseline = |logins: &[&str]| EventKind::Baseline {
            owner: String::new(),
            users: logins
                .iter()
                .map(|l| BaselineUser {
                    login_name: (*l).into(),
                    counts: ClassCounts::new(),
                })
                .collect(),
            would_alert: Vec::new(),
            would_alert_total: 0,
            server: "eu-1".into(),
        };
        let title = |kind| render_event(&event(kind), &named).remove(0).title;
        assert_eq!(title(baseline(&["obm"])), "eu-1");
        assert_eq!(title(baseline(&["a", "b"])), "eu-1 · Now watching 2 users");
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

    #[test]
    fn expired_password_says_what_to_do() {
        let e = one(EventKind::CbsUnreachable {
            server: None,
            since: utc(6, 0, 0),
            reason: OutageReason::PasswordExpired,
            error: "Your password has expired".into(),
        });
        assert_eq!(e.title, "Backup server API password expired");
        assert!(e
            .description
            .starts_with("Since <t:1719381600:f> (<t:1719381600:R>). "));
        assert_eq!(
            e.footer.as_deref(),
            Some("Since 2024-06-26 08:00:00 (CEST)")
        );
        assert!(e
            .description
            .contains("Change the API user's password in CBS"));
        assert_eq!(field_value(&e, "Error"), "Your password has expired");
        assert_eq!(e.colour, COLOUR_FAILURE);
    }

    #[test]
    fn outage_reasons_have_their_own_titles() {
        let title = |reason| {
            one(EventKind::CbsUnreachable {
                server: None,
                since: utc(6, 0, 0),
                reason,
                error: "x".into(),
            })
            .title
        };
        assert_eq!(
            title(OutageReason::Unreachable),
            "Backup server unreachable"
        );
        assert_eq!(
            title(OutageReason::AuthFailed),
            "Backup server rejects the API password"
        );
    }

    #[test]
    fn recovered_notice_tells_the_outage_length() {
        let e = one(EventKind::CbsRecovered {
            server: None,
            down_since: utc(9, 58, 0),
            recovered_at: utc(11, 0, 0),
            caught_up: vec![
                NaiveDate::from_ymd_opt(2024, 6, 24).unwrap(),
                NaiveDate::from_ymd_opt(2024, 6, 25).unwrap(),
            ],
        });
        assert_eq!(e.title, "Backup server answers again");
        assert!(e.description.starts_with(
            "It was unreachable for 1h 02m, from <t:1719395880:f> to <t:1719399600:f>. \
             Caught up on 2024-06-24, 2024-06-25."
        ));
        assert_eq!(
            e.footer.as_deref(),
            Some("Down from 2024-06-26 11:58:00 (CEST) to 2024-06-26 13:00:00 (CEST)")
        );
        assert_eq!(e.colour, COLOUR_SUCCESS);
    }

    #[test]
    fn a_rendered_failure_reads_well_as_text() {
        let mut job = failed_job();
        job.backup_set_name = "Files_[2024]".into();
        let embeds = render_event(
            &event(EventKind::JobFinished {
                job,
                repeat: None,
                report: None,
            }),
            &opts(),
        );
        let packed = crate::render::pack(vec![(true, embeds)], &opts());
        let text = crate::render::to_text(&packed[0].message, BERLIN);
        assert!(text.starts_with("@role:42 1 alert\n\n== Restore failed: obm / Files_[2024] ==\n"));
        assert!(text.contains("\nOwner: reseller-a\n"));
        assert!(text.contains("\nMissed databases (2):\n  • hr\n  • payroll\n"));
        // The console has no Discord markup: times read in the configured zone.
        assert!(
            text.contains("\nStarted: 2024-06-26 12:23:12 (CEST)\n"),
            "{text}"
        );
        assert!(
            text.contains("\nEnded: 2024-06-26 13:25:14 (CEST)\n"),
            "{text}"
        );
        assert!(!text.contains("<t:"), "{text}");
        assert!(text.ends_with("\n-- cbs-main · started 2024-06-26 12:23:12 (CEST) · ended 2024-06-26 13:25:14 (CEST)"), "{text}");
        assert!(!text.contains('\\'), "{text}");
    }

    #[test]
    fn failure_alert_shows_report_details_escaped_and_cut() {
        let report = JobReport {
            file_count: Some(1234),
            total_size: Some(5 * 1024 * 1024),
            lines: vec![
                "[ERROR] Cannot write *data*.db: @everyone".to_owned(),
                "x".repeat(2000),
            ],
        };
        let e = one(EventKind::JobFinished {
            job: failed_job(),
            repeat: None,
            report: Some(report),
        });
        let field = |name: &str| {
            e.fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.value.clone())
        };
        assert_eq!(field("Files").as_deref(), Some("1234"));
        assert!(field("Files size").is_some());
        let logs = field("Last log lines").expect("log lines shown");
        assert!(logs.contains(r"\*data\*.db"), "{logs}");
        assert!(!logs.contains("@everyone"), "{logs}");
        assert!(
            logs.chars().count() <= EMBED_FIELD_VALUE_MAX_CHARS,
            "{}",
            logs.len()
        );
        let plain = one(EventKind::JobFinished {
            job: failed_job(),
            repeat: None,
            report: None,
        });
        assert!(plain
            .fields
            .iter()
            .all(|f| f.name != "Last log lines" && f.name != "Files"));
    }
}
