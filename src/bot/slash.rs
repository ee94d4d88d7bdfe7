//! The slash commands as poise sees them: each checks who may run it, parses, defers when
//! it has slow work, calls the plain function in [`crate::commands`] and sends its answer.
//! The `///` doc of each command is its help text in Discord.

use super::{answer, answer_deferred, check_admin, defer, scope, Context, Error};
use crate::commands::restores::RestoresArgs;
use crate::commands::watch::invoker_label;
use crate::commands::{self, code, CommandError};
use poise::serenity_prelude as serenity;
use std::sync::atomic::Ordering;

fn author_label(ctx: Context<'_>) -> String {
    let author = ctx.author();
    invoker_label(&author.name, author.id.get())
}

/// A `backup_set` argument as the mute commands read it: trimmed, empty meaning none.
fn set_arg(arg: Option<&str>) -> Option<&str> {
    arg.map(str::trim).filter(|s| !s.is_empty())
}

async fn complete_user(ctx: Context<'_>, partial: &str) -> serenity::CreateAutocompleteResponse {
    let data = ctx.data();
    let users = data.visible(&scope(ctx)).unwrap_or_else(|error| {
        tracing::warn!(%error, "autocomplete: cannot read the store");
        commands::Visible::default()
    });
    commands::matching_users(users.users.keys(), partial)
        .into_iter()
        .fold(serenity::CreateAutocompleteResponse::new(), |r, u| {
            r.add_string_choice(u.clone(), u)
        })
}

/// The text of the string option `name` already given in this command (not the one being
/// completed).
fn given_option<'a>(ctx: Context<'a>, name: &str) -> Option<&'a str> {
    let poise::Context::Application(app) = ctx else {
        return None;
    };
    app.args.iter().find_map(|o| match o.value {
        serenity::ResolvedValue::String(text) if o.name == name => Some(text),
        _ => None,
    })
}

/// Server names; once a `user:` this member may see is given, only the servers that
/// user is on.
async fn complete_server(ctx: Context<'_>, partial: &str) -> serenity::CreateAutocompleteResponse {
    let data = ctx.data();
    let user = given_option(ctx, "user").map(str::trim);
    let on: Vec<String> = match user.filter(|u| !u.is_empty()) {
        Some(user) => {
            let visible = data.visible(&scope(ctx)).unwrap_or_else(|error| {
                tracing::warn!(%error, "autocomplete: cannot read the store");
                commands::Visible::default()
            });
            (visible.on.into_iter())
                .filter(|(_, login)| login.eq_ignore_ascii_case(user))
                .map(|(server, _)| server)
                .collect()
        }
        None => Vec::new(),
    };
    // A user nobody here watches (or still being typed) narrows nothing.
    let names = (data.servers.iter())
        .map(|s| &s.name)
        .filter(|name| on.is_empty() || on.contains(name));
    commands::matching_users(names, partial)
        .into_iter()
        .fold(serenity::CreateAutocompleteResponse::new(), |r, name| {
            r.add_string_choice(name.clone(), name)
        })
}

/// Restore jobs of one user on one day, live from the backup server.
#[poise::command(slash_command)]
pub(super) async fn restores(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
    #[description = "The day in the server's zone, YYYY-MM-DD (default: today)"] date: Option<
        String,
    >,
    #[description = "The backup server to ask, when there are several"]
    #[autocomplete = "complete_server"]
    server: Option<String>,
    #[description = "Which page of a long list (each page is up to 10 messages; default: 1)"]
    #[min = 1]
    page: Option<i64>,
) -> Result<(), Error> {
    let data = ctx.data();
    let scope = scope(ctx);
    let parsed = commands::parse_login(&user).and_then(|login| {
        let mut visible = Vec::with_capacity(data.servers.len());
        for server in &data.servers {
            visible.push(data.visible_on(server, &scope)?);
        }
        let names: Vec<String> = data.servers.iter().map(|s| s.name.clone()).collect();
        let has_user: Vec<bool> = visible.iter().map(|v| v.contains_key(&login)).collect();
        let i = commands::restores::pick_server(
            &names,
            server.as_deref(),
            &has_user,
            &login,
            scope.admin,
        )?;
        let args = RestoresArgs::parse(
            &user,
            date.as_deref(),
            data.now(),
            data.servers[i].client.timezone(),
            &visible[i],
            scope.admin,
        )?;
        let args = RestoresArgs {
            several_servers: data.servers.len() > 1,
            ..args
        };
        Ok((&data.servers[i], args))
    });
    let (server, args) = match parsed {
        Ok(args) => args,
        Err(error) => return answer(ctx, Err(error)).await,
    };
    // The CBS may take longer than Discord's 3 s: acknowledge first.
    if data.public() {
        ctx.defer().await?;
    } else {
        ctx.defer_ephemeral().await?;
    }
    let result =
        commands::restores::restores(&server.client, &server.store, &args, page, data.public())
            .await;
    answer(ctx, result).await
}

