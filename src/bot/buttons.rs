//! The alert buttons' side of the gateway: every component interaction arrives here
//! (poise hands it over through the framework's event handler) and is answered by the
//! same rules as the slash commands.
//!
//! 1. **The server** first ([`commands::guild_allowed`]): a press from another server or a
//!    DM gets the ephemeral refusal the commands give, is logged and counted with them.
//! 2. **Ours?** A `custom_id` that is not an alert button ([`ActionId::parse`]) gets a
//!    short ephemeral answer ([`UNKNOWN_BUTTON`]): the bot posts no other components.
//! 3. **The job**: found in the store from the `custom_id` alone ([`acks::find_job`]), so
//!    buttons work after a restart; a job past the retention horizon gets a short answer.
//! 4. **The action**:
//!    - *Acknowledge* records who and when ([`Acks::acknowledge`]) and updates the message
//!      in place: the alert's embed gains an "Acknowledged" field (by @x · time) and its
//!      button reads "Acknowledged". A later press says (ephemerally) who was first, and
//!      makes the edit from that first acknowledgement if the message does not show it yet
//!      (the first edit was not taken), so a failed edit is repaired by the next press.
//!    - *Mute set 24h* is `/mute user backup_set 24h`: [`commands::require_admin`] first
//!      (others get its ephemeral refusal and nothing changes), then
//!      [`commands::mute::mute`] and the same audit entry.
//!    - *Show jobs* is an ephemeral `/restores user date` ([`RestoresArgs::parse`] with the
//!      member's scope, then [`commands::restores::restores`]), deferred first as the
//!      command is.

use super::redact::loggable;
use super::{Data, Error};
use crate::acks::{self, Ack, Acks};
use crate::actions::{ActionId, AlertAction, MUTE_BUTTON_DURATION};
use crate::commands::restores::RestoresArgs;
use crate::commands::watch::invoker_label;
use crate::commands::{self, code, CommandError, Reply};
use crate::metrics;
use crate::render::{
    cut, Embed, EmbedField, ACK_FIELD_NAME, BUTTON_LABEL_MAX_CHARS, EMBED_FIELDS_MAX,
    MESSAGE_EMBED_TOTAL_MAX_CHARS,
};
use crate::store::JobRecord;
use poise::serenity_prelude as serenity;
use serenity::{
    ActionRowComponent, ButtonKind, ButtonStyle, ComponentInteraction, CreateActionRow,
    CreateAllowedMentions, CreateButton, CreateEmbed, CreateInteractionResponse,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage,
};

/// What a press on a button whose job the store no longer holds reads.
const JOB_GONE: &str = "This alert's job is no longer in the bot's store (it is older than \
    `state.retention_days`, or the store was reset); nothing was looked up or changed.";

/// What a press on a button the bot does not know reads.
const UNKNOWN_BUTTON: &str = "The bot does not know this button (it may be from an \
    earlier version); nothing was looked up or changed.";

/// The framework's event handler: routes component interactions to [`on_press`], and
/// each server Discord announces to the check that it is ours.
pub(super) async fn on_event(
    framework: poise::FrameworkContext<'_, Data, Error>,
    event: &serenity::FullEvent,
) -> Result<(), Error> {
    match event {
        serenity::FullEvent::InteractionCreate {
            interaction: serenity::Interaction::Component(press),
        } => on_press(framework.serenity_context, framework.user_data, press).await,
        serenity::FullEvent::GuildCreate { guild, .. } => {
            super::guard::note_guild(framework.user_data, guild.id);
        }
        _ => {}
    }
    Ok(())
}

/// The metric name of a button press.
fn metric_name(action: Option<AlertAction>) -> String {
    match action {
        Some(action) => format!("button {}", action.label()),
        None => "button".to_owned(),
    }
}

