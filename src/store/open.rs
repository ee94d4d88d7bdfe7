//! Opening the store: the database directory, its compression (decided once, when the store
//! is made), sled's page cache and the wait for another process's lock; and the handle's
//! own work: flushing, the work counters, the size on disk, other parts' trees.

use super::{Result, Store, StoreError, StoreWork, QUARANTINE_TREE};
use std::path::Path;

/// sled's page cache (`cache_capacity`), in bytes. sled's default is 1 GiB, which lets a
/// large store's pages pile up in memory; a cycle reads each watched user's records once,
/// so a small cache costs little (a miss is a read from the OS page cache). sled counts a
/// page at its size on disk, which in a compressed store is a fraction of the decoded
/// page it keeps in memory: 2 MiB held about 6 MiB of decoded pages at 10,000 users.
/// 1 MiB idles 5-7 MiB lower than 2 MiB there at the same client CPU per request; 512 KiB
/// idles a little lower again but makes draining a 10,000-event backlog 1.26-1.30 times
/// slower per event than a 1,000-event one (1 MiB: 1.15-1.20; BENCHMARKS.md). The cache
/// size does not bound what stays in memory, though: sled's LRU evicts only when 64
/// accesses have queued up in one of its 256 shards, so a store of fewer than about 16,000
/// pages keeps every page a cycle read decoded whatever the capacity (`bench store-probe`).
pub const CACHE_CAPACITY_BYTES: u64 = 1024 * 1024;

/// Whether the store at `dir` is (or, new, will be) written zstd-compressed. sled records
/// the choice in the store's `conf` file when it creates the store and refuses to open it
/// with the other one, so a store made before compression keeps opening uncompressed.
fn compresses(dir: &Path) -> bool {
    // The file is text lines followed by a binary checksum.
    match std::fs::read(dir.join("conf")) {
        Ok(conf) => String::from_utf8_lossy(&conf)
            .lines()
            .any(|line| line.trim() == "use_compression: true"),
        // No store yet (or none sled would open either way): new stores compress.
        Err(_) => true,
    }
}

/// How long [`Store::open`] waits for another handle to release the directory (ms).
pub const OPEN_LOCK_WAIT_MS: u64 = 5_000;
/// Pause between attempts to open a locked store (ms).
const OPEN_LOCK_RETRY_MS: u64 = 20;

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// sled holds an exclusive lock on the directory. A process that is still shutting
    /// down (a container restart) or a handle whose background I/O is still finishing
    /// holds it a little longer, so a locked store is retried for up to
    /// [`OPEN_LOCK_WAIT_MS`] before giving up.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_waiting(dir, OPEN_LOCK_WAIT_MS)
    }

    /// [`Store::open`], waiting at most `wait_ms` for another process's lock (0: not at
    /// all; see [`is_locked`](super::is_locked) for telling that failure apart).
    pub fn open_waiting(dir: &Path, wait_ms: u64) -> Result<Store> {
        let compressed = compresses(dir);
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .use_compression(compressed);
        let mut waited_ms = 0;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && waited_ms < wait_ms =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(OPEN_LOCK_RETRY_MS));
                    waited_ms += OPEN_LOCK_RETRY_MS;
                }
                other => break other?,
            }
        };
        let store = Store {
            jobs: db.open_tree("jobs")?,
            by_day: db.open_tree("by_day")?,
            running: db.open_tree("running")?,
            outbox: db.open_tree("outbox")?,
            users: db.open_tree("users")?,
            watch: db.open_tree("watch")?,
            meta: db.open_tree("meta")?,
            quarantine: db.open_tree(QUARANTINE_TREE)?,
            vanishing: db.open_tree("vanishing")?,
            counters: Default::default(),
            dir: dir.into(),
            db,
            scope: None,
            compact: compressed,
        };
        let folds = store.finish_folds()?;
        if folds > 0 {
            tracing::info!(
                folds,
                "finished replacing a storm's alerts by its card after a stop"
            );
        }
        Ok(store)
    }

    /// [`Store::open_waiting`] for async code: the open runs on tokio's blocking pool, so its wait
    /// for a lock (which sleeps) never stalls a runtime thread and the tasks on it.
    pub async fn open_async(dir: &Path, wait_ms: u64) -> Result<Store> {
        let dir = dir.to_owned();
        match tokio::task::spawn_blocking(move || Store::open_waiting(&dir, wait_ms)).await {
            Ok(opened) => opened,
            Err(e) => Err(StoreError::Sled(sled::Error::Io(std::io::Error::other(e)))),
        }
    }

    /// Another tree in the same database, for parts that keep state of their own
    /// (Discord delivery, mutes).
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// Writes everything to disk, then the store's mark (see `mark`).
    pub fn flush(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        #[cfg(test)]
        if self.counters.broken.load(Ordering::Relaxed) {
            const ENOSPC: i32 = 28;
            let full = std::io::Error::from_raw_os_error(ENOSPC);
            return Err(StoreError::Sled(sled::Error::Io(full)));
        }
        let flushes = self.count_flush()?;
        self.db.flush()?;
        // After the flush: the mark never claims more than the disk holds.
        self.write_mark(&self.dir, flushes)
    }

    /// Unit tests only: from now on every flush of this store (and its clones) fails with
    /// sled's I/O error for a full disk, as a store does once a write hit one.
    #[cfg(test)]
    pub(crate) fn break_writes(&self) {
        (self.counters.broken).store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The outbox reads and flushes of this handle and its clones so far.
    pub fn work(&self) -> StoreWork {
        use std::sync::atomic::Ordering;
        StoreWork {
            outbox_reads: self.counters.outbox_reads.load(Ordering::Relaxed),
            flushes: self.counters.flushes.load(Ordering::Relaxed),
        }
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::jobs::job_key_bytes;
    use super::super::test_support::{classes, day, job, policy};
    use super::super::JobRecord;
    use super::*;

    #[test]
    fn a_new_store_compresses_and_one_made_uncompressed_keeps_opening() {
        // New: compressed, and reopens.
        let fresh = tempfile::tempdir().unwrap();
        let id = Store::open(fresh.path()).unwrap().install_id().unwrap();
        let conf = String::from_utf8_lossy(&std::fs::read(fresh.path().join("conf")).unwrap())
            .into_owned();
        assert!(conf.contains("use_compression: true"), "{conf}");
        assert_eq!(Store::open(fresh.path()).unwrap().install_id().unwrap(), id);

        // Made by a build without compression (sled's default): opens as it was made, data
        // intact. sled refuses to open a store with the other setting.
        let old = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new().path(old.path()).open().unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("probe", "kept")
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(old.path()).unwrap();
        // Its new job records are JSON too, as the version that made it reads them.
        let j = job("2024-06-26-13-00-00", "", None);
        let c = classes();
        let obs = store.observe(&j, day(), &policy(&c, 14, false)).unwrap();
        let raw = store.jobs.get(job_key_bytes(&j.key())).unwrap().unwrap();
        assert_eq!(
            serde_json::from_slice::<JobRecord>(&raw).unwrap(),
            obs.record
        );
        let meta = store.tree("meta").unwrap();
        assert_eq!(meta.get("probe").unwrap().as_deref(), Some(&b"kept"[..]));
        let conf =
            String::from_utf8_lossy(&std::fs::read(old.path().join("conf")).unwrap()).into_owned();
        assert!(conf.contains("use_compression: false"), "{conf}");
    }
}
