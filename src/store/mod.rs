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

use crate::cbs::model::{JobKey, RestoreJob, StatusClass};
use crate::config::WatchEntry;
use crate::event::{Event, EventKind, OutageReason};
use crate::metrics;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{TransactionError, Transactional};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Store failures: sled itself, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    #[error("state store: record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

/// login → owner: the users discovery last listed.
const DISCOVERED_TREE: &str = "discovered";

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Whether opening the store failed because another process (a running instance) holds it.
pub fn is_locked(error: &StoreError) -> bool {
    matches!(error, StoreError::Sled(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock"))
}

/// What the store knows about one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: RestoreJob,
    /// The `RestoreDate` the job was listed under.
    pub date: NaiveDate,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    // The flags are stored only when set (most are not on most records).
    /// Recorded by a user's first cycle without an alert.
    #[serde(default, skip_serializing_if = "is_false")]
    pub baseline: bool,
    /// A "stuck" notice was queued for this job.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stuck_alerted: bool,
    /// An alert for this job was queued (or held back by a mute).
    #[serde(default, skip_serializing_if = "is_false")]
    pub alerted: bool,
    /// Recorded as running, then left out of its date's reply: its outcome is unknown.
    #[serde(default, skip_serializing_if = "is_false")]
    pub vanished: bool,
}

fn is_false(flag: &bool) -> bool {
    !flag
}

/// A running job its date's reply left out: since when, and in how many reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub since: DateTime<Utc>,
    pub reads: u32,
}

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

/// A user added to the watch list from chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicWatch {
    pub login: String,
    pub owner: String,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
}

/// The last poll cycle, for `/status` and the digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub users: u32,
    pub requests: u32,
    pub errors: u32,
    /// Reply items skipped for want of a job identity.
    #[serde(default)]
    pub unreadable_items: u32,
}

/// Poller health for one calendar day (server zone), for the digest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DayHealth {
    pub cycles: u32,
    pub request_errors: u32,
    /// Seconds during which the backup server counted as down.
    pub outage_secs: i64,
}

/// Cycles in a row in which no request succeeded and one failed for a server-wide reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownStreak {
    pub cycles: u32,
    /// The start of the first of them.
    pub since: DateTime<Utc>,
}

/// The backup server's state as the poller last saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub since: DateTime<Utc>,
    pub reason: OutageReason,
    pub error: String,
}

/// What to do with a job the poller just saw; decided by [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub record: JobRecord,
    /// `None`: nothing to tell.
    pub event: Option<EventKind>,
    pub change: Change,
    /// An alert was due but a mute held it back.
    pub muted: bool,
}

/// How a job changed since the store last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// First seen, still running.
    NewRunning,
    /// First seen or seen running before, and now ended.
    Finished(StatusClass),
    /// Recorded in a user's first cycle, not alerted.
    Baseline(StatusClass),
    /// Running past the stuck threshold: one notice.
    Stuck,
    Unchanged,
}

/// The rules that turn a sighting into a record and maybe an event (pure; see DESIGN.md).
#[derive(Clone, Copy)]
pub struct Policy<'a> {
    pub now: DateTime<Utc>,
    pub alert_classes: &'a BTreeSet<StatusClass>,
    pub stuck_after: chrono::Duration,
    /// The user's first cycle: record finished jobs as a baseline, alert nothing.
    pub baseline: bool,
    /// Whether alerts for a job are muted from chat right now: recorded, not posted.
    /// [`Store::observe`] asks it before its transaction starts, since it may read the
    /// store itself (reading inside a sled transaction would deadlock).
    pub muted: &'a (dyn Fn(&RestoreJob) -> bool + Sync),
    /// A failure's place in its set's row (see [`crate::escalation`]); asked before the
    /// transaction, like `muted`.
    pub repeat: &'a (dyn Fn(&RestoreJob) -> Option<crate::event::Repeat> + Sync),
}

/// Decides what a sighting of `job` (listed under `date`) means, given what was known.
pub fn decide(
    known: Option<&JobRecord>,
    job: &RestoreJob,
    date: NaiveDate,
    policy: &Policy<'_>,
) -> Observation {
    let mut record = match known {
        Some(k) => JobRecord {
            job: job.clone(),
            last_seen: policy.now,
            ..k.clone()
        },
        None => JobRecord {
            job: job.clone(),
            date,
            first_seen: policy.now,
            last_seen: policy.now,
            baseline: false,
            stuck_alerted: false,
            alerted: false,
            vanished: false,
        },
    };
    let was_finished = known.is_some_and(|k| k.job.class.is_finished());
    let (event, change) = if was_finished {
        // Once ended, a job's outcome is settled; later sightings change nothing.
        record.job = known.map(|k| k.job.clone()).unwrap_or_else(|| job.clone());
        (None, Change::Unchanged)
    } else if job.class.is_finished() {
        if policy.baseline && known.is_none() {
            record.baseline = true;
            (None, Change::Baseline(job.class))
        } else if policy.alert_classes.contains(&job.class) {
            record.alerted = true;
            let event = EventKind::JobFinished {
                job: job.clone(),
                repeat: (policy.repeat)(job),
                report: None,
            };
            (Some(event), Change::Finished(job.class))
        } else {
            (None, Change::Finished(job.class))
        }
    } else {
        let since = job
            .start_time
            .map(|t| t.to_utc())
            .unwrap_or(record.first_seen);
        let running = policy.now - since;
        if !record.stuck_alerted && !policy.baseline && running > policy.stuck_after {
            record.stuck_alerted = true;
            let event = EventKind::JobStuck {
                job: job.clone(),
                running_secs: running.num_seconds(),
            };
            (Some(event), Change::Stuck)
        } else if known.is_none() {
            (None, Change::NewRunning)
        } else {
            (None, Change::Unchanged)
        }
    };
    // A muted alert is decided like any other (the record says it was dealt with, so it
    // does not come back when the mute ends) but not queued.
    let muted = event.is_some() && (policy.muted)(job);
    if muted {
        record.alerted = false;
    }
    Observation {
        record,
        event: if muted { None } else { event },
        change,
        muted,
    }
}

/// The sled database and its trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    jobs: sled::Tree,
    /// `date \0 jobkey` → (): job records by listing date, for pruning and the digest.
    by_day: sled::Tree,
    /// jobkey → date: jobs last seen running.
    running: sled::Tree,
    /// event id (u64 big-endian) → Event.
    outbox: sled::Tree,
    /// login → UserState.
    users: sled::Tree,
    /// login → DynamicWatch.
    watch: sled::Tree,
    /// date → DayHealth, and single values under fixed names.
    meta: sled::Tree,
    /// `tree \0 key` → raw bytes of records that did not decode.
    quarantine: sled::Tree,
    /// jobkey → Missing: running jobs their date's reply left out.
    vanishing: sled::Tree,
    /// Work counters, shared by the clones of this handle.
    counters: std::sync::Arc<Counters>,
    /// The backup server whose poll state this handle reads and writes (see
    /// [`Store::for_server`]); `None`: the state kept under the plain names.
    scope: Option<std::sync::Arc<str>>,
    /// Job records are written compact ([`CompactRecord`]): in stores made compressed, which
    /// only versions that write compact records open. A store made before keeps JSON
    /// records, so the version that made it can still read every record after a downgrade.
    compact: bool,
}

