//! Mutes set from chat: "don't post alerts for this user (or one of their backup sets)
//! until then".
//!
//! Mutes live in a sled tree of their own (`mutes`) in the same database as everything
//! else, so they survive restarts. A muted alert is still recorded and listed in the
//! digest, but never posted (not held for later). The poller reads the
//! [`Mutes::active`] ones once per cycle and checks alerts with [`Mute::covers`];
//! `/mute` and `/unmute` write through [`Mutes::mute`] and [`Mutes::unmute`].
//! A mute ends by itself at its `until` time: nothing has to run for it to expire.

use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The name of the sled tree holding the mutes.
const TREE: &str = "mutes";

/// One mute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mute {
    /// The backup server whose alerts it holds back; `None` (and in older records):
    /// every server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub login: String,
    /// `None`: every backup set of the user.
    pub backup_set_id: Option<String>,
    /// The mute ends at this instant.
    pub until: DateTime<Utc>,
    /// Who set it (Discord name and id), for the record.
    pub muted_by: String,
    pub muted_at: DateTime<Utc>,
}

impl Mute {
    /// Whether the mute still holds at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        now < self.until
    }

    /// Whether the mute held at `at`: a job that ended then was muted, even when it is
    /// first seen after the mute (the bot down through a maintenance window).
    pub fn held_at(&self, at: DateTime<Utc>) -> bool {
        self.muted_at <= at && at < self.until
    }

    /// Whether this mute applies to `login`'s backup set `backup_set_id` on backup server
    /// `server` (a mute without a set covers every set of the user, one without a server
    /// every server).
    pub fn covers(&self, server: &str, login: &str, backup_set_id: &str) -> bool {
        self.server.as_deref().is_none_or(|s| s == server)
            && self.login.eq_ignore_ascii_case(login)
            && self
                .backup_set_id
                .as_deref()
                .is_none_or(|set| set == backup_set_id)
    }
}

/// The mute store.
#[derive(Clone)]
pub struct Mutes {
    /// For quarantining a mute that does not decode.
    store: Store,
}

/// `login \0 backup_set_id` (an empty set id for "every set"), with `server \0` in front
/// when the mute names its server: one mute per scope, so a new `/mute` for the same scope
/// replaces the old one. Mutes of every server keep the key older records have.
fn key(server: Option<&str>, login: &str, backup_set_id: Option<&str>) -> Vec<u8> {
    let mut k = Vec::new();
    if let Some(server) = server {
        k.extend_from_slice(server.as_bytes());
        k.push(0);
    }
    k.extend_from_slice(login.as_bytes());
    k.push(0);
    k.extend_from_slice(backup_set_id.unwrap_or("").as_bytes());
    k
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Mute, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        reason: e.to_string(),
    })
}

impl Mutes {
    /// Opens the mutes of `store` (its own tree in the same database).
    pub fn open(store: &Store) -> Result<Mutes, StoreError> {
        Ok(Mutes {
            store: store.clone(),
        })
    }

