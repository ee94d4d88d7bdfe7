//! Who may see and do what: the server check every interaction passes first
//! ([`guild_allowed`]), who counts as admin ([`may_change_state`]), and which users a
//! member's lookups may show ([`Scope`], [`visible_users`]), with the one answer for the
//! rest ([`not_watched`]). Plain functions over plain data; the bot applies them.

use super::{code, CommandError};
use crate::config::WatchEntry;
use crate::store::{Store, StoreError};
use chrono::{Days, NaiveDate};
use serenity::all::{GuildId, Permissions, RoleId};
use std::collections::{BTreeMap, BTreeSet};

/// Users seen in the store within this many days are offered by autocomplete.
pub const RECENT_USER_DAYS: u64 = 7;
/// What an interaction from outside the configured servers (another guild, a DM) reads.
pub const OUTSIDE_GUILD_REFUSAL: &str =
    "This bot only answers in its own team's Discord server; nothing was looked up or changed.";

/// Whether an interaction from `guild` (`None`: a DM or a user-installed context) may be
/// served: only the configured servers may use the bot. Every interaction handler checks
/// this before it reads or changes anything.
pub fn guild_allowed(guild: Option<GuildId>, allowed: &[GuildId]) -> bool {
    guild.is_some_and(|g| allowed.contains(&g))
}

/// What one member may see in lookups. Admins see every user; others see the users the
/// team watches or the store has seen, and in a channel a `[[route]]` gives to an owner
/// only that owner's users.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Manage Server, Administrator or the admin role (see [`may_change_state`]).
    pub admin: bool,
    /// The owner whose `[[route]]` channel the command runs in.
    pub owner: Option<String>,
}

impl Scope {
    /// Whether users of `owner` (`""`: none) are shown.
    pub fn sees_owner(&self, owner: &str) -> bool {
        self.admin || self.owner.as_deref().is_none_or(|o| o == owner)
    }

    /// Whether a stored job of `login` on backup server `server` is shown: in a route
    /// channel, only when that user on that server is among `visible` (from
    /// [`visible_users_on`], where the watch list's owner wins over the one a job record
    /// carries; the same login on another server may belong to another owner); elsewhere
    /// every job the store holds.
    pub fn shows_job_of(&self, server: &str, login: &str, visible: &Visible) -> bool {
        self.admin
            || self.owner.is_none()
            || visible.on.contains(&(server.to_owned(), login.to_owned()))
    }
}

/// The users a member may look up: login → owner over every backup server (the first
/// server's owner wins), for a `user:` argument; and, per server, the `(server, login)`
/// pairs whose stored jobs are shown in a route channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visible {
    pub users: BTreeMap<String, String>,
    pub on: BTreeSet<(String, String)>,
}

impl Visible {
    /// The users of one backup server, `server`.
    pub fn on_server(server: &str, users: BTreeMap<String, String>) -> Visible {
        let on = (users.keys())
            .map(|login| (server.to_owned(), login.clone()))
            .collect();
        Visible { users, on }
    }

    /// Adds another server's users; the owners already here win.
    pub fn add(&mut self, other: Visible) {
        for (login, owner) in other.users {
            self.users.entry(login).or_insert(owner);
        }
        self.on.extend(other.on);
    }
}

/// The one answer for a login a member may not look up, whatever the reason (unknown to
/// the backup server, refused by it, or not watched): the same text, so nobody can probe
/// which logins exist.
pub fn not_watched(login: &str) -> CommandError {
    CommandError::Usage(format!(
        "user: {} is neither watched nor seen lately; expected a user from the list.",
        code(login)
    ))
}

/// Whether a member may change state (watch list, mutes): Manage Server (or
/// Administrator), or the configured admin role. `permissions` is `None` outside a guild,
/// where nobody may.
pub fn may_change_state(
    permissions: Option<Permissions>,
    roles: &[RoleId],
    admin_role: Option<RoleId>,
) -> bool {
    let by_permission = permissions
        .is_some_and(|p| p.intersects(Permissions::MANAGE_GUILD | Permissions::ADMINISTRATOR));
    let by_role = admin_role.is_some_and(|r| roles.contains(&r));
    by_permission || by_role
}

/// [`may_change_state`] as a refusal the user reads.
pub fn require_admin(
    permissions: Option<Permissions>,
    roles: &[RoleId],
    admin_role: Option<RoleId>,
) -> Result<(), CommandError> {
    if may_change_state(permissions, roles, admin_role) {
        return Ok(());
    }
    let who = match admin_role {
        Some(_) => "the Manage Server permission or the bot's admin role",
        None => "the Manage Server permission",
    };
    Err(CommandError::Refused(format!(
        "This changes what the bot does and needs {who}; nothing was changed."
    )))
}

/// The users lookups know, with their owner (`""`: none): the watch list (config and
/// chat) and everyone with a job in the store in the last [`RECENT_USER_DAYS`] days. The
/// watch list's owner wins over a job's.
pub fn known_users(
    store: &Store,
    config_watch: &[WatchEntry],
    today: NaiveDate,
) -> Result<BTreeMap<String, String>, StoreError> {
    known_users_on(store, config_watch, today, None)
}

