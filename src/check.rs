//! `restorewatch check`: a pre-flight, in the spirit of `promtool check config`.
//!
//! The config (file and environment) has been checked by the time this runs; a bad one
//! never gets here (exit 2). Offline, that is all, but for a warning when a server's
//! `cbs.request_timeout` is longer than the poll period. Online, [`check`] then asks the parts
//! the program depends on, as the program itself would:
//! - the CBS: are the system user's credentials accepted (asked even with no watched
//!   users), with `[discover]` on how many users `2/ListUsers.do` lists (or why it
//!   refuses), and what does each watched user have today;
//! - Discord (with a `[discord]` section): whose token is this, and for each configured
//!   channel, is it a channel messages can be posted in (not a category or forum), can the
//!   bot see it, send messages and embed links there; is the mention role mentionable.
//!
//! Each finding is one line; the result says whether everything answered as needed.

use crate::app::cbs_client_for;
use crate::clock::SharedClock;
use crate::config::{DiscordSettings, Loaded, ServerRef, Settings};
use poise::serenity_prelude as serenity;
use secrecy::ExposeSecret;
use serenity::{ChannelId, GuildId, Permissions, RoleId};
use std::io::Write;
use std::time::Duration;

/// A login no backup user has: asking for it tells accepted credentials ("user not
/// found") from refused ones without knowing any user.
const PROBE_LOGIN: &str = "restorewatch-credentials-check";
/// Bound on each Discord request of the check.
const DISCORD_TIMEOUT: Duration = Duration::from_secs(10);

/// `check --print-config`: the effective configuration as TOML-like lines, each value with
/// where it came from; secrets redacted.
pub fn print_config(loaded: &Loaded, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "# effective configuration of {} (origin after each value)",
        loaded.path.display()
    )?;
    let mut section = String::new();
    for (key, value) in loaded.settings.describe() {
        let (this, name) = key.split_once('.').unwrap_or(("", &key));
        if this != section {
            // `watch[0]` and `watch[1]` are each a `[[watch]]` table.
            match this.split_once('[') {
                Some((array, _)) => writeln!(out, "[[{array}]]")?,
                None => writeln!(out, "[{this}]")?,
            }
            section = this.to_owned();
        }
        // `discord.guild_id` and `guild_ids` are printed as the one list they amount to,
        // which came from wherever either was set.
        let origin = match key.as_str() {
            "discord.guild_ids" if !loaded.origins.contains_key(&key) => {
                loaded.origin("discord.guild_id")
            }
            _ => loaded.origin(&key),
        };
        writeln!(out, "{name} = {value}  # {origin}")?;
    }
    Ok(())
}