    /// Its tree, taken for each use (see [`Store::tree`]).
    fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.store.tree(TREE)
    }

    /// The mute stored under `k`; one that does not decode is quarantined (`None`): it can
    /// never hold an alert back, and it must not hide the other mutes either.
    fn read(&self, k: &[u8], v: &[u8]) -> Result<Option<Mute>, StoreError> {
        match decode(k, v) {
            Ok(mute) => Ok(Some(mute)),
            Err(e) => {
                self.store.quarantine(&self.tree()?, k, v, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Sets (or replaces) the mute for its scope. Expired mutes are dropped on the way, so
    /// the tree never grows past the mutes that matter.
    pub fn mute(&self, mute: &Mute) -> Result<(), StoreError> {
        let tree = self.tree()?;
        for kv in tree.iter() {
            let (k, v) = kv?;
            if self
                .read(&k, &v)?
                .is_some_and(|old| !old.is_active(mute.muted_at))
            {
                tree.remove(k)?;
            }
        }
        // Our own plain data always serializes.
        let value = serde_json::to_vec(mute).expect("a mute serializes to JSON");
        tree.insert(
            key(
                mute.server.as_deref(),
                &mute.login,
                mute.backup_set_id.as_deref(),
            ),
            value,
        )?;
        tree.flush()?;
        Ok(())
    }

    /// Removes the mute of exactly this scope (on every server); `false` when there was
    /// none.
    pub fn unmute(&self, login: &str, backup_set_id: Option<&str>) -> Result<bool, StoreError> {
        self.unmute_on(None, login, backup_set_id)
    }

    /// Removes the mute of exactly this scope on `server` (`None`: the mute of every
    /// server); `false` when there was none.
    pub fn unmute_on(
        &self,
        server: Option<&str>,
        login: &str,
        backup_set_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let tree = self.tree()?;
        let removed = tree.remove(key(server, login, backup_set_id))?.is_some();
        tree.flush()?;
        Ok(removed)
    }

    /// Whether an alert for `login`'s backup set `backup_set_id` is muted at `now`: by a
    /// mute of the whole user or of that set.
    ///
    /// A store failure counts as "not muted" (and is logged): posting an alert that should
    /// have waited is better than losing one.
    pub fn is_muted(&self, login: &str, backup_set_id: &str, now: DateTime<Utc>) -> bool {
        self.is_muted_on(None, login, backup_set_id, now)
    }

    /// [`Mutes::is_muted`] on backup server `server`: by a mute of every server or of
    /// that one (`None`: only the mutes of every server count).
    pub fn is_muted_on(
        &self,
        server: Option<&str>,
        login: &str,
        backup_set_id: &str,
        now: DateTime<Utc>,
    ) -> bool {
        let servers = [None, server]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>();
        let scopes = servers
            .into_iter()
            .flat_map(|server| [(server, None), (server, Some(backup_set_id))]);
        scopes.into_iter().any(|(server, set)| {
            let k = key(server, login, set);
            match self.tree().and_then(|tree| Ok(tree.get(&k)?)) {
                Ok(Some(v)) => match self.read(&k, &v) {
                    Ok(mute) => mute.is_some_and(|m| m.is_active(now)),
                    Err(error) => {
                        tracing::warn!(%error, "unreadable mute; alerting as if unmuted");
                        false
                    }
                },
                Ok(None) => false,
                Err(error) => {
                    tracing::warn!(%error, "cannot read mutes; alerting as if unmuted");
                    false
                }
            }
        })
    }

    /// The mutes holding at `now`, by login and set.
    pub fn active(&self, now: DateTime<Utc>) -> Result<Vec<Mute>, StoreError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|m| m.is_active(now))
            .collect())
    }

    /// Every mute kept, ended ones too (until the next `/mute` drops them), by login and
    /// set.
    pub fn all(&self) -> Result<Vec<Mute>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree()?.iter() {
            let (k, v) = kv?;
            out.extend(self.read(&k, &v)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 26, hour, 0, 0).unwrap()
    }

    fn mute(login: &str, set: Option<&str>, from: u32, until: u32) -> Mute {
        Mute {
            server: None,
            login: login.into(),
            backup_set_id: set.map(Into::into),
            until: at(until),
            muted_by: "op (1)".into(),
            muted_at: at(from),
        }
    }

    #[test]
    fn a_user_mute_covers_every_set_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mutes = Mutes::open(&Store::open(dir.path()).unwrap()).unwrap();
        mutes.mute(&mute("obm", None, 10, 12)).unwrap();
        assert!(mutes.is_muted("obm", "1", at(10)));
        assert!(mutes.is_muted("obm", "2", at(11) + Duration::minutes(59)));
        assert!(!mutes.is_muted("obm", "1", at(12)), "ends at `until`");
        assert!(!mutes.is_muted("other", "1", at(10)));
        assert_eq!(mutes.active(at(11)).unwrap().len(), 1);
        assert!(mutes.active(at(12)).unwrap().is_empty());
    }

    #[test]
    fn a_set_mute_covers_only_that_set_and_unmute_lifts_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mutes = Mutes::open(&store).unwrap();
        mutes.mute(&mute("obm", Some("7"), 10, 20)).unwrap();
        assert!(mutes.is_muted("obm", "7", at(11)));
        assert!(!mutes.is_muted("obm", "8", at(11)));
        assert!(!mutes.unmute("obm", None).unwrap(), "no user-wide mute");
        assert!(mutes.unmute("obm", Some("7")).unwrap());
        assert!(!mutes.is_muted("obm", "7", at(11)));
    }

    #[test]
    fn mutes_survive_a_reopen_and_expired_ones_are_dropped_on_the_next_mute() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mutes = Mutes::open(&Store::open(dir.path()).unwrap()).unwrap();
            mutes.mute(&mute("old", None, 1, 2)).unwrap();
            mutes.mute(&mute("obm", None, 10, 20)).unwrap();
        }
        let mutes = Mutes::open(&Store::open(dir.path()).unwrap()).unwrap();
        assert!(mutes.is_muted("obm", "1", at(11)));
        mutes.mute(&mute("new", None, 12, 13)).unwrap();
        assert_eq!(
            mutes.tree().unwrap().len(),
            2,
            "the expired mute of `old` is gone"
        );
    }

    #[test]
    fn a_server_mute_holds_on_that_server_and_an_older_record_on_every_server() {
        let dir = tempfile::tempdir().unwrap();
        let mutes = Mutes::open(&Store::open(dir.path()).unwrap()).unwrap();
        let on_eu = Mute {
            server: Some("eu".into()),
            ..mute("obm", None, 10, 12)
        };
        mutes.mute(&on_eu).unwrap();
        assert!(mutes.is_muted_on(Some("eu"), "obm", "1", at(11)));
        assert!(!mutes.is_muted_on(Some("us"), "obm", "1", at(11)));
        assert!(on_eu.covers("eu", "obm", "1") && !on_eu.covers("us", "obm", "1"));
        assert!(
            !mutes.unmute("obm", None).unwrap(),
            "not the mute of every server"
        );
        assert!(mutes.unmute_on(Some("eu"), "obm", None).unwrap());
        // A record written before mutes named their server holds on every server.
        let old = r#"{"login":"obm","backup_set_id":null,"until":"2024-06-26T12:00:00Z","muted_by":"op","muted_at":"2024-06-26T10:00:00Z"}"#;
        let old: Mute = serde_json::from_str(old).unwrap();
        assert_eq!(old.server, None);
        mutes.mute(&old).unwrap();
        assert!(mutes.is_muted_on(Some("us"), "obm", "1", at(11)));
        assert!(mutes.is_muted("obm", "1", at(11)));
    }
}
