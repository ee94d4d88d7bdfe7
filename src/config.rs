//! Configuration: a TOML file layered with environment variables, checked once at start-up
//! into typed [`Settings`]. A bad value stops the start with one message naming the key.

use crate::cbs::model::StatusClass;
use crate::schedule::CronSchedule;
use chrono_tz::Tz;
use secrecy::SecretString;
use serenity::all::{ChannelId, GuildId, RoleId};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Everything restorewatch needs to run, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub cbs: CbsSettings,
    /// Users from the config file (the store adds those added from chat).
    pub watch: Vec<WatchEntry>,
    pub poll: PollSettings,
    pub state: StateSettings,
    /// `None`: no `[discord]` section, events go to the console.
    pub discord: Option<DiscordSettings>,
    pub digest: DigestSettings,
}

#[derive(Clone, Debug)]
pub struct CbsSettings {
    /// Base URL; the client appends `/obs/api/json/...`.
    pub url: reqwest::Url,
    /// Name of this backup server in job identities and messages (default: the URL's host).
    pub server_name: String,
    pub sys_user: String,
    pub sys_pwd: SecretString,
    /// The server's zone: `RestoreDate` and job times are in it.
    pub timezone: Tz,
    pub request_timeout: Duration,
    pub max_concurrency: usize,
    /// Extra CA certificate (PEM) to trust, for self-signed servers.
    pub ca_cert: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WatchEntry {
    pub login: String,
    /// Empty when the user has no owner (sub-admin).
    pub owner: String,
}

#[derive(Clone, Debug)]
pub struct PollSettings {
    pub schedule: CronSchedule,
    pub midnight_grace: Duration,
    pub max_catch_up_days: u32,
    pub stuck_after: Duration,
    pub alert_classes: BTreeSet<StatusClass>,
}

#[derive(Clone, Debug)]
pub struct StateSettings {
    pub path: PathBuf,
    pub retention_days: u32,
}

#[derive(Clone, Debug)]
pub struct DiscordSettings {
    pub token: SecretString,
    pub alert_channel: ChannelId,
    pub digest_channel: ChannelId,
    pub mention_role: Option<RoleId>,
    /// Send REST (and the gateway lookup) here instead of discord.com; disables serenity's
    /// rate limiter.
    pub api_base: Option<reqwest::Url>,
    pub guild_id: Option<GuildId>,
    pub admin_role: Option<RoleId>,
    pub public_lookups: bool,
    /// `[[route]]`: events of these owners go to their own channel.
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub owner: String,
    pub channel: ChannelId,
}

#[derive(Clone, Debug)]
pub struct DigestSettings {
    pub schedule: CronSchedule,
}