/// Counts of store work that the benchmark and the tests check the cost of delivery by.
#[derive(Debug, Default)]
struct Counters {
    outbox_reads: std::sync::atomic::AtomicU64,
    flushes: std::sync::atomic::AtomicU64,
}

/// What a store handle (and its clones) has done so far: see [`Store::work`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreWork {
    /// Outbox entries read by [`Store::pending_events_after`].
    pub outbox_reads: u64,
    /// Calls of [`Store::flush`].
    pub flushes: u64,
}

/// A record moved to the quarantine tree: where it was and its bytes as they were.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub tree: String,
    pub key: Vec<u8>,
    pub raw: Vec<u8>,
}

/// The tree records that do not decode are moved to.
pub const QUARANTINE_TREE: &str = "quarantine";

/// sled's page cache (`cache_capacity`), in bytes. sled's default is 1 GiB, which lets a
/// large store's pages pile up in memory; a cycle reads each watched user's records once,
/// so a small cache costs little (a miss is a read from the OS page cache). sled counts a
/// page at its size on disk, which in a compressed store is a fraction of the decoded
/// page it keeps in memory: 2 MiB held about 6 MiB of decoded pages at 10,000 users.
/// 1 MiB idles 5-7 MiB lower than 2 MiB there at the same client CPU per request; 512 KiB
/// idles a little lower again but makes draining a 10,000-event backlog 1.26-1.30 times
/// slower per event than a 1,000-event one (1 MiB: 1.15-1.20; BENCHMARKS.md).
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

const META_LAST_CYCLE: &str = "last_cycle";
const META_OUTAGE: &str = "outage";
const META_ERROR_LOGINS: &str = "error_logins";
const META_REFUSED: &str = "refused_destinations";
const META_WATCHED: &str = "watched_logins";
const META_INSTALL_ID: &str = "install_id";
const META_LAST_DIGEST: &str = "last_digest_day";
const META_DOWN_STREAK: &str = "down_streak";
const META_SERVER_NAME: &str = "server_name";
/// Every backup server the store has been used with.
const META_SERVER_NAMES: &str = "server_names";
/// The backup servers of the running configuration, in its order.
const META_SERVERS_CONFIGURED: &str = "servers_configured";
const META_DAY_PREFIX: &str = "day:";

fn job_key_bytes(key: &JobKey) -> Vec<u8> {
    [
        key.server.as_str(),
        &key.login_name,
        &key.backup_set_id,
        &key.job_id,
    ]
    .join("\0")
    .into_bytes()
}

fn day_key(date: NaiveDate, job_key: &[u8]) -> Vec<u8> {
    let mut k = date.format("%Y-%m-%d").to_string().into_bytes();
    k.push(0);
    k.extend_from_slice(job_key);
    k
}

/// The first byte of a job record in the compact encoding ([`CompactRecord`]). Records
/// written before it are JSON objects, which start with `{`: both are read, so a store an
/// earlier version wrote opens and reads as it was.
const RECORD_COMPACT_V1: u8 = 1;

const FLAG_BASELINE: u8 = 1;
const FLAG_STUCK_ALERTED: u8 = 2;
const FLAG_ALERTED: u8 = 4;
const FLAG_VANISHED: u8 = 8;

/// Seconds since the Unix epoch and nanoseconds.
type Instant = (i64, u32);

/// A job record as the store writes it: postcard (a compact binary serde format) of every
/// field in a fixed order, without field names, times as numbers; a third of the JSON.
/// postcard is not self-describing, so every field is always written (no skipped
/// defaults) and none is ever reordered or removed: a change is a new leading byte.
#[derive(Serialize, Deserialize)]
struct CompactRecord {
    server: String,
    login_name: String,
    owner: String,
    user_id: String,
    backup_set_id: String,
    backup_set_name: String,
    job_id: String,
    /// The instant and the server zone's name.
    start_time: Option<(Instant, String)>,
    end_time: Option<(Instant, String)>,
    restore_size_bytes: Option<u64>,
    client_version: Option<String>,
    destination_id: Option<String>,
    success_databases: Vec<String>,
    missed_databases: Vec<String>,
    success_virtual_machines: Vec<String>,
    missed_virtual_machines: Vec<String>,
    success_public_folders: Vec<String>,
    missed_public_folders: Vec<String>,
    raw_status: String,
    /// [`class_code`].
    class: u8,
    unreadable: BTreeMap<String, String>,
    /// Days since 0001-01-01 (chrono's `num_days_from_ce`).
    date: i32,
    first_seen: Instant,
    last_seen: Instant,
    /// [`FLAG_BASELINE`] and the others.
    flags: u8,
}

/// A status class's number in [`CompactRecord`]: fixed here, not taken from the enum's
/// order, so reordering the enum cannot change what stored records mean.
fn class_code(class: StatusClass) -> u8 {
    match class {
        StatusClass::Success => 0,
        StatusClass::Warning => 1,
        StatusClass::PartialFailure => 2,
        StatusClass::Failure => 3,
        StatusClass::Cancelled => 4,
        StatusClass::Running => 5,
        StatusClass::Unknown => 6,
    }
}

fn instant(t: DateTime<Utc>) -> Instant {
    (t.timestamp(), t.timestamp_subsec_nanos())
}

fn stored_server_time(t: &Option<crate::cbs::model::ServerTime>) -> Option<(Instant, String)> {
    t.map(|t| (instant(t.to_utc()), t.timezone().name().to_owned()))
}

fn encode_record(record: &JobRecord) -> Vec<u8> {
    let j = &record.job;
    let flags = [
        (record.baseline, FLAG_BASELINE),
        (record.stuck_alerted, FLAG_STUCK_ALERTED),
        (record.alerted, FLAG_ALERTED),
        (record.vanished, FLAG_VANISHED),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0, |flags, (_, bit)| flags | bit);
    let compact = CompactRecord {
        server: j.server.clone(),
        login_name: j.login_name.clone(),
        owner: j.owner.clone(),
        user_id: j.user_id.clone(),
        backup_set_id: j.backup_set_id.clone(),
        backup_set_name: j.backup_set_name.clone(),
        job_id: j.job_id.clone(),
        start_time: stored_server_time(&j.start_time),
        end_time: stored_server_time(&j.end_time),
        restore_size_bytes: j.restore_size_bytes,
        client_version: j.client_version.clone(),
        destination_id: j.destination_id.clone(),
        success_databases: j.success_databases.clone(),
        missed_databases: j.missed_databases.clone(),
        success_virtual_machines: j.success_virtual_machines.clone(),
        missed_virtual_machines: j.missed_virtual_machines.clone(),
        success_public_folders: j.success_public_folders.clone(),
        missed_public_folders: j.missed_public_folders.clone(),
        raw_status: j.raw_status.clone(),
        class: class_code(j.class),
        unreadable: j.unreadable.clone(),
        date: record.date.num_days_from_ce(),
        first_seen: instant(record.first_seen),
        last_seen: instant(record.last_seen),
        flags,
    };
    // Plain strings, numbers and lists always serialize.
    postcard::to_extend(&compact, vec![RECORD_COMPACT_V1]).expect("job records serialize")
}

