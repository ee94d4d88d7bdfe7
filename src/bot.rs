//! The Discord side of the slash commands: serenity's gateway client with a poise
//! framework whose commands are thin shells over [`crate::commands`].
//!
//! [`start`] connects to the gateway, registers the commands (in `discord.guild_id`, where
//! they appear at once, else globally) and answers interactions until the shutdown token
//! is cancelled. Each command checks access, parses its arguments through the plain
//! functions, defers when it has slow work to do (Discord wants an answer within 3 s),
//! and sends the [`Reply`] it gets back. Every reply goes out with mentions locked down
//! (`CreateAllowedMentions::new()`), errors and refusals ephemerally.
//!
//! State-changing commands (`/watch`, `/mute`, `/unmute`) are registered with
//! `default_member_permissions = MANAGE_GUILD`, so Discord hides them from other members;
//! Discord knows no per-subcommand permissions, so `/watch list` is hidden with them unless
//! a server admin grants `/watch` in the server's integration settings. The same check
//! runs again at call time, where the configured `discord.admin_role` also counts.

use crate::cbs::CbsClient;
use crate::clock::SharedClock;
use crate::commands::restores::RestoresArgs;
use crate::commands::watch::invoker_label;
use crate::commands::{self, CommandError, CommandResult, Reply};
use crate::config::{DiscordSettings, Settings};
use crate::metrics;
use crate::mutes::Mutes;
use crate::render::escape_markdown;
use crate::store::Store;
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use poise::serenity_prelude as serenity;
use secrecy::ExposeSecret;
use std::collections::BTreeSet;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the commands need: shared with the rest of the program.
#[derive(Clone)]
pub struct BotContext {
    pub store: Store,
    pub settings: Settings,
    pub cbs: CbsClient,
    pub clock: SharedClock,
    /// When the program started, for `/status`'s uptime.
    pub started_at: DateTime<Utc>,
}

/// poise's user data: the context plus what is derived from it once.
struct Data {
    app: BotContext,
    discord: DiscordSettings,
    mutes: Mutes,
}

type Error = anyhow::Error;
type Context<'a> = poise::Context<'a, Data, Error>;

impl Data {
    fn now(&self) -> DateTime<Utc> {
        self.app.clock.now()
    }

    fn tz(&self) -> Tz {
        self.app.cbs.timezone()
    }

    /// Today in the backup server's zone, the zone job dates are in.
    fn today(&self) -> NaiveDate {
        self.now().with_timezone(&self.tz()).date_naive()
    }

    fn public(&self) -> bool {
        self.discord.public_lookups
    }

    /// Logins on the merged watch list (config and chat).
    fn watched(&self) -> Result<BTreeSet<String>, CommandError> {
        let list = self.app.store.watch_list(&self.app.settings.watch)?;
        Ok(list.into_iter().map(|w| w.login).collect())
    }
}

/// A running bot.
pub struct Bot {
    running: JoinHandle<anyhow::Result<()>>,
}

impl Bot {
    /// Waits until the client has stopped (after the shutdown token, or on a fatal error).
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.running
            .await
            .context("the Discord client task ended abnormally")?
    }
}

/// Builds serenity's REST client: against `api_base` when one is configured, with
/// serenity's rate limiter off, because it rebuilds requests without the proxy.
fn http(discord: &DiscordSettings) -> serenity::Http {
    let builder = serenity::HttpBuilder::new(discord.token.expose_secret());
    match &discord.api_base {
        Some(base) => builder
            .proxy(base.as_str().trim_end_matches('/'))
            .ratelimiter_disabled(true)
            .build(),
        None => builder.build(),
    }
}

/// Connects to the gateway, registers the commands and serves them until `shutdown`.
/// Fails when the settings have no `[discord]` section or the client cannot be built.
pub async fn start(ctx: BotContext, shutdown: CancellationToken) -> anyhow::Result<Bot> {
    let discord = ctx
        .settings
        .discord
        .clone()
        .context("the bot needs a [discord] section in the config")?;
    let mutes = Mutes::open(&ctx.store).context("opening the mutes")?;
    let guild = discord.guild_id;
    let http = http(&discord);
    let data = Data {
        app: ctx,
        discord,
        mutes,
    };
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: vec![
                restores(),
                failures(),
                watch(),
                mute(),
                unmute(),
                digest(),
                status(),
            ],
            // poise's default lets replies ping users; ours never ping anyone.
            allowed_mentions: Some(serenity::CreateAllowedMentions::new()),
            on_error: |error| Box::pin(on_error(error)),
            post_command: |ctx| {
                Box::pin(async move { metrics::command(&ctx.command().qualified_name, true) })
            },
            ..Default::default()
        })
        .setup(move |ctx, _ready, framework| {
            Box::pin(async move {
                let commands = &framework.options().commands;
                let registered = match guild {
                    Some(guild) => poise::builtins::register_in_guild(ctx, commands, guild).await,
                    None => poise::builtins::register_globally(ctx, commands).await,
                };
                // Commands registered by an earlier run still work, so keep serving.
                match registered {
                    Ok(()) => tracing::info!(guild = ?guild, "slash commands registered"),
                    Err(error) => tracing::error!(%error, "registering the slash commands failed"),
                }
                Ok(data)
            })
        })
        .build();
    // Interactions arrive without any intent; GUILDS keeps serenity's cache useful.
    let mut client = serenity::ClientBuilder::new_with_http(http, serenity::GatewayIntents::GUILDS)
        .framework(framework)
        .await
        .context("building the Discord client")?;
    let shard_manager = client.shard_manager.clone();
    let running = tokio::spawn(async move {
        let mut gateway = std::pin::pin!(client.start());
        tokio::select! {
            ended = &mut gateway => {
                // Not a shutdown: slash commands are gone until a restart, so say so now
                // rather than when the process stops.
                let ended = ended.context("the Discord gateway connection failed");
                if let Err(e) = &ended {
                    tracing::error!(error = format!("{e:#}"), "slash commands are unavailable");
                }
                ended
            }
            _ = shutdown.cancelled() => {
                shard_manager.shutdown_all().await;
                gateway.await.context("closing the Discord gateway connection")
            }
        }
    });
    Ok(Bot { running })
}

