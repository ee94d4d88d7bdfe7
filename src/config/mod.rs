//! Configuration: a TOML file layered with environment variables, checked once at start-up
//! into typed [`Settings`]. A bad value stops the start with one message naming the key.
//!
//! # Where values come from, later ones winning
//! 1. Built-in defaults (see `config/restorewatch.example.toml`, which documents every key).
//! 2. The TOML file: `--config PATH`, else `$RESTOREWATCH_CONFIG`, else
//!    `config/restorewatch.toml` (see [`config_path`]).
//! 3. Environment variables `RESTOREWATCH_<SECTION>_<KEY>` for every key of the single
//!    sections `[cbs]`, `[poll]`, `[state]`, `[discord]`, `[digest]`, `[server]` and
//!    `[heartbeat]`, e.g.
//!    `RESTOREWATCH_CBS_URL`, `RESTOREWATCH_POLL_SCHEDULE`,
//!    `RESTOREWATCH_DISCORD_ALERT_CHANNEL`. Lists (`poll.alert_classes`) are comma-separated.
//!    An empty variable counts as unset. Setting any `RESTOREWATCH_DISCORD_*` key other than
//!    the token turns the Discord section on; the token alone does not, so a token exported
//!    in a shell does not change a console-only setup. `[[watch]]` and `[[route]]` come
//!    from the file only.
//!
//! # Secrets
//! The CBS password and the Discord token come from, first found wins: the environment
//! (`RESTOREWATCH_CBS_SYS_PWD`, `RESTOREWATCH_DISCORD_TOKEN`), then the secret file
//! (`cbs.sys_pwd_file`, `discord.token_file`; content trimmed), then the key in the TOML file.
//! They are held as [`SecretString`] and never appear in `Debug` output or error messages.
//!
//! Relative paths (`sys_pwd_file`, `ca_cert`, `state.path`, ...) are relative to the working
//! directory, not to the config file.
//!
//! # Several backup servers
//! `[cbs]` may instead be `[[cbs]]` entries, each with a unique `name` (required with
//! several), its own `cbs.*` keys and optionally its own `[cbs.discover]`; `[[watch]]`
//! entries then name their `server`. Each entry's password comes from
//! `RESTOREWATCH_CBS_<NAME>_SYS_PWD` ([`server_password_env`]); the other `RESTOREWATCH_CBS_*`
//! variables cannot say which server they mean and are refused. Errors name the entry
//! (`cbs[1].url`). One `[[cbs]]` entry is the same as a `[cbs]` table. The first server is
//! [`Settings::cbs`], the others [`Settings::other_servers`]; [`Settings::servers`] lists all.

use crate::cbs::model::StatusClass;
use crate::schedule::CronSchedule;
use chrono_tz::Tz;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use serenity::all::{ChannelId, GuildId, RoleId};
use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The config file used when neither `--config` nor [`CONFIG_PATH_ENV`] names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/restorewatch.toml";
/// The environment variable naming the config file.
pub const CONFIG_PATH_ENV: &str = "RESTOREWATCH_CONFIG";
/// The CBS password from the environment.
pub const CBS_SYS_PWD_ENV: &str = "RESTOREWATCH_CBS_SYS_PWD";
/// The Discord bot token from the environment.
pub const DISCORD_TOKEN_ENV: &str = "RESTOREWATCH_DISCORD_TOKEN";
/// The log filter (`tracing_subscriber`'s `EnvFilter` syntax).
pub const LOG_ENV: &str = "RESTOREWATCH_LOG";
/// What every variable restorewatch reads starts with.
const ENV_PREFIX: &str = "RESTOREWATCH_";

/// Everything restorewatch needs to run, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The single `[cbs]`, or the first `[[cbs]]` entry: its zone is the zone of the
    /// schedules and the digest.
    pub cbs: CbsSettings,
    /// Users of that server from the config file (the store adds those added from chat).
    pub watch: Vec<WatchEntry>,
    /// `[discover]` (or the server's own `discover`): users listed by the server itself.
    pub discover: crate::discover::DiscoverSettings,
    /// The other `[[cbs]]` entries, in the file's order; empty with one server.
    pub other_servers: Vec<CbsServer>,
    pub poll: PollSettings,
    pub state: StateSettings,
    /// `None`: no `[discord]` section, events go to the console.
    pub discord: Option<DiscordSettings>,
    pub digest: DigestSettings,
    pub server: ServerSettings,
    pub heartbeat: HeartbeatSettings,
    pub summary: SummarySettings,
    pub alerts: AlertSettings,
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
    /// `cbs.max_requests_per_second`: a ceiling on the request rate (none by default).
    pub max_requests_per_second: Option<std::num::NonZeroU32>,
    /// Fetch `GetRestoreJobReport.do` for each failure alert (file count, size, last log
    /// lines).
    pub fetch_reports: bool,
    /// Consecutive cycles without one successful request before the server counts as down.
    pub down_after: u32,
    /// Extra CA certificate (PEM) to trust, for self-signed servers.
    pub ca_cert: Option<PathBuf>,
}

/// One backup server with what is watched on it.
#[derive(Clone, Debug)]
pub struct CbsServer {
    pub cbs: CbsSettings,
    /// `[[watch]]` entries with `server` naming this server.
    pub watch: Vec<WatchEntry>,
    /// The server's own `discover` table, else the top-level `[discover]`.
    pub discover: crate::discover::DiscoverSettings,
}

/// A backup server of [`Settings::servers`], borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ServerRef<'a> {
    pub cbs: &'a CbsSettings,
    pub watch: &'a [WatchEntry],
    pub discover: &'a crate::discover::DiscoverSettings,
}

impl Settings {
    /// Every configured backup server, the first (`self.cbs`) first.
    pub fn servers(&self) -> Vec<ServerRef<'_>> {
        let first = ServerRef {
            cbs: &self.cbs,
            watch: &self.watch,
            discover: &self.discover,
        };
        std::iter::once(first)
            .chain(self.other_servers.iter().map(|s| ServerRef {
                cbs: &s.cbs,
                watch: &s.watch,
                discover: &s.discover,
            }))
            .collect()
    }

    /// Whether messages name the server: only when there are several.
    pub fn several_servers(&self) -> bool {
        !self.other_servers.is_empty()
    }
}

/// The environment variable with the password of the `[[cbs]]` entry named `name` (when
/// there are several): `RESTOREWATCH_CBS_<NAME>_SYS_PWD`, the name upper-cased with every
/// character but ASCII letters and digits written as `_`.
pub fn server_password_env(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{ENV_PREFIX}CBS_{name}_SYS_PWD")
}

impl CbsSettings {
    /// The client of this backup server.
    pub fn client(&self) -> Result<crate::cbs::CbsClient, crate::cbs::CbsError> {
        crate::cbs::CbsClient::new(crate::cbs::CbsClientConfig {
            url: self.url.clone(),
            server_name: self.server_name.clone(),
            sys_user: self.sys_user.clone(),
            sys_pwd: self.sys_pwd.clone(),
            timezone: self.timezone,
            request_timeout: self.request_timeout,
            ca_cert: self.ca_cert.clone(),
        })
        .map(|client| client.with_max_requests_per_second(self.max_requests_per_second))
    }
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
    /// A job recorded as running that its date's reply has left out this long (and for at
    /// least [`VANISHED_MIN_CYCLES`] reads) has vanished.
    pub vanished_after: Duration,
    pub alert_classes: BTreeSet<StatusClass>,
    /// A user's first cycle records the jobs it finds as one baseline line instead of
    /// alerting each (no flood on install).
    pub baseline_first_cycle: bool,
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
    /// `discord.guild_id` and `discord.guild_ids` together: the servers the bot serves.
    /// Empty is allowed by the loader (`once` never connects to the gateway); `run` asks
    /// [`DiscordSettings::require_guilds`].
    pub guilds: Vec<GuildId>,
    pub admin_role: Option<RoleId>,
    pub public_lookups: bool,
    /// `[[route]]`: events of these owners go to their own channel.
    pub routes: Vec<Route>,
}

impl DiscordSettings {
    /// The servers the bot answers in. Connecting to the gateway needs at least one: without
    /// it the commands would be global and any server the bot is added to could use them.
    pub fn require_guilds(&self) -> Result<&[GuildId], ConfigError> {
        if self.guilds.is_empty() {
            return Err(ConfigError::Key {
                key: "discord.guild_id".into(),
                message: "is required to answer slash commands: the id of your Discord \
                          server (right-click the server icon → Copy Server ID), so that \
                          only it can use the bot"
                    .into(),
            });
        }
        Ok(&self.guilds)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub owner: String,
    pub channel: ChannelId,
}

#[derive(Clone, Debug)]
pub struct DigestSettings {
    pub schedule: CronSchedule,
    /// How many days back a missed digest is still posted late (1–31).
    pub max_catch_up_days: u32,
}

/// `summary.when`: which poll cycles post a cycle summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SummaryWhen {
    /// Only a cycle that alerted, or whose set of erroring users changed (the default).
    #[default]
    Alerts,
    /// Every cycle in which anything changed: a job started, ended or alerted.
    Changes,
    /// No cycle summaries.
    Never,
}