/// A job record in either encoding: compact ([`RECORD_COMPACT_V1`]) or JSON (older stores).
fn decode_record(key: &[u8], bytes: &[u8]) -> Result<JobRecord> {
    match bytes.split_first() {
        Some((&RECORD_COMPACT_V1, compact)) => {
            decode_compact(compact).map_err(|reason| StoreError::Corrupt {
                key: String::from_utf8_lossy(key).replace('\0', "/"),
                reason,
            })
        }
        _ => decode(key, bytes),
    }
}

fn decode_compact(bytes: &[u8]) -> std::result::Result<JobRecord, String> {
    let (c, rest): (CompactRecord, _) =
        postcard::take_from_bytes(bytes).map_err(|e| format!("compact record: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the compact record", rest.len()));
    }
    let at = |(secs, nanos): Instant| {
        DateTime::<Utc>::from_timestamp(secs, nanos)
            .ok_or_else(|| format!("time out of range: {secs} s {nanos} ns"))
    };
    let server_time = |t: Option<(Instant, String)>| {
        t.map(|(t, zone)| {
            let tz: chrono_tz::Tz = zone
                .parse()
                .map_err(|e| format!("time zone {zone:?}: {e}"))?;
            Ok::<_, String>(at(t)?.with_timezone(&tz))
        })
        .transpose()
    };
    let class = StatusClass::ALL
        .into_iter()
        .find(|class| class_code(*class) == c.class)
        .ok_or_else(|| format!("no status class numbered {}", c.class))?;
    if c.flags & !(FLAG_BASELINE | FLAG_STUCK_ALERTED | FLAG_ALERTED | FLAG_VANISHED) != 0 {
        return Err(format!("unknown flags {:#x}", c.flags));
    }
    Ok(JobRecord {
        job: RestoreJob {
            server: c.server,
            login_name: c.login_name,
            owner: c.owner,
            user_id: c.user_id,
            backup_set_id: c.backup_set_id,
            backup_set_name: c.backup_set_name,
            job_id: c.job_id,
            start_time: server_time(c.start_time)?,
            end_time: server_time(c.end_time)?,
            restore_size_bytes: c.restore_size_bytes,
            client_version: c.client_version,
            destination_id: c.destination_id,
            success_databases: c.success_databases,
            missed_databases: c.missed_databases,
            success_virtual_machines: c.success_virtual_machines,
            missed_virtual_machines: c.missed_virtual_machines,
            success_public_folders: c.success_public_folders,
            missed_public_folders: c.missed_public_folders,
            raw_status: c.raw_status,
            class,
            unreadable: c.unreadable,
        },
        date: NaiveDate::from_num_days_from_ce_opt(c.date)
            .ok_or_else(|| format!("date out of range: day {}", c.date))?,
        first_seen: at(c.first_seen)?,
        last_seen: at(c.last_seen)?,
        baseline: c.flags & FLAG_BASELINE != 0,
        stuck_alerted: c.flags & FLAG_STUCK_ALERTED != 0,
        alerted: c.flags & FLAG_ALERTED != 0,
        vanished: c.flags & FLAG_VANISHED != 0,
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain data types always serialize.
    serde_json::to_vec(value).expect("store records serialize to JSON")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        reason: e.to_string(),
    })
}

/// Queues an event of `kind` in `outbox` inside a transaction (a fresh id, `now`), so it is
/// written together with whatever else the transaction writes, or not at all.
fn queue_in(
    outbox: &sled::transaction::TransactionalTree,
    kind: EventKind,
    now: DateTime<Utc>,
) -> std::result::Result<Event, sled::transaction::UnabortableTransactionError> {
    let event = Event {
        id: outbox.generate_id()?,
        created_at: now,
        kind,
    };
    outbox.insert(&event.id.to_be_bytes(), encode(&event))?;
    Ok(event)
}