/// The summary of the offline checks: the config is usable, and when each schedule fires.
pub fn offline(loaded: &Loaded, clock: &SharedClock, out: &mut dyn Write) -> std::io::Result<()> {
    let s = &loaded.settings;
    let now = clock.now();
    let next = |schedule: &crate::schedule::CronSchedule| {
        schedule
            .next_after(now)
            .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
    };
    writeln!(out, "config OK: {}", loaded.path.display())?;
    writeln!(
        out,
        "  poll.schedule {:?}: next {}",
        s.poll.schedule.to_string(),
        next(&s.poll.schedule)
    )?;
    writeln!(
        out,
        "  digest.schedule {:?}: next {}",
        s.digest.schedule.to_string(),
        next(&s.digest.schedule)
    )?;
    if let Some(rollup) = &s.summary.schedule {
        writeln!(
            out,
            "  summary.schedule {:?}: next {}",
            rollup.to_string(),
            next(rollup)
        )?;
    }
    writeln!(
        out,
        "  {} backup server(s), {} watched user(s) in the file; Discord {}",
        s.servers().len(),
        s.servers().iter().map(|s| s.watch.len()).sum::<usize>(),
        if s.discord.is_some() {
            "on"
        } else {
            "off (console)"
        }
    )?;
    // Not an error: the program copes (the server skips the ticks its cycle runs past, the
    // others poll at them), but the schedule then says more than happens.
    let period = s.poll.schedule.period_after(now);
    // Polls further apart than the catch-up reaches back miss the dates in between.
    let reach = chrono::Duration::days(i64::from(s.poll.max_catch_up_days));
    if let Some(gap) = period.filter(|p| *p > reach) {
        writeln!(
            out,
            "  warning: poll.schedule fires every {}, further apart than poll.max_catch_up_days \
             ({} days) reaches back: the restores of the dates in between are never read",
            humantime::format_duration(gap.to_std().unwrap_or_default()),
            s.poll.max_catch_up_days,
        )?;
    }
    let several = s.several_servers();
    for (i, server) in s.servers().iter().enumerate() {
        let timeout = server.cbs.request_timeout;
        let longer = period
            .and_then(|p| p.to_std().ok())
            .filter(|p| timeout > *p);
        if let Some(period) = longer {
            let key = if several {
                format!("cbs[{i}].request_timeout")
            } else {
                "cbs.request_timeout".to_owned()
            };
            writeln!(
                out,
                "  warning: {key} ({}) is longer than the poll.schedule period ({}): a cycle \
                 that waits out the timeout runs past poll ticks, and that server skips them",
                humantime::format_duration(timeout),
                humantime::format_duration(period),
            )?;
        }
    }
    Ok(())
}

/// The online checks: the CBS, then Discord. Returns whether everything answered as needed.
pub async fn check(
    settings: &Settings,
    clock: SharedClock,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let mut cbs_ok = true;
    for server in settings.servers() {
        cbs_ok &= check_cbs(server, clock.clone(), out).await?;
    }
    let discord_ok = match &settings.discord {
        Some(discord) => check_discord(discord, out).await?,
        None => true,
    };
    Ok(cbs_ok && discord_ok)
}

/// One backup server: its credentials, then each of its users in the file.
async fn check_cbs(
    server: ServerRef<'_>,
    clock: SharedClock,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let cbs = server.cbs;
    let client = cbs_client_for(cbs)?;
    let today = clock.now().with_timezone(&cbs.timezone).date_naive();
    writeln!(
        out,
        "CBS {} ({}), today {today} ({}):",
        cbs.server_name, cbs.url, cbs.timezone
    )?;
    let mut all_ok = match client.list_restore_jobs(PROBE_LOGIN, "", today).await {
        // A server that knows no such user has accepted the credentials all the same.
        Ok(_) => true,
        Err(e) if matches!(e, crate::cbs::CbsError::Api { .. }) && e.outage_reason().is_none() => {
            true
        }
        Err(e) => {
            writeln!(out, "  credentials of {}: FAILED: {e}", cbs.sys_user)?;
            false
        }
    };
    if all_ok {
        writeln!(out, "  credentials of {}: accepted", cbs.sys_user)?;
    }
    if server.discover.enabled {
        all_ok &= check_discovery(&client, server.discover, out).await?;
    } else if server.watch.is_empty() {
        writeln!(
            out,
            "  no [[watch]] users in the config (users added from chat live in the store)"
        )?;
    }
    for user in server.watch {
        match client
            .list_restore_jobs(&user.login, &user.owner, today)
            .await
        {
            Ok(list) => {
                let mut counts = crate::event::ClassCounts::new();
                for job in &list.jobs {
                    *counts.entry(job.class).or_default() += 1;
                }
                let counts: Vec<String> = counts.iter().map(|(c, n)| format!("{n} {c}")).collect();
                writeln!(
                    out,
                    "  {}: {} job(s){}{}",
                    user.login,
                    list.jobs.len(),
                    if counts.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", counts.join(", "))
                    },
                    if list.skipped.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} unreadable item(s) skipped)", list.skipped.len())
                    },
                )?;
            }
            Err(e) => {
                all_ok = false;
                writeln!(out, "  {}: FAILED: {e}", user.login)?;
            }
        }
    }
    Ok(all_ok)
}

