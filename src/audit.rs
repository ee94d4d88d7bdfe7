//! The audit trail: every change made from chat (`/watch add|remove`, `/mute`, `/unmute`),
//! with who made it (Discord user id and name), when, and what it was.
//!
//! Entries live in a sled tree of their own (`audit`) beside the rest of the state, keyed
//! by a sequence number so they list in the order they happened. The trail keeps the last
//! [`AUDIT_KEEP`] entries: enough to answer "who muted this?" for months, bounded so the
//! store stops growing. `/watch list` and `/status` show it.

use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The name of the sled tree holding the trail.
const TREE: &str = "audit";
/// The key of the sequence counter; entries are `e` + the sequence number (big-endian).
const SEQ_KEY: &[u8] = b"seq";
const ENTRY_PREFIX: u8 = b'e';
/// How many entries are kept; older ones are dropped as new ones come.
pub const AUDIT_KEEP: u64 = 1000;

/// One change made from chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The Discord user's id.
    pub user_id: u64,
    /// Their name as Discord gave it at the time.
    pub user_name: String,
    /// What was done, as a short sentence: "watch add obm (owner reseller-a)".
    pub action: String,
}

/// The trail.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
}

fn entry_key(seq: u64) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = ENTRY_PREFIX;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

impl AuditLog {
    /// Opens the trail of `store` (its own tree in the same database).
    pub fn open(store: &Store) -> Result<AuditLog, StoreError> {
        Ok(AuditLog {
            store: store.clone(),
        })
    }

    /// Its tree, taken for each use (see [`Store::tree`]).
    fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.store.tree(TREE)
    }

    /// Appends `entry` and drops what falls out of the last [`AUDIT_KEEP`].
    pub fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
            key: "audit".into(),
            reason: e.to_string(),
        })?;
        // The counter and the entry: a crash in between only skips a number.
        let next = self.tree()?.update_and_fetch(SEQ_KEY, |old| {
            let old = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some(old.wrapping_add(1).to_be_bytes().to_vec())
        })?;
        let seq = next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(1, u64::from_be_bytes);
        self.tree()?.insert(entry_key(seq), bytes)?;
        if let Some(cutoff) = seq.checked_sub(AUDIT_KEEP) {
            for old in self.tree()?.range(entry_key(0)..=entry_key(cutoff)).keys() {
                self.tree()?.remove(old?)?;
            }
        }
        self.tree()?.flush()?;
        Ok(())
    }

    /// The newest `n` entries, newest first. An entry that does not decode is skipped
    /// (and logged): the trail is for reading, it must not stop a command.
    pub fn recent(&self, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::with_capacity(n.min(64));
        for kv in self.tree()?.scan_prefix([ENTRY_PREFIX]).rev() {
            if out.len() >= n {
                break;
            }
            let (key, value) = kv?;
            match serde_json::from_slice(&value) {
                Ok(entry) => out.push(entry),
                Err(e) => tracing::warn!(key = ?key, error = %e, "unreadable audit entry skipped"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test_support::{at, store};

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: at(26, 9),
            user_id: 7,
            user_name: "op".into(),
            action: action.into(),
        }
    }

    #[test]
    fn entries_list_newest_first_and_survive_a_reopen() {
        let (dir, store) = store();
        let log = AuditLog::open(&store).unwrap();
        log.record(&entry("watch add a")).unwrap();
        log.record(&entry("mute a")).unwrap();
        drop((log, store));
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        let actions: Vec<String> = log
            .recent(5)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["mute a", "watch add a"]);
        assert_eq!(log.recent(1).unwrap().len(), 1);
    }

    #[test]
    fn the_trail_is_bounded() {
        let (_dir, store) = store();
        let log = AuditLog::open(&store).unwrap();
        for i in 0..AUDIT_KEEP + 5 {
            log.record(&entry(&format!("change {i}"))).unwrap();
        }
        let all = log.recent(usize::MAX).unwrap();
        assert_eq!(all.len() as u64, AUDIT_KEEP);
        assert_eq!(all[0].action, format!("change {}", AUDIT_KEEP + 4));
        assert_eq!(all.last().unwrap().action, "change 5");
    }
}