async fn on_press(ctx: &serenity::Context, data: &Data, press: &ComponentInteraction) {
    let id = ActionId::parse(&press.data.custom_id).ok();
    if !commands::guild_allowed(press.guild_id, &data.guilds) {
        data.note_refusal(
            press.guild_id,
            press.user.id,
            &format!("button {:?}", press.data.custom_id),
        );
        metrics::command(&metric_name(id.map(|i| i.action)), "refused");
        let refusal = Reply::text(commands::OUTSIDE_GUILD_REFUSAL, true);
        if let Err(error) = respond(ctx, press, refusal).await {
            tracing::error!(
                error = loggable(&error),
                "answering a refused button failed"
            );
        }
        return;
    }
    let Some(id) = id else {
        // The bot posts no other components: a stale button (an earlier version's) or a
        // forged press. It is answered, so the member is not left with "interaction failed".
        tracing::warn!(custom_id = %press.data.custom_id, "a press on a button the bot does not know");
        metrics::command(&metric_name(None), "refused");
        if let Err(error) = respond(ctx, press, Reply::text(UNKNOWN_BUTTON, true)).await {
            tracing::error!(
                error = loggable(&error),
                "answering an unknown button failed"
            );
        }
        return;
    };
    let name = metric_name(Some(id.action));
    let (result, answered) = match pressed(ctx, data, press, id).await {
        Ok(Pressed::Answered(Ok(()))) => ("ok", Ok(())),
        Ok(Pressed::Answered(Err(error))) => ("error", Err(error)),
        Ok(Pressed::Refused(reply)) => ("refused", respond(ctx, press, reply).await),
        Err(error) => {
            if let CommandError::Store(inner) = &error {
                tracing::error!(button = %name, error = %inner, "alert button failed in the store");
            }
            ("error", respond(ctx, press, error.to_reply()).await)
        }
    };
    metrics::command(&name, result);
    if let Err(error) = answered {
        tracing::error!(button = %name, error = loggable(&error), "answering an alert button failed");
    }
}

/// How a press ended, when the store did not fail.
enum Pressed {
    /// Done, and its answer sent to Discord (or not taken: the error).
    Answered(Result<(), serenity::Error>),
    /// Refused (not an admin, job gone, already acknowledged): send this.
    Refused(Reply),
}

async fn pressed(
    ctx: &serenity::Context,
    data: &Data,
    press: &ComponentInteraction,
    id: ActionId,
) -> Result<Pressed, CommandError> {
    let Some(record) = acks::find_job(&data.app.store, id.job, data.today())? else {
        return Ok(Pressed::Refused(Reply::text(JOB_GONE, true)));
    };
    match id.action {
        AlertAction::Acknowledge => acknowledge(ctx, data, press, id, &record).await,
        AlertAction::MuteSet => mute_set(ctx, data, press, &record).await,
        AlertAction::ShowJobs => show_jobs(ctx, data, press, &record).await,
    }
}

/// `by <@id> · <t:unix:f>`: who (a mention, which never pings in an embed) and when, in
/// each reader's own zone.
fn ack_text(ack: &Ack) -> String {
    format!("by <@{}> · <t:{}:f>", ack.user_id, ack.at.timestamp())
}

async fn acknowledge(
    ctx: &serenity::Context,
    data: &Data,
    press: &ComponentInteraction,
    id: ActionId,
    record: &JobRecord,
) -> Result<Pressed, CommandError> {
    let ack = Ack {
        user_id: press.user.id.get(),
        user_name: press.user.name.clone(),
        at: data.now(),
    };
    if let Some(first) = Acks::open(&data.app.store)?.acknowledge(record, &ack)? {
        return Ok(already_acknowledged(ctx, press, id, &first).await);
    }
    let job = &record.job;
    data.audit(
        &press.user,
        format!(
            "acknowledge {} backup set {} job {}",
            code(&job.login_name),
            code(&job.backup_set_id),
            code(&job.job_id)
        ),
    );
    let update = acknowledged_message(press, id, &ack);
    let sent = press
        .create_response(ctx, CreateInteractionResponse::UpdateMessage(update))
        .await;
    Ok(Pressed::Answered(sent))
}

