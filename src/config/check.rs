//! Checking: the [`Checker`] turns the raw file ([`super::raw`]) into [`Settings`], one key
//! at a time, filling in the default of every key left out and failing with an error that
//! names the bad key (and the variable that set it). The servers' part is in [`super::servers`], the secrets' in
//! [`super::env`].

use super::env::env_name;
use super::raw::{RawAlerts, RawConfig, RawDiscord, RawPoll, RawRoute, RawState, RawSummary};
use super::settings::{
    AlertSettings, DigestSettings, DiscordSettings, HeartbeatSettings, PingWhen, PollSettings,
    Route, ServerSettings, Settings, StateSettings, SummarySettings, SummaryWhen,
};
use super::{ConfigError, Origin, DISCORD_TOKEN_ENV};
use crate::cbs::model::StatusClass;
use crate::schedule::CronSchedule;
use crate::tz::Tz;
use serenity::all::{ChannelId, GuildId, RoleId};
use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

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
/// Yesterday's jobs are still looked at after midnight, so fewer days would prune them;
/// more than ten years is a typo.
const RETENTION_DAYS_RANGE: RangeInclusive<i64> = 2..=3650;
const DEFAULT_DIGEST_SCHEDULE: &str = "0 8 * * *";
pub(super) const DEFAULT_GROUP_AFTER: i64 = 5;
/// At least one individual alert; a grouped card lists the rest.
const GROUP_AFTER_RANGE: RangeInclusive<i64> = 1..=100;
pub(super) const DEFAULT_ESCALATE_AFTER: i64 = 3;
/// The first failure pings anyway, so escalating starts at the second.
const ESCALATE_AFTER_RANGE: RangeInclusive<i64> = 2..=1000;
const DEFAULT_DIGEST_CATCH_UP_DAYS: i64 = 3;
const DIGEST_CATCH_UP_DAYS_RANGE: RangeInclusive<i64> = 1..=31;
/// The longest duration any key takes: longer is a typo, and would overflow the clock
/// arithmetic it feeds.
const DURATION_MAX: Duration = Duration::from_secs(366 * 24 * 3600);
/// The midnight grace is a part of the day after midnight.
const MIDNIGHT_GRACE_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest `state.retention_days` allowed: one day more than the oldest date a cycle
/// may still ask for (`poll.max_catch_up_days` back, plus a day for the midnight grace),
/// so that pruning never removes a record a catch-up would read again.
pub fn min_retention_days(max_catch_up_days: u32, midnight_grace: Duration) -> u32 {
    let grace_days = midnight_grace.as_secs().div_ceil(24 * 3600) as u32;
    max_catch_up_days + grace_days + 1
}

/// How many days of job records a cycle keeps: `state.retention_days`, or more when a
/// later cycle may still ask for older dates (a catch-up, the midnight grace).
pub fn kept_days(retention_days: u32, poll: &super::PollSettings) -> u32 {
    retention_days.max(min_retention_days(
        poll.max_catch_up_days,
        poll.midnight_grace,
    ))
}

/// The oldest date whose records the store keeps on `today`, [`kept_days`] back (the
/// calendar's start when that reaches past it): older records are pruned.
pub fn earliest_kept(today: chrono::NaiveDate, kept_days: u32) -> chrono::NaiveDate {
    today
        .checked_sub_days(chrono::Days::new(kept_days.into()))
        .unwrap_or(chrono::NaiveDate::MIN)
}

/// Turns the raw file into [`Settings`], one key at a time.
pub(super) struct Checker {
    /// Keys whose value came from the environment, to say so in errors.
    pub(super) from_env: BTreeSet<String>,
    /// Secrets may be missing and their files are not read.
    pub(super) offline: bool,
    /// Where each secret came from.
    pub(super) secret_origins: std::cell::RefCell<std::collections::BTreeMap<String, Origin>>,
}

impl Checker {
    pub(super) fn fail(&self, key: &str, message: impl fmt::Display) -> ConfigError {
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

    pub(super) fn settings(
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
        let digest = DigestSettings {
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
        };
        // A late digest is built from the records of its day, which must still be kept.
        if state.retention_days <= digest.max_catch_up_days + 1 {
            return Err(self.fail(
                "state.retention_days",
                format!(
                    "is {} but must be greater than digest.max_catch_up_days ({}) plus a \
                     day: a late digest would be built after its day's records were pruned \
                     and say there were no restore jobs",
                    state.retention_days, digest.max_catch_up_days
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
            digest,
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
        let path = raw
            .path
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH));
        if path.as_os_str().to_string_lossy().trim().is_empty() {
            // sled would take the working directory itself for the store.
            return Err(self.fail("state.path", "must name a directory, not be empty"));
        }
        Ok(StateSettings {
            path,
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

    pub(super) fn required<T>(&self, key: &str, value: Option<T>) -> Result<T, ConfigError> {
        value.ok_or_else(|| self.fail(key, "is required"))
    }

    pub(super) fn non_empty(&self, key: &str, value: String) -> Result<String, ConfigError> {
        if value.trim().is_empty() {
            Err(self.fail(key, "is empty"))
        } else {
            Ok(value)
        }
    }

    /// An http(s) URL with a host and no password in it (the URL shows up in logs).
    pub(super) fn url(&self, key: &str, text: String) -> Result<reqwest::Url, ConfigError> {
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
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            self.fail(
                key,
                format!("{text:?} is not a duration (like \"30s\", \"6h\" or \"3d\"): {e}"),
            )
        })?;
        if duration > DURATION_MAX {
            return Err(self.fail(key, format!("{text:?} is longer than a year")));
        }
        Ok(duration)
    }

    pub(super) fn positive_duration(
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

    pub(super) fn int_in(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{with_env, MINIMAL};
    use crate::config::CBS_SYS_PWD_ENV;
    use std::path::PathBuf;

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
        // A late digest needs its day's records too.
        let digest = |days: u32| {
            let text = format!(
                "{MINIMAL}[poll]\nmax_catch_up_days = 0\n[state]\nretention_days = 3\n\
                 [digest]\nmax_catch_up_days = {days}\n"
            );
            Settings::from_toml_str(&text, &with_env(&[(CBS_SYS_PWD_ENV, "pw")]))
        };
        let err = digest(5).unwrap_err();
        assert_eq!(err.key(), Some("state.retention_days"));
        assert!(
            err.to_string().contains("digest.max_catch_up_days (5)"),
            "{err}"
        );
        assert!(digest(2).is_err(), "two days back and the day itself");
        assert!(digest(1).is_ok());
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
}