impl SummaryWhen {
    pub const NAMES: [&'static str; 3] = ["alerts", "changes", "never"];

    pub fn parse_name(name: &str) -> Option<SummaryWhen> {
        match name.trim().to_ascii_lowercase().as_str() {
            "alerts" => Some(SummaryWhen::Alerts),
            "changes" => Some(SummaryWhen::Changes),
            "never" => Some(SummaryWhen::Never),
            _ => None,
        }
    }
}

/// `[summary]`: when cycle summaries are posted, and where.
#[derive(Clone, Debug, Default)]
pub struct SummarySettings {
    pub when: SummaryWhen,
    /// `None`: the alert channel.
    pub channel: Option<ChannelId>,
    /// A roll-up of everything since the last one, instead of per-cycle summaries.
    pub schedule: Option<CronSchedule>,
}

/// `alerts.ping`: which alerts ping `discord.mention_role`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PingWhen {
    /// A set's first failure, its `alerts.escalate_after`-th in a row, stuck jobs and
    /// outage notices (the default).
    #[default]
    Thresholds,
    /// Every alert.
    Every,
    /// Never.
    Never,
}

impl PingWhen {
    pub const NAMES: [&'static str; 3] = ["thresholds", "every", "never"];

    pub fn parse_name(name: &str) -> Option<PingWhen> {
        match name.trim().to_ascii_lowercase().as_str() {
            "thresholds" => Some(PingWhen::Thresholds),
            "every" => Some(PingWhen::Every),
            "never" => Some(PingWhen::Never),
            _ => None,
        }
    }
}

/// `[alerts]`: grouping storms and escalating repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    /// More failures than this in one delivery to one channel become one grouped card.
    pub group_after: u32,
    /// The consecutive failure of a set at which the role is pinged again.
    pub escalate_after: u32,
    pub ping: PingWhen,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            group_after: DEFAULT_GROUP_AFTER as u32,
            escalate_after: DEFAULT_ESCALATE_AFTER as u32,
            ping: PingWhen::default(),
        }
    }
}

/// `[server]`: the health and metrics listener.
#[derive(Clone, Debug, Default)]
pub struct ServerSettings {
    /// `None`: no listener (the default).
    pub listen: Option<std::net::SocketAddr>,
}

/// `[heartbeat]`: the dead-man's switch.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatSettings {
    /// Called after every cycle (`<url>/fail` after one in which no CBS request
    /// succeeded); `None`: no heartbeat.
    pub url: Option<reqwest::Url>,
}

/// A config that cannot be used. Its `Display` is one line; for a bad value it names the
/// key (and the environment variable, when the value came from one).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config error: cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config error: {location}: not valid TOML: {message}")]
    Syntax { location: String, message: String },
    /// A key is unknown, missing or has a bad value.
    #[error("config error: {key}: {message}")]
    Key { key: String, message: String },
}

impl ConfigError {
    /// The offending key (`poll.schedule`, `watch[2].login`), when one is to blame.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    /// Puts the file name in front of a syntax error's line and column.
    fn in_file(self, path: &Path) -> ConfigError {
        match self {
            ConfigError::Syntax { location, message } => ConfigError::Syntax {
                location: format!("{} {location}", path.display()),
                message,
            },
            other => other,
        }
    }
}

/// The config file to read: `arg` (from `--config`), else the one named by
/// [`CONFIG_PATH_ENV`], else [`DEFAULT_CONFIG_PATH`].
pub fn config_path(arg: Option<&Path>, env: &impl Fn(&str) -> Option<String>) -> PathBuf {
    match arg {
        Some(path) => path.to_owned(),
        None => env(CONFIG_PATH_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH), PathBuf::from),
    }
}

/// Where a value of the effective configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File,
    /// This environment variable.
    Env(String),
    /// A secret read from this file.
    SecretFile(PathBuf),
    /// A secret that is not set (only `check --offline` gets this far without it).
    Missing,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File => f.write_str("file"),
            Origin::Env(var) => write!(f, "environment {var}"),
            Origin::SecretFile(path) => write!(f, "secret file {}", path.display()),
            Origin::Missing => f.write_str("not set"),
        }
    }
}

/// Checked settings with where each value came from, for `check --print-config`.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// The config file read.
    pub path: PathBuf,
    /// Keys set by the file, the environment or a secret file; the rest are defaults.
    pub origins: std::collections::BTreeMap<String, Origin>,
}

impl Loaded {
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }
}

impl Settings {
    /// Reads the config file found by [`config_path`] and layers the process environment
    /// over it. Unknown `RESTOREWATCH_*` variables are an error (see [`check_env_names`]).
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_with(path, false).map(|loaded| loaded.settings)
    }

    /// [`Settings::load`], keeping the file's path and each value's origin. `offline`:
    /// secrets need not be set and secret files are not read (`check --offline`).
    pub fn load_with(path: Option<&Path>, offline: bool) -> Result<Loaded, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let path = config_path(path, &env);
        let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
            path: path.clone(),
            error,
        })?;
        // A server's password variable is checked after the file: when the file is wrong
        // (a server renamed twice), its error is the one to read.
        let servers = server_password_envs(&text);
        let (passwords, others): (Vec<String>, Vec<String>) = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .partition(|name| {
                name != CBS_SYS_PWD_ENV
                    && name.starts_with(&format!("{ENV_PREFIX}CBS_"))
                    && name.ends_with("_SYS_PWD")
            });
        check_env_names(others, &servers)?;
        let (settings, origins) =
            Settings::check_text(&text, &env, offline).map_err(|e| e.in_file(&path))?;
        check_env_names(passwords, &servers)?;
        Ok(Loaded {
            settings,
            path,
            origins,
        })
    }

    /// Checks a config file's text, with `env` standing in for the environment (tests pass a
    /// map instead of changing the process environment).
    pub fn from_toml_str(
        text: &str,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        Settings::check_text(text, env, false).map(|(settings, _)| settings)
    }

    fn check_text(
        text: &str,
        env: &impl Fn(&str) -> Option<String>,
        offline: bool,
    ) -> Result<(Settings, std::collections::BTreeMap<String, Origin>), ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let mut table: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        // One [[cbs]] entry is a single server: its keys are `cbs.*`, as in a [cbs] table.
        if let Some(toml::Value::Array(entries)) = table.get_mut("cbs") {
            if entries.len() == 1 && entries[0].is_table() {
                let only = entries.remove(0);
                table.insert("cbs".into(), only);
            }
        }
        let mut origins = std::collections::BTreeMap::new();
        for (section, value) in &table {
            match value {
                toml::Value::Table(keys) => {
                    for name in keys.keys() {
                        origins.insert(format!("{section}.{name}"), Origin::File);
                    }
                }
                toml::Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let keys = item.as_table().into_iter().flat_map(|t| t.keys());
                        for name in keys {
                            origins.insert(format!("{section}[{i}].{name}"), Origin::File);
                        }
                    }
                }
                _ => {
                    origins.insert(section.clone(), Origin::File);
                }
            }
        }
        let check = Checker {
            from_env: apply_env(&mut table, &env)?,
            offline,
            secret_origins: Default::default(),
        };
        for key in &check.from_env {
            origins.insert(key.clone(), Origin::Env(env_name(key)));
        }
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| check.fail(&e.path().to_string(), e.inner().message()))?;
        let settings = check.settings(raw, &env)?;
        origins.extend(check.secret_origins.into_inner());
        Ok((settings, origins))
    }

    /// Every key of the effective configuration with its value as TOML, secrets redacted;
    /// `[[watch]]` and `[[route]]` entries as `watch[0].login` etc.
    pub fn describe(&self) -> Vec<(String, String)> {
        let text = |v: &str| toml::Value::String(v.to_owned()).to_string();
        let duration = |d: &Duration| text(&humantime::format_duration(*d).to_string());
        let redacted = |s: &SecretString| {
            if s.expose_secret().is_empty() {
                "\"\"".to_owned()
            } else {
                text("<redacted>")
            }
        };
        let list = |items: &[String]| {
            let items: Vec<String> = items.iter().map(|i| text(i)).collect();
            format!("[{}]", items.join(", "))
        };
        let several = self.several_servers();
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, server) in self.servers().into_iter().enumerate() {
            // One server keeps the plain `cbs.*` keys; several are `cbs[0].*`, ...
            let (prefix, discover) = if several {
                (format!("cbs[{i}]"), format!("cbs[{i}].discover"))
            } else {
                ("cbs".to_owned(), "discover".to_owned())
            };
            let key = |name: &str| format!("{prefix}.{name}");
            let c = server.cbs;
            out.extend([
                (
                    key(if several { "name" } else { "server_name" }),
                    text(&c.server_name),
                ),
                (key("url"), text(c.url.as_str())),
                (key("sys_user"), text(&c.sys_user)),
                (key("sys_pwd"), redacted(&c.sys_pwd)),
                (key("timezone"), text(c.timezone.name())),
                (key("request_timeout"), duration(&c.request_timeout)),
                (key("max_concurrency"), c.max_concurrency.to_string()),
                (key("fetch_reports"), c.fetch_reports.to_string()),
            ]);
            if let Some(ca) = &c.ca_cert {
                out.push((key("ca_cert"), text(&ca.display().to_string())));
            }
            if let Some(rate) = c.max_requests_per_second {
                out.push((key("max_requests_per_second"), rate.to_string()));
            }
            let d = server.discover;
            out.extend([
                (format!("{discover}.enabled"), d.enabled.to_string()),
                (format!("{discover}.owners"), list(&d.owners)),
                (format!("{discover}.exclude"), list(&d.exclude_patterns)),
                (format!("{discover}.refresh"), duration(&d.refresh)),
            ]);
        }
        let p = &self.poll;
        let classes: Vec<String> = p.alert_classes.iter().map(|c| text(c.as_str())).collect();
        let rest = [
            ("poll.schedule", text(&p.schedule.to_string())),
            ("poll.midnight_grace", duration(&p.midnight_grace)),
            ("poll.max_catch_up_days", p.max_catch_up_days.to_string()),
            ("poll.stuck_after", duration(&p.stuck_after)),
            ("poll.alert_classes", format!("[{}]", classes.join(", "))),
            (
                "poll.baseline_first_cycle",
                p.baseline_first_cycle.to_string(),
            ),
            ("state.path", text(&self.state.path.display().to_string())),
            (
                "state.retention_days",
                self.state.retention_days.to_string(),
            ),
            ("digest.schedule", text(&self.digest.schedule.to_string())),
        ];
        out.extend(rest.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let watched = self
            .servers()
            .into_iter()
            .flat_map(|s| s.watch.iter().map(move |w| (s.cbs.server_name.as_str(), w)));
        for (i, (server, w)) in watched.enumerate() {
            out.push((format!("watch[{i}].login"), text(&w.login)));
            if !w.owner.is_empty() {
                out.push((format!("watch[{i}].owner"), text(&w.owner)));
            }
            if several {
                out.push((format!("watch[{i}].server"), text(server)));
            }
        }
        if let Some(d) = &self.discord {
            let id = |v: u64| text(&v.to_string());
            out.push(("discord.token".into(), redacted(&d.token)));
            out.push(("discord.alert_channel".into(), id(d.alert_channel.get())));
            out.push(("discord.digest_channel".into(), id(d.digest_channel.get())));
            if let Some(role) = d.mention_role {
                out.push(("discord.mention_role".into(), id(role.get())));
            }
            if let Some(base) = &d.api_base {
                out.push(("discord.api_base".into(), text(base.as_str())));
            }
            if !d.guilds.is_empty() {
                // guild_id and guild_ids merged; printed as the list they amount to.
                let ids: Vec<String> = d.guilds.iter().map(|g| id(g.get())).collect();
                out.push(("discord.guild_ids".into(), format!("[{}]", ids.join(", "))));
            }
            if let Some(role) = d.admin_role {
                out.push(("discord.admin_role".into(), id(role.get())));
            }
            out.push((
                "discord.public_lookups".into(),
                d.public_lookups.to_string(),
            ));
            for (i, r) in d.routes.iter().enumerate() {
                out.push((format!("route[{i}].owner"), text(&r.owner)));
                out.push((format!("route[{i}].channel"), id(r.channel.get())));
            }
        }
        out
    }
}