fn tx_result<T>(r: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

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
    /// all; see [`is_locked`] for telling that failure apart).
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
        Ok(Store {
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
            db,
            scope: None,
            compact: compressed,
        })
    }

    /// A handle on the same database whose per-server poll state (user states, chat-added
    /// users, discovered users, the last cycle, the outage, the watched and erroring logins)
    /// is that of the backup server `name`, kept apart from the other servers'. Job
    /// records, the outbox and everything shared are the same. `None` (and the server that
    /// owns the plain names, see [`Store::check_server_names`]) keeps the plain names, so a
    /// single-server store is never re-keyed.
    pub fn for_server(&self, name: Option<&str>) -> Result<Store> {
        let Some(name) = name else {
            return Ok(Store {
                scope: None,
                users: self.db.open_tree("users")?,
                watch: self.db.open_tree("watch")?,
                ..self.clone()
            });
        };
        Ok(Store {
            scope: Some(name.into()),
            users: self.db.open_tree(format!("users@{name}"))?,
            watch: self.db.open_tree(format!("watch@{name}"))?,
            ..self.clone()
        })
    }

    /// [`Store::for_server`] for the backup server `name`: the plain names when it owns
    /// them (it is the store's first server, see [`Store::check_server_names`]). Call it
    /// after that check: before it, the store has no owner and every name gets the plain
    /// names.
    pub fn server_view(&self, name: &str) -> Result<Store> {
        let owner: Option<String> = self.meta_get(META_SERVER_NAME)?;
        if owner.as_deref().is_none_or(|owner| owner == name) {
            self.for_server(None)
        } else {
            self.for_server(Some(name))
        }
    }

    /// A single value's key in `meta` for this handle's server.
    fn meta_key(&self, key: &str) -> String {
        match &self.scope {
            Some(server) => format!("server@{server}:{key}"),
            None => key.to_owned(),
        }
    }

    /// A tree of this handle's server: `name` itself for the plain names, `name@server`
    /// for another server (discovery's list and status).
    pub fn server_tree(&self, name: &str) -> Result<sled::Tree> {
        match &self.scope {
            Some(server) => self.tree(&format!("{name}@{server}")),
            None => self.tree(name),
        }
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

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        self.db.flush()?;
        Ok(())
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

    pub fn job(&self, key: &JobKey) -> Result<Option<JobRecord>> {
        self.job_at(&job_key_bytes(key))
    }

    /// The job record under `key`; one that does not decode is quarantined (`None`).
    fn job_at(&self, key: &[u8]) -> Result<Option<JobRecord>> {
        let Some(v) = self.jobs.get(key)? else {
            return Ok(None);
        };
        match decode_record(key, &v) {
            Ok(record) => Ok(Some(record)),
            Err(e) => {
                self.quarantine(&self.jobs, key, &v, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// A job record as this store writes them (see the `compact` field).
    fn encode_job(&self, record: &JobRecord) -> Vec<u8> {
        if self.compact {
            encode_record(record)
        } else {
            encode(record)
        }
    }

    /// Decodes a record, or moves it to the quarantine tree and answers `None`.
    fn decode_or_quarantine<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<Option<T>> {
        match decode(key, bytes) {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                self.quarantine(tree, key, bytes, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Moves a record that cannot be used out of `tree` into the quarantine tree, raw
    /// bytes kept under `tree \0 key`, and logs it once at error. The caller carries on
    /// without it.
    pub fn quarantine(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        bytes: &[u8],
        reason: &str,
    ) -> Result<()> {
        let mut qkey = tree.name().to_vec();
        qkey.push(0);
        qkey.extend_from_slice(key);
        self.quarantine.insert(qkey, bytes)?;
        tree.remove(key)?;
        crate::metrics::quarantined();
        tracing::error!(
            tree = %String::from_utf8_lossy(&tree.name()),
            key = %String::from_utf8_lossy(key).replace('\0', "/"),
            bytes = bytes.len(),
            %reason,
            "a stored record does not decode; moved it to the quarantine tree and carrying on"
        );
        Ok(())
    }

    /// How many records have been quarantined (see [`Store::quarantine`]).
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
    }

    /// The quarantined records.
    pub fn quarantined_records(&self) -> Result<Vec<Quarantined>> {
        self.quarantine
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let sep = k.iter().position(|b| *b == 0).unwrap_or(k.len());
                Ok(Quarantined {
                    tree: String::from_utf8_lossy(&k[..sep]).into_owned(),
                    key: k.get(sep + 1..).unwrap_or_default().to_vec(),
                    raw: v.to_vec(),
                })
            })
            .collect()
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Applies the policy to a sighting and records the outcome, with its event, atomically.
    pub fn observe(
        &self,
        job: &RestoreJob,
        date: NaiveDate,
        policy: &Policy<'_>,
    ) -> Result<Observation> {
        let key = job_key_bytes(&job.key());
        // A record that does not decode is quarantined here, outside the transaction
        // (which cannot write to other trees); the sighting then counts as new.
        let known = self.job_at(&key)?;
        // Most sightings change nothing (a job seen again). Decided here, they cost this
        // one read: no transaction, and no mute or streak look-up (an unchanged sighting
        // queues no event, so neither is asked). The store has a single writer (the
        // poller), so the transaction below would decide the same.
        let never = |_: &RestoreJob| false;
        let no_repeat = |_: &RestoreJob| None;
        let probe = decide(
            known.as_ref(),
            job,
            date,
            &Policy {
                muted: &never,
                repeat: &no_repeat,
                ..*policy
            },
        );
        if probe.change == Change::Unchanged {
            return Ok(probe);
        }
        let muted = (policy.muted)(job);
        let muted_now = |_: &RestoreJob| muted;
        let repeat = (policy.repeat)(job);
        let repeat_now = |_: &RestoreJob| repeat.clone();
        let policy = &Policy {
            muted: &muted_now,
            repeat: &repeat_now,
            ..*policy
        };
        let result = (&self.jobs, &self.by_day, &self.running, &self.outbox).transaction(
            |(jobs, by_day, running, outbox)| {
                // Undecodable here only if it changed since the check above: take it as new.
                let known: Option<JobRecord> =
                    jobs.get(&key)?.and_then(|v| decode_record(&key, &v).ok());
                let obs = decide(known.as_ref(), job, date, policy);
                if obs.change == Change::Unchanged {
                    // Nothing new to remember: no write, so a steady state costs only reads.
                    return Ok(obs);
                }
                jobs.insert(key.as_slice(), self.encode_job(&obs.record))?;
                if known.is_none() {
                    by_day.insert(day_key(obs.record.date, &key), &[])?;
                }
                if obs.record.job.class.is_finished() {
                    running.remove(key.as_slice())?;
                } else {
                    running.insert(key.as_slice(), encode(&obs.record.date))?;
                }
                if let Some(kind) = &obs.event {
                    queue_in(outbox, kind.clone(), policy.now)?;
                }
                Ok(obs)
            },
        );
        let obs = tx_result(result)?;
        obs.event.iter().for_each(metrics::event_queued);
        Ok(obs)
    }

    /// Queues an event that no job record goes with (summaries, notices).
    pub fn push_event(&self, kind: EventKind, now: DateTime<Utc>) -> Result<Event> {
        let event = Event {
            id: self.db.generate_id()?,
            created_at: now,
            kind,
        };
        self.outbox.insert(event.id.to_be_bytes(), encode(&event))?;
        metrics::event_queued(&event.kind);
        Ok(event)
    }

    /// Rewrites a queued event in place (same id, same place in the outbox). An event no
    /// longer queued (delivered meanwhile) is left alone. Returns whether it was rewritten.
    pub fn update_event(&self, event: &Event) -> Result<bool> {
        let bytes = encode(event);
        let old = self
            .outbox
            .fetch_and_update(event.id.to_be_bytes(), |old| old.map(|_| bytes.clone()))?;
        Ok(old.is_some())
    }

    /// Replaces queued events by others, in one transaction: both or neither (a storm's
    /// alerts by its card). Returns the events added, in order.
    pub fn replace_events(
        &self,
        remove: &[u64],
        add: &[EventKind],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        let result = self.outbox.transaction(|outbox| {
            for id in remove {
                outbox.remove(&id.to_be_bytes())?;
            }
            let mut added = Vec::with_capacity(add.len());
            for kind in add {
                added.push(queue_in(outbox, kind.clone(), now)?);
            }
            Ok(added)
        });
        // Not counted as queued again: what it holds was counted when first queued.
        tx_result(result)
    }

    /// Up to `limit` undelivered events, oldest first. An event that does not decode, or
    /// sits under a key that is not its id (so it could never be acknowledged), is
    /// quarantined and the rest are still offered.
    pub fn pending_events(&self, limit: usize) -> Result<Vec<Event>> {
        self.pending_events_after(None, limit)
    }

    /// Like [`Store::pending_events`], starting after the event `after`.
    pub fn pending_events_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(limit.min(1024));
        let start = match after {
            Some(id) => std::ops::Bound::Excluded(id.to_be_bytes().to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        for kv in self.outbox.range((start, std::ops::Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            self.counters
                .outbox_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(event) = self.decode_or_quarantine::<Event>(&self.outbox, &k, &v)? else {
                continue;
            };
            if k.as_ref() != event.id.to_be_bytes() {
                self.quarantine(&self.outbox, &k, &v, "the key is not the event's id")?;
                continue;
            }
            out.push(event);
        }
        Ok(out)
    }

    /// The queued events with these ids, in the order given; ids no longer queued are
    /// left out.
    pub fn events_by_id(&self, ids: &[u64]) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let key = id.to_be_bytes();
            if let Some(v) = self.outbox.get(key)? {
                out.extend(self.decode_or_quarantine::<Event>(&self.outbox, &key, &v)?);
            }
        }
        Ok(out)
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Removes delivered events from the outbox.
    pub fn ack(&self, ids: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.to_be_bytes());
        }
        self.outbox.apply_batch(batch)?;
        Ok(())
    }

    /// The listing dates of `login`'s jobs last seen running.
    pub fn running_dates(&self, server: &str, login: &str) -> Result<BTreeSet<NaiveDate>> {
        let prefix = format!("{server}\0{login}\0");
        let mut dates = BTreeSet::new();
        for kv in self.running.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv?;
            dates.extend(self.decode_or_quarantine::<NaiveDate>(&self.running, &k, &v)?);
        }
        Ok(dates)
    }

    /// The jobs of `login` recorded as running under `date` that `seen` (a successful
    /// reply for that date) does not list, as store keys.
    pub fn missing_running(
        &self,
        server: &str,
        login: &str,
        date: NaiveDate,
        seen: &[JobKey],
    ) -> Result<Vec<Vec<u8>>> {
        let seen: BTreeSet<Vec<u8>> = seen.iter().map(job_key_bytes).collect();
        let prefix = format!("{server}\0{login}\0");
        let mut out = Vec::new();
        for kv in self.running.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv?;
            if seen.contains(k.as_ref()) {
                // Listed again: no longer missing.
                self.vanishing.remove(&k)?;
                continue;
            }
            if self.decode_or_quarantine::<NaiveDate>(&self.running, &k, &v)? == Some(date) {
                out.push(k.to_vec());
            }
        }
        Ok(out)
    }

    /// Counts one more read that left the running job `key` out; returns the count so far.
    pub fn note_missing(&self, key: &[u8], now: DateTime<Utc>) -> Result<Missing> {
        let mut missing = match self.vanishing.get(key)? {
            Some(v) => self.decode_or_quarantine(&self.vanishing, key, &v)?,
            None => None,
        }
        .unwrap_or(Missing {
            since: now,
            reads: 0,
        });
        missing.reads = missing.reads.saturating_add(1);
        self.vanishing.insert(key, encode(&missing))?;
        Ok(missing)
    }

    /// Records the running job `key` as vanished (class unknown, its date no longer polled
    /// for it) and, when `alert` says so for the job, queues one "vanished" notice in the
    /// same transaction. Returns the job and whether a notice was queued.
    pub fn vanish(
        &self,
        key: &[u8],
        missing_since: DateTime<Utc>,
        now: DateTime<Utc>,
        alert: &dyn Fn(&RestoreJob) -> bool,
    ) -> Result<Option<(RestoreJob, bool)>> {
        let Some(mut record) = self.job_at(key)? else {
            self.running.remove(key)?;
            self.vanishing.remove(key)?;
            return Ok(None);
        };
        record.job.class = StatusClass::Unknown;
        record.vanished = true;
        record.last_seen = now;
        let alerted = alert(&record.job);
        record.alerted = alerted;
        let result =
            (&self.jobs, &self.running, &self.outbox).transaction(|(jobs, running, outbox)| {
                jobs.insert(key, self.encode_job(&record))?;
                running.remove(key)?;
                if alerted {
                    let kind = EventKind::JobVanished {
                        job: record.job.clone(),
                        missing_since,
                    };
                    queue_in(outbox, kind, now)?;
                }
                Ok(())
            });
        tx_result(result)?;
        self.vanishing.remove(key)?;
        Ok(Some((record.job, alerted)))
    }

    /// Every job record listed under `date`.
    pub fn jobs_on(&self, date: NaiveDate) -> Result<Vec<JobRecord>> {
        let mut prefix = date.format("%Y-%m-%d").to_string().into_bytes();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.by_day.scan_prefix(&prefix) {
            let (k, _) = kv?;
            out.extend(self.job_at(&k[prefix.len()..])?);
        }
        Ok(out)
    }

    /// Every job record listed on `from..=to`, newest date first.
    pub fn jobs_between(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for date in from.iter_days().take_while(|d| *d <= to) {
            out.extend(self.jobs_on(date)?);
        }
        out.reverse();
        Ok(out)
    }

    /// Removes job records (and day health) listed before `cutoff`; returns how many jobs.
    pub fn prune_before(&self, cutoff: NaiveDate) -> Result<usize> {
        let end = cutoff.format("%Y-%m-%d").to_string().into_bytes();
        let mut pruned = 0;
        for kv in self.by_day.range(..end) {
            let (k, v) = kv?;
            let Some(sep) = k.iter().position(|b| *b == 0) else {
                self.quarantine(&self.by_day, &k, &v, "not a `date \\0 job` key")?;
                continue;
            };
            let job_key = &k[sep + 1..];
            self.jobs.remove(job_key)?;
            self.running.remove(job_key)?;
            self.vanishing.remove(job_key)?;
            self.by_day.remove(&k)?;
            pruned += 1;
        }
        // This handle's server's day health (each server prunes its own).
        let (day_start, day_end) = (self.meta_key(META_DAY_PREFIX), self.day_health_key(cutoff));
        for kv in self.meta.range(day_start.as_bytes()..day_end.as_bytes()) {
            let (k, _) = kv?;
            self.meta.remove(k)?;
        }
        Ok(pruned)
    }

    /// The poll state of `login`. A state that does not decode is quarantined and the user
    /// counts as baselined: a lost state must not silence the user's next failures.
    pub fn user_state(&self, login: &str) -> Result<UserState> {
        let Some(v) = self.users.get(login)? else {
            return Ok(UserState::default());
        };
        Ok(self
            .decode_or_quarantine(&self.users, login.as_bytes(), &v)?
            .unwrap_or(UserState {
                baselined: true,
                ..UserState::default()
            }))
    }

    pub fn set_user_state(&self, login: &str, state: &UserState) -> Result<()> {
        self.users.insert(login, encode(state))?;
        Ok(())
    }

    /// Users added from chat, by login.
    pub fn dynamic_watches(&self) -> Result<Vec<DynamicWatch>> {
        let mut out = Vec::new();
        for kv in self.watch.iter() {
            let (k, v) = kv?;
            out.extend(self.decode_or_quarantine(&self.watch, &k, &v)?);
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
        let old = self.watch.compare_and_swap(
            &watch.login,
            None as Option<&[u8]>,
            Some(encode(watch)),
        )?;
        self.watch.flush()?;
        Ok(old.is_ok())
    }

    /// Removes a user from the dynamic watch list; `false` when it was not there.
    pub fn remove_watch(&self, login: &str) -> Result<bool> {
        let removed = self.watch.remove(login)?.is_some();
        self.watch.flush()?;
        Ok(removed)
    }

    /// A single value; one that does not decode is quarantined (`None`).
    fn meta_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.meta.get(key)? {
            Some(v) => self.decode_or_quarantine(&self.meta, key.as_bytes(), &v),
            None => Ok(None),
        }
    }

    fn meta_put<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.meta.insert(key, encode(value))?;
        Ok(())
    }

    pub fn last_cycle(&self) -> Result<Option<CycleRecord>> {
        self.meta_get(&self.meta_key(META_LAST_CYCLE))
    }

    /// Records a finished cycle and adds it to its day's health.
    pub fn record_cycle(
        &self,
        cycle: &CycleRecord,
        day: NaiveDate,
        outage_secs: i64,
    ) -> Result<()> {
        self.meta_put(&self.meta_key(META_LAST_CYCLE), cycle)?;
        let key = self.day_health_key(day);
        let mut health: DayHealth = self.meta_get(&key)?.unwrap_or_default();
        health.cycles += 1;
        health.request_errors += cycle.errors;
        health.outage_secs += outage_secs;
        self.meta_put(&key, &health)
    }

    /// This handle's server's poller health on `day` (each server keeps its own).
    pub fn day_health(&self, day: NaiveDate) -> Result<DayHealth> {
        Ok(self
            .meta_get(&self.day_health_key(day))?
            .unwrap_or_default())
    }

    fn day_health_key(&self, day: NaiveDate) -> String {
        self.meta_key(&format!("{META_DAY_PREFIX}{}", day.format("%Y-%m-%d")))
    }

    pub fn down_streak(&self) -> Result<Option<DownStreak>> {
        self.meta_get(&self.meta_key(META_DOWN_STREAK))
    }

    pub fn set_down_streak(&self, streak: Option<DownStreak>) -> Result<()> {
        match streak {
            Some(s) => self.meta_put(&self.meta_key(META_DOWN_STREAK), &s),
            None => {
                self.meta.remove(self.meta_key(META_DOWN_STREAK))?;
                Ok(())
            }
        }
    }

    pub fn outage(&self) -> Result<Option<Outage>> {
        self.meta_get(&self.meta_key(META_OUTAGE))
    }

    /// Opens, changes or (with `None`) closes the outage and queues its notice, in one
    /// transaction: a crash cannot record the outage and lose its one notice.
    pub fn set_outage_with_event(
        &self,
        outage: Option<&Outage>,
        kind: EventKind,
        now: DateTime<Utc>,
    ) -> Result<Event> {
        let key = self.meta_key(META_OUTAGE);
        let result = (&self.meta, &self.outbox).transaction(|(meta, outbox)| {
            match outage {
                Some(o) => meta.insert(key.as_bytes(), encode(o))?,
                None => meta.remove(key.as_bytes())?,
            };
            Ok(queue_in(outbox, kind.clone(), now)?)
        });
        let event = tx_result(result)?;
        metrics::event_queued(&event.kind);
        Ok(event)
    }

    /// [`Store::check_server_names`] for a single backup server.
    pub fn check_server_name(&self, name: &str) -> Result<(), String> {
        self.check_server_names(&[name]).map(|_| ())
    }

    /// Checks that the store belongs to the backup servers `names` (the config's order),
    /// stamping a store that has no names yet, and returns the server that owns the plain
    /// (unscoped) poll state: the store's first server, so a single-server store that gains
    /// a second server keeps its state and never re-keys a job. Every job key starts with
    /// its server's name: a configuration naming none of the servers the store knows would
    /// see every job as new and alert it again, so it is refused with the names and the key
    /// to set. A server the store knows that the config no longer names is kept known.
    pub fn check_server_names(&self, names: &[&str]) -> Result<String, String> {
        let err = |e: StoreError| e.to_string();
        let stamped: Option<String> = self.meta_get(META_SERVER_NAME).map_err(err)?;
        let owner = match stamped {
            Some(owner) => Some(owner),
            // A store from before the stamp (or whose stamp was unreadable): its job keys
            // say whose it is. Any record of ours will do; else the first other server's.
            None => {
                let ours = names.iter().find(|name| {
                    let prefix = format!("{name}\0");
                    self.jobs.scan_prefix(prefix.as_bytes()).next().is_some()
                });
                match ours {
                    Some(name) => Some(name.to_string()),
                    None => self.jobs.iter().keys().find_map(|k| {
                        let k = k.ok()?;
                        let sep = k.iter().position(|b| *b == 0)?;
                        Some(String::from_utf8_lossy(&k[..sep]).into_owned())
                    }),
                }
            }
        };
        let mut known: BTreeSet<String> = self
            .meta_get(META_SERVER_NAMES)
            .map_err(err)?
            .unwrap_or_default();
        known.extend(owner.clone());
        if !known.is_empty() && !names.iter().any(|n| known.contains(*n)) {
            let known: Vec<&String> = known.iter().collect();
            return Err(match (known.as_slice(), names) {
                ([known], [name]) => format!(
                    "the state store was made for the backup server named {known:?}, but this \
                     configuration names it {name:?}; every job would be seen as new and \
                     alerted again. If it is the same server (say cbs.url moved from an IP \
                     address to a DNS name), set cbs.server_name = {known:?}; if it is another \
                     server, use another state.path"
                ),
                _ => format!(
                    "the state store was made for the backup servers named {known:?}, but this \
                     configuration names {names:?}, none of them; every job would be seen as \
                     new and alerted again. If they are the same servers, set their cbs.name \
                     (or cbs.server_name) to the names above; if not, use another state.path"
                ),
            });
        }
        let owner =
            owner.unwrap_or_else(|| names.first().map_or_else(String::new, |n| n.to_string()));
        known.extend(names.iter().map(|n| n.to_string()));
        self.meta_put(META_SERVER_NAME, &owner).map_err(err)?;
        self.meta_put(META_SERVER_NAMES, &known).map_err(err)?;
        let names: Vec<&str> = names.to_vec();
        self.meta_put(META_SERVERS_CONFIGURED, &names)
            .map_err(err)?;
        Ok(owner)
    }

    /// The backup servers the running configuration names, in its order (as the last
    /// [`Store::check_server_names`] was told; empty before it ran). The digest and
    /// `/status` name the server when there are several.
    pub fn configured_servers(&self) -> Result<Vec<String>> {
        Ok(self.meta_get(META_SERVERS_CONFIGURED)?.unwrap_or_default())
    }

    /// The last day whose digest was queued by the schedule (see [`crate::digest::due_days`]).
    pub fn last_digest_day(&self) -> Result<Option<NaiveDate>> {
        self.meta_get(META_LAST_DIGEST)
    }

    /// Records `day` as digested without queuing anything (a fresh store starts here).
    pub fn set_last_digest_day(&self, day: NaiveDate) -> Result<()> {
        self.meta_put(META_LAST_DIGEST, &day)
    }

    /// Queues the digest of `day` and records the day as digested, in one transaction: a
    /// crash leaves both or neither, so each day's digest is queued exactly once.
    pub fn push_digest(
        &self,
        day: NaiveDate,
        kind: EventKind,
        now: DateTime<Utc>,
    ) -> Result<Event> {
        let result = (&self.meta, &self.outbox).transaction(|(meta, outbox)| {
            meta.insert(META_LAST_DIGEST, encode(&day))?;
            Ok(queue_in(outbox, kind.clone(), now)?)
        });
        tx_result(result)
    }

    /// A random id made when the store is first used, kept for its life (8 hex digits).
    pub fn install_id(&self) -> Result<String> {
        if let Some(id) = self.meta_get::<String>(META_INSTALL_ID)? {
            return Ok(id);
        }
        let fresh = format!("{:08x}", rand::random::<u32>());
        // Two handles racing here must agree: the first write wins.
        let _ = self.meta.compare_and_swap(
            META_INSTALL_ID,
            None as Option<&[u8]>,
            Some(encode(&fresh)),
        )?;
        Ok(self.meta_get(META_INSTALL_ID)?.unwrap_or(fresh))
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
    /// so no user is dropped and listed again (which would baseline them again), and the
    /// next refresh completes it.
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

    /// The logins the last cycle polled. Should that record be lost, the users with a
    /// poll state stand in for it, so nobody is baselined (silenced) again.
    pub fn watched_logins(&self) -> Result<BTreeSet<String>> {
        let stored = self.meta.contains_key(self.meta_key(META_WATCHED))?;
        match self.meta_get(&self.meta_key(META_WATCHED))? {
            Some(logins) => Ok(logins),
            None if stored => self
                .users
                .iter()
                .keys()
                .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
                .collect(),
            None => Ok(BTreeSet::new()),
        }
    }

    pub fn set_watched_logins(&self, logins: &BTreeSet<String>) -> Result<()> {
        self.meta_put(&self.meta_key(META_WATCHED), logins)
    }

    /// Chat destinations that refuse our messages right now, with the reason, as the
    /// delivery step last saw them (for `/status` and the digest).
    pub fn refused_destinations(&self) -> Result<Vec<String>> {
        Ok(self.meta_get(META_REFUSED)?.unwrap_or_default())
    }

    pub fn set_refused_destinations(&self, refused: &[String]) -> Result<()> {
        self.meta_put(META_REFUSED, &refused)
    }

    /// The logins whose requests failed in the last cycle.
    pub fn error_logins(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .meta_get(&self.meta_key(META_ERROR_LOGINS))?
            .unwrap_or_default())
    }

    pub fn set_error_logins(&self, logins: &BTreeSet<String>) -> Result<()> {
        self.meta_put(&self.meta_key(META_ERROR_LOGINS), logins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data;
    use chrono::TimeZone;

    fn job(id: &str, raw: &str, end: Option<&str>) -> RestoreJob {
        RestoreJob {
            backup_set_name: "Files".into(),
            ..test_data::job("obm", "1", chrono_tz::UTC, id, end, raw)
        }
    }

    fn classes() -> BTreeSet<StatusClass> {
        [
            StatusClass::Failure,
            StatusClass::PartialFailure,
            StatusClass::Unknown,
        ]
        .into()
    }

    fn policy(classes: &BTreeSet<StatusClass>, hour: u32, baseline: bool) -> Policy<'_> {
        let now = Utc.with_ymd_and_hms(2024, 6, 26, hour, 0, 0).unwrap();
        Policy {
            baseline,
            ..test_data::policy(now, classes)
        }
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 6, 26).unwrap()
    }

    #[test]
    fn new_failure_alerts_new_success_does_not() {
        let c = classes();
        let p = policy(&c, 14, false);
        let fail = decide(
            None,
            &job(
                "2024-06-26-13-00-00",
                "RESTORE_STOP_BY_ERROR",
                Some("2024-06-26 13:10:00"),
            ),
            day(),
            &p,
        );
        assert_eq!(fail.change, Change::Finished(StatusClass::Failure));
        assert!(matches!(fail.event, Some(EventKind::JobFinished { .. })));
        let ok = decide(
            None,
            &job(
                "2024-06-26-13-00-00",
                "RESTORE_STOP_SUCCESS",
                Some("2024-06-26 13:10:00"),
            ),
            day(),
            &p,
        );
        assert_eq!(
            (ok.change, ok.event),
            (Change::Finished(StatusClass::Success), None)
        );
    }

    #[test]
    fn baseline_records_without_alerting() {
        let c = classes();
        let obs = decide(
            None,
            &job(
                "2024-06-26-13-00-00",
                "RESTORE_STOP_BY_ERROR",
                Some("2024-06-26 13:10:00"),
            ),
            day(),
            &policy(&c, 14, true),
        );
        assert_eq!(obs.change, Change::Baseline(StatusClass::Failure));
        assert!(obs.event.is_none() && obs.record.baseline);
    }

    #[test]
    fn running_then_finished_then_unchanged() {
        let c = classes();
        let running = decide(
            None,
            &job("2024-06-26-13-00-00", "", None),
            day(),
            &policy(&c, 14, false),
        );
        assert_eq!(running.change, Change::NewRunning);
        let done_job = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 15:00:00"),
        );
        let done = decide(
            Some(&running.record),
            &done_job,
            day(),
            &policy(&c, 15, false),
        );
        assert_eq!(done.change, Change::Finished(StatusClass::Failure));
        assert!(done.event.is_some());
        assert_eq!(done.record.first_seen, running.record.first_seen);
        let again = decide(Some(&done.record), &done_job, day(), &policy(&c, 16, false));
        assert_eq!((again.change, again.event), (Change::Unchanged, None));
    }

    #[test]
    fn a_muted_failure_is_recorded_but_not_queued() {
        let c = classes();
        let muted = |j: &RestoreJob| j.backup_set_id == "1";
        let p = Policy {
            muted: &muted,
            ..policy(&c, 14, false)
        };
        let j = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 13:10:00"),
        );
        let obs = decide(None, &j, day(), &p);
        assert_eq!(obs.change, Change::Finished(StatusClass::Failure));
        assert!(obs.muted && obs.event.is_none() && !obs.record.alerted);
        let ok = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_SUCCESS",
            Some("2024-06-26 13:10:00"),
        );
        assert!(
            !decide(None, &ok, day(), &p).muted,
            "nothing to mute without an alert"
        );
    }

    #[test]
    fn stuck_once() {
        let c = classes();
        let j = job("2024-06-26-01-00-00", "", None);
        let first = decide(None, &j, day(), &policy(&c, 2, false));
        let stuck = decide(Some(&first.record), &j, day(), &policy(&c, 14, false));
        assert_eq!(stuck.change, Change::Stuck);
        assert!(matches!(
            stuck.event,
            Some(EventKind::JobStuck {
                running_secs: 46800,
                ..
            })
        ));
        let later = decide(Some(&stuck.record), &j, day(), &policy(&c, 15, false));
        assert_eq!((later.change, later.event), (Change::Unchanged, None));
    }

    #[test]
    fn observe_writes_record_and_event_together_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = classes();
        let j = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 13:10:00"),
        );
        store.observe(&j, day(), &policy(&c, 14, false)).unwrap();
        assert_eq!(store.outbox_len(), 1);
        assert!(store.job(&j.key()).unwrap().is_some());
        store.observe(&j, day(), &policy(&c, 15, false)).unwrap();
        assert_eq!(store.outbox_len(), 1, "a job seen again queues nothing");
        assert_eq!(store.jobs_on(day()).unwrap().len(), 1);
        assert_eq!(store.prune_before(day()).unwrap(), 0);
        assert_eq!(store.prune_before(day().succ_opt().unwrap()).unwrap(), 1);
        assert!(store.job(&j.key()).unwrap().is_none());
        assert!(store.jobs_on(day()).unwrap().is_empty());
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

    /// A record with every field set, in a zone with an offset, and some flags.
    fn full_record() -> JobRecord {
        let mut job = test_data::job(
            "obm",
            "7",
            chrono_tz::Asia::Kolkata,
            "2024-06-26 13:00:00",
            Some("2024-06-26 13:10:00"),
            "RESTORE_STOP_WITH_MISSED_FILES",
        );
        job.client_version = Some("9.9.4.0".into());
        job.destination_id = Some("dest-1".into());
        job.success_databases = vec!["db1".into(), "".into()];
        job.missed_virtual_machines = vec!["vm 2".into()];
        job.unreadable.insert("RestoreSize".into(), "lots".into());
        job.restore_size_bytes = None;
        JobRecord {
            job,
            date: day(),
            first_seen: Utc.with_ymd_and_hms(2024, 6, 26, 7, 40, 1).unwrap()
                + chrono::Duration::nanoseconds(123_456_789),
            last_seen: Utc.with_ymd_and_hms(2024, 6, 27, 8, 0, 0).unwrap(),
            baseline: false,
            stuck_alerted: true,
            alerted: true,
            vanished: false,
        }
    }

    #[test]
    fn a_job_record_round_trips_through_the_compact_encoding_in_a_third_of_the_json() {
        let record = full_record();
        let compact = encode_record(&record);
        assert_eq!(compact[0], RECORD_COMPACT_V1);
        let back = decode_record(b"k", &compact).unwrap();
        assert_eq!(back, record);
        // Same instants, and the same zone and offset as shown.
        let start = back.job.start_time.unwrap();
        assert_eq!(start.to_rfc3339(), "2024-06-26T13:00:00+05:30");
        for (baseline, stuck_alerted, alerted, vanished) in
            [(true, false, false, true), (false, false, false, false)]
        {
            let flags = JobRecord {
                baseline,
                stuck_alerted,
                alerted,
                vanished,
                ..record.clone()
            };
            assert_eq!(decode_record(b"k", &encode_record(&flags)).unwrap(), flags);
        }
        let plain = JobRecord {
            job: job(
                "2024-06-26-13-00-00",
                "RESTORE_STOP_SUCCESS",
                Some("2024-06-26 13:10:00"),
            ),
            ..record
        };
        let (compact, json) = (encode_record(&plain).len(), encode(&plain).len());
        assert!(compact * 2 < json, "compact {compact} bytes, JSON {json}");
    }

    #[test]
    fn a_store_written_as_json_by_an_earlier_version_still_reads_and_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = classes();
        let j = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 13:10:00"),
        );
        let mut record = full_record();
        record.job = j.clone();
        // As the JSON-writing version stored it: JSON under the job key, its day entry.
        let key = job_key_bytes(&j.key());
        let json = serde_json::to_vec(&record).unwrap();
        store.jobs.insert(&key, json.clone()).unwrap();
        store.by_day.insert(day_key(day(), &key), &[]).unwrap();
        assert_eq!(store.job(&j.key()).unwrap(), Some(record.clone()));
        assert_eq!(store.jobs_on(day()).unwrap(), vec![record]);
        // Seen again: known (nothing queued) and left as it was.
        let obs = store.observe(&j, day(), &policy(&c, 15, false)).unwrap();
        assert_eq!((obs.change, store.outbox_len()), (Change::Unchanged, 0));
        assert_eq!(store.jobs.get(&key).unwrap().unwrap().as_ref(), &json[..]);
        assert_eq!(store.quarantined(), 0);
    }

    #[test]
    fn new_job_records_are_written_compact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = classes();
        let j = job("2024-06-26-13-00-00", "", None);
        store.observe(&j, day(), &policy(&c, 14, false)).unwrap();
        let raw = store.jobs.get(job_key_bytes(&j.key())).unwrap().unwrap();
        assert_eq!(raw[0], RECORD_COMPACT_V1);
        // Rewritten when it ends, still compact, and read back.
        let done = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 14:10:00"),
        );
        let obs = store.observe(&done, day(), &policy(&c, 15, false)).unwrap();
        assert_eq!(obs.change, Change::Finished(StatusClass::Failure));
        assert_eq!(store.job(&j.key()).unwrap(), Some(obs.record));
    }

    #[test]
    fn a_compact_record_that_does_not_decode_is_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let j = job("2024-06-26-13-00-00", "", None);
        let key = job_key_bytes(&j.key());
        let mut bad = encode_record(&full_record());
        bad.truncate(bad.len() / 2);
        store.jobs.insert(&key, bad.clone()).unwrap();
        assert_eq!(store.job(&j.key()).unwrap(), None);
        let q = store.quarantined_records().unwrap();
        assert_eq!((q.len(), &q[0].raw), (1, &bad));
        assert!(store.jobs.get(&key).unwrap().is_none());
    }

    proptest::proptest! {
        /// Any bytes after the compact tag decode to a record or a clear error, never a
        /// panic; and a damaged real record too.
        #[test]
        fn compact_record_decoding_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            cut in 0usize..400,
            flip in proptest::prelude::any::<(usize, u8)>(),
        ) {
            let mut tagged = vec![RECORD_COMPACT_V1];
            tagged.extend_from_slice(&bytes);
            let _ = decode_record(b"k", &tagged);
            let mut real = encode_record(&full_record());
            let at = flip.0 % real.len();
            real[at] ^= flip.1;
            real.truncate(cut.max(1));
            if let Err(e) = decode_record(b"k", &real) {
                proptest::prop_assert!(e.to_string().contains("unreadable"), "{e}");
            }
        }
    }

    /// Each server keeps its own day health, and pruning a server's view prunes its own
    /// (a second server's days must not pile up past retention).
    #[test]
    fn each_server_keeps_and_prunes_its_own_day_health() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let other = store.for_server(Some("us")).unwrap();
        let cycle = CycleRecord {
            started_at: Utc.with_ymd_and_hms(2024, 6, 26, 9, 0, 0).unwrap(),
            finished_at: Utc.with_ymd_and_hms(2024, 6, 26, 9, 1, 0).unwrap(),
            users: 1,
            requests: 1,
            errors: 1,
            unreadable_items: 0,
        };
        store.record_cycle(&cycle, day(), 0).unwrap();
        other.record_cycle(&cycle, day(), 120).unwrap();
        other.record_cycle(&cycle, day(), 60).unwrap();
        assert_eq!(store.day_health(day()).unwrap().cycles, 1);
        let theirs = other.day_health(day()).unwrap();
        assert_eq!((theirs.cycles, theirs.outage_secs), (2, 180));
        let next = day().succ_opt().unwrap();
        other.prune_before(next).unwrap();
        assert_eq!(other.day_health(day()).unwrap(), DayHealth::default());
        assert_eq!(store.day_health(day()).unwrap().cycles, 1, "not its day");
        store.prune_before(next).unwrap();
        assert_eq!(store.day_health(day()).unwrap(), DayHealth::default());
    }
}