/// A press on an alert acknowledged before: the presser is told privately who was first.
/// When the message does not show that yet (the edit after the first press was not taken:
/// Discord down, the bot stopped in between), this press makes the edit, from the first
/// acknowledgement, and tells the presser in an ephemeral follow-up.
async fn already_acknowledged(
    ctx: &serenity::Context,
    press: &ComponentInteraction,
    id: ActionId,
    first: &Ack,
) -> Pressed {
    let text = format!("Already acknowledged {}.", ack_text(first));
    let embed = press.message.embeds.get(usize::from(id.embed));
    let shown = embed.is_some_and(|e| e.fields.iter().any(|f| f.name == ACK_FIELD_NAME));
    if shown {
        return Pressed::Refused(Reply::text(text, true));
    }
    let update = acknowledged_message(press, id, first);
    let sent = press
        .create_response(ctx, CreateInteractionResponse::UpdateMessage(update))
        .await;
    if let Err(error) = sent {
        return Pressed::Answered(Err(error));
    }
    let told = press.create_followup(ctx, followup(text, Vec::new())).await;
    Pressed::Answered(told.map(drop))
}

/// The pressed message, acknowledged: every embed as it is, the alert's embed with the
/// "Acknowledged" field added (with [`EMBED_FIELDS_MAX`] fields already, it replaces the
/// last), and the rows as they are, the alert's Acknowledge button reading "Acknowledged".
/// Room for the field was kept when the message was packed; should the message still be
/// too full (posted by an older version, say), the alert's embed gives way
/// ([`Embed::fit_within`]), so the edit is never refused for its size.
fn acknowledged_message(
    press: &ComponentInteraction,
    id: ActionId,
    ack: &Ack,
) -> CreateInteractionResponseMessage {
    let posted = &press.message.embeds;
    let others: usize = (posted.iter().enumerate())
        .filter(|(i, _)| *i != usize::from(id.embed))
        .map(|(_, embed)| Embed::from_serenity(embed).char_count())
        .sum();
    let embeds = (posted.iter().enumerate())
        .map(|(i, embed)| {
            if i != usize::from(id.embed) {
                return CreateEmbed::from(embed.clone());
            }
            let mut embed = Embed::from_serenity(embed);
            embed.fields.retain(|f| f.name != ACK_FIELD_NAME);
            embed.fields.truncate(EMBED_FIELDS_MAX - 1);
            (embed.fields).push(EmbedField::new(ACK_FIELD_NAME, ack_text(ack), false));
            let room = MESSAGE_EMBED_TOTAL_MAX_CHARS.saturating_sub(others);
            embed.fit_within(room).to_serenity()
        })
        .collect();
    let acked_id = ActionId {
        action: AlertAction::Acknowledge,
        ..id
    }
    .to_custom_id();
    let rows = press
        .message
        .components
        .iter()
        .map(|row| {
            let buttons = row.components.iter().filter_map(|component| {
                let ActionRowComponent::Button(button) = component else {
                    return None;
                };
                let ButtonKind::NonLink { custom_id, style } = &button.data else {
                    return None;
                };
                let label = button.label.clone().unwrap_or_default();
                let (label, style) = if *custom_id == acked_id {
                    // The posted label was cut to the limit before "Acknowledge" grew a "d".
                    let label = label.replacen(AlertAction::Acknowledge.label(), "Acknowledged", 1);
                    (cut(&label, BUTTON_LABEL_MAX_CHARS), ButtonStyle::Secondary)
                } else {
                    (label, *style)
                };
                let button = CreateButton::new(custom_id.clone())
                    .label(label)
                    .style(style)
                    .disabled(button.disabled);
                Some(button)
            });
            CreateActionRow::Buttons(buttons.collect())
        })
        .collect();
    CreateInteractionResponseMessage::new()
        .embeds(embeds)
        .components(rows)
        .allowed_mentions(CreateAllowedMentions::new())
}

