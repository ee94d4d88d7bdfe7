//! The framework's hooks around every command: [`in_our_server`], the check that the
//! interaction comes from one of our servers, and [`on_error`], which answers refusals,
//! unreadable arguments and failed commands.

use super::reply::send;
use super::{redact, Context, Data, Error};
use crate::commands::{self, Reply};
use crate::metrics;
use crate::render::escape_markdown;
use poise::serenity_prelude as serenity;

/// The framework's check before every command and autocomplete: the interaction comes from
/// one of our servers. Refusals are logged and counted here; `on_error` answers them.
pub(super) async fn in_our_server(ctx: Context<'_>) -> Result<bool, Error> {
    let data = ctx.data();
    let guild = ctx.guild_id();
    if commands::guild_allowed(guild, &data.guilds) {
        return Ok(true);
    }
    data.note_refusal(guild, ctx.author().id, &ctx.command().qualified_name);
    Ok(false)
}
/// A server the bot is in (Discord sends each at every connect): one that is not ours
/// (someone added the bot while *Public Bot* was on) is logged at warn, once per connect,
/// so the team learns of it before an outsider's interactions are refused. The bot stays:
/// leaving is the owner's choice, and interactions from there are refused anyway.
pub(super) fn note_guild(data: &Data, guild: serenity::GuildId) {
    if !data.guilds.contains(&guild) {
        tracing::warn!(
            guild = guild.get(),
            "the bot is a member of a Discord server that is not configured; its commands \
             and buttons are refused there. Remove the bot from it (Server Settings, \
             Integrations) and turn Public Bot off in the developer portal"
        );
    }
}

/// Answers an interaction [`in_our_server`] refused: an ephemeral refusal, or no choices
/// for an autocomplete (which cannot carry a message).
async fn refuse_outsider(ctx: Context<'_>) -> Result<(), Error> {
    if let poise::Context::Application(app) = ctx {
        if app.interaction_type == poise::CommandInteractionType::Autocomplete {
            let empty = serenity::CreateAutocompleteResponse::new();
            app.interaction
                .create_response(
                    ctx,
                    serenity::CreateInteractionResponse::Autocomplete(empty),
                )
                .await?;
            return Ok(());
        }
    }
    send(ctx, Reply::text(commands::OUTSIDE_GUILD_REFUSAL, true)).await
}

/// The answer to a command or option this version does not have: Discord still shows an
/// older registration of the commands.
pub const STALE_COMMAND: &str = "This command does not match this version of restorewatch \
    (Discord may still show its old commands for a few minutes). Try again shortly, or \
    reload Discord (Ctrl+R).";

pub(super) async fn on_error(error: poise::FrameworkError<'_, Data, Error>) {
    if let Some(ctx) = error.ctx() {
        let refused = matches!(error, poise::FrameworkError::CommandCheckFailed { .. });
        let result = if refused { "refused" } else { "error" };
        metrics::command(&ctx.command().qualified_name, result);
    }
    let sent = match error {
        poise::FrameworkError::CommandCheckFailed {
            ctx, error: None, ..
        } => refuse_outsider(ctx).await,
        poise::FrameworkError::ArgumentParse { ctx, error, .. } => {
            let text = format!(
                "An argument could not be read ({}); check the command's options.",
                escape_markdown(&error.to_string())
            );
            send(ctx, Reply::text(text, true)).await
        }
        poise::FrameworkError::Command { ctx, error, .. } => {
            let command = &ctx.command().qualified_name;
            tracing::error!(%command, error = redact::loggable(&error), "slash command failed");
            let text = "The command failed; the error was logged.";
            send(ctx, Reply::text(text, true)).await
        }
        // Discord still shows an older version of our commands (it updates registrations
        // with a delay): the member gets a short answer, not "did not respond".
        poise::FrameworkError::CommandStructureMismatch {
            ctx, description, ..
        } => {
            let command = &ctx.command().qualified_name;
            tracing::warn!(%command, description, "a command's options do not match this version");
            send(
                poise::Context::Application(ctx),
                Reply::text(STALE_COMMAND, true),
            )
            .await
        }
        poise::FrameworkError::UnknownInteraction {
            framework,
            interaction,
            ..
        } => {
            let name = &interaction.data.name;
            tracing::warn!(command = %name, "an interaction for a command this version does not have");
            // An autocomplete carries a focused option, and takes no message.
            let response = if interaction.data.autocomplete().is_some() {
                serenity::CreateInteractionResponse::Autocomplete(
                    serenity::CreateAutocompleteResponse::new(),
                )
            } else {
                serenity::CreateInteractionResponse::Message(
                    serenity::CreateInteractionResponseMessage::new()
                        .content(STALE_COMMAND)
                        .ephemeral(true)
                        .allowed_mentions(serenity::CreateAllowedMentions::new()),
                )
            };
            (interaction
                .create_response(framework.serenity_context, response)
                .await)
                .map_err(Error::from)
        }
        other => poise::builtins::on_error(other).await.map_err(Error::from),
    };
    if let Err(error) = sent {
        tracing::error!(
            error = redact::loggable(&error),
            "answering a failed command failed"
        );
    }
}