/// Every environment variable restorewatch reads.
pub fn env_names() -> Vec<String> {
    let mut names: Vec<String> = ENV_KEYS
        .iter()
        .map(|&(section, name, _)| env_name(&format!("{section}.{name}")))
        .collect();
    names.extend(
        [
            CONFIG_PATH_ENV,
            CBS_SYS_PWD_ENV,
            DISCORD_TOKEN_ENV,
            LOG_ENV,
            crate::logging::LOG_FORMAT_ENV,
        ]
        .map(str::to_owned),
    );
    names
}

/// The password variables of the servers a config file's text names (see
/// [`server_password_env`]): of each `[[cbs]]` entry, or of a `[cbs]` table, that has a
/// `name` (or its synonym `server_name`); empty when none has or the text does not parse
/// (the load reports that).
pub fn server_password_envs(text: &str) -> Vec<String> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let var = |entry: &toml::Value| {
        let name = entry.get("name").or_else(|| entry.get("server_name"))?;
        Some(server_password_env(name.as_str()?.trim()))
    };
    match table.get("cbs") {
        Some(toml::Value::Array(entries)) => entries.iter().filter_map(var).collect(),
        Some(entry @ toml::Value::Table(_)) => var(entry).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Refuses a `RESTOREWATCH_*` variable that restorewatch does not read (a misspelling would
/// otherwise be ignored silently), naming the nearest valid name. `servers`: the password
/// variables of the configured `[[cbs]]` servers ([`server_password_envs`]).
pub fn check_env_names(
    names: impl IntoIterator<Item = String>,
    servers: &[String],
) -> Result<(), ConfigError> {
    let mut known = env_names();
    known.extend(servers.iter().cloned());
    for name in names {
        if !name.starts_with(ENV_PREFIX) || known.contains(&name) {
            continue;
        }
        let nearest = known
            .iter()
            .min_by_key(|k| strsim::levenshtein(k, &name))
            .expect("the list of names is not empty");
        return Err(ConfigError::Key {
            key: name,
            message: format!("unknown environment variable; did you mean {nearest}?"),
        });
    }
    Ok(())
}

fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let location = match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}")
        }
        None => "the file".to_owned(),
    };
    ConfigError::Syntax {
        location,
        // Keep it on one line: toml's messages may span several.
        message: error.message().trim().replace('\n', "; "),
    }
}

/// How an environment variable's text becomes a TOML value.
#[derive(Clone, Copy)]
enum EnvKind {
    Text,
    Integer,
    Flag,
    /// Comma-separated.
    List,
}

/// The keys environment variables can set (the secrets are read separately, see
/// [`Checker::secret`]). A unit test keeps this in step with the `Raw*` structs.
const ENV_KEYS: &[(&str, &str, EnvKind)] = &[
    ("cbs", "url", EnvKind::Text),
    ("cbs", "server_name", EnvKind::Text),
    ("cbs", "sys_user", EnvKind::Text),
    ("cbs", "sys_pwd_file", EnvKind::Text),
    ("cbs", "timezone", EnvKind::Text),
    ("cbs", "request_timeout", EnvKind::Text),
    ("cbs", "max_concurrency", EnvKind::Integer),
    ("cbs", "fetch_reports", EnvKind::Flag),
    ("cbs", "down_after", EnvKind::Integer),
    ("cbs", "ca_cert", EnvKind::Text),
    ("cbs", "max_requests_per_second", EnvKind::Integer),
    ("discover", "enabled", EnvKind::Flag),
    ("discover", "owners", EnvKind::List),
    ("discover", "exclude", EnvKind::List),
    ("discover", "refresh", EnvKind::Text),
    ("poll", "schedule", EnvKind::Text),
    ("poll", "midnight_grace", EnvKind::Text),
    ("poll", "max_catch_up_days", EnvKind::Integer),
    ("poll", "stuck_after", EnvKind::Text),
    ("poll", "vanished_after", EnvKind::Text),
    ("poll", "alert_classes", EnvKind::List),
    ("poll", "baseline_first_cycle", EnvKind::Flag),
    ("state", "path", EnvKind::Text),
    ("state", "retention_days", EnvKind::Integer),
    ("discord", "token_file", EnvKind::Text),
    ("discord", "alert_channel", EnvKind::Text),
    ("discord", "digest_channel", EnvKind::Text),
    ("discord", "mention_role", EnvKind::Text),
    ("discord", "api_base", EnvKind::Text),
    ("discord", "guild_id", EnvKind::Text),
    ("discord", "guild_ids", EnvKind::List),
    ("discord", "admin_role", EnvKind::Text),
    ("discord", "public_lookups", EnvKind::Flag),
    ("digest", "schedule", EnvKind::Text),
    ("digest", "max_catch_up_days", EnvKind::Integer),
    ("server", "listen", EnvKind::Text),
    ("heartbeat", "url", EnvKind::Text),
    ("summary", "when", EnvKind::Text),
    ("summary", "channel", EnvKind::Text),
    ("summary", "schedule", EnvKind::Text),
    ("alerts", "group_after", EnvKind::Integer),
    ("alerts", "escalate_after", EnvKind::Integer),
    ("alerts", "ping", EnvKind::Text),
];

/// `RESTOREWATCH_POLL_SCHEDULE` for `poll.schedule`.
fn env_name(key: &str) -> String {
    format!(
        "RESTOREWATCH_{}",
        key.replace('.', "_").to_ascii_uppercase()
    )
}