async fn mute_set(
    ctx: &serenity::Context,
    data: &Data,
    press: &ComponentInteraction,
    record: &JobRecord,
) -> Result<Pressed, CommandError> {
    if let Err(refused) = data.check_member(press.member.as_ref()) {
        return Ok(Pressed::Refused(refused.to_reply()));
    }
    let job = &record.job;
    // The job's own backup server (with one, the mute holds on every server, as before).
    let (server, watched) = match data.mute_target(&job.login_name, Some(&job.server)) {
        Ok(target) => target,
        Err(CommandError::Usage(text)) => return Ok(Pressed::Refused(Reply::text(text, true))),
        Err(other) => return Err(other),
    };
    let reply = commands::mute::mute(
        &data.mutes,
        &watched,
        server.as_deref(),
        &job.login_name,
        Some(&job.backup_set_id),
        MUTE_BUTTON_DURATION,
        &invoker_label(&press.user.name, press.user.id.get()),
        data.now(),
    );
    let reply = match reply {
        Ok(reply) => reply,
        Err(CommandError::Usage(text)) => return Ok(Pressed::Refused(Reply::text(text, true))),
        Err(other) => return Err(other),
    };
    // The same entry `/mute` writes.
    let action = format!(
        "mute {}{} for {}",
        commands::mute::scope_text(&job.login_name, Some(&job.backup_set_id)),
        commands::mute::on_server(server.as_deref()),
        code(MUTE_BUTTON_DURATION)
    );
    data.audit(&press.user, action);
    Ok(Pressed::Answered(respond(ctx, press, reply).await))
}

async fn show_jobs(
    ctx: &serenity::Context,
    data: &Data,
    press: &ComponentInteraction,
    record: &JobRecord,
) -> Result<Pressed, CommandError> {
    let parent = press.channel.as_ref().and_then(|c| c.parent_id);
    let scope = data.scope_of(press.channel_id, parent, press.member.as_ref());
    let date = record.date.format("%Y-%m-%d").to_string();
    // The job's own backup server (with several, the alert's job names it).
    let names: Vec<String> = data.servers.iter().map(|s| s.name.clone()).collect();
    let parsed = (commands::restores::job_server(&names, &record.job.server))
        .map(|i| &data.servers[i])
        .and_then(|server| Ok((server, data.visible_on(server, &scope)?)));
    let parsed = parsed.and_then(|(server, visible)| {
        RestoresArgs::parse(
            &record.job.login_name,
            Some(&date),
            data.now(),
            server.client.timezone(),
            &visible,
            scope.admin,
        )
        .map(|args| (server, args))
    });
    let (server, args) = match parsed {
        Ok(parsed) => parsed,
        Err(CommandError::Usage(text) | CommandError::Refused(text)) => {
            return Ok(Pressed::Refused(Reply::text(text, true)))
        }
        Err(other) => return Err(other),
    };
    // The backup server may take longer than Discord's 3 s: acknowledge first.
    let defer = CreateInteractionResponseMessage::new().ephemeral(true);
    let deferred = press
        .create_response(ctx, CreateInteractionResponse::Defer(defer))
        .await;
    if let Err(error) = deferred {
        return Ok(Pressed::Answered(Err(error)));
    }
    let answer = commands::restores::restores(&server.client, &server.store, &args, None, false)
        .await
        .unwrap_or_else(|error| error.to_reply());
    let mut messages = vec![followup(answer.content, answer.embeds)];
    messages.extend(
        answer
            .followups
            .into_iter()
            .map(|e| followup(String::new(), e)),
    );
    for message in messages {
        if let Err(error) = press.create_followup(ctx, message).await {
            return Ok(Pressed::Answered(Err(error)));
        }
    }
    Ok(Pressed::Answered(Ok(())))
}

/// An ephemeral follow-up with mentions locked down.
fn followup(content: String, embeds: Vec<Embed>) -> CreateInteractionResponseFollowup {
    let mut out = CreateInteractionResponseFollowup::new()
        .ephemeral(true)
        .allowed_mentions(CreateAllowedMentions::new());
    if !content.is_empty() {
        out = out.content(content);
    }
    out.embeds(embeds.into_iter().map(|e| e.fit().to_serenity()).collect())
}

/// Answers the press with a message of its own (ephemeral as `reply` says), mentions
/// locked down.
async fn respond(
    ctx: &serenity::Context,
    press: &ComponentInteraction,
    reply: Reply,
) -> Result<(), serenity::Error> {
    let mut message = CreateInteractionResponseMessage::new()
        .ephemeral(reply.ephemeral)
        .allowed_mentions(CreateAllowedMentions::new());
    if !reply.content.is_empty() {
        message = message.content(reply.content);
    }
    let embeds = reply.embeds.into_iter().map(|e| e.fit().to_serenity());
    message = message.embeds(embeds.collect());
    press
        .create_response(ctx, CreateInteractionResponse::Message(message))
        .await
}
