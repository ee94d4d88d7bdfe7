//! The cards for one restore job: finished (with its outcome, report and missed items),
//! still running far too long, or vanished from the server's list. Every job card ends with
//! the same "where" fields and a footer with the server's own times.

use super::lists::bullet_list;
use super::{class_colour, COLOUR_STUCK, COLOUR_UNKNOWN};
use crate::cbs::model::{
    JobReport, RestoreJob, ServerTime, StatusClass, END_TIME_FIELD, RESTORE_SIZE_FIELD,
    START_TIME_FIELD,
};
use crate::event::{Event, Repeat};
use crate::render::embed::{Embed, EmbedField, EMBED_FIELD_VALUE_MAX_CHARS};
use crate::render::text::{
    code_span, cut, escape_markdown, escaped_or_dash, format_duration, format_size, format_time,
    ordinal, value_or_raw, DASH, ENDED_BEFORE_START,
};
use crate::render::times::{discord_time, discord_time_ago};
use chrono::{DateTime, Utc};

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

/// How long the job took; a dash when a time is missing, and no made-up `0s` when the
/// server's end is before its start.
fn duration_value(job: &RestoreJob) -> String {
    match job.duration_secs() {
        Some(secs) => format_duration(secs),
        None if job.ends_before_start() => format!("{DASH} ({ENDED_BEFORE_START})"),
        None => DASH.to_owned(),
    }
}

pub(super) fn job_finished(
    job: &RestoreJob,
    repeat: Option<&Repeat>,
    report: Option<&JobReport>,
    was_vanished: bool,
    created_at: DateTime<Utc>,
) -> Embed {
    let mut fields = vec![
        EmbedField::new("Owner", escaped_or_dash(Some(&job.owner)), true),
        EmbedField::new("Status", status_value(job), true),
        EmbedField::new("Duration", duration_value(job), true),
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
    if was_vanished {
        if !description.is_empty() {
            description.push('\n');
        }
        description.push_str(
            "restorewatch reported this job vanished earlier (outcome unknown); \
             the backup server now lists its end.",
        );
    }
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

pub(super) fn job_vanished(job: &RestoreJob, missing_since: DateTime<Utc>, event: &Event) -> Embed {
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

pub(super) fn job_stuck(job: &RestoreJob, running_secs: i64, event: &Event) -> Embed {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{berlin, event, failed_job, finished, one, opts, utc};
    use super::super::{render_event, COLOUR_FAILURE};
    use super::*;
    use crate::event::EventKind;
    use crate::render::embed::{
        EMBED_FIELDS_MAX, EMBED_FIELD_NAME_MAX_CHARS, EMBED_TITLE_MAX_CHARS,
        MESSAGE_EMBED_TOTAL_MAX_CHARS,
    };
    use crate::render::text::unescape_markdown;
    use crate::test_data::field_value;

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
        let e = one(finished(job));
        assert_eq!(e.title, "Restore failed: obm / Files");
        assert_eq!(
            field_value(&e, "Ended"),
            "`-0001-06-26 13:25:14` (unreadable)"
        );
        assert_eq!(field_value(&e, "Restore size"), "`n/a` (unreadable)");
        assert_eq!(field_value(&e, "Duration"), DASH);
    }

    /// An end before the start (a server clock set back) shows no duration, not `0s`.
    #[test]
    fn an_end_before_the_start_shows_no_duration() {
        let mut job = failed_job();
        let start = job.start_time.unwrap();
        job.end_time = Some(start - chrono::Duration::minutes(5));
        assert_eq!(job.duration_secs(), None);
        let e = one(finished(job));
        assert_eq!(
            field_value(&e, "Duration"),
            format!("{DASH} (ended before it started)")
        );
    }

    #[test]
    fn failure_embed_has_every_field() {
        let e = one(finished(failed_job()));
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
        let e = one(finished(job));
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
        let e = one(finished(job));
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
        let e = one(finished(job));
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
    fn a_rendered_failure_reads_well_as_text() {
        let mut job = failed_job();
        job.backup_set_name = "Files_[2024]".into();
        let embeds = render_event(&event(finished(job)), &opts());
        let packed = crate::render::pack(vec![(true, embeds)], &opts());
        let text = crate::render::to_text(&packed[0].message, berlin());
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
            listed_on: None,
            was_vanished: false,
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
        let plain = one(finished(failed_job()));
        assert!(plain
            .fields
            .iter()
            .all(|f| f.name != "Last log lines" && f.name != "Files"));
    }

    #[test]
    fn a_job_reported_vanished_before_says_so() {
        let e = one(EventKind::JobFinished {
            job: failed_job(),
            repeat: None,
            report: None,
            listed_on: None,
            was_vanished: true,
        });
        assert!(
            e.description.contains("reported this job vanished earlier"),
            "{e:?}"
        );
    }
}