/// Writes the environment's values over the file's; returns the keys it set.
fn apply_env(
    table: &mut toml::Table,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeSet<String>, ConfigError> {
    let mut set = BTreeSet::new();
    for &(section, name, kind) in ENV_KEYS {
        let key = format!("{section}.{name}");
        let var = env_name(&key);
        let Some(text) = env(&var) else { continue };
        let value = match kind {
            EnvKind::Text => toml::Value::String(text),
            EnvKind::Integer => {
                text.trim()
                    .parse()
                    .map(toml::Value::Integer)
                    .map_err(|_| ConfigError::Key {
                        key: key.clone(),
                        message: format!("{var}: {text:?} is not a whole number"),
                    })?
            }
            EnvKind::Flag => match text.trim().to_ascii_lowercase().as_str() {
                "true" => toml::Value::Boolean(true),
                "false" => toml::Value::Boolean(false),
                _ => {
                    return Err(ConfigError::Key {
                        key,
                        message: format!("{var}: {text:?} is neither true nor false"),
                    })
                }
            },
            EnvKind::List => toml::Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| toml::Value::String(item.to_owned()))
                    .collect(),
            ),
        };
        let section_table = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // A section that is not a table is reported by the typed pass below.
        match section_table {
            toml::Value::Table(section_table) => {
                section_table.insert(name.to_owned(), value);
                set.insert(key);
            }
            toml::Value::Array(_) => {
                return Err(ConfigError::Key {
                    key,
                    message: format!(
                        "{var}: with several [[cbs]] servers this key is set in each entry \
                         of the file"
                    ),
                })
            }
            _ => {}
        }
    }
    Ok(set)
}

// The file as written: every key optional here, so that a missing one is reported by
// name in the checks below rather than as a bare serde "missing field".

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cbs: RawServers,
    #[serde(default)]
    watch: Vec<RawWatch>,
    #[serde(default)]
    discover: RawDiscover,
    #[serde(default)]
    poll: RawPoll,
    #[serde(default)]
    state: RawState,
    discord: Option<RawDiscord>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    digest: RawDigest,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    heartbeat: RawHeartbeat,
    #[serde(default)]
    summary: RawSummary,
    #[serde(default)]
    alerts: RawAlerts,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [summary] table")]
struct RawSummary {
    when: Option<String>,
    channel: Option<toml::Value>,
    schedule: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [alerts] table")]
struct RawAlerts {
    group_after: Option<i64>,
    escalate_after: Option<i64>,
    ping: Option<String>,
}

/// `[cbs]`, or `[[cbs]]` entries (one entry was made a table before this pass).
enum RawServers {
    One(Box<RawCbs>),
    Several(Vec<RawCbs>),
}

impl Default for RawServers {
    fn default() -> Self {
        RawServers::One(Box::default())
    }
}

impl<'de> Deserialize<'de> for RawServers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Servers;
        impl<'de> serde::de::Visitor<'de> for Servers {
            type Value = RawServers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the [cbs] table or [[cbs]] tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawServers, A::Error> {
                RawCbs::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|cbs| RawServers::One(Box::new(cbs)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<RawServers, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(RawServers::Several)
            }
        }
        d.deserialize_any(Servers)
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [cbs] table")]
struct RawCbs {
    /// The server's name; `server_name` says the same.
    name: Option<String>,
    /// The server's own `discover` table (else the top-level `[discover]`).
    discover: Option<RawDiscover>,
    url: Option<String>,
    server_name: Option<String>,
    sys_user: Option<String>,
    sys_pwd: Option<RawSecret>,
    sys_pwd_file: Option<PathBuf>,
    timezone: Option<String>,
    request_timeout: Option<String>,
    max_concurrency: Option<i64>,
    max_requests_per_second: Option<i64>,
    fetch_reports: Option<bool>,
    down_after: Option<i64>,
    ca_cert: Option<PathBuf>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [discover] table")]
struct RawDiscover {
    enabled: Option<bool>,
    owners: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    refresh: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[watch]] table")]
struct RawWatch {
    login: Option<String>,
    owner: Option<String>,
    /// The `name` of the `[[cbs]]` server the user is on (needed with several).
    server: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [poll] table")]
struct RawPoll {
    schedule: Option<String>,
    midnight_grace: Option<String>,
    max_catch_up_days: Option<i64>,
    stuck_after: Option<String>,
    vanished_after: Option<String>,
    alert_classes: Option<Vec<String>>,
    baseline_first_cycle: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [state] table")]
struct RawState {
    path: Option<PathBuf>,
    retention_days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [discord] table")]
struct RawDiscord {
    token: Option<RawSecret>,
    token_file: Option<PathBuf>,
    /// Ids are strings or integers: both spellings are common for snowflakes.
    alert_channel: Option<toml::Value>,
    digest_channel: Option<toml::Value>,
    mention_role: Option<toml::Value>,
    api_base: Option<String>,
    guild_id: Option<toml::Value>,
    guild_ids: Option<Vec<toml::Value>>,
    admin_role: Option<toml::Value>,
    public_lookups: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[route]] table")]
struct RawRoute {
    owner: Option<String>,
    channel: Option<toml::Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [digest] table")]
struct RawDigest {
    schedule: Option<String>,
    max_catch_up_days: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [server] table")]
struct RawServer {
    listen: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [heartbeat] table")]
struct RawHeartbeat {
    url: Option<String>,
}

/// A secret as written in the file. Its own deserializer, because serde's type errors quote
/// the value ("invalid type: integer `1234`") and that would put the secret in the message.
struct RawSecret(SecretString);

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)
            .map(|s| RawSecret(SecretString::from(s)))
            .map_err(|_| serde::de::Error::custom("must be a string"))
    }
}

const DEFAULT_TIMEZONE: Tz = Tz::UTC;
/// A server's name is shown in every alert that names it.
const SERVER_NAME_MAX_CHARS: usize = 64;
const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
const DEFAULT_MAX_CONCURRENCY: i64 = 8;
const MAX_CONCURRENCY_RANGE: RangeInclusive<i64> = 1..=64;
const MAX_REQUESTS_PER_SECOND_RANGE: RangeInclusive<i64> = 1..=10_000;
const DEFAULT_DISCOVER_REFRESH: &str = "1h";
const DEFAULT_DOWN_AFTER: i64 = 2;
const DOWN_AFTER_RANGE: RangeInclusive<i64> = 1..=1000;
const DEFAULT_POLL_SCHEDULE: &str = "*/5 * * * *";
const DEFAULT_MIDNIGHT_GRACE: &str = "6h";
const DEFAULT_MAX_CATCH_UP_DAYS: i64 = 7;
const MAX_CATCH_UP_DAYS_RANGE: RangeInclusive<i64> = 0..=31;
const DEFAULT_STUCK_AFTER: &str = "12h";
const DEFAULT_VANISHED_AFTER: &str = "30m";
/// Successful reads of its date that must miss a running job before it counts as vanished,
/// however short `poll.vanished_after` is.
pub const VANISHED_MIN_CYCLES: u32 = 3;
pub const DEFAULT_ALERT_CLASSES: [StatusClass; 3] = [
    StatusClass::PartialFailure,
    StatusClass::Failure,
    StatusClass::Unknown,
];
const DEFAULT_STATE_PATH: &str = "state";
const DEFAULT_RETENTION_DAYS: i64 = 35;
/// Yesterday's jobs are still looked at after midnight, so fewer days would prune them.
const RETENTION_DAYS_RANGE: RangeInclusive<i64> = 2..=u32::MAX as i64;
const DEFAULT_DIGEST_SCHEDULE: &str = "0 8 * * *";
const DEFAULT_GROUP_AFTER: i64 = 5;
/// At least one individual alert; a grouped card lists the rest.
const GROUP_AFTER_RANGE: RangeInclusive<i64> = 1..=100;
const DEFAULT_ESCALATE_AFTER: i64 = 3;
/// The first failure pings anyway, so escalating starts at the second.
const ESCALATE_AFTER_RANGE: RangeInclusive<i64> = 2..=1000;
const DEFAULT_DIGEST_CATCH_UP_DAYS: i64 = 3;
const DIGEST_CATCH_UP_DAYS_RANGE: RangeInclusive<i64> = 1..=31;
/// The midnight grace is a part of the day after midnight.
const MIDNIGHT_GRACE_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest `state.retention_days` allowed: one day more than the oldest date a cycle
/// may still ask for (`poll.max_catch_up_days` back, plus a day for the midnight grace),
/// so that pruning never removes a record a catch-up would read again.
pub fn min_retention_days(max_catch_up_days: u32, midnight_grace: Duration) -> u32 {
    let grace_days = midnight_grace.as_secs().div_ceil(24 * 3600) as u32;
    max_catch_up_days + grace_days + 1
}

/// Turns the raw file into [`Settings`], one key at a time.
struct Checker {
    /// Keys whose value came from the environment, to say so in errors.
    from_env: BTreeSet<String>,
    /// Secrets may be missing and their files are not read.
    offline: bool,
    /// Where each secret came from.
    secret_origins: std::cell::RefCell<std::collections::BTreeMap<String, Origin>>,
}

impl Checker {
    fn fail(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        let message = if self.from_env.contains(key) {
            format!("{message} (set by {})", env_name(key))
        } else {
            message.to_string()
        };
        ConfigError::Key {
            key: key.to_owned(),
            message,
        }
    }

