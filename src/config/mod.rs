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
//! They are held as [`SecretString`](secrecy::SecretString) and never appear in `Debug` output or error messages.
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
//!
//! # Layout
//! `raw.rs` holds the serde structs of the file, `env.rs` the environment overlay, the
//! variable names and the secrets, `check.rs` and `servers.rs` turn the raw file into the
//! typed settings of `settings.rs`; this module finds and reads the file and ties the
//! passes together.

mod check;
mod env;
mod raw;
mod servers;
mod settings;

pub use check::{
    earliest_kept, kept_days, min_retention_days, DEFAULT_ALERT_CLASSES, VANISHED_MIN_CYCLES,
};
pub use env::{check_env_names, env_names, server_password_env, server_password_envs};
pub use settings::{
    AlertSettings, CbsServer, CbsSettings, DigestSettings, DiscordSettings, DiscoverSettings,
    HeartbeatSettings, PingWhen, PollSettings, Route, ServerRef, ServerSettings, Settings,
    StateSettings, SummarySettings, SummaryWhen, WatchEntry,
};

use check::Checker;
use env::{apply_env, env_name};
use raw::RawConfig;
use std::fmt;
use std::path::{Path, PathBuf};

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
        // Read (and warned about) before any config, when logging starts; refused here
        // like every other bad variable.
        let log_format = crate::logging::LOG_FORMAT_ENV;
        if crate::logging::LogFormat::parse_env(env(log_format).as_deref()).is_err() {
            return Err(ConfigError::Key {
                key: log_format.to_owned(),
                message: format!(
                    "{:?} is not a log format (text or json)",
                    env(log_format).unwrap_or_default()
                ),
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    // `MINIMAL` and `with_env` are shared by the tests of every file of this folder.

    pub(super) const MINIMAL: &str =
        "[cbs]\nurl = \"https://cbs.example.com\"\nsys_user = \"api\"\n";

    pub(super) fn with_env<'a>(
        vars: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
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
    fn syntax_errors_give_line_and_column_on_one_line() {
        let err = Settings::from_toml_str("[cbs]\nurl = \n", &with_env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("config error: line 2, column"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(err.key(), None);
    }
}
