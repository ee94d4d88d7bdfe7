//! The store's high-water mark: a file beside sled's own that says how many flushes the
//! store has had, written after each flush has reached the disk.
//!
//! sled recovers a damaged log by cutting it at the first bad record, and opens a store
//! whose files were lost or replaced as a new one: either way it opens without an error,
//! older than the last state the program relied on. Users are then baselined again, and
//! alerts queued or posted since may be lost or posted again. The mark turns that into a
//! loud error at the start (and a line in `/status`) instead of silence: the store's own
//! count of flushes is below the mark's, or its install id is another.
//!
//! The mark is written after the flush it counts, so a crash between the two leaves it
//! behind the store, never ahead: only a store that lost writes reads as behind.

use super::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The mark's file in the store's directory.
pub const MARK_FILE: &str = "restorewatch.mark";
/// The store's own count of flushes (meta tree).
const META_FLUSHES: &str = "flushes";
/// The last rollback found at a start, for `/status` (meta tree).
const META_ROLLBACK: &str = "rollback";

/// What the mark file holds.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    install_id: String,
    flushes: u64,
}

/// A store found older than its mark at a start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub found_at: DateTime<Utc>,
    /// Flushes the store had, and the mark said it had.
    pub store_flushes: u64,
    pub mark_flushes: u64,
    /// The store is another one than the mark's (a new or replaced store).
    pub other_store: bool,
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.other_store {
            write!(f, "the state store was replaced or emptied")?;
        } else {
            let behind = self.mark_flushes - self.store_flushes;
            write!(f, "the state store lost its last {behind} flushes")?;
        }
        write!(
            f,
            " (found at the start at {}; damaged, deleted or restored from an older copy)",
            self.found_at.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Sled(sled::Error::Io(e))
}

impl Store {
    /// Counts a flush in the store, before the flush that writes it to disk.
    pub(super) fn count_flush(&self) -> Result<u64> {
        let next = self.meta_get::<u64>(META_FLUSHES)?.unwrap_or(0) + 1;
        self.meta_put(META_FLUSHES, &next)?;
        Ok(next)
    }

    /// Writes the mark for `flushes` (already on disk) into `dir`: a new file renamed over
    /// the old one, so a crash leaves one or the other whole.
    pub(super) fn write_mark(&self, dir: &Path, flushes: u64) -> Result<()> {
        let mark = Mark {
            install_id: self.install_id()?,
            flushes,
        };
        let bytes = serde_json::to_vec(&mark).map_err(|e| io(e.into()))?;
        let fresh = dir.join(format!("{MARK_FILE}.new"));
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&fresh).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&fresh, dir.join(MARK_FILE)).map_err(io)
    }

    /// Compares the store in `dir` with its mark, at the start. A store behind its mark is
    /// recorded (for `/status`), its count raised to the mark's so that the next flush
    /// counts on from there, and returned. No mark (a new store, or one from before the
    /// mark was kept) or one that does not parse is taken as nothing to compare.
    pub fn check_mark(&self, dir: &Path, now: DateTime<Utc>) -> Result<Option<Rollback>> {
        let Ok(bytes) = std::fs::read(dir.join(MARK_FILE)) else {
            return Ok(None);
        };
        let Ok(mark) = serde_json::from_slice::<Mark>(&bytes) else {
            tracing::warn!(file = %dir.join(MARK_FILE).display(), "the store's mark does not parse; ignored");
            return Ok(None);
        };
        let store_flushes = self.meta_get::<u64>(META_FLUSHES)?.unwrap_or(0);
        let other_store = self
            .meta_get::<String>(super::meta::META_INSTALL_ID)?
            .is_some_and(|id| id != mark.install_id);
        if store_flushes >= mark.flushes && !other_store {
            return Ok(None);
        }
        let rollback = Rollback {
            found_at: now,
            store_flushes,
            mark_flushes: mark.flushes,
            other_store: other_store || store_flushes == 0,
        };
        self.meta_put(META_FLUSHES, &store_flushes.max(mark.flushes))?;
        self.meta_put(META_ROLLBACK, &rollback)?;
        Ok(Some(rollback))
    }

    /// The last rollback found at a start, if any.
    pub fn last_rollback(&self) -> Result<Option<Rollback>> {
        self.meta_get(META_ROLLBACK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-29T10:00:00Z".parse().unwrap()
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn a_store_that_keeps_its_writes_matches_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.flush().unwrap();
        store.flush().unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.check_mark(dir.path(), now()).unwrap(), None);
        assert_eq!(store.last_rollback().unwrap(), None);
    }

    #[test]
    fn a_store_older_than_its_mark_is_found_once() {
        let dir = tempfile::tempdir().unwrap();
        let old = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.flush().unwrap();
        drop(store);
        // A copy of the store after one flush, then two more flushes.
        copy_dir(dir.path(), old.path());
        let store = Store::open(dir.path()).unwrap();
        store.flush().unwrap();
        store.flush().unwrap();
        drop(store);
        // sled's files roll back to the copy; the mark stays.
        for name in ["db", "conf"] {
            std::fs::copy(old.path().join(name), dir.path().join(name)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let found = store.check_mark(dir.path(), now()).unwrap().expect("found");
        assert_eq!((found.store_flushes, found.mark_flushes), (1, 3));
        assert!(!found.other_store);
        assert!(
            found.to_string().contains("lost its last 2 flushes"),
            "{found}"
        );
        assert_eq!(store.last_rollback().unwrap(), Some(found));
        // Counted on from the mark: the next start finds nothing new.
        store.flush().unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.check_mark(dir.path(), now()).unwrap(), None);
    }

    #[test]
    fn a_store_emptied_under_its_mark_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.flush().unwrap();
        drop(store);
        std::fs::remove_file(dir.path().join("db")).unwrap();
        std::fs::remove_file(dir.path().join("conf")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let found = store.check_mark(dir.path(), now()).unwrap().expect("found");
        assert!(found.other_store);
        assert!(found.to_string().contains("replaced or emptied"), "{found}");
    }
}