    fn settings(
        &self,
        raw: RawConfig,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut servers = self.servers(raw.cbs, raw.discover, env)?;
        self.watch(raw.watch, &mut servers)?;
        let first = servers.remove(0);
        let cbs = first.cbs;
        let has_discord = raw.discord.is_some();
        let discord = match raw.discord {
            Some(discord) => Some(self.discord(discord, raw.route, env)?),
            None if !raw.route.is_empty() => {
                return Err(self.fail("route", "[[route]] needs a [discord] section"))
            }
            None => None,
        };
        let poll = self.poll(raw.poll, cbs.timezone)?;
        let state = self.state(raw.state)?;
        let shortest = min_retention_days(poll.max_catch_up_days, poll.midnight_grace);
        if state.retention_days < shortest {
            return Err(self.fail(
                "state.retention_days",
                format!(
                    "is {} but must be greater than poll.max_catch_up_days ({}) plus the \
                     poll.midnight_grace day, at least {shortest}: a catch-up would ask \
                     again for dates whose records were pruned and alert their failures \
                     twice",
                    state.retention_days, poll.max_catch_up_days
                ),
            ));
        }
        Ok(Settings {
            watch: first.watch,
            discover: first.discover,
            other_servers: servers,
            poll,
            state,
            discord,
            digest: DigestSettings {
                schedule: self.schedule(
                    "digest.schedule",
                    raw.digest.schedule,
                    DEFAULT_DIGEST_SCHEDULE,
                    cbs.timezone,
                )?,
                max_catch_up_days: self.int_in(
                    "digest.max_catch_up_days",
                    raw.digest.max_catch_up_days,
                    DEFAULT_DIGEST_CATCH_UP_DAYS,
                    DIGEST_CATCH_UP_DAYS_RANGE,
                )? as u32,
            },
            server: ServerSettings {
                listen: match raw.server.listen {
                    Some(text) => Some(self.socket_addr("server.listen", &text)?),
                    None => None,
                },
            },
            heartbeat: HeartbeatSettings {
                url: match raw.heartbeat.url {
                    Some(text) => Some(self.url("heartbeat.url", text)?),
                    None => None,
                },
            },
            summary: self.summary(raw.summary, has_discord, cbs.timezone)?,
            alerts: self.alerts(raw.alerts)?,
            cbs,
        })
    }

    fn summary(
        &self,
        raw: RawSummary,
        has_discord: bool,
        tz: Tz,
    ) -> Result<SummarySettings, ConfigError> {
        let when = match raw.when {
            Some(name) => SummaryWhen::parse_name(&name).ok_or_else(|| {
                self.fail(
                    "summary.when",
                    format!("{name:?} is not one of {}", SummaryWhen::NAMES.join(", ")),
                )
            })?,
            None => SummaryWhen::default(),
        };
        let channel = match raw.channel {
            Some(_) if !has_discord => {
                return Err(self.fail("summary.channel", "needs a [discord] section"))
            }
            Some(value) => Some(ChannelId::new(self.id("summary.channel", value)?)),
            None => None,
        };
        let schedule = match raw.schedule {
            Some(text) => Some(self.schedule("summary.schedule", Some(text), "", tz)?),
            None => None,
        };
        Ok(SummarySettings {
            when,
            channel,
            schedule,
        })
    }

    fn alerts(&self, raw: RawAlerts) -> Result<AlertSettings, ConfigError> {
        Ok(AlertSettings {
            group_after: self.int_in(
                "alerts.group_after",
                raw.group_after,
                DEFAULT_GROUP_AFTER,
                GROUP_AFTER_RANGE,
            )? as u32,
            escalate_after: self.int_in(
                "alerts.escalate_after",
                raw.escalate_after,
                DEFAULT_ESCALATE_AFTER,
                ESCALATE_AFTER_RANGE,
            )? as u32,
            ping: match raw.ping {
                Some(name) => PingWhen::parse_name(&name).ok_or_else(|| {
                    self.fail(
                        "alerts.ping",
                        format!("{name:?} is not one of {}", PingWhen::NAMES.join(", ")),
                    )
                })?,
                None => PingWhen::default(),
            },
        })
    }

    /// An `ip:port` to listen on.
    fn socket_addr(&self, key: &str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
        text.trim().parse().map_err(|_| {
            self.fail(
                key,
                format!("{text:?} is not an address to listen on (like \"127.0.0.1:9187\")"),
            )
        })
    }

