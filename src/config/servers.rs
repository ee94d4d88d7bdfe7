//! The backup servers: a `[cbs]` table or `[[cbs]]` entries, each checked into a
//! [`CbsServer`] with its own name, password variable and `discover` settings, and the
//! `[[watch]]` entries put on the list of the server they name.

use super::check::Checker;
use super::env::server_password_env;
use super::raw::{RawCbs, RawDiscover, RawServers, RawWatch};
use super::settings::{CbsServer, CbsSettings, WatchEntry};
use super::{ConfigError, CBS_SYS_PWD_ENV};
use crate::tz::Tz;
use std::collections::BTreeSet;
use std::ops::RangeInclusive;

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
/// The longest `cbs.request_timeout`: a reply slower than this is no reply.
const REQUEST_TIMEOUT_MAX: std::time::Duration = std::time::Duration::from_secs(3600);

impl Checker {
    /// The backup servers, each with its discovery settings (its watch list empty yet).
    pub(super) fn servers(
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
            let cbs = self.cbs(raw, &prefix, &vars, true, env)?;
            // One server twice (a copy-paste, a trailing slash, another spelling of its
            // host) would poll every user twice and post every alert twice.
            if let Some(j) = (servers.iter()).position(|other| same_account(&other.cbs, &cbs)) {
                return Err(self.fail(
                    &format!("{prefix}.url"),
                    format!(
                        "{} with sys_user {:?} is cbs[{j}]'s server and account already: every \
                         alert would be posted twice; keep one entry",
                        cbs.url, cbs.sys_user
                    ),
                ));
            }
            servers.push(CbsServer {
                cbs,
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
            // Read here, not only when the client is built, so that `check --offline`
            // refuses a file that is not a certificate (it is not a secret).
            let pem = std::fs::read(ca_cert).map_err(|e| {
                self.fail(
                    &key("ca_cert"),
                    format!("cannot read {}: {e}", ca_cert.display()),
                )
            })?;
            if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |certs| certs.is_empty()) {
                return Err(self.fail(
                    &key("ca_cert"),
                    format!("{} holds no PEM certificate", ca_cert.display()),
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
            request_timeout: {
                let k = key("request_timeout");
                let timeout =
                    self.positive_duration(&k, raw.request_timeout, DEFAULT_REQUEST_TIMEOUT)?;
                if timeout > REQUEST_TIMEOUT_MAX {
                    return Err(self.fail(&k, "must be at most 1h"));
                }
                timeout
            },
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
    pub(super) fn watch(
        &self,
        raw: Vec<RawWatch>,
        servers: &mut [CbsServer],
    ) -> Result<(), ConfigError> {
        let names: Vec<String> = servers.iter().map(|s| s.cbs.server_name.clone()).collect();
        let names = || names.join(", ");
        let mut seen = BTreeSet::new();
        for (i, item) in raw.into_iter().enumerate() {
            let key = format!("watch[{i}].login");
            // Trimmed as `/watch add` trims: a login never starts or ends with a space, and
            // " alice " is alice listed twice.
            let login = (self.non_empty(&key, self.required(&key, item.login)?)?)
                .trim()
                .to_owned();
            // The rule `/watch add` and discovery apply: the login is sent in every poll
            // request and shown in the chat.
            if crate::cbs::model::checked_login(&login).is_none() {
                return Err(self.fail(
                    &key,
                    format!(
                        "must be at most {} characters, with no control or invisible \
                         characters",
                        crate::cbs::model::LOGIN_MAX_CHARS
                    ),
                ));
            }
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
                owner: item.owner.unwrap_or_default().trim().to_owned(),
            });
        }
        Ok(())
    }

    fn discover(
        &self,
        raw: RawDiscover,
        prefix: &str,
    ) -> Result<crate::config::DiscoverSettings, ConfigError> {
        let mut exclude = globset::GlobSetBuilder::new();
        let patterns = raw.exclude.unwrap_or_default();
        for (i, pattern) in patterns.iter().enumerate() {
            // CBS logins are case-insensitive, so are the globs: "test-*" leaves out "TEST-2".
            let glob = globset::GlobBuilder::new(pattern.trim())
                .case_insensitive(true)
                .build()
                .map_err(|e| {
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
        Ok(crate::config::DiscoverSettings {
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
}

/// Whether two servers' entries reach the same API with the same system user: the same
/// scheme, host and port, the same path but for a trailing `/`, and the same login.
fn same_account(a: &CbsSettings, b: &CbsSettings) -> bool {
    let endpoint = |url: &reqwest::Url| {
        (
            url.scheme().to_owned(),
            url.host_str().map(str::to_ascii_lowercase),
            url.port_or_known_default(),
            url.path().trim_end_matches('/').to_owned(),
        )
    };
    endpoint(&a.url) == endpoint(&b.url) && a.sys_user.eq_ignore_ascii_case(&b.sys_user)
}