/// `[discover]`: lists the users as discovery will (`2/ListUsers.do`, one call per
/// `discover.owners` entry, else one for every user) and says how many each call listed and
/// the filters keep, or why it failed (a role refusal names the role it needs).
async fn check_discovery(
    client: &crate::cbs::CbsClient,
    discover: &crate::config::DiscoverSettings,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let owners: Vec<&str> = if discover.owners.is_empty() {
        vec![""]
    } else {
        discover.owners.iter().map(String::as_str).collect()
    };
    let mut all_ok = true;
    let mut kept = 0;
    for owner in owners {
        let what = match owner {
            "" => "discovery (2/ListUsers.do)".to_owned(),
            owner => format!("discovery (2/ListUsers.do) of owner {owner:?}"),
        };
        match client.list_users(owner).await {
            Ok(users) => {
                let listed = users.len();
                let taken = crate::discover::select(discover, users).len();
                kept += taken;
                writeln!(
                    out,
                    "  {what}: {listed} user(s) listed, {taken} kept by discover.owners and \
                     discover.exclude"
                )?;
            }
            Err(e) => {
                all_ok = false;
                writeln!(out, "  {what}: FAILED: {e}")?;
            }
        }
    }
    if all_ok && kept == 0 {
        writeln!(
            out,
            "  warning: discovery keeps no user: nobody but the [[watch]] users and those \
             added from chat would be watched"
        )?;
    }
    Ok(all_ok)
}

/// serenity's REST client as the program builds it, with a bound on each request.
fn discord_http(discord: &DiscordSettings) -> anyhow::Result<serenity::Http> {
    let client = reqwest::Client::builder()
        .timeout(DISCORD_TIMEOUT)
        .build()?;
    let builder = serenity::HttpBuilder::new(discord.token.expose_secret()).client(client);
    Ok(match &discord.api_base {
        Some(base) => builder
            .proxy(base.as_str().trim_end_matches('/'))
            .ratelimiter_disabled(true)
            .build(),
        None => builder.build(),
    })
}

/// What the bot needs in a channel it posts to.
const NEEDED: [(Permissions, &str); 3] = [
    (Permissions::VIEW_CHANNEL, "view the channel"),
    (Permissions::SEND_MESSAGES, "send messages"),
    (Permissions::EMBED_LINKS, "embed links"),
];

async fn check_discord(discord: &DiscordSettings, out: &mut dyn Write) -> anyhow::Result<bool> {
    let http = discord_http(discord)?;
    let me = match http.get_current_user().await {
        Ok(me) => me,
        Err(e) => {
            writeln!(out, "Discord: token FAILED: {}", discord_error(&e))?;
            return Ok(false);
        }
    };
    writeln!(out, "Discord: token of {} ({}) accepted", me.name, me.id)?;
    let mut channels: Vec<(ChannelId, String)> =
        vec![(discord.alert_channel, "alert channel".to_owned())];
    if discord.digest_channel != discord.alert_channel {
        channels.push((discord.digest_channel, "digest channel".to_owned()));
    }
    for route in &discord.routes {
        channels.push((route.channel, format!("channel of owner {:?}", route.owner)));
    }
    let mut all_ok = true;
    let mut guilds = Vec::new();
    for (channel, what) in &channels {
        match channel_permissions(&http, *channel, me.id).await {
            Ok((guild, permissions, kind)) => {
                if !discord.guilds.is_empty() && !discord.guilds.contains(&guild) {
                    all_ok = false;
                    writeln!(
                        out,
                        "  {what} {channel}: FAILED: it is in server {guild}, not in \
                         discord.guild_id or discord.guild_ids"
                    )?;
                    continue;
                }
                guilds.push(guild);
                if let Some(name) = no_messages_in(kind) {
                    all_ok = false;
                    writeln!(
                        out,
                        "  {what} {channel}: FAILED: it is a {name} (channel type {}), where no \
                         message can be posted; use a text or announcement channel or a thread",
                        u8::from(kind)
                    )?;
                    continue;
                }
                let missing: Vec<&str> = NEEDED
                    .iter()
                    .filter(|(p, _)| !permissions.contains(*p))
                    .map(|(_, name)| *name)
                    .collect();
                if missing.is_empty() {
                    writeln!(
                        out,
                        "  {what} {channel}: can view, send messages and embed links"
                    )?;
                } else {
                    all_ok = false;
                    writeln!(
                        out,
                        "  {what} {channel}: FAILED: the bot may not {}",
                        missing.join(", ")
                    )?;
                }
            }
            Err(reason) => {
                all_ok = false;
                writeln!(out, "  {what} {channel}: FAILED: {reason}")?;
            }
        }
    }
    if let Some(role) = discord.mention_role {
        let guild = guilds.first().or(discord.guilds.first()).copied();
        match guild {
            Some(guild) => {
                let ok = check_role(&http, guild, role, out).await?;
                all_ok &= ok;
            }
            None => writeln!(
                out,
                "  mention role {role}: not checked (no server known: set discord.guild_id)"
            )?,
        }
    }
    Ok(all_ok)
}