/// Failed restores the bot has recorded, newest first.
#[poise::command(slash_command)]
pub(super) async fn failures(
    ctx: Context<'_>,
    #[description = "How many days back, 1 to 30 (default: 1, today)"]
    #[min = 1]
    #[max = 30]
    days: Option<i64>,
    #[description = "Only this user"]
    #[autocomplete = "complete_user"]
    user: Option<String>,
    #[description = "Which page of a long list (each page is up to 10 messages; default: 1)"]
    #[min = 1]
    page: Option<i64>,
) -> Result<(), Error> {
    let data = ctx.data();
    let scope = scope(ctx);
    let now = data.now();
    let todays: Vec<(String, chrono::NaiveDate)> = (data.servers.iter().skip(1))
        .map(|s| {
            let today = now.with_timezone(&s.client.timezone()).date_naive();
            (s.client.server_name().to_owned(), today)
        })
        .collect();
    let args = commands::failures::FailuresArgs {
        days,
        user: user.as_deref(),
        page,
        servers_named: data.servers.len() > 1,
        todays: &todays,
    };
    let visible = match data.visible(&scope) {
        Ok(visible) => visible,
        Err(error) => return answer(ctx, Err(error)).await,
    };
    if let Err(error) = args.check(&visible) {
        return answer(ctx, Err(error)).await;
    }
    // Up to 30 days of records to read: acknowledge first, and read them off the async
    // workers, which the poll loop, the gateway and other commands need meanwhile.
    defer(ctx).await?;
    let (store, today, public) = (data.app.store.clone(), data.today(), data.public());
    let (days, servers_named) = (args.days, args.servers_named);
    let result = off_the_runtime(move || {
        let args = commands::failures::FailuresArgs {
            days,
            user: user.as_deref(),
            page,
            servers_named,
            todays: &todays,
        };
        commands::failures::failures(&store, args, &visible, &scope, today, public)
    })
    .await;
    answer_deferred(ctx, result).await
}

/// The watch list: the backup users whose restores are polled.
#[poise::command(
    slash_command,
    subcommands("watch_add", "watch_remove", "watch_list"),
    subcommand_required
)]
pub(super) async fn watch(_ctx: Context<'_>) -> Result<(), Error> {
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
    #[description = "The backup server the user is on (default: the first)"]
    #[autocomplete = "complete_server"]
    server: Option<String>,
) -> Result<(), Error> {
    if let Err(refused) = check_admin(ctx) {
        return answer(ctx, Err(refused)).await;
    }
    let data = ctx.data();
    let target = match data.named_server(server.as_deref()) {
        Ok(target) => target,
        Err(error) => return answer(ctx, Err(error)).await,
    };
    let result = commands::watch::add(
        &target.store,
        &target.client,
        &target.watch,
        &user,
        owner.as_deref(),
        &author_label(ctx),
        data.now(),
    )
    .await;
    if result.is_ok() {
        let owned = owner
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| format!(" (owner {})", code(o)))
            .unwrap_or_default();
        data.audit(
            ctx.author(),
            format!("watch add {}{owned}", code(user.trim())),
        );
    }
    answer(ctx, result).await
}

/// Stop watching a user added from chat (Manage Server or the admin role).
#[poise::command(slash_command, rename = "remove")]
async fn watch_remove(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
    #[description = "The backup server the user is on (default: the first)"]
    #[autocomplete = "complete_server"]
    server: Option<String>,
) -> Result<(), Error> {
    if let Err(refused) = check_admin(ctx) {
        return answer(ctx, Err(refused)).await;
    }
    let data = ctx.data();
    let result = data
        .named_server(server.as_deref())
        .and_then(|target| commands::watch::remove(&target.store, &target.watch, &user));
    if result.is_ok() {
        data.audit(ctx.author(), format!("watch remove {}", code(user.trim())));
    }
    answer(ctx, result).await
}

/// Who is watched, who added them, and who muted whom.
#[poise::command(slash_command, rename = "list")]
async fn watch_list(
    ctx: Context<'_>,
    #[description = "Which page of a long list (each page is up to 10 messages; default: 1)"]
    #[min = 1]
    page: Option<i64>,
    #[description = "The backup server whose users to list (default: the first)"]
    #[autocomplete = "complete_server"]
    server: Option<String>,
) -> Result<(), Error> {
    let data = ctx.data();
    let result = data.named_server(server.as_deref()).and_then(|target| {
        // The mutes that hold on this server: its own and those of every server.
        let mut mutes = data.mutes.active(data.now())?;
        mutes.retain(|m| m.server.as_deref().is_none_or(|s| s == target.name));
        commands::watch::list(
            &target.store,
            &target.watch,
            &mutes,
            &scope(ctx),
            page,
            data.public(),
        )
    });
    answer(ctx, result).await
}

