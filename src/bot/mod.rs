//! The Discord side of the slash commands: serenity's gateway client with a poise
//! framework whose commands are thin shells over [`crate::commands`].
//!
//! [`start`] connects to the gateway, removes global commands an earlier version may have
//! left, registers the commands in the configured servers (`discord.guild_id` /
//! `discord.guild_ids`) as guild-only commands (no DM or user-install contexts), and
//! answers interactions until the shutdown token is cancelled.
//!
//! Access, in this order, at call time:
//! 1. **The server.** Every interaction is checked with [`commands::guild_allowed`] before
//!    anything runs: commands and autocomplete by the framework's `command_check`, the
//!    alert buttons (component interactions, `buttons.rs`) by their handler. One from
//!    another server or a DM gets a short ephemeral refusal (an autocomplete gets no
//!    choices), is logged at warn with the guild id and counted for `/status`. Nothing is
//!    looked up or changed.
//! 2. **The member.** State-changing commands (`/watch add|remove`, `/mute`, `/unmute`,
//!    and the alerts' *Mute set 24h* button) need Manage Server, Administrator or `discord.admin_role` ([`commands::require_admin`]).
//!    They are registered without `default_member_permissions`, so that Discord does not
//!    refuse a member who holds only the admin role before the bot sees the command; the
//!    check here is the gate.
//! 3. **The scope.** Lookups show what the team watches ([`commands::Scope`]); in a
//!    `[[route]]` channel (or a thread in one) a member sees only that owner's users.
//!
//! Each command (`slash.rs`) parses its arguments through the plain functions, defers when
//! it has slow work to do (Discord wants an answer within 3 s), and sends the [`Reply`] it
//! gets back. Every reply goes out with mentions locked down
//! (`CreateAllowedMentions::new()`), errors and refusals ephemerally. Changes are written
//! to the audit trail ([`AuditLog`]).

use crate::audit::{AuditEntry, AuditLog};
use crate::cbs::CbsClient;
use crate::clock::SharedClock;
use crate::commands::{self, CommandError, CommandResult, Reply, Scope};
use crate::config::{DiscordSettings, Settings};
use crate::gateway::GatewayHealth;
use crate::metrics;
use crate::mutes::Mutes;
use crate::render::escape_markdown;
use crate::store::Store;
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use poise::serenity_prelude as serenity;
use secrecy::ExposeSecret;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod buttons;
mod redact;
mod slash;

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

/// One backup server as the commands see it.
struct BotServer {
    name: String,
    client: CbsClient,
    /// The store as this server's poller sees it (its chat-added users).
    store: Store,
    /// Its users from the config file.
    watch: Vec<crate::config::WatchEntry>,
}

/// poise's user data: the context plus what is derived from it once.
struct Data {
    app: BotContext,
    /// Every backup server, the first (`app.cbs`) first.
    servers: Vec<BotServer>,
    discord: DiscordSettings,
    /// The servers the bot serves (at least one).
    guilds: Vec<serenity::GuildId>,
    mutes: Mutes,
    gateway: GatewayHealth,
    audit: AuditLog,
    /// Interactions refused since start for coming from outside `guilds`.
    refused: Arc<AtomicU64>,
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

    /// Logins on the merged watch lists (config and chat) of every server.
    fn watched(&self) -> Result<BTreeSet<String>, CommandError> {
        let mut logins = BTreeSet::new();
        for server in &self.servers {
            let list = server.store.watch_list(&server.watch)?;
            logins.extend(list.into_iter().map(|w| w.login));
        }
        Ok(logins)
    }

    /// Which backup server a `/mute` or `/unmute` of `user` is for, with the logins
    /// watched there. With one server, `None`: the mute holds on every server, as mutes
    /// did before there could be several. With several, picked as `/restores` picks
    /// ([`commands::restores::pick_server`]): `server:`, else the one server watching
    /// the user.
    fn mute_target(
        &self,
        user: &str,
        wanted: Option<&str>,
    ) -> Result<(Option<String>, BTreeSet<String>), CommandError> {
        if self.servers.len() <= 1 {
            self.named_server(wanted)?;
            return Ok((None, self.watched()?));
        }
        let login = commands::parse_login(user)?;
        let mut watched = Vec::with_capacity(self.servers.len());
        for server in &self.servers {
            let list = server.store.watch_list(&server.watch)?;
            watched.push(list.into_iter().map(|w| w.login).collect::<BTreeSet<_>>());
        }
        let names: Vec<String> = self.servers.iter().map(|s| s.name.clone()).collect();
        let has_user: Vec<bool> = (watched.iter())
            .map(|w| w.iter().any(|l| l.eq_ignore_ascii_case(&login)))
            .collect();
        let i = commands::restores::pick_server(&names, wanted, &has_user, &login, false)?;
        Ok((Some(names[i].clone()), watched.swap_remove(i)))
    }