    /// The backup servers, each with its discovery settings (its watch list empty yet).
    fn servers(
        &self,
        raw: RawServers,
        discover: RawDiscover,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<CbsServer>, ConfigError> {
        let entries = match raw {
            RawServers::One(mut cbs) => {
                let discover = match cbs.discover.take() {
                    Some(own) => self.discover(own, "cbs.discover")?,
                    None => self.discover(discover, "discover")?,
                };
                // A named server reads its own variable first, then the plain one.
                let mut vars: Vec<String> = (cbs.name.as_deref())
                    .or(cbs.server_name.as_deref())
                    .map(|name| server_password_env(name.trim()))
                    .into_iter()
                    .collect();
                vars.push(CBS_SYS_PWD_ENV.to_owned());
                let cbs = self.cbs(*cbs, "cbs", &vars, false, env)?;
                return Ok(vec![CbsServer {
                    cbs,
                    watch: Vec::new(),
                    discover,
                }]);
            }
            RawServers::Several(entries) if entries.is_empty() => {
                return Err(self.fail("cbs", "needs at least one [[cbs]] entry"))
            }
            RawServers::Several(entries) => entries,
        };
        let several = entries.len() > 1;
        if several && env(CBS_SYS_PWD_ENV).is_some() {
            let vars: Vec<String> = (entries.iter())
                .filter_map(|e| e.name.as_deref().or(e.server_name.as_deref()))
                .map(|name| server_password_env(name.trim()))
                .collect();
            return Err(self.fail(
                CBS_SYS_PWD_ENV,
                format!(
                    "is not read with several [[cbs]] servers: set each server's own \
                     password variable instead ({})",
                    vars.join(", ")
                ),
            ));
        }
        let mut servers: Vec<CbsServer> = Vec::with_capacity(entries.len());
        for (i, mut raw) in entries.into_iter().enumerate() {
            let prefix = format!("cbs[{i}]");
            let name_key = format!("{prefix}.name");
            let Some(name) = raw.name.clone().or_else(|| raw.server_name.clone()) else {
                return Err(self.fail(
                    &name_key,
                    "is required when there are several [[cbs]] servers: the name alerts, \
                     /status and /restores server: use for it",
                ));
            };
            let var = server_password_env(name.trim());
            for (j, other) in servers.iter().enumerate() {
                if other.cbs.server_name.eq_ignore_ascii_case(name.trim()) {
                    return Err(self.fail(
                        &name_key,
                        format!("{name:?} is the name of cbs[{j}] already"),
                    ));
                }
                if server_password_env(&other.cbs.server_name) == var {
                    return Err(self.fail(
                        &name_key,
                        format!(
                            "{name:?} and cbs[{j}]'s {:?} share the password variable {var}; \
                             name them apart",
                            other.cbs.server_name
                        ),
                    ));
                }
            }
            let discover = match raw.discover.take() {
                Some(own) => self.discover(own, &format!("{prefix}.discover"))?,
                None => self.discover(discover.clone(), "discover")?,
            };
            // A single [[cbs]] entry also reads the plain variable, after its own.
            let mut vars = vec![var];
            if !several {
                vars.push(CBS_SYS_PWD_ENV.to_owned());
            }
            servers.push(CbsServer {
                cbs: self.cbs(raw, &prefix, &vars, true, env)?,
                watch: Vec::new(),
                discover,
            });
        }
        Ok(servers)
    }

    /// One server's settings; `prefix` names its table in errors (`cbs`, `cbs[1]`), `vars`
    /// are its password variables, the first set one read (the last is the one a missing
    /// password names), `named`: the name comes from `name` (several servers).
    fn cbs(
        &self,
        raw: RawCbs,
        prefix: &str,
        vars: &[String],
        named: bool,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<CbsSettings, ConfigError> {
        let key = |name: &str| format!("{prefix}.{name}");
        let url = self.url(&key("url"), self.required(&key("url"), raw.url)?)?;
        let server_name = match (raw.name, raw.server_name) {
            (Some(a), Some(b)) if a.trim() != b.trim() => {
                return Err(self.fail(
                    &key("server_name"),
                    format!("{b:?} differs from {}: set one of them", key("name")),
                ))
            }
            (Some(name), _) => self.server_name(&key("name"), name)?,
            (None, Some(name)) => {
                self.server_name(&key(if named { "name" } else { "server_name" }), name)?
            }
            // `url` checked that there is a host.
            (None, None) => url.host_str().unwrap_or_default().to_owned(),
        };
        let timezone = match raw.timezone {
            Some(name) => name.trim().parse::<Tz>().map_err(|_| {
                self.fail(
                    &key("timezone"),
                    format!("{name:?} is not an IANA time zone name (like \"Europe/Berlin\" or \"UTC\")"),
                )
            })?,
            None => DEFAULT_TIMEZONE,
        };
        if let Some(ca_cert) = &raw.ca_cert {
            if !ca_cert.is_file() {
                return Err(self.fail(
                    &key("ca_cert"),
                    format!("{} is not a file", ca_cert.display()),
                ));
            }
        }
        Ok(CbsSettings {
            sys_user: self.non_empty(
                &key("sys_user"),
                self.required(&key("sys_user"), raw.sys_user)?,
            )?,
            sys_pwd: {
                let var = (vars.iter().find(|v| env(v).is_some()))
                    .or(vars.last())
                    .map_or(CBS_SYS_PWD_ENV, String::as_str);
                self.secret(&key("sys_pwd"), var, raw.sys_pwd, raw.sys_pwd_file, env)?
            },
            request_timeout: self.positive_duration(
                &key("request_timeout"),
                raw.request_timeout,
                DEFAULT_REQUEST_TIMEOUT,
            )?,
            max_concurrency: self.int_in(
                &key("max_concurrency"),
                raw.max_concurrency,
                DEFAULT_MAX_CONCURRENCY,
                MAX_CONCURRENCY_RANGE,
            )? as usize,
            max_requests_per_second: match raw.max_requests_per_second {
                None => None,
                Some(n) => std::num::NonZeroU32::new(self.int_in(
                    &key("max_requests_per_second"),
                    Some(n),
                    0,
                    MAX_REQUESTS_PER_SECOND_RANGE,
                )? as u32),
            },
            fetch_reports: raw.fetch_reports.unwrap_or(true),
            down_after: self.int_in(
                &key("down_after"),
                raw.down_after,
                DEFAULT_DOWN_AFTER,
                DOWN_AFTER_RANGE,
            )? as u32,
            url,
            server_name,
            timezone,
            ca_cert: raw.ca_cert,
        })
    }

    /// A server's name: it starts every job's identity and is shown in messages.
    fn server_name(&self, key: &str, name: String) -> Result<String, ConfigError> {
        let name = self.non_empty(key, name)?.trim().to_owned();
        if name.chars().count() > SERVER_NAME_MAX_CHARS || name.chars().any(char::is_control) {
            return Err(self.fail(
                key,
                format!(
                    "{name:?} must be at most {SERVER_NAME_MAX_CHARS} characters, without \
                     control characters"
                ),
            ));
        }
        Ok(name)
    }

    /// Puts each `[[watch]]` entry on its server's list.
    fn watch(&self, raw: Vec<RawWatch>, servers: &mut [CbsServer]) -> Result<(), ConfigError> {
        let names: Vec<String> = servers.iter().map(|s| s.cbs.server_name.clone()).collect();
        let names = || names.join(", ");
        let mut seen = BTreeSet::new();
        for (i, item) in raw.into_iter().enumerate() {
            let key = format!("watch[{i}].login");
            let login = self.non_empty(&key, self.required(&key, item.login)?)?;
            let server_key = format!("watch[{i}].server");
            let target = match item.server {
                Some(name) => (servers.iter())
                    .position(|s| s.cbs.server_name == name.trim())
                    .ok_or_else(|| {
                        self.fail(
                            &server_key,
                            format!(
                                "{name:?} is not the name of a configured server (one of {})",
                                names()
                            ),
                        )
                    })?,
                None if servers.len() > 1 => {
                    return Err(self.fail(
                        &server_key,
                        format!(
                            "is required when there are several [[cbs]] servers (one of {})",
                            names()
                        ),
                    ))
                }
                None => 0,
            };
            if !seen.insert((target, login.clone())) {
                return Err(self.fail(&key, format!("{login:?} is listed twice")));
            }
            servers[target].watch.push(WatchEntry {
                login,
                owner: item.owner.unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn discover(
        &self,
        raw: RawDiscover,
        prefix: &str,
    ) -> Result<crate::discover::DiscoverSettings, ConfigError> {
        let mut exclude = globset::GlobSetBuilder::new();
        let patterns = raw.exclude.unwrap_or_default();
        for (i, pattern) in patterns.iter().enumerate() {
            let glob = globset::Glob::new(pattern.trim()).map_err(|e| {
                self.fail(
                    &format!("{prefix}.exclude[{i}]"),
                    format!("{pattern:?}: {e}"),
                )
            })?;
            exclude.add(glob);
        }
        let exclude = exclude
            .build()
            .map_err(|e| self.fail(&format!("{prefix}.exclude"), e))?;
        let mut owners = Vec::new();
        for (i, owner) in raw.owners.unwrap_or_default().into_iter().enumerate() {
            owners.push(self.non_empty(&format!("{prefix}.owners[{i}]"), owner)?);
        }
        Ok(crate::discover::DiscoverSettings {
            enabled: raw.enabled.unwrap_or(false),
            owners,
            exclude,
            exclude_patterns: patterns,
            refresh: self.positive_duration(
                &format!("{prefix}.refresh"),
                raw.refresh,
                DEFAULT_DISCOVER_REFRESH,
            )?,
        })
    }

    fn poll(&self, raw: RawPoll, tz: Tz) -> Result<PollSettings, ConfigError> {
        let midnight_grace = self.duration(
            "poll.midnight_grace",
            raw.midnight_grace,
            DEFAULT_MIDNIGHT_GRACE,
        )?;
        if midnight_grace > MIDNIGHT_GRACE_MAX {
            return Err(self.fail("poll.midnight_grace", "must be at most 24h"));
        }
        let alert_classes = match raw.alert_classes {
            Some(names) => names
                .iter()
                .map(|name| {
                    // Only outcomes alert; a job that runs too long has poll.stuck_after.
                    let known: Vec<&str> = StatusClass::ALL
                        .iter()
                        .filter(|c| c.is_finished())
                        .map(|c| c.as_str())
                        .collect();
                    StatusClass::parse_name(name)
                        .filter(|c| c.is_finished())
                        .ok_or_else(|| {
                            self.fail(
                                "poll.alert_classes",
                                format!(
                                    "{name:?} is not a final status class (one of {}; \
                                     long-running jobs are reported by poll.stuck_after)",
                                    known.join(", ")
                                ),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
            None => DEFAULT_ALERT_CLASSES.into_iter().collect(),
        };
        Ok(PollSettings {
            schedule: self.schedule("poll.schedule", raw.schedule, DEFAULT_POLL_SCHEDULE, tz)?,
            midnight_grace,
            max_catch_up_days: self.int_in(
                "poll.max_catch_up_days",
                raw.max_catch_up_days,
                DEFAULT_MAX_CATCH_UP_DAYS,
                MAX_CATCH_UP_DAYS_RANGE,
            )? as u32,
            stuck_after: self.positive_duration(
                "poll.stuck_after",
                raw.stuck_after,
                DEFAULT_STUCK_AFTER,
            )?,
            vanished_after: self.positive_duration(
                "poll.vanished_after",
                raw.vanished_after,
                DEFAULT_VANISHED_AFTER,
            )?,
            alert_classes,
            baseline_first_cycle: raw.baseline_first_cycle.unwrap_or(true),
        })
    }

    fn state(&self, raw: RawState) -> Result<StateSettings, ConfigError> {
        Ok(StateSettings {
            path: raw
                .path
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
            retention_days: self.int_in(
                "state.retention_days",
                raw.retention_days,
                DEFAULT_RETENTION_DAYS,
                RETENTION_DAYS_RANGE,
            )? as u32,
        })
    }

    fn discord(
        &self,
        raw: RawDiscord,
        routes: Vec<RawRoute>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<DiscordSettings, ConfigError> {
        let alert_channel = ChannelId::new(self.id(
            "discord.alert_channel",
            self.required("discord.alert_channel", raw.alert_channel)?,
        )?);
        let optional_id = |key: &str, value: Option<toml::Value>| match value {
            Some(value) => self.id(key, value).map(Some),
            None => Ok(None),
        };
        let mut owners = BTreeSet::new();
        let mut checked_routes = Vec::with_capacity(routes.len());
        for (i, route) in routes.into_iter().enumerate() {
            let owner_key = format!("route[{i}].owner");
            let owner = self.non_empty(&owner_key, self.required(&owner_key, route.owner)?)?;
            if !owners.insert(owner.clone()) {
                return Err(self.fail(&owner_key, format!("{owner:?} has a route already")));
            }
            let channel_key = format!("route[{i}].channel");
            let channel = self.id(&channel_key, self.required(&channel_key, route.channel)?)?;
            checked_routes.push(Route {
                owner,
                channel: ChannelId::new(channel),
            });
        }
        let mut guilds: Vec<GuildId> = Vec::new();
        let listed = raw.guild_ids.unwrap_or_default().into_iter().enumerate();
        let listed = listed.map(|(i, v)| self.id(&format!("discord.guild_ids[{i}]"), v));
        let single = optional_id("discord.guild_id", raw.guild_id)?;
        for id in single.into_iter().map(Ok).chain(listed) {
            let guild = GuildId::new(id?);
            if !guilds.contains(&guild) {
                guilds.push(guild);
            }
        }
        Ok(DiscordSettings {
            token: self.secret(
                "discord.token",
                DISCORD_TOKEN_ENV,
                raw.token,
                raw.token_file,
                env,
            )?,
            alert_channel,
            digest_channel: optional_id("discord.digest_channel", raw.digest_channel)?
                .map_or(alert_channel, ChannelId::new),
            mention_role: optional_id("discord.mention_role", raw.mention_role)?.map(RoleId::new),
            api_base: match raw.api_base {
                Some(text) => Some(self.url("discord.api_base", text)?),
                None => None,
            },
            guilds,
            admin_role: optional_id("discord.admin_role", raw.admin_role)?.map(RoleId::new),
            public_lookups: raw.public_lookups.unwrap_or(false),
            routes: checked_routes,
        })
    }

    fn required<T>(&self, key: &str, value: Option<T>) -> Result<T, ConfigError> {
        value.ok_or_else(|| self.fail(key, "is required"))
    }

    fn non_empty(&self, key: &str, value: String) -> Result<String, ConfigError> {
        if value.trim().is_empty() {
            Err(self.fail(key, "is empty"))
        } else {
            Ok(value)
        }
    }

    /// An http(s) URL with a host and no password in it (the URL shows up in logs).
    fn url(&self, key: &str, text: String) -> Result<reqwest::Url, ConfigError> {
        let url = reqwest::Url::parse(text.trim())
            .map_err(|e| self.fail(key, format!("{text:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.fail(key, format!("{text:?} is not an http or https URL")));
        }
        if url.password().is_some() {
            // Not echoed: the point is that it holds a password.
            return Err(self.fail(key, "must not contain a password"));
        }
        Ok(url)
    }

    fn duration(
        &self,
        key: &str,
        text: Option<String>,
        default: &str,
    ) -> Result<Duration, ConfigError> {
        let text = text.as_deref().unwrap_or(default);
        humantime::parse_duration(text.trim()).map_err(|e| {
            self.fail(
                key,
                format!("{text:?} is not a duration (like \"30s\", \"6h\" or \"3d\"): {e}"),
            )
        })
    }

    fn positive_duration(
        &self,
        key: &str,
        text: Option<String>,
        default: &str,
    ) -> Result<Duration, ConfigError> {
        let duration = self.duration(key, text, default)?;
        if duration.is_zero() {
            return Err(self.fail(key, "must be longer than 0s"));
        }
        Ok(duration)
    }

    fn int_in(
        &self,
        key: &str,
        value: Option<i64>,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let value = value.unwrap_or(default);
        if range.contains(&value) {
            return Ok(value);
        }
        let (low, high) = (*range.start(), *range.end());
        Err(self.fail(
            key,
            if high >= i64::from(u32::MAX) {
                format!("must be at least {low}, got {value}")
            } else {
                format!("must be between {low} and {high}, got {value}")
            },
        ))
    }

    fn schedule(
        &self,
        key: &str,
        text: Option<String>,
        default: &str,
        tz: Tz,
    ) -> Result<CronSchedule, ConfigError> {
        let schedule = CronSchedule::parse(text.as_deref().unwrap_or(default), tz)
            .map_err(|e| self.fail(key, e))?;
        // A schedule that never fires would leave the program running and watching nothing.
        if schedule.next_after(chrono::Utc::now()).is_none() {
            return Err(self.fail(
                key,
                format!("{:?} never fires: no date matches it", schedule.to_string()),
            ));
        }
        Ok(schedule)
    }

    /// A Discord id (snowflake), written as a string or an integer.
    fn id(&self, key: &str, value: toml::Value) -> Result<u64, ConfigError> {
        let id = match &value {
            toml::Value::String(text) => text.trim().parse::<u64>().ok(),
            toml::Value::Integer(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        // Zero is no id, and serenity's id types panic on it.
        id.filter(|&id| id != 0).ok_or_else(|| {
            self.fail(
                key,
                format!("{value} is not a Discord id (a number like \"123456789012345678\")"),
            )
        })
    }

    /// A secret from the environment, else its file, else the TOML key; `key` is the TOML
    /// key (`cbs.sys_pwd`), `var` the variable, the file key is `key` + `_file`.
    fn secret(
        &self,
        key: &str,
        var: &str,
        inline: Option<RawSecret>,
        file: Option<PathBuf>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<SecretString, ConfigError> {
        let file_key = format!("{key}_file");
        let var = var.to_owned();
        let origin = |origin: Origin| {
            self.secret_origins
                .borrow_mut()
                .insert(key.to_owned(), origin);
        };
        if let Some(value) = env(&var) {
            origin(Origin::Env(var));
            return Ok(SecretString::from(value));
        }
        if self.offline {
            origin(match (file, inline) {
                (Some(path), _) => Origin::SecretFile(path),
                (None, Some(_)) => Origin::File,
                (None, None) => Origin::Missing,
            });
            return Ok(SecretString::from(String::new()));
        }
        if let Some(path) = file {
            origin(Origin::SecretFile(path.clone()));
            // The io error names the path, never the content.
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.fail(&file_key, format!("cannot read {}: {e}", path.display()))
            })?;
            let trimmed = text.trim();
            if trimmed.is_empty() {
                return Err(self.fail(&file_key, format!("{} is empty", path.display())));
            }
            return Ok(SecretString::from(trimmed.to_owned()));
        }
        match inline {
            Some(RawSecret(secret)) if secret.expose_secret().trim().is_empty() => {
                Err(self.fail(key, "is empty"))
            }
            Some(RawSecret(secret)) => {
                origin(Origin::File);
                Ok(secret)
            }
            None => Err(self.fail(key, format!("missing: set {var}, or {file_key}, or {key}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[cbs]\nurl = \"https://cbs.example.com\"\nsys_user = \"api\"\n";

    fn with_env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    /// For every key an environment variable can set: a value unlike the default, as the
    /// variable's text and as the file's TOML.
    const NON_DEFAULT_VALUES: &[(&str, &str, &str)] = &[
        (
            "cbs.url",
            "https://other.example.net",
            "\"https://other.example.net\"",
        ),
        ("cbs.server_name", "cbs9", "\"cbs9\""),
        ("cbs.sys_user", "other", "\"other\""),
        ("cbs.sys_pwd_file", "/nonexistent/pw", "\"/nonexistent/pw\""),
        ("cbs.timezone", "Asia/Tokyo", "\"Asia/Tokyo\""),
        ("cbs.request_timeout", "7s", "\"7s\""),
        ("cbs.max_concurrency", "3", "3"),
        ("cbs.fetch_reports", "false", "false"),
        (
            "cbs.ca_cert",
            "/nonexistent/ca.pem",
            "\"/nonexistent/ca.pem\"",
        ),
        ("poll.schedule", "*/7 * * * *", "\"*/7 * * * *\""),
        ("poll.midnight_grace", "2h", "\"2h\""),
        ("cbs.down_after", "4", "4"),
        ("poll.max_catch_up_days", "3", "3"),
        ("poll.stuck_after", "5h", "\"5h\""),
        ("poll.vanished_after", "2h", "\"2h\""),
        (
            "poll.alert_classes",
            "failure, warning",
            "[\"failure\", \"warning\"]",
        ),
        ("poll.baseline_first_cycle", "false", "false"),
        ("state.path", "elsewhere", "\"elsewhere\""),
        ("state.retention_days", "9", "9"),
        (
            "discord.token_file",
            "/nonexistent/token",
            "\"/nonexistent/token\"",
        ),
        (
            "discord.alert_channel",
            "923456789012345678",
            "\"923456789012345678\"",
        ),
        (
            "discord.digest_channel",
            "923456789012345679",
            "\"923456789012345679\"",
        ),
        (
            "discord.mention_role",
            "923456789012345680",
            "\"923456789012345680\"",
        ),
        (
            "discord.api_base",
            "http://127.0.0.1:1/",
            "\"http://127.0.0.1:1/\"",
        ),
        (
            "discord.guild_id",
            "923456789012345681",
            "\"923456789012345681\"",
        ),
        (
            "discord.guild_ids",
            "923456789012345683, 923456789012345684",
            "[\"923456789012345683\", \"923456789012345684\"]",
        ),
        (
            "discord.admin_role",
            "923456789012345682",
            "\"923456789012345682\"",
        ),
        ("discord.public_lookups", "true", "true"),
        ("digest.schedule", "0 9 * * *", "\"0 9 * * *\""),
        ("digest.max_catch_up_days", "5", "5"),
        ("server.listen", "127.0.0.1:9188", "\"127.0.0.1:9188\""),
        (
            "heartbeat.url",
            "http://127.0.0.1:1/ping",
            "\"http://127.0.0.1:1/ping\"",
        ),
        ("cbs.max_requests_per_second", "25", "25"),
        ("discover.enabled", "true", "true"),
        ("discover.owners", "r1, r2", "[\"r1\", \"r2\"]"),
        ("discover.exclude", "test-*", "[\"test-*\"]"),
        ("discover.refresh", "2h", "\"2h\""),
        ("summary.when", "never", "\"never\""),
        ("summary.channel", "42", "\"42\""),
        ("summary.schedule", "0 * * * *", "\"0 * * * *\""),
        ("alerts.group_after", "9", "9"),
        ("alerts.escalate_after", "4", "4"),
        ("alerts.ping", "every", "\"every\""),
    ];

    #[test]
    fn every_env_key_sets_the_same_value_as_the_file_key() {
        let base = format!("{MINIMAL}[discord]\nalert_channel = \"123456789012345678\"\n");
        let secrets = [(CBS_SYS_PWD_ENV, "pw"), (DISCORD_TOKEN_ENV, "tok")];
        let outcome = |text: &str, vars: &[(&str, &str)]| {
            format!("{:?}", Settings::from_toml_str(text, &with_env(vars)))
        };
        let default = outcome(&base, &secrets);
        assert!(default.starts_with("Ok("), "{default}");
        for &(section, name, _) in ENV_KEYS {
            let key = format!("{section}.{name}");
            let var = env_name(&key);
            let &(_, env_text, toml_text) = NON_DEFAULT_VALUES
                .iter()
                .find(|(k, _, _)| *k == key)
                .unwrap_or_else(|| panic!("{key}: add a non-default value above"));
            // A secret's file replaces the secret's own variable, which stays unset here.
            let secret_of_file = match key.as_str() {
                "cbs.sys_pwd_file" => Some(CBS_SYS_PWD_ENV),
                "discord.token_file" => Some(DISCORD_TOKEN_ENV),
                _ => None,
            };
            let mut vars: Vec<(&str, &str)> = secrets
                .iter()
                .copied()
                .filter(|(k, _)| Some(*k) != secret_of_file)
                .collect();
            let from_file = {
                let mut table: toml::Table = toml::from_str(&base).unwrap();
                let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {toml_text}"))
                    .unwrap()
                    .remove("v")
                    .unwrap();
                let section_table = table
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                section_table
                    .as_table_mut()
                    .unwrap()
                    .insert(name.into(), value);
                outcome(&toml::to_string(&table).unwrap(), &vars)
            };
            vars.push((var.as_str(), env_text));
            // An error caused by the variable names it; otherwise the outcomes are the same.
            let from_env = outcome(&base, &vars).replace(&format!(" (set by {var})"), "");
            assert_ne!(from_file, default, "{key}: the test value is the default");
            assert_eq!(from_env, from_file, "{var} does not set {key}");
        }
    }

    #[test]
    fn every_key_of_the_example_can_come_from_the_environment() {
        let example: toml::Table =
            toml::from_str(include_str!("../../config/restorewatch.example.toml")).unwrap();
        for (section, value) in &example {
            // Arrays of tables ([[watch]], [[route]]) come from the file only.
            let toml::Value::Table(keys) = value else {
                continue;
            };
            for name in keys.keys() {
                let key = format!("{section}.{name}");
                let known = ENV_KEYS.iter().any(|&(s, n, _)| (s, n) == (section, name));
                let secret = [CBS_SYS_PWD_ENV, DISCORD_TOKEN_ENV].contains(&&*env_name(&key));
                assert!(known || secret, "{key} has no environment variable");
            }
        }
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let s = Settings::from_toml_str(MINIMAL, &with_env(&[(CBS_SYS_PWD_ENV, "pw")])).unwrap();
        assert_eq!(s.cbs.server_name, "cbs.example.com");
        assert_eq!(s.cbs.timezone, Tz::UTC);
        assert_eq!(s.cbs.request_timeout, Duration::from_secs(30));
        assert_eq!(s.cbs.max_concurrency, 8);
        assert_eq!(s.poll.schedule.to_string(), "*/5 * * * *");
        assert_eq!(s.poll.midnight_grace, Duration::from_secs(6 * 3600));
        assert_eq!(s.poll.max_catch_up_days, 7);
        assert_eq!(s.poll.stuck_after, Duration::from_secs(12 * 3600));
        assert_eq!(s.poll.alert_classes, BTreeSet::from(DEFAULT_ALERT_CLASSES));
        assert_eq!(s.state.path, PathBuf::from("state"));
        assert_eq!(s.state.retention_days, 35);
        assert!(s.discord.is_none());
        assert!(s.watch.is_empty());
        assert_eq!(s.digest.schedule.to_string(), "0 8 * * *");
        assert_eq!(s.server.listen, None);
        assert_eq!(s.summary.when, SummaryWhen::Alerts);
        assert_eq!(s.summary.channel, None);
        assert!(s.summary.schedule.is_none());
        assert_eq!(s.alerts, AlertSettings::default());
        assert_eq!(s.alerts.group_after, 5);
        assert_eq!(s.alerts.escalate_after, 3);
        assert_eq!(s.alerts.ping, PingWhen::Thresholds);
        assert_eq!(s.heartbeat.url, None);
    }

    #[test]
    fn config_path_prefers_the_argument_then_the_environment() {
        let env = [(CONFIG_PATH_ENV, "/etc/rw.toml")];
        let arg = Path::new("mine.toml");
        assert_eq!(config_path(Some(arg), &with_env(&env)), arg);
        assert_eq!(
            config_path(None, &with_env(&env)),
            Path::new("/etc/rw.toml")
        );
        assert_eq!(
            config_path(None, &with_env(&[])),
            Path::new(DEFAULT_CONFIG_PATH)
        );
    }

    #[test]
    fn a_schedule_that_never_fires_is_refused_naming_the_key() {
        for (key, var) in [
            ("poll.schedule", "RESTOREWATCH_POLL_SCHEDULE"),
            ("digest.schedule", "RESTOREWATCH_DIGEST_SCHEDULE"),
        ] {
            let vars = [(CBS_SYS_PWD_ENV, "pw"), (var, "0 8 31 2 *")];
            let err = Settings::from_toml_str(MINIMAL, &with_env(&vars)).unwrap_err();
            assert_eq!(err.key(), Some(key));
            assert!(err.to_string().contains("never fires"), "{err}");
        }
        // 29 February fires, if rarely.
        let vars = [
            (CBS_SYS_PWD_ENV, "pw"),
            ("RESTOREWATCH_POLL_SCHEDULE", "0 8 29 2 *"),
        ];
        assert!(Settings::from_toml_str(MINIMAL, &with_env(&vars)).is_ok());
    }

    #[test]
    fn unknown_variables_name_the_nearest_valid_one() {
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let known = env_names();
        assert!(check_env_names(known.clone(), &[]).is_ok());
        assert!(check_env_names(names(&["PATH", "RESTOREWATCHER"]), &[]).is_ok());
        let err = check_env_names(names(&["RESTOREWATCH_DISCORD_TOKN"]), &[]).unwrap_err();
        assert_eq!(err.key(), Some("RESTOREWATCH_DISCORD_TOKN"));
        assert!(err
            .to_string()
            .ends_with("did you mean RESTOREWATCH_DISCORD_TOKEN?"));
        let err = check_env_names(names(&["RESTOREWATCH_STATE_RETENTION"]), &[]).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("RESTOREWATCH_STATE_RETENTION_DAYS?"),
            "{err}"
        );
    }

    #[test]
    fn retention_must_outlast_the_catch_up() {
        let text =
            format!("{MINIMAL}[poll]\nmax_catch_up_days = 10\n[state]\nretention_days = 10\n");
        let err =
            Settings::from_toml_str(&text, &with_env(&[(CBS_SYS_PWD_ENV, "pw")])).unwrap_err();
        assert_eq!(err.key(), Some("state.retention_days"));
        // Ten days of catch-up plus the midnight-grace day: 11 is still too short.
        let text = text.replace("retention_days = 10", "retention_days = 11");
        let err =
            Settings::from_toml_str(&text, &with_env(&[(CBS_SYS_PWD_ENV, "pw")])).unwrap_err();
        assert_eq!(err.key(), Some("state.retention_days"));
        let text = text.replace("retention_days = 11", "retention_days = 12");
        assert!(Settings::from_toml_str(&text, &with_env(&[(CBS_SYS_PWD_ENV, "pw")])).is_ok());
    }

    #[test]
    fn guild_id_and_guild_ids_merge_and_run_requires_one() {
        let discord = |extra: &str| {
            let toml = format!("{MINIMAL}[discord]\nalert_channel = 1\n{extra}");
            let vars = [(CBS_SYS_PWD_ENV, "pw"), (DISCORD_TOKEN_ENV, "t")];
            let loaded = Settings::from_toml_str(&toml, &with_env(&vars));
            loaded.map(|s| s.discord.unwrap())
        };
        let none = discord("").unwrap();
        assert!(none.guilds.is_empty(), "`once` needs no guild");
        let e = none.require_guilds().unwrap_err();
        assert_eq!(e.key(), Some("discord.guild_id"));
        assert!(e.to_string().contains("is required"), "{e}");

        let both = discord("guild_id = \"2\"\nguild_ids = [\"1\", 2]").unwrap();
        let ids: Vec<u64> = both.guilds.iter().map(|g| g.get()).collect();
        assert_eq!(ids, [2, 1]);
        assert_eq!(both.require_guilds().unwrap().len(), 2);

        let bad = discord("guild_ids = [\"1\", \"x\"]").unwrap_err();
        assert_eq!(bad.key(), Some("discord.guild_ids[1]"));
    }

    #[test]
    fn syntax_errors_give_line_and_column_on_one_line() {
        let err = Settings::from_toml_str("[cbs]\nurl = \n", &with_env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("config error: line 2, column"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(err.key(), None);
    }
}