/// What a channel of this type is called, when it is one where messages cannot be posted
/// (Discord answers such a post 400, code 50008): a category, a forum, a media or a
/// directory channel. Text, announcement, voice and stage channels and threads take them.
fn no_messages_in(kind: serenity::ChannelType) -> Option<&'static str> {
    match u8::from(kind) {
        4 => Some("category"),
        14 => Some("directory channel"),
        15 => Some("forum channel"),
        16 => Some("media channel"),
        _ => None,
    }
}

/// The bot's permissions in `channel`, computed the way Discord does from the server's
/// roles, the bot's roles and the channel's overwrites, and the channel's type.
async fn channel_permissions(
    http: &serenity::Http,
    channel: ChannelId,
    me: serenity::UserId,
) -> Result<(GuildId, Permissions, serenity::ChannelType), String> {
    // Read as JSON first: serenity's `Channel` does not know every channel type (a media
    // channel, 16, fails to decode), and the type is what this check must report.
    let request = ::serenity::http::Request::new(
        ::serenity::http::Route::Channel {
            channel_id: channel,
        },
        ::serenity::http::LightMethod::Get,
    );
    let found: serde_json::Value = match http.request(request).await {
        Ok(response) => response
            .json()
            .await
            .map_err(|e| format!("cannot read it: {e}"))?,
        Err(e) => return Err(format!("cannot see it: {}", discord_error(&e))),
    };
    if found.get("guild_id").is_none_or(serde_json::Value::is_null) {
        return Err("not a server channel".to_owned());
    }
    let channel: serenity::GuildChannel =
        serde_json::from_value(found).map_err(|e| format!("cannot read it: {e}"))?;
    let guild = http
        .get_guild(channel.guild_id)
        .await
        .map_err(|e| format!("cannot read its server: {}", discord_error(&e)))?;
    let member = http.get_member(channel.guild_id, me).await.map_err(|e| {
        format!(
            "the bot is not a member of its server: {}",
            discord_error(&e)
        )
    })?;
    let permissions = guild.user_permissions_in(&channel, &member);
    Ok((guild.id, permissions, channel.kind))
}

async fn check_role(
    http: &serenity::Http,
    guild: GuildId,
    role: RoleId,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let roles = match http.get_guild_roles(guild).await {
        Ok(roles) => roles,
        Err(e) => {
            writeln!(
                out,
                "  mention role {role}: FAILED: cannot read the roles: {}",
                discord_error(&e)
            )?;
            return Ok(false);
        }
    };
    Ok(match roles.iter().find(|r| r.id == role) {
        Some(r) if r.mentionable => {
            writeln!(out, "  mention role {role} ({}): mentionable", r.name)?;
            true
        }
        Some(r) => {
            writeln!(
                out,
                "  mention role {role} ({}): FAILED: not mentionable; alerts would not ping \
                 it (turn on \"Allow anyone to @mention this role\", or give the bot Mention Everyone)",
                r.name
            )?;
            false
        }
        None => {
            writeln!(
                out,
                "  mention role {role}: FAILED: no such role in server {guild}"
            )?;
            false
        }
    })
}

