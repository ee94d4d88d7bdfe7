//! [`Data`], poise's user data: the program's context plus what the commands derive from
//! it once (the backup servers, guilds, mutes, audit trail), and the lookups every command
//! shares: today's date, watched and visible users, the server a `server:` names, and the
//! member and scope checks.

use super::BotContext;
use crate::audit::{AuditEntry, AuditLog};
use crate::cbs::CbsClient;
use crate::commands::{self, CommandError, Scope};
use crate::config::DiscordSettings;
use crate::gateway::GatewayHealth;
use crate::mutes::Mutes;
use crate::store::Store;
use crate::tz::Tz;
use chrono::{DateTime, NaiveDate, Utc};
use poise::serenity_prelude as serenity;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One backup server as the commands see it.
#[derive(Clone)]
pub(super) struct BotServer {
    pub(super) name: String,
    pub(super) client: CbsClient,
    /// The store as this server's poller sees it (its chat-added users).
    pub(super) store: Store,
    /// Its users from the config file.
    pub(super) watch: Vec<crate::config::WatchEntry>,
}

/// poise's user data: the context plus what is derived from it once (for each client: a
/// session Discord ended for good is served again by a new client).
#[derive(Clone)]
pub(super) struct Data {
    pub(super) app: BotContext,
    /// Every backup server, the first (`app.settings.cbs`) first.
    pub(super) servers: Vec<BotServer>,
    pub(super) discord: DiscordSettings,
    /// The servers the bot serves (at least one).
    pub(super) guilds: Vec<serenity::GuildId>,
    pub(super) mutes: Mutes,
    pub(super) gateway: GatewayHealth,
    pub(super) audit: AuditLog,
    /// Interactions refused since start for coming from outside `guilds`.
    pub(super) refused: Arc<AtomicU64>,
}

impl Data {
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.app.clock.now()
    }

    fn tz(&self) -> Tz {
        self.app.settings.cbs.timezone
    }

    /// Today in the backup server's zone, the zone job dates are in.
    pub(super) fn today(&self) -> NaiveDate {
        self.now().with_timezone(&self.tz()).date_naive()
    }

    pub(super) fn public(&self) -> bool {
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
    pub(super) fn mute_target(
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
    pub(super) fn visible(&self, scope: &Scope) -> Result<commands::Visible, CommandError> {
        let mut visible = commands::Visible::default();
        for server in &self.servers {
            let users = self.visible_on(server, scope)?;
            visible.add(commands::Visible::on_server(&server.name, users));
        }
        Ok(visible)
    }

    /// The users `scope` may look up on `server`, with their owners.
    pub(super) fn visible_on(
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
    pub(super) fn named_server(&self, wanted: Option<&str>) -> Result<&BotServer, CommandError> {
        let names: Vec<String> = self.servers.iter().map(|s| s.name.clone()).collect();
        let i = commands::restores::named_server(&names, wanted)?;
        Ok(&self.servers[i])
    }

    /// Counts and logs an interaction refused for coming from outside our servers.
    pub(super) fn note_refusal(
        &self,
        guild: Option<serenity::GuildId>,
        user: serenity::UserId,
        what: &str,
    ) {
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
    pub(super) fn check_member(
        &self,
        member: Option<&serenity::Member>,
    ) -> Result<(), CommandError> {
        let (permissions, roles) = match member {
            Some(m) => (m.permissions, m.roles.as_slice()),
            None => (None, &[][..]),
        };
        commands::require_admin(permissions, roles, self.discord.admin_role)
    }

    /// What `member` may see in `channel` (in a thread: `parent` is its channel):
    /// everything for an admin; else, in a `[[route]]` channel or a thread in one, that
    /// owner's users.
    pub(super) fn scope_of(
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
    pub(super) fn audit(&self, who: &serenity::User, action: String) {
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
