//! `/status`: is the bot healthy? The last poll cycle, the next one, the CBS's health,
//! what waits in the outbox and the channels (or the token) Discord refuses, the recent
//! changes made from chat and who made them, the interactions refused for coming from
//! outside the team's server, the store's size, the version and the uptime.

use super::{quote, quote_error, CommandResult, Reply, LIST_COLOUR};
use crate::audit::{AuditEntry, AuditLog};
use crate::cbs::model::StatusClass;
use crate::render::{
    class_colour, escape_markdown, format_duration, format_size, Embed, EmbedField,
};
use crate::schedule::CronSchedule;
use crate::store::{CycleRecord, Outage, Store};
use chrono::{DateTime, Utc};

/// Everything `/status` shows, gathered at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusReport {
    pub now: DateTime<Utc>,
    pub last_cycle: Option<CycleRecord>,
    pub next_cycle: Option<DateTime<Utc>>,
    pub outage: Option<Outage>,
    pub outbox_len: usize,
    /// Chat channels that refuse our messages, with the reason.
    pub refused: Vec<String>,
    pub store_bytes: u64,
    /// Stored records that did not decode and were moved to the quarantine tree.
    pub quarantined: usize,
    /// The last start that found the store older than its mark (see `store::Rollback`).
    pub rollback: Option<crate::store::Rollback>,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    /// The last changes made from chat, newest first; `None`: not shown here (they name
    /// users of every owner, and this is an owner's channel).
    pub changes: Option<Vec<AuditEntry>>,
    /// Interactions refused since start for coming from another server or a DM.
    pub refused_interactions: u64,
    /// A slash-command outage, current or the last one (see [`crate::gateway`]).
    pub slash_commands: Option<String>,
    /// How user discovery went; `None` when it never ran.
    pub discovery: Option<crate::discover::DiscoveryStatus>,
    /// Each backup server's cycle, outage and discovery, when there are several (then
    /// `last_cycle`, `outage` and `discovery` above are not shown); empty with one.
    pub servers: Vec<ServerStatus>,
    /// Backup servers the store has records of that the configuration leaves out
    /// (removed, or renamed), with their jobs recorded as running.
    pub unconfigured: Vec<crate::store::UnconfiguredServer>,
}

/// One of several backup servers, for `/status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerStatus {
    pub name: String,
    pub last_cycle: Option<CycleRecord>,
    pub outage: Option<Outage>,
    pub discovery: Option<crate::discover::DiscoveryStatus>,
}

impl ServerStatus {
    fn gather(store: &Store, name: &str) -> Result<ServerStatus, crate::store::StoreError> {
        let view = store.server_view(name)?;
        Ok(ServerStatus {
            name: name.to_owned(),
            last_cycle: view.last_cycle()?,
            outage: view.outage()?,
            discovery: discovery_of(&view)?,
        })
    }
}

/// The discovery status kept in `store` (a server's view); `None` when it never ran.
fn discovery_of(
    store: &Store,
) -> Result<Option<crate::discover::DiscoveryStatus>, crate::store::StoreError> {
    Ok(Some(crate::discover::status(store)?).filter(|d| d.last_attempt.is_some()))
}

/// How many audit entries `/status` shows.
pub const STATUS_CHANGES_SHOWN: usize = 5;