/// [`known_users`] of one backup server: its watch list (`store` is its view) and its
/// jobs; `None`: every server's jobs.
fn known_users_on(
    store: &Store,
    config_watch: &[WatchEntry],
    today: NaiveDate,
    server: Option<&str>,
) -> Result<BTreeMap<String, String>, StoreError> {
    let from = today
        .checked_sub_days(Days::new(RECENT_USER_DAYS))
        .unwrap_or(today);
    let mut users: BTreeMap<String, String> = store
        .jobs_between(from, today)?
        .into_iter()
        .filter(|r| server.is_none_or(|s| r.job.server == s))
        .map(|r| (r.job.login_name, r.job.owner))
        .collect();
    for w in store.watch_list(config_watch)? {
        users.insert(w.login, w.owner);
    }
    Ok(users)
}

/// [`known_users`] as far as `scope` may see them.
pub fn visible_users(
    store: &Store,
    config_watch: &[WatchEntry],
    today: NaiveDate,
    scope: &Scope,
) -> Result<BTreeMap<String, String>, StoreError> {
    visible_users_on(store, config_watch, today, scope, None)
}

/// [`visible_users`] of one backup server (see `known_users_on`).
pub fn visible_users_on(
    store: &Store,
    config_watch: &[WatchEntry],
    today: NaiveDate,
    scope: &Scope,
    server: Option<&str>,
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut users = known_users_on(store, config_watch, today, server)?;
    users.retain(|_, owner| scope.sees_owner(owner));
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn state_changes_need_manage_server_administrator_or_the_admin_role() {
        let admin = RoleId::new(7);
        let plain = Permissions::SEND_MESSAGES | Permissions::VIEW_CHANNEL;
        assert!(may_change_state(Some(Permissions::MANAGE_GUILD), &[], None));
        assert!(may_change_state(
            Some(Permissions::ADMINISTRATOR),
            &[],
            Some(admin)
        ));
        assert!(may_change_state(Some(plain), &[admin], Some(admin)));
        assert!(!may_change_state(
            Some(plain),
            &[RoleId::new(8)],
            Some(admin)
        ));
        assert!(!may_change_state(Some(plain), &[admin], None));
        assert!(!may_change_state(None, &[], None), "outside a guild");
        let refused = require_admin(Some(plain), &[], Some(admin)).unwrap_err();
        assert!(matches!(refused, CommandError::Refused(_)));
        assert!(refused.to_reply().ephemeral);
        assert!(refused.to_string().contains("nothing was changed"));
    }

    #[test]
    fn known_users_are_the_watch_list_and_recent_jobs() {
        let (_dir, store) = store();
        record(
            &store,
            &[
                job("recent", "1", 25, 9, "RESTORE_STOP_SUCCESS"),
                job("old", "1", 1, 9, "RESTORE_STOP_SUCCESS"),
            ],
        );
        store
            .add_watch(&crate::store::DynamicWatch {
                login: "chat".into(),
                owner: String::new(),
                added_by: "op".into(),
                added_at: at(26, 9),
            })
            .unwrap();
        let config = [WatchEntry {
            login: "config".into(),
            owner: String::new(),
        }];
        let users = known_users(&store, &config, day(26)).unwrap();
        let want: Vec<&str> = vec!["chat", "config", "recent"];
        assert_eq!(users.keys().map(String::as_str).collect::<Vec<_>>(), want);
    }

    #[test]
    fn a_routed_channel_sees_only_its_owners_users_and_admins_see_all() {
        let (_dir, store) = store();
        let mut theirs = job("theirs", "1", 25, 9, "RESTORE_STOP_SUCCESS");
        theirs.owner = "reseller-b".into();
        record(&store, &[theirs]);
        let config = [
            WatchEntry {
                login: "ours".into(),
                owner: "reseller-a".into(),
            },
            WatchEntry {
                login: "plain".into(),
                owner: String::new(),
            },
        ];
        let names = |scope: &Scope| -> Vec<String> {
            let users = visible_users(&store, &config, day(26), scope).unwrap();
            users.into_keys().collect()
        };
        let routed = Scope {
            admin: false,
            owner: Some("reseller-a".into()),
        };
        assert_eq!(names(&routed), ["ours"]);
        assert_eq!(names(&Scope::default()), ["ours", "plain", "theirs"]);
        let admin = Scope {
            admin: true,
            ..routed
        };
        assert_eq!(names(&admin), ["ours", "plain", "theirs"]);
    }

    #[test]
    fn only_the_configured_guilds_are_served() {
        let ours = [GuildId::new(1), GuildId::new(2)];
        assert!(guild_allowed(Some(GuildId::new(2)), &ours));
        assert!(
            !guild_allowed(Some(GuildId::new(3)), &ours),
            "another server"
        );
        assert!(!guild_allowed(None, &ours), "a DM");
        assert!(!guild_allowed(Some(GuildId::new(1)), &[]));
    }

    #[test]
    fn the_not_watched_answer_shows_the_login_as_typed() {
        assert_eq!(
            not_watched("john_doe").to_string(),
            "user: `john_doe` is neither watched nor seen lately; expected a user from the list."
        );
    }
}
