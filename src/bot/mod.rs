//! The Discord side of the slash commands: serenity's gateway client with a poise
//! framework whose commands are thin shells over [`crate::commands`].
//!
//! [`start`] connects to the gateway, removes global commands an earlier version may have
//! left, registers the commands in the configured servers (`discord.guild_id` /
//! `discord.guild_ids`) as guild-only commands (no DM or user-install contexts), and
//! answers interactions until the shutdown token is cancelled. A gateway that cannot be
//! reached at start is reported by `probe.rs`, one lost later by `shard_watch.rs`; a session
//! Discord ends for good (a fatal close code) is said once and served again by a new client
//! after a wait (`serve`).
//!
//! Access, in this order, at call time:
//! 1. **The server.** Every interaction is checked with
//!    [`commands::guild_allowed`](crate::commands::guild_allowed) before anything runs:
//!    commands and autocomplete by the framework's `command_check`, the alert buttons
//!    (component interactions, `buttons.rs`) by their handler. One from another server or
//!    a DM gets a short ephemeral refusal (an autocomplete gets no choices), is logged at
//!    warn with the guild id and counted for `/status`. Nothing is looked up or changed.
//! 2. **The member.** State-changing commands (`/watch add|remove`, `/mute`, `/unmute`,
//!    and the alerts' *Mute set 24h* button) need Manage Server, Administrator or
//!    `discord.admin_role` ([`commands::require_admin`](crate::commands::require_admin)).
//!    They are registered without `default_member_permissions`, so that Discord does not
//!    refuse a member who holds only the admin role before the bot sees the command; the
//!    check here is the gate.
//! 3. **The scope.** Lookups show what the team watches
//!    ([`commands::Scope`](crate::commands::Scope)); in a `[[route]]` channel (or a thread
//!    in one) a member sees only that owner's users.
//!
//! An interaction the gateway delivers a second time (a replay after a resume) is dropped
//! by its id before any of this (`replay.rs`): it changes nothing and gets no answer.
//!
//! Each command (`slash.rs`) parses its arguments through the plain functions, defers when
//! it has slow work to do (Discord wants an answer within 3 s), and sends the
//! [`Reply`](crate::commands::Reply) it gets back. Every reply goes out with mentions
//! locked down (`CreateAllowedMentions::new()`), errors and refusals ephemerally. Changes
//! are written to the audit trail ([`AuditLog`]).

use crate::audit::AuditLog;
use crate::cbs::CbsClient;
use crate::clock::SharedClock;
use crate::config::{DiscordSettings, Settings};
use crate::gateway::GatewayHealth;
use crate::metrics;
use crate::mutes::Mutes;
use crate::store::Store;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use data::{BotServer, Data};
use guard::{in_our_server, on_error};
use poise::serenity_prelude as serenity;
use probe::await_gateway;
use reply::{answer, answer_deferred, check_admin, defer, scope};
use secrecy::ExposeSecret;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod buttons;
mod data;
mod guard;
mod probe;
mod redact;
mod replay;
mod reply;
mod shard_watch;
mod slash;

pub use shard_watch::GATEWAY_LOST_GRACE;

/// What the commands need: shared with the rest of the program.
#[derive(Clone)]
pub struct BotContext {
    pub store: Store,
    pub settings: Settings,
    /// The backup servers' clients, in `settings.servers()` order: the pollers' own, so
    /// that lookups share their `cbs.max_concurrency` and `cbs.max_requests_per_second`.
    /// A server without one here gets a client of its own.
    pub clients: Vec<CbsClient>,
    pub clock: SharedClock,
    /// When the program started, for `/status`'s uptime.
    pub started_at: DateTime<Utc>,
}

type Error = anyhow::Error;
type Context<'a> = poise::Context<'a, Data, Error>;

/// A running bot.
pub struct Bot {
    running: JoinHandle<anyhow::Result<()>>,
    gateway: GatewayHealth,
    refused: Arc<AtomicU64>,
}

impl Bot {
    /// The gateway connection's state, for health reports.
    pub fn gateway(&self) -> GatewayHealth {
        self.gateway.clone()
    }