impl StatusReport {
    /// Reads the store's health and the schedule at `now`.
    pub fn gather(
        store: &Store,
        schedule: &CronSchedule,
        now: DateTime<Utc>,
        started_at: DateTime<Utc>,
        refused_interactions: u64,
    ) -> Result<StatusReport, crate::store::StoreError> {
        // The first configured server's view: the store's own (unscoped) state may be a
        // server's that the config no longer names.
        let configured = store.configured_servers()?;
        let first = match configured.first() {
            Some(name) => store.server_view(name)?,
            None => store.clone(),
        };
        Ok(StatusReport {
            now,
            last_cycle: first.last_cycle()?,
            next_cycle: schedule.next_after(now),
            outage: first.outage()?,
            outbox_len: store.outbox_len()?,
            refused: store.refused_destinations()?,
            store_bytes: store.size_on_disk()?,
            quarantined: store.quarantined()?,
            rollback: store.last_rollback()?,
            version: env!("CARGO_PKG_VERSION"),
            started_at,
            changes: Some(AuditLog::open(store)?.recent(STATUS_CHANGES_SHOWN)?),
            refused_interactions,
            slash_commands: None,
            discovery: discovery_of(&first)?,
            servers: match store.configured_servers()? {
                names if names.len() > 1 => names
                    .iter()
                    .map(|name| ServerStatus::gather(store, name))
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            },
            // Before the start's check (no configured list yet), nobody is left out.
            unconfigured: match configured.as_slice() {
                [] => Vec::new(),
                names => {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    store.unconfigured_servers(&names)?
                }
            },
        })
    }
}

impl StatusReport {
    /// The report as `scope` may read it: in an owner's channel, a member who is not an
    /// admin sees no recent changes (they name other owners' users).
    pub fn for_scope(self, scope: &super::Scope) -> StatusReport {
        let hide = !scope.admin && scope.owner.is_some();
        StatusReport {
            changes: self.changes.filter(|_| !hide),
            ..self
        }
    }
}

/// A Discord timestamp tag: shown in each reader's own zone.
fn when(at: DateTime<Utc>) -> String {
    format!("<t:{}:f> (<t:{}:R>)", at.timestamp(), at.timestamp())
}

/// The last cycle: when, how long, how much.
fn cycle_text(last_cycle: &Option<CycleRecord>) -> String {
    match last_cycle {
        Some(c) => format!(
            "{}\ntook {}, {} users, {} requests, {} errors{}",
            when(c.started_at),
            format_duration((c.finished_at - c.started_at).num_seconds()),
            c.users,
            c.requests,
            c.errors,
            if c.unreadable_items > 0 {
                format!(
                    ", {} could not be read",
                    crate::render::plural(c.unreadable_items.into(), "job", "jobs")
                )
            } else {
                String::new()
            }
        ),
        None => "none yet".to_owned(),
    }
}

/// Whether the backup server answers.
/// How long `/status` shows a rollback found at a start.
const ROLLBACK_SHOWN_DAYS: i64 = 7;

/// The store's size, its quarantined records and a rollback found in the last days.
fn store_text(report: &StatusReport) -> String {
    let mut text = format_size(report.store_bytes);
    if report.quarantined > 0 {
        text.push_str(&format!(
            ", {} quarantined (unreadable; see the log)",
            crate::render::plural(report.quarantined as u64, "record", "records")
        ));
    }
    let recent = |r: &&crate::store::Rollback| {
        report.now.signed_duration_since(r.found_at) < chrono::Duration::days(ROLLBACK_SHOWN_DAYS)
    };
    if let Some(rollback) = report.rollback.as_ref().filter(recent) {
        text.push_str(&format!("; {rollback}"));
    }
    text
}

fn outage_text(outage: &Option<Outage>) -> String {
    match outage {
        Some(o) => format!(
            "unreachable since {}: {}",
            when(o.since),
            quote_error(&o.error)
        ),
        None => "answering".to_owned(),
    }
}

/// How the last user discovery went.
fn discovery_text(d: &crate::discover::DiscoveryStatus) -> String {
    let listed = match d.last_success {
        Some(at) => format!("{} users, listed {}", d.users, when(at)),
        None => "no list yet".to_owned(),
    };
    match &d.last_error {
        Some(error) => format!(
            "failed: {}\nkeeping the last list: {listed}",
            escape_markdown(error)
        ),
        None => listed,
    }
}

