//! The users: each one's poll state, the users added to the watch list from chat, those
//! discovery found on the backup server, and the watch list they make together with the
//! config's.

use super::record::encode;
use super::{Result, Store};
use crate::config::WatchEntry;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// login → owner: the users discovery last listed.
const DISCOVERED_TREE: &str = "discovered";

/// Per-user poll state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// Every date of the user has been read once: the baseline is over.
    pub baselined: bool,
    /// Until then, the dates already read once (their baseline is over): a date that keeps
    /// failing must not hold back the alerts of the others.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub baselined_dates: BTreeSet<NaiveDate>,
    /// The start of the last cycle in which every request for this user succeeded.
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<(DateTime<Utc>, String)>,
}

impl UserState {
    /// Whether the user was last read on or after `date` (a calendar date in the server's
    /// zone `tz`): the date of the last success, else of the last baseline date read. A
    /// state without either counts as read when it is baselined (a state that did not
    /// decode stands in as baselined, see [`Store::user_state`]).
    ///
    /// The poller asks it of a user discovery lists again: one read since the retention
    /// cutoff still has its records in the store, so it resumes instead of a new baseline.
    pub fn read_since(&self, tz: crate::tz::Tz, date: NaiveDate) -> bool {
        let last_read = self
            .last_success
            .map(|t| t.with_timezone(&tz).date_naive())
            .or_else(|| self.baselined_dates.last().copied());
        match last_read {
            Some(read) => read >= date,
            None => self.baselined,
        }
    }
}

/// A user added to the watch list from chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicWatch {
    pub login: String,
    pub owner: String,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
}

impl Store {
    /// This handle's server's user states: login → [`UserState`].
    pub(super) fn users_tree(&self) -> Result<sled::Tree> {
        self.server_tree("users")
    }

    /// This handle's server's chat-added users: login → [`DynamicWatch`].
    fn watch_tree(&self) -> Result<sled::Tree> {
        self.server_tree("watch")
    }

    /// The poll state of `login`. A state that does not decode is quarantined and the user
    /// counts as baselined: a lost state must not silence the user's next failures.
    pub fn user_state(&self, login: &str) -> Result<UserState> {
        let users = self.users_tree()?;
        let Some(v) = users.get(login)? else {
            return Ok(UserState::default());
        };
        Ok(self
            .decode_or_quarantine(&users, login.as_bytes(), &v)?
            .unwrap_or(UserState {
                baselined: true,
                ..UserState::default()
            }))
    }

    pub fn set_user_state(&self, login: &str, state: &UserState) -> Result<()> {
        self.users_tree()?.insert(login, encode(state))?;
        Ok(())
    }

    /// Users added from chat, by login.
    pub fn dynamic_watches(&self) -> Result<Vec<DynamicWatch>> {
        let mut out = Vec::new();
        for kv in self.watch_tree()?.iter() {
            let (k, v) = kv?;
            out.extend(self.decode_or_quarantine(&self.watch_tree()?, &k, &v)?);
        }
        Ok(out)
    }

    /// The watch list: the config's users merged with those added from chat, by login
    /// (the config's owner wins).
    pub fn watch_list(&self, config: &[WatchEntry]) -> Result<Vec<WatchEntry>> {
        // Logins are matched without regard to case (the CBS does): one user added from
        // chat as "OBM" and configured as "obm" is one user, under the config's spelling.
        let mut users: std::collections::BTreeMap<String, WatchEntry> = self
            .dynamic_watches()?
            .into_iter()
            .map(|w| {
                let entry = WatchEntry {
                    login: w.login,
                    owner: w.owner,
                };
                (entry.login.to_lowercase(), entry)
            })
            .collect();
        for w in config {
            users.insert(w.login.to_lowercase(), w.clone());
        }
        // Users the server listed (discovery); config and chat owners win.
        for w in self.discovered_users()? {
            users.entry(w.login.to_lowercase()).or_insert(w);
        }
        Ok(users.into_values().collect())
    }

    /// Adds a user to the dynamic watch list; `false` when it was already there.
    pub fn add_watch(&self, watch: &DynamicWatch) -> Result<bool> {
        let old = self.watch_tree()?.compare_and_swap(
            &watch.login,
            None as Option<&[u8]>,
            Some(encode(watch)),
        )?;
        self.watch_tree()?.flush()?;
        Ok(old.is_ok())
    }

    /// Removes a user from the dynamic watch list; `false` when it was not there.
    pub fn remove_watch(&self, login: &str) -> Result<bool> {
        let removed = self.watch_tree()?.remove(login)?.is_some();
        self.watch_tree()?.flush()?;
        Ok(removed)
    }

    /// The last list of users discovery kept (empty when discovery is off or never ran).
    pub fn discovered_users(&self) -> Result<Vec<WatchEntry>> {
        self.server_tree(DISCOVERED_TREE)?
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok(WatchEntry {
                    login: String::from_utf8_lossy(&k).into_owned(),
                    owner: String::from_utf8_lossy(&v).into_owned(),
                })
            })
            .collect()
    }

    /// Replaces the discovered users with `users`: the new and changed entries first, then
    /// the removals, each write on its own and unchanged entries not written at all.
    ///
    /// Not one batch: sled keeps every page version a batch supersedes until the batch
    /// ends, and one batch of 10,000 new users raised the peak memory of a first cycle by
    /// about 29 MiB (BENCHMARKS.md §3). The order keeps a list cut short by a crash safe:
    /// it then holds every user of the old list not yet removed and some of the new ones,
    /// so no user is dropped and listed again (a cycle of theirs left for the catch-up),
    /// and the next refresh completes it.
    pub fn set_discovered_users(&self, users: &[WatchEntry]) -> Result<()> {
        let tree = self.server_tree(DISCOVERED_TREE)?;
        for w in users {
            if tree.get(w.login.as_bytes())?.as_deref() != Some(w.owner.as_bytes()) {
                tree.insert(w.login.as_bytes(), w.owner.as_bytes())?;
            }
        }
        let keep: BTreeSet<&[u8]> = users.iter().map(|w| w.login.as_bytes()).collect();
        for k in tree.iter().keys() {
            let k = k?;
            if !keep.contains(k.as_ref()) {
                tree.remove(k)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn read_since_takes_the_last_success_else_the_last_baseline_date() {
        let tz = crate::test_data::berlin();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        // 23:30 UTC on the 9th is already the 10th in Berlin.
        let success = UserState {
            baselined: true,
            last_success: Some(Utc.with_ymd_and_hms(2026, 3, 9, 23, 30, 0).unwrap()),
            ..UserState::default()
        };
        assert!(success.read_since(tz, d("2026-03-10")));
        assert!(!success.read_since(tz, d("2026-03-11")));
        let partial = UserState {
            baselined_dates: BTreeSet::from([d("2026-03-01"), d("2026-03-04")]),
            ..UserState::default()
        };
        assert!(partial.read_since(tz, d("2026-03-04")));
        assert!(!partial.read_since(tz, d("2026-03-05")));
        assert!(!UserState::default().read_since(tz, NaiveDate::MIN));
        let quarantined = UserState {
            baselined: true,
            ..UserState::default()
        };
        assert!(quarantined.read_since(tz, d("2026-03-10")));
    }
}