    /// The users `scope` may look up on any server, with their owners (the first
    /// server's owner wins), and which server each is visible on.
    fn visible(&self, scope: &Scope) -> Result<commands::Visible, CommandError> {
        let mut visible = commands::Visible::default();
        for server in &self.servers {
            let users = self.visible_on(server, scope)?;
            visible.add(commands::Visible::on_server(&server.name, users));
        }
        Ok(visible)
    }

    /// The users `scope` may look up on `server`, with their owners.
    fn visible_on(
        &self,
        server: &BotServer,
        scope: &Scope,
    ) -> Result<BTreeMap<String, String>, CommandError> {
        Ok(commands::visible_users_on(
            &server.store,
            &server.watch,
            self.today(),
            scope,
            Some(&server.name),
        )?)
    }

    /// The server a `server:` argument names (none: the first).
    fn named_server(&self, wanted: Option<&str>) -> Result<&BotServer, CommandError> {
        let names: Vec<String> = self.servers.iter().map(|s| s.name.clone()).collect();
        let i = commands::restores::named_server(&names, wanted)?;
        Ok(&self.servers[i])
    }

    /// Counts and logs an interaction refused for coming from outside our servers.
    fn note_refusal(&self, guild: Option<serenity::GuildId>, user: serenity::UserId, what: &str) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            guild = guild.map_or_else(|| "none (a DM)".to_owned(), |g| g.get().to_string()),
            user = user.get(),
            command = %what,
            refused_since_start = refused,
            "interaction from outside the configured server refused"
        );
    }

    /// Refuses members who may not change state (see [`commands::require_admin`]);
    /// `None`: not a guild member (a DM), who may not.
    fn check_member(&self, member: Option<&serenity::Member>) -> Result<(), CommandError> {
        let (permissions, roles) = match member {
            Some(m) => (m.permissions, m.roles.as_slice()),
            None => (None, &[][..]),
        };
        commands::require_admin(permissions, roles, self.discord.admin_role)
    }

    /// What `member` may see in `channel` (in a thread: `parent` is its channel):
    /// everything for an admin; else, in a `[[route]]` channel or a thread in one, that
    /// owner's users.
    fn scope_of(
        &self,
        channel: serenity::ChannelId,
        parent: Option<serenity::ChannelId>,
        member: Option<&serenity::Member>,
    ) -> Scope {
        let owner = self
            .discord
            .routes
            .iter()
            .find(|r| r.channel == channel || Some(r.channel) == parent)
            .map(|r| r.owner.clone());
        Scope {
            admin: self.check_member(member).is_ok(),
            owner,
        }
    }

    /// Writes a change to the audit trail. The change itself is done by now, so a failure
    /// here is logged, not turned into a failed command.
    fn audit(&self, who: &serenity::User, action: String) {
        let entry = AuditEntry {
            at: self.now(),
            user_id: who.id.get(),
            user_name: who.name.clone(),
            action,
        };
        tracing::info!(user = %entry.user_name, user_id = entry.user_id, action = %entry.action, "changed from chat");
        if let Err(error) = self.audit.record(&entry) {
            tracing::error!(%error, action = %entry.action, "cannot write the audit trail");
        }
    }
}

/// A running bot.
pub struct Bot {
    running: JoinHandle<anyhow::Result<()>>,
    gateway: GatewayHealth,
    refused: Arc<AtomicU64>,
}