/// The status embed.
pub fn status(report: &StatusReport, public: bool) -> CommandResult {
    let last = cycle_text(&report.last_cycle);
    let next = report
        .next_cycle
        .map_or_else(|| "never (the schedule has no next time)".to_owned(), when);
    let cbs = outage_text(&report.outage);
    let down = report.outage.is_some() || report.servers.iter().any(|s| s.outage.is_some());
    let colour = if down {
        class_colour(StatusClass::Failure)
    } else {
        LIST_COLOUR
    };
    let uptime = format_duration((report.now - report.started_at).num_seconds());
    let changes = match &report.changes {
        None => "shown to admins only in an owner's channel".to_owned(),
        Some(changes) if changes.is_empty() => "none yet".to_owned(),
        Some(changes) => {
            let lines = changes.iter().map(|c| {
                format!(
                    "<t:{}:f> {} ({}): {}",
                    c.at.timestamp(),
                    quote(&c.user_name),
                    c.user_id,
                    c.action
                )
            });
            lines.collect::<Vec<_>>().join("\n")
        }
    };
    let mut fields = if report.servers.is_empty() {
        vec![
            EmbedField::new("Last cycle", last, false),
            EmbedField::new("Next cycle", next, false),
            EmbedField::new("Backup server", cbs, false),
        ]
    } else {
        // Several servers: one field each, saying whether it answers, its last cycle and
        // its discovery.
        let mut fields = vec![EmbedField::new("Next cycle", next, false)];
        for server in &report.servers {
            let mut text = format!(
                "{}\nlast cycle: {}",
                outage_text(&server.outage),
                cycle_text(&server.last_cycle)
            );
            if let Some(d) = &server.discovery {
                text.push_str(&format!("\ndiscovery: {}", discovery_text(d)));
            }
            fields.push(EmbedField::new(
                format!("Backup server {}", escape_markdown(&server.name)),
                text,
                false,
            ));
        }
        fields
    };
    fields.extend([
        EmbedField::new("Outbox", format!("{} waiting", report.outbox_len), true),
        EmbedField::new(
            "Refusing channels",
            if report.refused.is_empty() {
                "none".to_owned()
            } else {
                report.refused.join("\n")
            },
            false,
        ),
        EmbedField::new("Recent changes", changes, false),
        EmbedField::new(
            "Refused interactions",
            format!(
                "{} from outside this server since start",
                report.refused_interactions
            ),
            true,
        ),
        EmbedField::new("Store", store_text(report), true),
        EmbedField::new("Version", report.version, true),
        EmbedField::new("Uptime", uptime, true),
    ]);
    if let Some(outage) = &report.slash_commands {
        fields.push(EmbedField::new(
            "Slash commands",
            escape_markdown(outage),
            false,
        ));
    }
    if !report.unconfigured.is_empty() {
        let lines = report.unconfigured.iter().map(|s| {
            format!(
                "{}: {}; if it was renamed, put the old name back",
                quote(&s.name),
                s.running_text()
            )
        });
        fields.push(EmbedField::new(
            "Backup servers not configured",
            lines.collect::<Vec<_>>().join("\n"),
            false,
        ));
    }
    if let (Some(d), true) = (&report.discovery, report.servers.is_empty()) {
        fields.push(EmbedField::new("Discovery", discovery_text(d), false));
    }
    let embed = Embed {
        title: "restorewatch status".into(),
        description: String::new(),
        colour,
        fields,
        footer: None,
        timestamp: Some(report.now),
    }
    .fit();
    Ok(Reply::embed(embed, !public))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::event::OutageReason;
    use crate::test_data::field_value;

    #[test]
    fn a_store_found_rolled_back_at_the_start_shows_for_a_week() {
        let (dir, store) = store();
        let schedule = CronSchedule::parse("*/5 * * * *", crate::tz::Tz::UTC).unwrap();
        let found = at(20, 9);
        let mark = r#"{"install_id":"0badc0de","flushes":40}"#;
        std::fs::write(dir.path().join(crate::store::MARK_FILE), mark).unwrap();
        assert!(store.check_mark(dir.path(), found).unwrap().is_some());
        let shown = |now| {
            let report = StatusReport::gather(&store, &schedule, now, found, 0).unwrap();
            field_value(&status(&report, false).unwrap().embeds[0], "Store").to_owned()
        };
        let week = shown(found + chrono::Duration::days(6));
        assert!(
            week.contains("; the state store was replaced or emptied (found at the start at"),
            "{week}"
        );
        assert!(!shown(found + chrono::Duration::days(8)).contains("replaced"));
    }

    #[test]
    fn shows_cycles_health_and_uptime() {
        let (_dir, store) = store();
        let schedule = CronSchedule::parse("*/5 * * * *", crate::tz::Tz::UTC).unwrap();
        let now = at(26, 12) + chrono::Duration::minutes(2);
        let started = at(26, 9);
        let fresh = StatusReport::gather(&store, &schedule, now, started, 0).unwrap();
        let reply = status(&fresh, false).unwrap();
        assert!(reply.ephemeral);
        let field = |r: &Reply, name: &str| field_value(&r.embeds[0], name).to_owned();
        assert_eq!(field(&reply, "Last cycle"), "none yet");
        let next = (at(26, 12) + chrono::Duration::minutes(5)).timestamp();
        assert!(field(&reply, "Next cycle").starts_with(&format!("<t:{next}:f>")));
        assert_eq!(field(&reply, "Backup server"), "answering");
        assert_eq!(field(&reply, "Uptime"), "3h 02m");
        assert_eq!(field(&reply, "Version"), env!("CARGO_PKG_VERSION"));

        let cycle = CycleRecord {
            started_at: at(26, 12),
            finished_at: at(26, 12) + chrono::Duration::seconds(3),
            users: 4,
            requests: 5,
            errors: 1,
            unreadable_items: 1,
        };
        store.record_cycle(&cycle, day(26), 0).unwrap();
        let outage = Outage {
            since: at(26, 11),
            reason: OutageReason::Unreachable,
            error: "cannot reach cbs: refused".into(),
        };
        let notice = crate::event::EventKind::CbsUnreachable {
            server: None,
            since: outage.since,
            reason: outage.reason,
            error: outage.error.clone(),
            again_after: None,
        };
        store
            .set_outage_with_event(Some(&outage), notice, outage.since)
            .unwrap();
        let report = StatusReport::gather(&store, &schedule, now, started, 0).unwrap();
        let reply = status(&report, true).unwrap();
        assert!(!reply.ephemeral);
        assert!(field(&reply, "Last cycle")
            .ends_with("took 3s, 4 users, 5 requests, 1 errors, 1 job could not be read"));
        assert!(field(&reply, "Backup server").starts_with("unreachable since"));
        assert_eq!(field(&reply, "Recent changes"), "none yet");

        AuditLog::open(&store)
            .unwrap()
            .record(&AuditEntry {
                at: at(26, 10),
                user_id: 42,
                user_name: "ops_lead".into(),
                action: "mute `obm` (every backup set) for 2h".into(),
            })
            .unwrap();
        let report = StatusReport::gather(&store, &schedule, now, started, 3).unwrap();
        let reply = status(&report, false).unwrap();
        assert_eq!(
            field(&reply, "Recent changes"),
            format!(
                "<t:{}:f> ops\\_lead (42): mute `obm` (every backup set) for 2h",
                at(26, 10).timestamp()
            )
        );
        assert!(field(&reply, "Refused interactions").starts_with("3 from outside"));
        assert!(!reply.embeds[0]
            .fields
            .iter()
            .any(|f| f.name == "Slash commands"));

        let mut report = report;
        report.slash_commands = Some("slash commands unavailable since x: refused".into());
        let unavailable = status(&report, false).unwrap();
        assert_eq!(
            field(&unavailable, "Slash commands"),
            "slash commands unavailable since x: refused"
        );
    }
}