    /// Interactions refused since start for coming from another server or a DM (what
    /// `/status` shows; for metrics too).
    pub fn refused_interactions(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

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
/// Fails when the settings have no `[discord]` section or no `discord.guild_id`, or the
/// client cannot be built.
pub async fn start(ctx: BotContext, shutdown: CancellationToken) -> anyhow::Result<Bot> {
    start_with_health(ctx, GatewayHealth::default(), shutdown).await
}

/// [`start`], reporting the gateway's state to `gateway` (shared with `/healthz`).
pub async fn start_with_health(
    ctx: BotContext,
    gateway: GatewayHealth,
    shutdown: CancellationToken,
) -> anyhow::Result<Bot> {
    let discord = ctx
        .settings
        .discord
        .clone()
        .context("the bot needs a [discord] section in the config")?;
    let guilds = discord.require_guilds()?.to_vec();
    let mutes = Mutes::open(&ctx.store).context("opening the mutes")?;
    let audit = AuditLog::open(&ctx.store).context("opening the audit trail")?;
    let clock = ctx.clock.clone();
    let refused = Arc::new(AtomicU64::new(0));
    let mut servers = Vec::new();
    for server in ctx.settings.servers() {
        let name = &server.cbs.server_name;
        let client = match ctx.clients.get(servers.len()) {
            Some(shared) => shared.clone(),
            None => server.cbs.client()?,
        };
        servers.push(BotServer {
            name: name.clone(),
            client,
            store: ctx.store.server_view(name)?,
            watch: server.watch.to_vec(),
        });
    }
    let data = Data {
        servers,
        app: ctx,
        discord,
        guilds: guilds.clone(),
        mutes,
        gateway: gateway.clone(),
        audit,
        refused: Arc::clone(&refused),
    };
    let client = client(data.clone(), &gateway, &clock).await?;
    let running = tokio::spawn(serve(client, data, gateway.clone(), clock, shutdown));
    Ok(Bot {
        running,
        gateway,
        refused,
    })
}

/// First wait before connecting again after Discord ended the session for good (a fatal
/// close code); it doubles up to the maximum. A reset token (4004) needs a restart with the
/// new one, but an intent enabled in the developer portal (4014) or a passing fault on
/// Discord's side heals without one; the waits keep the IDENTIFYs far below Discord's
/// daily limit.
const FATAL_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(60);
const FATAL_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Builds serenity's client with the commands over `data`. serenity's client cannot be
/// started again once its session has ended, so a new one is built for each try.
async fn client(
    data: Data,
    gateway: &GatewayHealth,
    clock: &SharedClock,
) -> anyhow::Result<serenity::Client> {
    let http = http(&data.discord);
    let guilds = data.guilds.clone();
    let on_ready = gateway.clone();
    let ready_clock = clock.clone();
    let mut commands = vec![
        slash::restores(),
        slash::failures(),
        slash::watch(),
        slash::mute(),
        slash::unmute(),
        slash::digest(),
        slash::status(),
    ];
    for command in &mut commands {
        // Installed to a server and used in a server only: no DMs, no user installs.
        command.install_context = Some(vec![serenity::InstallationContext::Guild]);
        command.interaction_context = Some(vec![serenity::InteractionContext::Guild]);
    }
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands,
            // Runs before every command and autocomplete, before anything is read.
            command_check: Some(|ctx| Box::pin(in_our_server(ctx))),
            // poise's default lets replies ping users; ours never ping anyone.
            allowed_mentions: Some(serenity::CreateAllowedMentions::new()),
            on_error: |error| Box::pin(on_error(error)),
            // Component interactions (the alert buttons) are not commands: routed here.
            event_handler: |framework, event| Box::pin(buttons::on_event(framework, event)),
            post_command: |ctx| {
                Box::pin(async move {
                    let result = reply::outcome(ctx).await;
                    metrics::command(&ctx.command().qualified_name, result)
                })
            },
            ..Default::default()
        })
        .setup(move |ctx, _ready, framework| {
            Box::pin(async move {
                on_ready.set_connected(ready_clock.now());
                // Commands registered by an earlier run still work, so keep serving even
                // when registering fails; each failure is logged.
                remove_global_commands(ctx).await;
                let commands = &framework.options().commands;
                for guild in &guilds {
                    match poise::builtins::register_in_guild(ctx, commands, *guild).await {
                        Ok(()) => tracing::info!(guild = guild.get(), "slash commands registered"),
                        Err(error) => tracing::error!(
                            guild = guild.get(),
                            error = redact::loggable(&error),
                            "registering the slash commands failed"
                        ),
                    }
                }
                Ok(data)
            })
        })
        .build();
    // Interactions arrive without any intent; GUILDS keeps serenity's cache useful.
    serenity::ClientBuilder::new_with_http(http, serenity::GatewayIntents::GUILDS)
        // A replayed interaction (same id, after a resume) is dropped before poise sees it.
        // Each client has its own memory: a new client starts a new session, which
        // Discord never replays into.
        .framework(replay::Dedup::new(framework))
        .await
        .context("building the Discord client")
}