/// First wait before trying an unreachable gateway again; it doubles up to the maximum.
const GATEWAY_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(5);
const GATEWAY_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);
/// How long one reachability probe of the gateway may take.
const GATEWAY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a TCP connection to the gateway's host and port can be opened. serenity retries
/// an unreachable gateway every 5 s with a warning each time; probing first lets the bot say
/// it once and back off.
async fn probe_gateway(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url} has no host"))?;
    let port = parsed
        .port_or_known_default()
        .or(match parsed.scheme() {
            "wss" => Some(443),
            "ws" => Some(80),
            _ => None,
        })
        .ok_or_else(|| format!("{url} has no port"))?;
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(GATEWAY_PROBE_TIMEOUT, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot connect to the Discord gateway at {url}: {e}"
        )),
        Err(_) => Err(format!(
            "the Discord gateway at {url} did not answer within {}s",
            GATEWAY_PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Waits until the gateway is reachable (logging the first failure as an error, backing
/// off between tries); `false` when `shutdown` came first.
async fn await_gateway(
    url: &str,
    health: &GatewayHealth,
    clock: &SharedClock,
    shutdown: &CancellationToken,
) -> bool {
    let mut wait = GATEWAY_RETRY_FIRST;
    let mut failed = false;
    loop {
        let probed = tokio::select! {
            probed = probe_gateway(url) => probed,
            _ = shutdown.cancelled() => return false,
        };
        match probed {
            Ok(()) => {
                if failed {
                    tracing::info!(%url, "the Discord gateway is reachable again");
                }
                return true;
            }
            Err(reason) => {
                if !failed {
                    tracing::error!(
                        %reason,
                        "slash commands unavailable; alerts still go out; retrying with back-off"
                    );
                } else {
                    tracing::debug!(%reason, retry_in = ?wait, "gateway still unreachable");
                }
                failed = true;
                health.set_unavailable(clock.now(), reason);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return false,
        }
        wait = (wait * 2).min(GATEWAY_RETRY_MAX);
    }
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
    let http = http(&discord);
    let clock = ctx.clock.clone();
    let refused = Arc::new(AtomicU64::new(0));
    let mut servers = Vec::new();
    for server in ctx.settings.servers() {
        let name = &server.cbs.server_name;
        servers.push(BotServer {
            name: name.clone(),
            client: if servers.is_empty() {
                ctx.cbs.clone()
            } else {
                server.cbs.client()?
            },
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
                Box::pin(async move { metrics::command(&ctx.command().qualified_name, "ok") })
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
    let mut client = serenity::ClientBuilder::new_with_http(http, serenity::GatewayIntents::GUILDS)
        .framework(framework)
        .await
        .context("building the Discord client")?;
    let shard_manager = client.shard_manager.clone();
    let health = gateway.clone();
    let running = tokio::spawn(async move {
        let url = client.ws_url.lock().await.clone();
        if !await_gateway(&url, &health, &clock, &shutdown).await {
            return Ok(());
        }
        let mut gateway = std::pin::pin!(client.start());
        tokio::select! {
            ended = &mut gateway => {
                // Not a shutdown: slash commands are gone until a restart, so say so now
                // rather than when the process stops.
                let ended = ended.context("the Discord gateway connection failed");
                if let Err(e) = &ended {
                    tracing::error!(error = format!("{e:#}"), "slash commands unavailable");
                    health.set_unavailable(clock.now(), format!("{e:#}"));
                }
                ended
            }
            _ = shutdown.cancelled() => {
                shard_manager.shutdown_all().await;
                gateway.await.context("closing the Discord gateway connection")
            }
        }
    });
    Ok(Bot {
        running,
        gateway,
        refused,
    })
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

/// The framework's check before every command and autocomplete: the interaction comes from
/// one of our servers. Refusals are logged and counted here; `on_error` answers them.
async fn in_our_server(ctx: Context<'_>) -> Result<bool, Error> {
    let data = ctx.data();
    let guild = ctx.guild_id();
    if commands::guild_allowed(guild, &data.guilds) {
        return Ok(true);
    }
    data.note_refusal(guild, ctx.author().id, &ctx.command().qualified_name);
    Ok(false)
}

/// The invoking member, for a slash command.
fn member(ctx: Context<'_>) -> Option<&serenity::Member> {
    match ctx {
        poise::Context::Application(app) => app.interaction.member.as_deref(),
        poise::Context::Prefix(_) => None,
    }
}

/// What the invoking member may see ([`Data::scope_of`]).
fn scope(ctx: Context<'_>) -> Scope {
    let parent = match ctx {
        poise::Context::Application(app) => {
            app.interaction.channel.as_ref().and_then(|c| c.parent_id)
        }
        poise::Context::Prefix(_) => None,
    };
    ctx.data().scope_of(ctx.channel_id(), parent, member(ctx))
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

/// Acknowledges a command whose answer takes store reads or a backup-server call (more than
/// Discord's 3 s, at worst), the way the answer will be shown: publicly when
/// `discord.public_lookups` is on, else privately. Arguments are checked before, so a bad
/// one still gets its private answer at once.
async fn defer(ctx: Context<'_>) -> Result<(), Error> {
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
async fn answer_deferred(ctx: Context<'_>, result: CommandResult) -> Result<(), Error> {
    if result.is_err() && ctx.data().public() {
        if let poise::Context::Application(app) = ctx {
            app.interaction.delete_response(ctx).await?;
        }
    }
    answer(ctx, result).await
}

/// Refuses members who may not change state (see [`commands::require_admin`]).
fn check_admin(ctx: Context<'_>) -> Result<(), CommandError> {
    ctx.data().check_member(member(ctx))
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

async fn on_error(error: poise::FrameworkError<'_, Data, Error>) {
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
        other => poise::builtins::on_error(other).await.map_err(Error::from),
    };
    if let Err(error) = sent {
        tracing::error!(
            error = redact::loggable(&error),
            "answering a failed command failed"
        );
    }
}