/// A serenity error as one line: Discord's status and message for a refusal.
fn discord_error(e: &serenity::Error) -> String {
    match e {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r)) => format!(
            "{} {} (code {})",
            r.status_code.as_u16(),
            r.error.message,
            r.error.code
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn offline_text(toml: &str) -> String {
        let settings = Settings::from_toml_str(toml, &|_| None).unwrap();
        let loaded = Loaded {
            settings,
            path: "restorewatch.toml".into(),
            origins: Default::default(),
        };
        let clock: SharedClock = std::sync::Arc::new(crate::clock::ManualClock::new(
            Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap(),
        ));
        let mut out = Vec::new();
        offline(&loaded, &clock, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn offline_prints_when_each_schedule_fires_next() {
        let one = "[cbs]\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\nsys_pwd = \"pw\"\n";
        let text = offline_text(one);
        assert!(
            text.contains("  poll.schedule \"*/5 * * * *\": next 2024-06-26T12:05:00+00:00"),
            "{text}"
        );
        assert!(
            text.contains("  digest.schedule \"0 8 * * *\": next 2024-06-27T08:00:00+00:00"),
            "{text}"
        );
        assert!(!text.contains("summary.schedule"), "none set: {text}");
        let rollup = format!("{one}[summary]\nschedule = \"0 17 * * *\"\n");
        let text = offline_text(&rollup);
        assert!(
            text.contains("  summary.schedule \"0 17 * * *\": next 2024-06-26T17:00:00+00:00"),
            "{text}"
        );
    }

    #[test]
    fn offline_warns_of_polls_further_apart_than_the_catch_up_reaches() {
        let one = "[cbs]\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\nsys_pwd = \"pw\"\n";
        for yearly in ["0 0 1 1 *", "0 0 29 2 *"] {
            let text = offline_text(&format!("{one}[poll]\nschedule = \"{yearly}\"\n"));
            assert!(
                text.contains("warning: poll.schedule fires every ")
                    && text.contains("further apart than poll.max_catch_up_days"),
                "{text}"
            );
        }
        // A weekly poll is within the default catch-up of 7 days.
        let weekly = offline_text(&format!("{one}[poll]\nschedule = \"0 0 * * 0\"\n"));
        assert!(!weekly.contains("max_catch_up_days"), "{weekly}");
    }

    #[test]
    fn offline_warns_of_a_request_timeout_longer_than_the_poll_period() {
        let one = "[cbs]\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\nsys_pwd = \"pw\"\n";
        // The defaults: a 30 s timeout, a poll every 5 minutes.
        assert!(
            !offline_text(one).contains("warning"),
            "{}",
            offline_text(one)
        );
        let fast = format!("{one}[poll]\nschedule = \"*/5 * * * * *\"\n");
        let text = offline_text(&fast);
        assert!(text.contains("config OK"), "{text}");
        assert!(
            text.contains(
                "  warning: cbs.request_timeout (30s) is longer than the poll.schedule period \
                 (5s): a cycle that waits out the timeout runs past poll ticks"
            ),
            "{text}"
        );
        let two = "[[cbs]]\nname = \"eu\"\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\nsys_pwd = \"pw\"\n\
                   request_timeout = \"1m\"\n\
                   [[cbs]]\nname = \"us\"\nurl = \"http://127.0.0.2:9\"\nsys_user = \"api\"\nsys_pwd = \"pw\"\n\
                   request_timeout = \"6m\"\n";
        let text = offline_text(two);
        assert_eq!(text.matches("warning").count(), 1, "{text}");
        assert!(
            text.contains(
                "warning: cbs[1].request_timeout (6m) is longer than the poll.schedule period (5m)"
            ),
            "{text}"
        );
    }
}
