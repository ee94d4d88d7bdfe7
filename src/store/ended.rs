//! The fingerprints ([`crate::cbs::model::RestoreJob::fingerprint`]) of the ended jobs that
//! the last reading of each user and routine date listed (today, and yesterday in the
//! midnight grace). The poller reads no record of such a job listed again unchanged.
//!
//! Kept apart from the user's state, which the poller holds for every user through a
//! cycle: read here one reply at a time, and written only when they change, as 8 bytes a
//! job.

use super::{Result, Store};
use chrono::NaiveDate;

/// `date \0 login` → the fingerprints, sorted, each as 8 little-endian bytes. The date
/// leads (as `YYYY-MM-DD`), so the dates past are one range to remove.
const ENDED_TREE: &str = "ended";

fn key(date: NaiveDate, login: &str) -> Vec<u8> {
    format!("{date}\0{login}").into_bytes()
}

fn encode(fingerprints: &[u64]) -> Vec<u8> {
    fingerprints.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// `None` when the bytes are no list of fingerprints.
fn decode(bytes: &[u8]) -> Option<Vec<u64>> {
    let chunks = bytes.chunks_exact(8);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
    )
}

impl Store {
    /// The fingerprints of the ended jobs the last reading of `login` and `date` listed,
    /// sorted. None when there was none, or when what is stored does not decode: they are
    /// only a shortcut, and every job is then read (and the list written anew).
    pub fn ended_jobs(&self, login: &str, date: NaiveDate) -> Result<Vec<u64>> {
        let value = self.server_tree(ENDED_TREE)?.get(key(date, login))?;
        Ok(value.and_then(|v| decode(&v)).unwrap_or_default())
    }

    /// Stores `fingerprints` (sorted) for `login` and `date`, when they differ from what is
    /// stored; an empty list removes the entry.
    pub fn set_ended_jobs(&self, login: &str, date: NaiveDate, fingerprints: &[u64]) -> Result<()> {
        let tree = self.server_tree(ENDED_TREE)?;
        let key = key(date, login);
        if fingerprints.is_empty() {
            tree.remove(key)?;
            return Ok(());
        }
        let value = encode(fingerprints);
        if tree.get(&key)?.as_deref() != Some(value.as_slice()) {
            tree.insert(key, value)?;
        }
        Ok(())
    }

    /// Forgets the fingerprints of the dates before `date`. Returns how many entries went.
    pub fn prune_ended_before(&self, date: NaiveDate) -> Result<usize> {
        let tree = self.server_tree(ENDED_TREE)?;
        let end = date.to_string();
        let mut removed = 0;
        for k in tree.range(..end.as_bytes()).keys() {
            tree.remove(k?)?;
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn fingerprints_round_trip_per_user_and_date_and_empty_removes() {
        let (_dir, store) = temp_store();
        let today = day("2024-06-26");
        store
            .set_ended_jobs("obm", today, &[1, 7, u64::MAX])
            .unwrap();
        store.set_ended_jobs("obm2", today, &[2]).unwrap();
        assert_eq!(store.ended_jobs("obm", today).unwrap(), [1, 7, u64::MAX]);
        assert_eq!(
            store.ended_jobs("obm", day("2024-06-25")).unwrap(),
            [0u64; 0]
        );
        store.set_ended_jobs("obm", today, &[]).unwrap();
        assert!(store.ended_jobs("obm", today).unwrap().is_empty());
        assert_eq!(store.ended_jobs("obm2", today).unwrap(), [2]);
    }

    #[test]
    fn bytes_that_are_no_fingerprints_read_as_none() {
        let (_dir, store) = temp_store();
        let today = day("2024-06-26");
        let tree = store.server_tree(ENDED_TREE).unwrap();
        tree.insert(key(today, "obm"), &[1u8, 2, 3][..]).unwrap();
        assert!(store.ended_jobs("obm", today).unwrap().is_empty());
        assert_eq!(decode(&[]), Some(vec![]));
        assert_eq!(decode(&encode(&[3, 4])), Some(vec![3, 4]));
    }

    #[test]
    fn the_dates_before_go_and_the_others_stay() {
        let (_dir, store) = temp_store();
        for (date, login) in [
            ("2024-06-24", "a"),
            ("2024-06-25", "a"),
            ("2024-06-25", "b"),
            ("2024-06-26", "a"),
        ] {
            store.set_ended_jobs(login, day(date), &[1]).unwrap();
        }
        assert_eq!(store.prune_ended_before(day("2024-06-26")).unwrap(), 3);
        assert_eq!(store.ended_jobs("a", day("2024-06-26")).unwrap(), [1]);
        assert!(store.ended_jobs("a", day("2024-06-25")).unwrap().is_empty());
        assert_eq!(store.prune_ended_before(day("2024-06-26")).unwrap(), 0);
    }
}
