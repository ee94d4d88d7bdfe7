//! Answering a slash command: who invoked it and what they may see, deferring, and
//! sending a [`Reply`] with mentions locked down (errors privately).

use super::{Context, Error};
use crate::commands::{CommandError, CommandResult, Reply, Scope};
use poise::serenity_prelude as serenity;

/// The invoking member, for a slash command.
fn member(ctx: Context<'_>) -> Option<&serenity::Member> {
    match ctx {
        poise::Context::Application(app) => app.interaction.member.as_deref(),
        poise::Context::Prefix(_) => None,
    }
}

/// What the invoking member may see ([`Data::scope_of`](super::data::Data::scope_of)).
pub(super) fn scope(ctx: Context<'_>) -> Scope {
    let parent = match ctx {
        poise::Context::Application(app) => {
            app.interaction.channel.as_ref().and_then(|c| c.parent_id)
        }
        poise::Context::Prefix(_) => None,
    };
    ctx.data().scope_of(ctx.channel_id(), parent, member(ctx))
}

/// Sends a reply with mentions locked down.
pub(super) async fn send(ctx: Context<'_>, reply: Reply) -> Result<(), Error> {
    let mut out = poise::CreateReply::default()
        .ephemeral(reply.ephemeral)
        .allowed_mentions(serenity::CreateAllowedMentions::new());
    if !reply.content.is_empty() {
        out = out.content(reply.content);
    }
    for embed in reply.embeds {
        out = out.embed(embed.fit().to_serenity());
    }
    ctx.send(out).await?;
    // poise sends every further reply to the same interaction as a follow-up message.
    for embeds in reply.followups {
        let mut more = poise::CreateReply::default()
            .ephemeral(reply.ephemeral)
            .allowed_mentions(serenity::CreateAllowedMentions::new());
        for embed in embeds {
            more = more.embed(embed.fit().to_serenity());
        }
        ctx.send(more).await?;
    }
    Ok(())
}

/// Sends what a plain command function returned; a store failure is logged here, since
/// the user only reads that something failed.
pub(super) async fn answer(ctx: Context<'_>, result: CommandResult) -> Result<(), Error> {
    let reply = match result {
        Ok(reply) => reply,
        Err(error) => {
            match &error {
                CommandError::Store(inner) => {
                    let command = &ctx.command().qualified_name;
                    tracing::error!(%command, error = %inner, "slash command failed in the store");
                    ctx.set_invocation_data(Outcome("error")).await;
                }
                CommandError::Refused(_) => ctx.set_invocation_data(Outcome("refused")).await,
                CommandError::Usage(_) => {}
            }
            error.to_reply()
        }
    };
    send(ctx, reply).await
}

/// How a command that answered ended, for `restorewatch_commands_total`'s `result`, when
/// not `ok`: kept in the invocation's data for the framework's `post_command`.
pub(super) struct Outcome(pub &'static str);

/// The `result` label of a command that answered (see [`Outcome`]).
pub(super) async fn outcome(ctx: Context<'_>) -> &'static str {
    ctx.invocation_data::<Outcome>().await.map_or("ok", |o| o.0)
}

/// Acknowledges a command whose answer takes store reads or a backup-server call (more than
/// Discord's 3 s, at worst), the way the answer will be shown: publicly when
/// `discord.public_lookups` is on, else privately. Arguments are checked before, so a bad
/// one still gets its private answer at once.
pub(super) async fn defer(ctx: Context<'_>) -> Result<(), Error> {
    if ctx.data().public() {
        ctx.defer().await?;
    } else {
        ctx.defer_ephemeral().await?;
    }
    Ok(())
}

/// [`answer`] for a command that was deferred publicly or privately ([`defer`]). An error
/// is told privately even after a public deferral: Discord gives the first follow-up the
/// deferral's visibility, so the public "thinking…" message is deleted first and the error
/// follows as an ephemeral message of its own.
pub(super) async fn answer_deferred(ctx: Context<'_>, result: CommandResult) -> Result<(), Error> {
    if result.is_err() && ctx.data().public() {
        if let poise::Context::Application(app) = ctx {
            app.interaction.delete_response(ctx).await?;
        }
    }
    answer(ctx, result).await
}

/// Refuses members who may not change state (see
/// [`commands::require_admin`](crate::commands::require_admin)).
pub(super) fn check_admin(ctx: Context<'_>) -> Result<(), CommandError> {
    ctx.data().check_member(member(ctx))
}
