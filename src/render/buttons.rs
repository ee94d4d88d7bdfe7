//! The buttons under a failure alert: one action row per alert embed, **Acknowledge**,
//! **Mute set 24h** and **Show jobs**, each `custom_id` naming the job
//! ([`crate::actions`]). Plain data until [`ButtonRow::to_serenity`] at the edge; the
//! console has no buttons, so only the Discord sink asks [`super::pack_items`] for them.

use super::text::{cut, plain_text};
use crate::actions::{ActionId, AlertAction, JobRef};
use crate::event::{Event, EventKind};
use serenity::all::{ButtonStyle, CreateActionRow, CreateButton};

/// Action rows per message (Discord's limit).
pub const MESSAGE_ROWS_MAX: usize = 5;
/// Characters a button label may have (Discord's limit).
pub const BUTTON_LABEL_MAX_CHARS: usize = 80;
/// Characters kept free in a message for each alert with buttons, so that the
/// acknowledgement field the bot adds later ("Acknowledged": by whom, when) still fits
/// Discord's 6,000 per message.
pub const ACK_FIELD_RESERVE_CHARS: usize = 96;
/// The name of the field an acknowledgement adds to its alert's embed.
pub const ACK_FIELD_NAME: &str = "Acknowledged";

/// The buttons an event carries: a job alert's, naming its job; `label` says whose
/// alert a row belongs to when a message carries several (plain text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertButtons {
    pub job: JobRef,
    pub label: String,
}

/// Which events carry buttons: a finished job in an alerting class (a failure alert).
/// Storm cards carry none (their first few failures follow as alerts of their own, with
/// buttons); summaries, digests, notices neither.
pub fn alert_buttons(event: &Event) -> Option<AlertButtons> {
    match &event.kind {
        EventKind::JobFinished { job, listed_on, .. } => Some(AlertButtons {
            job: JobRef::of(job, *listed_on),
            label: format!("{} / {}", job.login_name, job.backup_set_label()),
        }),
        _ => None,
    }
}

/// One action row as posted: the alert's buttons and the embed they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ButtonRow {
    /// The alert's embed, as an index into the message's embeds.
    pub embed: u8,
    pub job: JobRef,
    /// Added to the Acknowledge button when the message has several rows.
    pub label: Option<String>,
}

impl ButtonRow {
    fn id(&self, action: AlertAction) -> String {
        ActionId {
            action,
            job: self.job,
            embed: self.embed,
        }
        .to_custom_id()
    }

    /// The Acknowledge button's text: `Acknowledge · obm / Files` when the row needs
    /// telling apart from others.
    pub fn ack_label(&self) -> String {
        match &self.label {
            Some(label) => cut(
                &format!(
                    "{} · {}",
                    AlertAction::Acknowledge.label(),
                    plain_text(label)
                ),
                BUTTON_LABEL_MAX_CHARS,
            ),
            None => AlertAction::Acknowledge.label().to_owned(),
        }
    }

    /// serenity's builder for the row.
    pub fn to_serenity(&self) -> CreateActionRow {
        CreateActionRow::Buttons(vec![
            CreateButton::new(self.id(AlertAction::Acknowledge))
                .label(self.ack_label())
                .style(ButtonStyle::Success),
            CreateButton::new(self.id(AlertAction::MuteSet))
                .label(AlertAction::MuteSet.label())
                .style(ButtonStyle::Secondary),
            CreateButton::new(self.id(AlertAction::ShowJobs))
                .label(AlertAction::ShowJobs.label())
                .style(ButtonStyle::Primary),
        ])
    }
}
