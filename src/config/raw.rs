//! The config file as serde reads it: one `Raw*` struct per table, every key optional, so
//! that [`super::check`] can name a missing key instead of serde's bare "missing field".
//! Unknown keys are refused here (`deny_unknown_fields`); values are checked there.

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;

// The file as written: every key optional here, so that a missing one is reported by
// name in the checks (`check.rs`) rather than as a bare serde "missing field".

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) cbs: RawServers,
    #[serde(default)]
    pub(super) watch: Vec<RawWatch>,
    #[serde(default)]
    pub(super) discover: RawDiscover,
    #[serde(default)]
    pub(super) poll: RawPoll,
    #[serde(default)]
    pub(super) state: RawState,
    pub(super) discord: Option<RawDiscord>,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
    #[serde(default)]
    pub(super) digest: RawDigest,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) heartbeat: RawHeartbeat,
    #[serde(default)]
    pub(super) summary: RawSummary,
    #[serde(default)]
    pub(super) alerts: RawAlerts,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [summary] table")]
pub(super) struct RawSummary {
    pub(super) when: Option<String>,
    pub(super) channel: Option<toml::Value>,
    pub(super) schedule: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [alerts] table")]
pub(super) struct RawAlerts {
    pub(super) group_after: Option<i64>,
    pub(super) escalate_after: Option<i64>,
    pub(super) ping: Option<String>,
}

/// `[cbs]`, or `[[cbs]]` entries (one entry was made a table before this pass).
pub(super) enum RawServers {
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
pub(super) struct RawCbs {
    /// The server's name; `server_name` says the same.
    pub(super) name: Option<String>,
    /// The server's own `discover` table (else the top-level `[discover]`).
    pub(super) discover: Option<RawDiscover>,
    pub(super) url: Option<String>,
    pub(super) server_name: Option<String>,
    pub(super) sys_user: Option<String>,
    pub(super) sys_pwd: Option<RawSecret>,
    pub(super) sys_pwd_file: Option<PathBuf>,
    pub(super) timezone: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_concurrency: Option<i64>,
    pub(super) max_requests_per_second: Option<i64>,
    pub(super) fetch_reports: Option<bool>,
    pub(super) down_after: Option<i64>,
    pub(super) ca_cert: Option<PathBuf>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [discover] table")]
pub(super) struct RawDiscover {
    pub(super) enabled: Option<bool>,
    pub(super) owners: Option<Vec<String>>,
    pub(super) exclude: Option<Vec<String>>,
    pub(super) refresh: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[watch]] table")]
pub(super) struct RawWatch {
    pub(super) login: Option<String>,
    pub(super) owner: Option<String>,
    /// The `name` of the `[[cbs]]` server the user is on (needed with several).
    pub(super) server: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [poll] table")]
pub(super) struct RawPoll {
    pub(super) schedule: Option<String>,
    pub(super) midnight_grace: Option<String>,
    pub(super) max_catch_up_days: Option<i64>,
    pub(super) stuck_after: Option<String>,
    pub(super) vanished_after: Option<String>,
    pub(super) alert_classes: Option<Vec<String>>,
    pub(super) baseline_first_cycle: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [state] table")]
pub(super) struct RawState {
    pub(super) path: Option<PathBuf>,
    pub(super) retention_days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [discord] table")]
pub(super) struct RawDiscord {
    pub(super) token: Option<RawSecret>,
    pub(super) token_file: Option<PathBuf>,
    /// Ids are strings or integers: both spellings are common for snowflakes.
    pub(super) alert_channel: Option<toml::Value>,
    pub(super) digest_channel: Option<toml::Value>,
    pub(super) mention_role: Option<toml::Value>,
    pub(super) api_base: Option<String>,
    pub(super) guild_id: Option<toml::Value>,
    pub(super) guild_ids: Option<Vec<toml::Value>>,
    pub(super) admin_role: Option<toml::Value>,
    pub(super) public_lookups: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[route]] table")]
pub(super) struct RawRoute {
    pub(super) owner: Option<String>,
    pub(super) channel: Option<toml::Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [digest] table")]
pub(super) struct RawDigest {
    pub(super) schedule: Option<String>,
    pub(super) max_catch_up_days: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [server] table")]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the [heartbeat] table")]
pub(super) struct RawHeartbeat {
    pub(super) url: Option<String>,
}

/// A secret as written in the file. Its own deserializer, because serde's type errors quote
/// the value ("invalid type: integer `1234`") and that would put the secret in the message.
pub(super) struct RawSecret(pub(super) SecretString);

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)
            .map(|s| RawSecret(SecretString::from(s)))
            .map_err(|_| serde::de::Error::custom("must be a string"))
    }
}
