//! The typed, checked settings the rest of the program uses ([`Settings`] and its parts),
//! built by [`super::check`], and [`Settings::describe`], which prints them back as the
//! keys of the effective configuration for `check --print-config`.

use super::check::{DEFAULT_ESCALATE_AFTER, DEFAULT_GROUP_AFTER};
use super::ConfigError;
#[cfg(doc)]
use super::VANISHED_MIN_CYCLES;
use crate::cbs::model::StatusClass;
use crate::schedule::CronSchedule;
use crate::tz::Tz;
use secrecy::{ExposeSecret, SecretString};
use serenity::all::{ChannelId, GuildId, RoleId};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Everything restorewatch needs to run, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The single `[cbs]`, or the first `[[cbs]]` entry: its zone is the zone of the
    /// schedules and the digest.
    pub cbs: CbsSettings,
    /// Users of that server from the config file (the store adds those added from chat).
    pub watch: Vec<WatchEntry>,
    /// `[discover]` (or the server's own `discover`): users listed by the server itself.
    pub discover: DiscoverSettings,
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
    pub discover: DiscoverSettings,
}

/// A backup server of [`Settings::servers`], borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ServerRef<'a> {
    pub cbs: &'a CbsSettings,
    pub watch: &'a [WatchEntry],
    pub discover: &'a DiscoverSettings,
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
        .map(|client| {
            client
                .with_max_requests_per_second(self.max_requests_per_second)
                .with_max_concurrency(Some(self.max_concurrency))
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WatchEntry {
    pub login: String,
    /// Empty when the user has no owner (sub-admin).
    pub owner: String,
}

/// `[discover]`, checked.
#[derive(Clone, Debug)]
pub struct DiscoverSettings {
    pub enabled: bool,
    /// Resellers whose users are discovered; empty: every user.
    pub owners: Vec<String>,
    /// Logins matching any of these globs are left out.
    pub exclude: globset::GlobSet,
    /// `exclude` as written, to show the effective config.
    pub exclude_patterns: Vec<String>,
    /// How old the last good list may get before it is asked for again.
    pub refresh: Duration,
}

impl Default for DiscoverSettings {
    fn default() -> Self {
        DiscoverSettings {
            enabled: false,
            owners: Vec::new(),
            exclude: globset::GlobSet::empty(),
            exclude_patterns: Vec::new(),
            refresh: Duration::from_secs(3600),
        }
    }
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

    /// The name the config uses for it (one of [`Self::NAMES`], in declaration order).
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
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

    /// The name the config uses for it (one of [`Self::NAMES`], in declaration order).
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
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

impl Settings {
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
                (key("down_after"), c.down_after.to_string()),
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
            ("poll.vanished_after", duration(&p.vanished_after)),
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
            (
                "digest.max_catch_up_days",
                self.digest.max_catch_up_days.to_string(),
            ),
        ];
        out.extend(rest.into_iter().map(|(k, v)| (k.to_owned(), v)));
        if let Some(listen) = &self.server.listen {
            out.push(("server.listen".into(), text(&listen.to_string())));
        }
        if self.heartbeat.url.is_some() {
            // A push URL carries the check's token: whoever has it can report for us.
            out.push(("heartbeat.url".into(), text("<redacted>")));
        }
        let summary = &self.summary;
        out.push(("summary.when".into(), text(summary.when.name())));
        if let Some(channel) = summary.channel {
            out.push(("summary.channel".into(), text(&channel.get().to_string())));
        }
        if let Some(schedule) = &summary.schedule {
            out.push(("summary.schedule".into(), text(&schedule.to_string())));
        }
        let a = &self.alerts;
        out.extend([
            ("alerts.group_after".into(), a.group_after.to_string()),
            ("alerts.escalate_after".into(), a.escalate_after.to_string()),
            ("alerts.ping".into(), text(a.ping.name())),
        ]);
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