/// Sends a reply with mentions locked down.
async fn send(ctx: Context<'_>, reply: Reply) -> Result<(), Error> {
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
async fn answer(ctx: Context<'_>, result: CommandResult) -> Result<(), Error> {
    let reply = match result {
        Ok(reply) => reply,
        Err(error) => {
            if let CommandError::Store(inner) = &error {
                let command = &ctx.command().qualified_name;
                tracing::error!(%command, error = %inner, "slash command failed in the store");
            }
            error.to_reply()
        }
    };
    send(ctx, reply).await
}

/// Refuses members who may not change state (see [`commands::require_admin`]).
fn check_admin(ctx: Context<'_>) -> Result<(), CommandError> {
    let member = match ctx {
        poise::Context::Application(app) => app.interaction.member.as_deref(),
        poise::Context::Prefix(_) => None,
    };
    let (permissions, roles) = match member {
        Some(m) => (m.permissions, m.roles.as_slice()),
        None => (None, &[][..]),
    };
    commands::require_admin(permissions, roles, ctx.data().discord.admin_role)
}

fn author_label(ctx: Context<'_>) -> String {
    let author = ctx.author();
    invoker_label(&author.name, author.id.get())
}

async fn on_error(error: poise::FrameworkError<'_, Data, Error>) {
    if let Some(ctx) = error.ctx() {
        metrics::command(&ctx.command().qualified_name, false);
    }
    let sent = match error {
        poise::FrameworkError::ArgumentParse { ctx, error, .. } => {
            let text = format!(
                "An argument could not be read ({}); check the command's options.",
                escape_markdown(&error.to_string())
            );
            send(ctx, Reply::text(text, true)).await
        }
        poise::FrameworkError::Command { ctx, error, .. } => {
            let command = &ctx.command().qualified_name;
            tracing::error!(%command, error = format!("{error:#}"), "slash command failed");
            let text = "The command failed; the error was logged.";
            send(ctx, Reply::text(text, true)).await
        }
        other => poise::builtins::on_error(other).await.map_err(Error::from),
    };
    if let Err(error) = sent {
        tracing::error!(
            error = format!("{error:#}"),
            "answering a failed command failed"
        );
    }
}

async fn complete_user(ctx: Context<'_>, partial: &str) -> serenity::CreateAutocompleteResponse {
    let data = ctx.data();
    let users = commands::known_users(&data.app.store, &data.app.settings.watch, data.today())
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "autocomplete: cannot read the store");
            BTreeSet::new()
        });
    commands::matching_users(&users, partial)
        .into_iter()
        .fold(serenity::CreateAutocompleteResponse::new(), |r, u| {
            r.add_string_choice(u.clone(), u)
        })
}

/// Restore jobs of one user on one day, live from the backup server.
#[poise::command(slash_command)]
async fn restores(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
    #[description = "The day in the server's zone, YYYY-MM-DD (default: today)"] date: Option<
        String,
    >,
) -> Result<(), Error> {
    let data = ctx.data();
    let (store, watch) = (&data.app.store, &data.app.settings.watch);
    let parsed = RestoresArgs::parse(&user, date.as_deref(), data.now(), data.tz(), store, watch);
    let args = match parsed {
        Ok(args) => args,
        Err(error) => return answer(ctx, Err(error)).await,
    };
    // The CBS may take longer than Discord's 3 s: acknowledge first.
    if data.public() {
        ctx.defer().await?;
    } else {
        ctx.defer_ephemeral().await?;
    }
    let result = commands::restores::restores(&data.app.cbs, store, &args, data.public()).await;
    answer(ctx, result).await
}