/// Hold back a user's alerts for a while; they still show in the digest.
#[poise::command(slash_command)]
pub(super) async fn mute(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
    #[description = "How long, e.g. 30m, 2h, 3d (1m to 30d)"] duration: String,
    #[description = "Only this backup set ID (default: every set)"] backup_set: Option<String>,
    #[description = "The backup server, when there are several"]
    #[autocomplete = "complete_server"]
    server: Option<String>,
) -> Result<(), Error> {
    if let Err(refused) = check_admin(ctx) {
        return answer(ctx, Err(refused)).await;
    }
    let data = ctx.data();
    let target = data.mute_target(&user, server.as_deref());
    let on = target.as_ref().ok().and_then(|(s, _)| s.clone());
    let result = target.and_then(|(server, watched)| {
        commands::mute::mute(
            &data.mutes,
            &watched,
            server.as_deref(),
            &user,
            backup_set.as_deref(),
            &duration,
            &author_label(ctx),
            data.now(),
        )
    });
    if result.is_ok() {
        let action = format!(
            "mute {}{} for {}",
            commands::mute::scope_text(user.trim(), set_arg(backup_set.as_deref())),
            commands::mute::on_server(on.as_deref()),
            code(duration.trim())
        );
        data.audit(ctx.author(), action);
    }
    answer(ctx, result).await
}

/// Post a muted user's alerts again.
#[poise::command(slash_command)]
pub(super) async fn unmute(
    ctx: Context<'_>,
    #[description = "The backup user's login name"]
    #[autocomplete = "complete_user"]
    user: String,
    #[description = "The backup set ID the mute named (default: the whole user)"]
    backup_set: Option<String>,
    #[description = "The backup server the mute named, when there are several"]
    #[autocomplete = "complete_server"]
    server: Option<String>,
) -> Result<(), Error> {
    if let Err(refused) = check_admin(ctx) {
        return answer(ctx, Err(refused)).await;
    }
    let data = ctx.data();
    let target = data.mute_target(&user, server.as_deref());
    let on = target.as_ref().ok().and_then(|(s, _)| s.clone());
    let result = target.and_then(|(server, watched)| {
        commands::mute::unmute(
            &data.mutes,
            &watched,
            server.as_deref(),
            &user,
            backup_set.as_deref(),
        )
    });
    if result.is_ok() {
        let action = format!(
            "unmute {}{}",
            commands::mute::scope_text(user.trim(), set_arg(backup_set.as_deref())),
            commands::mute::on_server(on.as_deref())
        );
        data.audit(ctx.author(), action);
    }
    answer(ctx, result).await
}

/// The restores of a day at a glance.
#[poise::command(slash_command)]
pub(super) async fn digest(
    ctx: Context<'_>,
    #[description = "The day in the server's zone, YYYY-MM-DD (default: today)"] date: Option<
        String,
    >,
) -> Result<(), Error> {
    let data = ctx.data();
    let scope = scope(ctx);
    let kept = crate::config::kept_days(
        data.app.settings.state.retention_days,
        &data.app.settings.poll,
    );
    if let Err(error) = commands::parse_kept_date(date.as_deref(), data.today(), kept) {
        return answer(ctx, Err(error)).await;
    }
    let visible = match data.visible(&scope) {
        Ok(visible) => visible,
        Err(error) => return answer(ctx, Err(error)).await,
    };
    // A whole day of records to read: acknowledge first, and read them off the async
    // workers (see `failures`).
    defer(ctx).await?;
    let store = data.app.store.clone();
    let (today, tz, public) = (data.today(), data.app.settings.cbs.timezone, data.public());
    let servers_named = data.servers.len() > 1;
    let result = off_the_runtime(move || {
        commands::digest::digest(
            &store,
            date.as_deref(),
            today,
            tz,
            &scope,
            &visible,
            servers_named,
            public,
        )
    })
    .await;
    answer_deferred(ctx, result).await
}

/// The bot's health: poll cycles, backup server, outbox, store, changes, version, uptime.
#[poise::command(slash_command)]
pub(super) async fn status(ctx: Context<'_>) -> Result<(), Error> {
    let data = ctx.data();
    let report = commands::status::StatusReport::gather(
        &data.app.store,
        &data.app.settings.poll.schedule,
        data.now(),
        data.app.started_at,
        data.refused.load(Ordering::Relaxed),
    )
    .map(|mut report| {
        report.slash_commands = data.gateway.unavailable();
        report.for_scope(&scope(ctx))
    });
    let result = report
        .map_err(CommandError::from)
        .and_then(|r| commands::status::status(&r, data.public()));
    answer(ctx, result).await
}

/// Runs a lookup that reads many records on tokio's blocking pool: sled's reads block, and
/// twenty `/digest`s of a 50,000-job day on the async workers froze the poll loop, the
/// gateway and every other command for over a minute.
async fn off_the_runtime(
    lookup: impl FnOnce() -> commands::CommandResult + Send + 'static,
) -> commands::CommandResult {
    match tokio::task::spawn_blocking(lookup).await {
        Ok(result) => result,
        // As if it had run here.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(commands::CommandError::Usage(
            "The bot is stopping; ask again once it is back.".into(),
        )),
    }
}
