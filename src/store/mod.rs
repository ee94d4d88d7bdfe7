//! The sled store: every job seen, the outbox of events to deliver, the dynamic watch list
//! and the poller's health, kept across restarts.
//!
//! A job's new state and the event it causes are written in one sled transaction, so a
//! crash leaves both or neither. Events leave the outbox only when a sink acknowledges
//! them. Job records are indexed by listing date so that pruning past the retention
//! horizon is a range scan and the database stops growing.
//!
//! Stores made by this version are zstd-compressed by sled and write job records compact
//! (postcard, behind a version byte): about 0.7 KiB on disk per retained job instead of
//! 4.7 KiB (BENCHMARKS.md, section 4). A store made before opens as it was made, and keeps
//! writing JSON job records, which every version reads.
//!
//! A record that does not decode (a bug, a downgrade, a bad disk) is never allowed to stop
//! the loop: it is moved, raw bytes kept, to the `quarantine` tree ([`Store::quarantine`]),
//! logged once at error, counted for `/status`, and the reader carries on as if it were
//! not there.
//!
//! # Layout
//!
//! - `open`: opening the database (compression, page cache, the lock file and the lock
//!   wait), closing and opening it again under every handle ([`Store::reopen`]), and the
//!   handle's own work: flush, counters, size.
//! - `servers`: a handle per backup server and the check that a store belongs to the
//!   configured servers.
//! - `decide`: the pure rules that turn a sighting of a job into a record and an event.
//! - `record`: the job record and how records become bytes and back (compact or JSON).
//! - `quarantine`: where records that do not decode go.
//! - `jobs`: job records: observe, running and vanishing jobs, the by-day index, pruning.
//! - `outbox`: the queue of events to deliver.
//! - `mark`: the store's high-water mark, a file that finds a store rolled back at a start.
//! - `meta`: single values: the last cycle, day health, outage, digest day, install id,
//!   watched, erroring and refused names.
//! - `users`: per-user poll state, the chat-added watches and the discovered users.

mod decide;
mod jobs;
mod mark;
mod meta;
mod open;
mod outbox;
mod quarantine;
mod record;
mod servers;
#[cfg(test)]
mod test_support;
mod users;

pub use decide::{decide, Change, Observation, Policy};
pub use jobs::Missing;
pub use mark::{Rollback, MARK_FILE};
pub use meta::{CycleRecord, DayHealth, DownStreak, Outage, UnreadableSeen};
pub use open::{CACHE_CAPACITY_BYTES, OPEN_LOCK_WAIT_MS};
pub use quarantine::{Quarantined, QUARANTINE_TREE};
pub use record::JobRecord;
pub use servers::UnconfiguredServer;
pub use users::{DynamicWatch, UserState};

use sled::transaction::TransactionError;

/// Store failures: sled itself, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    #[error("state store: record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("state store: could not acquire lock on {0}: another process has the store open")]
    Locked(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Whether `error` is sled's I/O error: a write (or the flush of one) the file system
/// refused, say on a full disk. sled keeps that error and returns it from every later
/// operation, even once space is freed, so the store is unusable until it is reopened.
pub fn is_io(error: &StoreError) -> bool {
    matches!(error, StoreError::Sled(sled::Error::Io(_)))
}

/// Whether opening the store failed because another process (a running instance) holds it.
pub fn is_locked(error: &StoreError) -> bool {
    match error {
        StoreError::Locked(_) => true,
        StoreError::Sled(sled::Error::Io(e)) => e.to_string().contains("could not acquire lock"),
        _ => false,
    }
}

/// A handle on the state store. Clones share one open database ([`Store::reopen`] closes
/// and opens it again under all of them) and the work counters.
#[derive(Clone)]
pub struct Store {
    shared: std::sync::Arc<Shared>,
    /// The backup server whose poll state this handle reads and writes (see
    /// [`Store::for_server`]); `None`: the state kept under the plain names.
    scope: Option<std::sync::Arc<str>>,
}

/// What the clones of a store handle share.
struct Shared {
    /// The open database; `None` after a reopen failed (the next use tries again).
    /// Declared before the lock file, so it is closed before the lock is let go.
    open: std::sync::RwLock<Option<std::sync::Arc<Trees>>>,
    /// The store's directory, where its mark and its lock file are kept.
    dir: std::sync::Arc<std::path::Path>,
    /// The lock file, held while any handle lives, so no other process opens the store
    /// while this one has sled closed (see [`Store::reopen`]).
    _lock: std::fs::File,
    /// Whether sled compresses the store; fixed when the store is made. Job records are
    /// written compact ([`CompactRecord`](record::CompactRecord)) in stores made
    /// compressed, which only versions that write compact records open. A store made
    /// before keeps JSON records, so the version that made it can still read every record
    /// after a downgrade.
    compressed: bool,
    /// Work counters, shared by the clones of this handle.
    counters: Counters,
}

/// The sled database and its trees, as one open of the store has them.
struct Trees {
    db: sled::Db,
    jobs: sled::Tree,
    /// `date \0 jobkey` → (): job records by listing date, for pruning and the digest.
    by_day: sled::Tree,
    /// jobkey → date: jobs last seen running.
    running: sled::Tree,
    /// event id (u64 big-endian) → Event.
    outbox: sled::Tree,
    /// date → DayHealth, and single values under fixed names.
    meta: sled::Tree,
    /// `tree \0 key` → raw bytes of records that did not decode.
    quarantine: sled::Tree,
    /// jobkey → Missing: running jobs their date's reply left out.
    vanishing: sled::Tree,
}

/// Counts of store work that the benchmark and the tests check the cost of delivery by.
#[derive(Debug, Default)]
struct Counters {
    outbox_reads: std::sync::atomic::AtomicU64,
    flushes: std::sync::atomic::AtomicU64,
    reopens: std::sync::atomic::AtomicU64,
    /// Unit tests only: every flush fails as after a full disk ([`Store::break_writes`]).
    #[cfg(test)]
    broken: std::sync::atomic::AtomicBool,
}

/// A stamp that changes whenever the store is written: see [`Store::write_stamp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteStamp {
    flushes: u64,
    /// `None` where the file system keeps no modification time.
    modified: Option<std::time::SystemTime>,
}

/// What a store handle (and its clones) has done so far: see [`Store::work`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreWork {
    /// Outbox entries read by [`Store::pending_events_after`].
    pub outbox_reads: u64,
    /// Calls of [`Store::flush`].
    pub flushes: u64,
    /// Times [`Store::reopen`] closed the database and opened it again.
    pub reopens: u64,
}

fn tx_result<T>(r: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}