/// Failed restores the bot has recorded, newest first.
#[poise::command(slash_command)]
async fn failures(
    ctx: Context<'_>,
    #[description = "How many days back, 1 to 30 (default: 1, today)"]
    #[min = 1]
    #[max = 30]
    days: Option<i64>,
    #[description = "Only this user"]
    #[autocomplete = "complete_user"]
    user: Option<String>,
) -> Result<(), Error> {
    let data = ctx.data();
    let (store, watch) = (&data.app.store, &data.app.settings.watch);
    let result = commands::known_users(store, watch, data.today())
        .map_err(CommandError::from)
        .and_then(|known| {
            commands::failures::failures(
                store,
                days,
                user.as_deref(),
                &known,
                data.today(),
                data.public(),
            )
        });
    answer(ctx, result).await
}

/// The watch list: the backup users whose restores are polled.
#[poise::command(
    slash_command,
    subcommands("watch_add", "watch_remove", "watch_list"),
    subcommand_required,
    default_member_permissions = "MANAGE_GUILD"
)]
async fn watch(_ctx: Context<'_>) -> Result<(), Error> {
    // Only the subcommands run.
    Ok(())
}

/// Watch another backup user (Manage Server or the admin role).
#[poise::command(slash_command, rename = "add")]
async fn watch_add(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
    #[description = "The user's owner (reseller or sub-admin), if any"] owner: Option<String>,
) -> Result<(), Error> {
    if let Err(refused) = check_admin(ctx) {
        return answer(ctx, Err(refused)).await;
    }
    let data = ctx.data();
    let result = commands::watch::add(
        &data.app.store,
        &data.app.cbs,
        &data.app.settings.watch,
        &user,
        owner.as_deref(),
        &author_label(ctx),
        data.now(),
    )
    .await;
    answer(ctx, result).await
}

/// Stop watching a user added from chat (Manage Server or the admin role).
#[poise::command(slash_command, rename = "remove")]
async fn watch_remove(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
) -> Result<(), Error> {
    if let Err(refused) = check_admin(ctx) {
        return answer(ctx, Err(refused)).await;
    }
    let data = ctx.data();
    let result = commands::watch::remove(&data.app.store, &data.app.settings.watch, &user);
    answer(ctx, result).await
}

/// Who is watched: from the config file and from chat.
#[poise::command(slash_command, rename = "list")]
async fn watch_list(ctx: Context<'_>) -> Result<(), Error> {
    let data = ctx.data();
    let result = commands::watch::list(&data.app.store, &data.app.settings.watch, data.public());
    answer(ctx, result).await
}

/// Hold back a user's alerts for a while; they still show in the digest.
#[poise::command(slash_command, default_member_permissions = "MANAGE_GUILD")]
async fn mute(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
    #[description = "How long, e.g. 30m, 2h, 3d (at most 30d)"] duration: String,
    #[description = "Only this backup set ID (default: every set)"] backup_set: Option<String>,
) -> Result<(), Error> {
    if let Err(refused) = check_admin(ctx) {
        return answer(ctx, Err(refused)).await;
    }
    let data = ctx.data();
    let result = data.watched().and_then(|watched| {
        commands::mute::mute(
            &data.mutes,
            &watched,
            &user,
            backup_set.as_deref(),
            &duration,
            &author_label(ctx),
            data.now(),
        )
    });
    answer(ctx, result).await
}

/// Post a muted user's alerts again.
#[poise::command(slash_command, default_member_permissions = "MANAGE_GUILD")]
async fn unmute(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
    #[description = "The backup set ID the mute named (default: the whole user)"]
    backup_set: Option<String>,
) -> Result<(), Error> {
    if let Err(refused) = check_admin(ctx) {
        return answer(ctx, Err(refused)).await;
    }
    let data = ctx.data();
    let result = data.watched().and_then(|watched| {
        commands::mute::unmute(&data.mutes, &watched, &user, backup_set.as_deref())
    });
    answer(ctx, result).await
}

/// The restores of a day at a glance.
#[poise::command(slash_command)]
async fn digest(
    ctx: Context<'_>,
    #[description = "The day in the server's zone, YYYY-MM-DD (default: today)"] date: Option<
        String,
    >,
) -> Result<(), Error> {
    let data = ctx.data();
    let result = commands::digest::digest(
        &data.app.store,
        date.as_deref(),
        data.today(),
        data.app.settings.cbs.timezone,
        data.public(),
    );
    answer(ctx, result).await
}

/// The bot's health: poll cycles, backup server, outbox, store, version, uptime.
#[poise::command(slash_command)]
async fn status(ctx: Context<'_>) -> Result<(), Error> {
    let data = ctx.data();
    let report = commands::status::StatusReport::gather(
        &data.app.store,
        &data.app.settings.poll.schedule,
        data.now(),
        data.app.started_at,
    );
    let result = report
        .map_err(CommandError::from)
        .and_then(|r| commands::status::status(&r, data.public()));
    answer(ctx, result).await
}
