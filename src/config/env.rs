//! Environment variables: the `RESTOREWATCH_<SECTION>_<KEY>` overlay written over the
//! file's table before it is checked ([`apply_env`]), the names restorewatch reads and the
//! refusal of any other `RESTOREWATCH_*` name ([`check_env_names`]), and the secrets
//! (CBS password, Discord token) read from a variable, a secret file or the file's key.

use super::check::Checker;
use super::raw::RawSecret;
use super::{
    ConfigError, Origin, CBS_SYS_PWD_ENV, CONFIG_PATH_ENV, DISCORD_TOKEN_ENV, ENV_PREFIX, LOG_ENV,
};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeSet;
use std::path::PathBuf;

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
pub(super) fn env_name(key: &str) -> String {
    format!(
        "RESTOREWATCH_{}",
        key.replace('.', "_").to_ascii_uppercase()
    )
}

/// Writes the environment's values over the file's; returns the keys it set.
pub(super) fn apply_env(
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

impl Checker {
    /// A secret from the environment, else its file, else the TOML key; `key` is the TOML
    /// key (`cbs.sys_pwd`), `var` the variable, the file key is `key` + `_file`.
    pub(super) fn secret(
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
            // Trimmed like a secret file: a `.env` line's stray `\r` or space is not part
            // of the password, and a blank one is a mistake, not a password.
            let trimmed = value.trim();
            if trimmed.is_empty() {
                return Err(self.fail(key, format!("{var} is set but empty")));
            }
            let secret = SecretString::from(trimmed.to_owned());
            origin(Origin::Env(var));
            return Ok(secret);
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
    use crate::config::tests::{with_env, MINIMAL};
    use crate::config::Settings;

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
}
