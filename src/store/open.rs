//! Opening the store: the database directory, its compression (decided once, when the store
//! is made), sled's page cache, the lock file and the wait for another process's lock;
//! closing and opening the database again under every handle ([`Store::reopen`]); and the
//! handle's own work: flushing, the work counters, the size on disk, other parts' trees.

use super::{
    is_locked, Result, Shared, Store, StoreError, StoreWork, Trees, WriteStamp, QUARANTINE_TREE,
};
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
/// The file in the store's directory that a process holds locked while it has the store.
pub const LOCK_FILE: &str = "restorewatch.lock";
/// sled's log, in the store's directory: every write lands in it.
const LOG_FILE: &str = "db";
/// How long [`Store::reopen`] waits for the operations under way to finish (ms).
const REOPEN_WAIT_MS: u64 = 2_000;

fn io(e: std::io::Error) -> StoreError {
    StoreError::Sled(sled::Error::Io(e))
}

/// Tries `attempt` until it answers something other than a lock held elsewhere, waiting
/// [`OPEN_LOCK_RETRY_MS`] between tries and at most `wait_ms` in all.
fn retry_locked<T>(wait_ms: u64, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut waited_ms = 0;
    loop {
        match attempt() {
            Err(e) if is_locked(&e) && waited_ms < wait_ms => {
                std::thread::sleep(std::time::Duration::from_millis(OPEN_LOCK_RETRY_MS));
                waited_ms += OPEN_LOCK_RETRY_MS;
            }
            other => return other,
        }
    }
}