/// How one client's session ended.
enum Ended {
    /// The shutdown token: the close's own outcome.
    Shutdown(anyhow::Result<()>),
    /// Discord (or serenity) ended it: slash commands are gone until the next client.
    Failed(anyhow::Error),
}

/// Serves slash commands until `shutdown`: runs `client`, and when Discord ends its session
/// for good, says so, waits (backing off) and connects again with a new client.
async fn serve(
    mut client: serenity::Client,
    data: Data,
    health: GatewayHealth,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut wait = FATAL_RETRY_FIRST;
    loop {
        match run_session(&mut client, &health, &clock, &shutdown).await {
            Ended::Shutdown(closed) => return closed,
            Ended::Failed(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    retry_in = %humantime::format_duration(wait),
                    "slash commands unavailable; alerts still go out; connecting again after a wait"
                );
                health.set_unavailable(clock.now(), format!("{e:#}"));
            }
        }
        client = loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            wait = (wait * 2).min(FATAL_RETRY_MAX);
            match self::client(data.clone(), &health, &clock).await {
                Ok(client) => break client,
                Err(e) => tracing::warn!(
                    error = redact::loggable(&e),
                    retry_in = %humantime::format_duration(wait),
                    "slash commands still unavailable"
                ),
            }
        };
    }
}

/// One client's session: waits for the gateway to be reachable, then runs until Discord
/// ends it or `shutdown`.
async fn run_session(
    client: &mut serenity::Client,
    health: &GatewayHealth,
    clock: &SharedClock,
    shutdown: &CancellationToken,
) -> Ended {
    let url = client.ws_url.lock().await.clone();
    if !await_gateway(&url, health, clock, shutdown).await {
        return Ended::Shutdown(Ok(()));
    }
    let shard_manager = client.shard_manager.clone();
    let watch = shard_watch::watch_shards(shard_manager.clone(), health.clone(), clock.clone());
    let mut gateway = std::pin::pin!(client.start());
    tokio::select! {
        // Reports a gateway lost after the connect; serenity reconnects it by itself.
        never = watch => match never {},
        ended = &mut gateway => Ended::Failed(match ended {
            Err(e) => anyhow::Error::new(e).context("the Discord gateway connection failed"),
            Ok(()) => anyhow::anyhow!("the Discord gateway connection ended"),
        }),
        _ = shutdown.cancelled() => {
            shard_manager.shutdown_all().await;
            Ended::Shutdown(gateway.await.context("closing the Discord gateway connection"))
        }
    }
}

/// Global commands (registered by an earlier version without `guild_id`) would reach every
/// server the bot is in and DMs: remove them, with one bulk overwrite by an empty list
/// (nothing is created, so it costs nothing against Discord's command-creation limit).
async fn remove_global_commands(ctx: &serenity::Context) {
    match serenity::Command::set_global_commands(ctx, Vec::new()).await {
        Ok(_) => tracing::debug!("no global slash commands left"),
        Err(error) => tracing::error!(
            error = redact::loggable(&error),
            "removing the global slash commands failed"
        ),
    }
}
