//! Discovery: the backup server's own list of users (`2/ListUsers.do`), so that an MSP need
//! not list thousands of users by hand.
//!
//! Before a poll cycle the poller asks [`Discovery::refresh_if_due`] to list the users when
//! the last good list is older than `discover.refresh`. The list is filtered by
//! `discover.owners` and `discover.exclude` and kept in the store, where
//! [`Store::watch_list`] merges it with the config's and the chat's users. A new user is
//! then baselined like any user not watched before; a user who is no longer listed stops
//! being polled (their records stay until retention; only their jobs recorded as running
//! are still polled for, until their end), and one listed again resumes where
//! they left off, without a second baseline (see the poller). A failed listing keeps the
//! last list, is logged, retried at the next cycle and shown in `/status` (see [`status`]);
//! so is a listing of nobody while the last list had users. A listing that drops more than
//! half of the last listing's users at once is refused once the same way, and taken when
//! the next listing is as short (a real departure costs one refresh). With `discover.owners`, each
//! owner is one call: one whose call fails keeps its last known users and is named, and
//! the owners that answered are taken. Filters that keep nobody of a
//! non-empty listing are the config's choice and taken as they are.

use crate::cbs::model::ListedUser;
use crate::cbs::CbsClient;
pub use crate::config::DiscoverSettings;
use crate::config::WatchEntry;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How discovery went, kept in the store for `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryStatus {
    pub last_success: Option<DateTime<Utc>>,
    pub last_attempt: Option<DateTime<Utc>>,
    /// The last attempt's error; `None` when it succeeded.
    pub last_error: Option<String>,
    /// Users in the kept list.
    pub users: usize,
    /// Users the last listing taken listed, before the filters (0: not known yet, a store
    /// from before it was kept).
    #[serde(default)]
    pub listed: usize,
    /// A listing that dropped more than half of the last one's users, refused once as a
    /// likely fault: how many it listed. The next listing as short is taken.
    #[serde(default)]
    pub refused_drop: Option<usize>,
}

/// The error recorded (and shown in `/status`) when a server that had users lists none.
pub const EMPTY_LISTING: &str =
    "2/ListUsers.do listed no users; taken for a fault, as the last list had users";

/// Whether a listing of `now` users, after one of `before`, drops more than half of them.
fn drops_most(before: usize, now: usize) -> bool {
    now.saturating_mul(2) < before
}

/// The error recorded (and shown in `/status`) when a listing drops most users at once.
fn drop_text(before: usize, now: usize) -> String {
    format!(
        "2/ListUsers.do listed {now} users where the last listing had {before}; taken for a \
         fault and the last list kept, the next listing as short is taken"
    )
}

/// The store tree and key of [`DiscoveryStatus`].
const STATUS_TREE: &str = "discover";
const STATUS_KEY: &[u8] = b"status";

/// The stored discovery status (default when discovery never ran).
pub fn status(store: &Store) -> Result<DiscoveryStatus, StoreError> {
    match store.server_tree(STATUS_TREE)?.get(STATUS_KEY)? {
        None => Ok(DiscoveryStatus::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            key: "discover/status".into(),
            reason: e.to_string(),
        }),
    }
}

fn save_status(store: &Store, status: &DiscoveryStatus) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(status).map_err(|e| StoreError::Corrupt {
        key: "discover/status".into(),
        reason: e.to_string(),
    })?;
    store.server_tree(STATUS_TREE)?.insert(STATUS_KEY, bytes)?;
    Ok(())
}

/// The listed users that the settings keep: of one of `owners` (when any are given), not
/// matching an `exclude` glob; one entry per login, sorted.
pub fn select(settings: &DiscoverSettings, listed: Vec<ListedUser>) -> Vec<WatchEntry> {
    let kept: BTreeMap<String, String> = listed
        .into_iter()
        .filter(|u| settings.owners.is_empty() || settings.owners.contains(&u.owner))
        .filter(|u| !settings.exclude.is_match(&u.login))
        .map(|u| (u.login, u.owner))
        .collect();
    kept.into_iter()
        .map(|(login, owner)| WatchEntry { login, owner })
        .collect()
}

/// Discovery for one backup server.
#[derive(Clone, Debug)]
pub struct Discovery {
    settings: DiscoverSettings,
}

impl Discovery {
    /// `None` when discovery is off.
    pub fn from_settings(settings: DiscoverSettings) -> Option<Discovery> {
        settings.enabled.then_some(Discovery { settings })
    }

    /// Lists the users again when the last good list is older than `refresh` (or there is
    /// none). A failure keeps the last list and is recorded, and answered (the caller
    /// tells an unreachable server from a refused role); only the store can fail this.
    pub async fn refresh_if_due(
        &self,
        client: &CbsClient,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::cbs::CbsError>, StoreError> {
        let mut status = status(store)?;
        let refresh =
            chrono::Duration::from_std(self.settings.refresh).unwrap_or(chrono::Duration::MAX);
        if status
            .last_success
            .is_some_and(|last| now.signed_duration_since(last) < refresh)
        {
            return Ok(None);
        }
        status.last_attempt = Some(now);
        let listing = self.list(client).await;
        // Every call failed: the last list is kept as it is.
        if listing.answered == 0 {
            let text = failures_text(&listing.failed);
            tracing::warn!(
                server = client.server_name(),
                error = %text,
                kept = status.users,
                "user discovery failed; keeping the last list"
            );
            status.last_error = Some(text);
            save_status(store, &status)?;
            return Ok(listing.failed.into_iter().next().map(|(_, e)| e));
        }
        let discovered = store.discovered_users()?;
        // A server that had users and lists nobody is far likelier a fault (a reply cut
        // short, a system user that sees no one) than a server emptied at once: dropping
        // every user would stop polling them all, silently.
        if listing.listed == 0 && !discovered.is_empty() {
            tracing::warn!(
                server = client.server_name(),
                kept = status.users,
                "user discovery listed no users; keeping the last list"
            );
            status.last_error = Some(EMPTY_LISTING.to_owned());
            save_status(store, &status)?;
            return Ok(None);
        }
        // A listing that drops most users at once is likelier a fault (a reply cut short
        // that still decodes, a system user losing sight of a reseller) than a mass
        // departure: it is refused once, and taken when the next listing is as short, so
        // a real departure costs one refresh. Not with a failed owner, whose users stay.
        if listing.failed.is_empty()
            && !discovered.is_empty()
            && drops_most(status.listed, listing.listed)
        {
            if status.refused_drop.is_none() {
                let text = drop_text(status.listed, listing.listed);
                tracing::warn!(
                    server = client.server_name(),
                    listed = listing.listed,
                    before = status.listed,
                    kept = status.users,
                    "user discovery listed far fewer users than before; keeping the last list \
                     until the next listing confirms it"
                );
                status.refused_drop = Some(listing.listed);
                status.last_error = Some(text);
                save_status(store, &status)?;
                return Ok(None);
            }
            tracing::warn!(
                server = client.server_name(),
                listed = listing.listed,
                before = status.listed,
                "user discovery listed far fewer users again; taking the new list"
            );
        }
        // An owner whose call failed (a reseller deleted or renamed, a passing error)
        // keeps its last known users; the owners that answered are taken as listed.
        let failed: BTreeSet<&str> = listing.failed.iter().map(|(o, _)| o.as_str()).collect();
        let mut users: BTreeMap<String, WatchEntry> = discovered
            .into_iter()
            .filter(|w| failed.contains(w.owner.as_str()))
            .map(|w| (w.login.clone(), w))
            .collect();
        users.extend(listing.kept.into_iter().map(|w| (w.login.clone(), w)));
        let users: Vec<WatchEntry> = users.into_values().collect();
        for (owner, e) in &listing.failed {
            tracing::warn!(
                server = client.server_name(),
                %owner,
                error = %e,
                "user discovery failed for this owner; keeping its last known users"
            );
        }
        tracing::info!(
            server = client.server_name(),
            users = users.len(),
            "discovered the backup users"
        );
        store.set_discovered_users(&users)?;
        status.last_success = Some(now);
        status.last_error = (!listing.failed.is_empty()).then(|| failures_text(&listing.failed));
        status.users = users.len();
        status.refused_drop = None;
        if listing.failed.is_empty() {
            status.listed = listing.listed;
        }
        save_status(store, &status)?;
        Ok(None)
    }

    /// One call for every user, or one per configured owner (the `reseller` filter), each
    /// owner's failure apart from the others'.
    async fn list(&self, client: &CbsClient) -> Listing {
        let mut listed = Vec::new();
        let mut listing = Listing::default();
        let owners: Vec<&str> = if self.settings.owners.is_empty() {
            vec![""]
        } else {
            self.settings.owners.iter().map(String::as_str).collect()
        };
        for owner in owners {
            match client.list_users(owner).await {
                Ok(users) => {
                    listing.answered += 1;
                    listed.extend(users);
                }
                Err(e) => listing.failed.push((owner.to_owned(), e)),
            }
        }
        listing.listed = listed.len();
        listing.kept = select(&self.settings, listed);
        listing
    }
}

/// What the listing calls of one refresh brought.
#[derive(Debug, Default)]
struct Listing {
    /// Calls that answered.
    answered: usize,
    /// Users those calls listed, before the filters.
    listed: usize,
    /// Of those, the users the settings keep.
    kept: Vec<WatchEntry>,
    /// The owners whose call failed (`""` for the one call of every user), and why.
    failed: Vec<(String, crate::cbs::CbsError)>,
}

/// The failed calls of a listing, for the log and `/status`: the error of the call of every
/// user, or each failed owner named with its error.
fn failures_text(failed: &[(String, crate::cbs::CbsError)]) -> String {
    failed
        .iter()
        .map(|(owner, e)| match owner.as_str() {
            "" => e.to_string(),
            owner => format!("owner {owner:?} (its last known users kept): {e}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Forgets the discovered users (discovery turned off), so they are no longer watched.
pub fn forget(store: &Store) -> Result<(), StoreError> {
    if !store.discovered_users()?.is_empty() {
        store.set_discovered_users(&[])?;
    }
    Ok(())
}

/// How many users each source contributes, for `/watch list`. A user may be in several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounts {
    pub config: usize,
    pub chat: usize,
    pub discovered: usize,
    /// The union: users polled.
    pub total: usize,
}

pub fn source_counts(store: &Store, config: &[WatchEntry]) -> Result<SourceCounts, StoreError> {
    Ok(SourceCounts {
        config: config.len(),
        chat: store.dynamic_watches()?.len(),
        discovered: store.discovered_users()?.len(),
        total: store.watch_list(config)?.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(login: &str, owner: &str) -> ListedUser {
        ListedUser {
            login: login.into(),
            owner: owner.into(),
        }
    }

    fn settings(owners: &[&str], exclude: &[&str]) -> DiscoverSettings {
        let mut b = globset::GlobSetBuilder::new();
        for g in exclude {
            b.add(globset::Glob::new(g).unwrap());
        }
        DiscoverSettings {
            enabled: true,
            owners: owners.iter().map(|o| o.to_string()).collect(),
            exclude: b.build().unwrap(),
            exclude_patterns: exclude.iter().map(|o| o.to_string()).collect(),
            refresh: std::time::Duration::from_secs(3600),
        }
    }

    #[test]
    fn select_filters_by_owner_and_exclude_globs() {
        let all = vec![
            listed("zed", "r1"),
            listed("test-1", "r1"),
            listed("alice", "r2"),
            listed("bob", ""),
            listed("alice", "r2"),
        ];
        let logins = |s: &DiscoverSettings| -> Vec<String> {
            select(s, all.clone())
                .into_iter()
                .map(|w| w.login)
                .collect()
        };
        assert_eq!(
            logins(&settings(&[], &[])),
            ["alice", "bob", "test-1", "zed"]
        );
        assert_eq!(logins(&settings(&[], &["test-*"])), ["alice", "bob", "zed"]);
        assert_eq!(logins(&settings(&["r1"], &["test-*"])), ["zed"]);
    }

    #[test]
    fn discovered_users_join_the_watch_list_and_can_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = vec![WatchEntry {
            login: "alice".into(),
            owner: "cfg".into(),
        }];
        store
            .set_discovered_users(&[
                WatchEntry {
                    login: "alice".into(),
                    owner: "listed".into(),
                },
                WatchEntry {
                    login: "bob".into(),
                    owner: String::new(),
                },
            ])
            .unwrap();
        let list = store.watch_list(&config).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].owner, "cfg", "the config's owner wins");
        let counts = source_counts(&store, &config).unwrap();
        assert_eq!((counts.config, counts.discovered, counts.total), (1, 2, 2));
        forget(&store).unwrap();
        assert_eq!(store.watch_list(&config).unwrap().len(), 1);
    }

    #[test]
    fn a_new_list_replaces_the_last_one_entry_by_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = |login: &str, owner: &str| WatchEntry {
            login: login.into(),
            owner: owner.into(),
        };
        store
            .set_discovered_users(&[entry("alice", "r1"), entry("bob", "r1")])
            .unwrap();
        // bob moved to another reseller, alice is gone, carol is new.
        store
            .set_discovered_users(&[entry("bob", "r2"), entry("carol", "")])
            .unwrap();
        assert_eq!(
            store.discovered_users().unwrap(),
            [entry("bob", "r2"), entry("carol", "")]
        );
    }
}