/// Takes the store's lock file, or answers [`StoreError::Locked`] when another process (or
/// another handle of this one) holds it.
fn lock(dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::Locked(path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

impl Trees {
    /// Opens sled in `dir` and its trees.
    fn open(dir: &Path, compressed: bool, wait_ms: u64) -> Result<Trees> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .use_compression(compressed);
        // sled's own lock: after a reopen, sled's background threads may hold the closed
        // database a moment longer.
        let db = retry_locked(wait_ms, || Ok(config.open()?))?;
        Ok(Trees {
            jobs: db.open_tree("jobs")?,
            by_day: db.open_tree("by_day")?,
            running: db.open_tree("running")?,
            outbox: db.open_tree("outbox")?,
            meta: db.open_tree("meta")?,
            quarantine: db.open_tree(QUARANTINE_TREE)?,
            vanishing: db.open_tree("vanishing")?,
            db,
        })
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// The process holds a lock file in the directory (and sled its own lock) while any
    /// handle lives. A process that is still shutting down (a container restart) or a
    /// handle whose background I/O is still finishing holds it a little longer, so a locked
    /// store is retried for up to [`OPEN_LOCK_WAIT_MS`] before giving up.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_waiting(dir, OPEN_LOCK_WAIT_MS)
    }

    /// [`Store::open`], waiting at most `wait_ms` for another process's lock (0: not at
    /// all; see [`is_locked`] for telling that failure apart).
    pub fn open_waiting(dir: &Path, wait_ms: u64) -> Result<Store> {
        let lock = retry_locked(wait_ms, || lock(dir))?;
        let compressed = compresses(dir);
        let trees = Trees::open(dir, compressed, wait_ms)?;
        let store = Store {
            shared: std::sync::Arc::new(Shared {
                dir: dir.into(),
                _lock: lock,
                compressed,
                counters: Default::default(),
                open: std::sync::RwLock::new(Some(std::sync::Arc::new(trees))),
            }),
            scope: None,
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

    /// The open database, opening it again if a [`Store::reopen`] could not.
    pub(super) fn t(&self) -> Result<std::sync::Arc<Trees>> {
        let slot = self.shared.open.read().unwrap_or_else(|e| e.into_inner());
        if let Some(trees) = slot.as_ref() {
            return Ok(trees.clone());
        }
        drop(slot);
        let mut slot = self.shared.open.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let trees = Trees::open(&self.shared.dir, self.shared.compressed, OPEN_LOCK_WAIT_MS)?;
            *slot = Some(std::sync::Arc::new(trees));
        }
        Ok(slot
            .as_ref()
            .map(std::sync::Arc::clone)
            .expect("just opened"))
    }

    /// Closes the database and opens it again, for every clone of this handle: what sled
    /// keeps in memory of the pages read since it opened (a cycle of 10,000 users leaves
    /// about 16 MiB of decoded pages, whatever its cache size; BENCHMARKS.md) goes back to
    /// the allocator. Everything written is flushed first. Waits up to two seconds for
    /// the store operations under way; answers `false`, leaving the database open, when
    /// they have not finished by then. A failed open leaves the store closed: the next
    /// use opens it again, and fails the same way until it can.
    pub fn reopen(&self) -> Result<bool> {
        self.reopen_within(REOPEN_WAIT_MS)
    }

    /// [`Store::reopen`], waiting at most `wait_ms` for the operations under way and
    /// again for sled's lock.
    fn reopen_within(&self, wait_ms: u64) -> Result<bool> {
        let started = std::time::Instant::now();
        let mut slot = loop {
            let slot = self.shared.open.write().unwrap_or_else(|e| e.into_inner());
            // Only this slot holds the trees: no operation is under way.
            match slot.as_ref() {
                Some(trees) if std::sync::Arc::strong_count(trees) > 1 => {}
                _ => break slot,
            }
            drop(slot);
            if started.elapsed() > std::time::Duration::from_millis(wait_ms) {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        if let Some(trees) = slot.take() {
            trees.db.flush()?;
        }
        let trees = Trees::open(&self.shared.dir, self.shared.compressed, wait_ms)?;
        *slot = Some(std::sync::Arc::new(trees));
        (self.shared.counters.reopens).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
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
    ///
    /// Take it for each use and let it go after: a tree kept would keep the database
    /// open through a [`Store::reopen`].
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.t()?.db.open_tree(name)?)
    }

    /// Writes everything to disk, then the store's mark (see `mark`).
    pub fn flush(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        self.shared.counters.flushes.fetch_add(1, Ordering::Relaxed);
        #[cfg(test)]
        if self.shared.counters.broken.load(Ordering::Relaxed) {
            const ENOSPC: i32 = 28;
            let full = std::io::Error::from_raw_os_error(ENOSPC);
            return Err(StoreError::Sled(sled::Error::Io(full)));
        }
        let flushes = self.count_flush()?;
        self.t()?.db.flush()?;
        // After the flush: the mark never claims more than the disk holds.
        self.write_mark(&self.shared.dir, flushes)
    }

    /// Unit tests only: from now on every flush of this store (and its clones) fails with
    /// sled's I/O error for a full disk, as a store does once a write hit one.
    #[cfg(test)]
    pub(crate) fn break_writes(&self) {
        (self.shared.counters.broken).store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The outbox reads, flushes and reopens of this handle and its clones so far.
    pub fn work(&self) -> StoreWork {
        use std::sync::atomic::Ordering;
        StoreWork {
            outbox_reads: self.shared.counters.outbox_reads.load(Ordering::Relaxed),
            flushes: self.shared.counters.flushes.load(Ordering::Relaxed),
            reopens: self.shared.counters.reopens.load(Ordering::Relaxed),
        }
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.t()?.db.size_on_disk()?)
    }

    /// What changes whenever the store is written: by this process ([`Store::flush`]) or
    /// by sled's own clean-up, which rewrites the live pages of half-empty segments in the
    /// background after an open (and keeps them decoded), seen in its log file's time.
    pub fn write_stamp(&self) -> WriteStamp {
        WriteStamp {
            flushes: self.work().flushes,
            modified: std::fs::metadata(self.shared.dir.join(LOG_FILE))
                .and_then(|m| m.modified())
                .ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{classes, day, job, policy, raw_record};
    use super::super::{JobRecord, UserState};
    use super::*;

    #[test]
    fn a_reopen_keeps_every_handle_working_and_everything_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let other = store.for_server(Some("b")).unwrap();
        let c = classes();
        let j = job("2024-06-26-13-00-00", "", None);
        let record = store
            .observe(&j, day(), &policy(&c, 14, false))
            .unwrap()
            .record;
        let baselined = UserState {
            baselined: true,
            ..UserState::default()
        };
        other.set_user_state("obm", &baselined).unwrap();

        assert!(store.reopen().unwrap());
        assert_eq!(store.work().reopens, 1);
        // Every clone, scoped or not, reads what was written before and writes on.
        assert_eq!(other.job(&j.key()).unwrap().as_ref(), Some(&record));
        assert!(other.user_state("obm").unwrap().baselined);
        assert!(
            !store.user_state("obm").unwrap().baselined,
            "scopes stay apart"
        );
        other.set_user_state("new", &baselined).unwrap();
        // Still this process's store: another open is refused.
        let refused = Store::open_waiting(dir.path(), 0).err().expect("refused");
        assert!(is_locked(&refused), "{refused}");

        drop((store, other));
        let again = Store::open(dir.path())
            .unwrap()
            .for_server(Some("b"))
            .unwrap();
        assert_eq!(again.job(&j.key()).unwrap(), Some(record));
        assert!(again.user_state("new").unwrap().baselined);
    }

    #[test]
    fn a_reopen_waits_for_the_work_under_way_and_a_failed_one_keeps_the_store_locked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let summary = crate::event::EventKind::CycleSummary(Default::default());
        store.push_event(summary, chrono::Utc::now()).unwrap();

        // An operation holds the trees: the reopen gives up and the store stays open.
        let under_way = store.t().unwrap();
        assert!(!store.reopen_within(20).unwrap());
        drop(under_way);
        assert_eq!(store.outbox_len().unwrap(), 1);
        // One that ends within the wait is waited for (the sleep stands for its work).
        let under_way = store.t().unwrap();
        let ends = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(under_way);
        });
        assert!(store.reopen_within(60_000).unwrap());
        ends.join().unwrap();

        // A tree kept past its use holds sled's lock, so the open after the close fails.
        let kept = store.tree("kept").unwrap();
        let failed = store.reopen_within(20).expect_err("sled's lock is held");
        assert!(is_locked(&failed), "{failed}");
        drop(kept);
        // Closed now, but the lock file still keeps other processes out.
        let refused = Store::open_waiting(dir.path(), 0).err().expect("refused");
        assert!(matches!(refused, StoreError::Locked(_)), "{refused}");
        // The next use opens it again.
        assert_eq!(store.outbox_len().unwrap(), 1);
        assert!(store.reopen().unwrap());
    }

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
        let raw = raw_record(&store, &j);
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
