//! The job record and how the store's records become bytes and back: job records compact
//! (postcard behind a version byte) in stores made compressed, JSON in older stores and for
//! every other record. A record that does not decode is an error here; the callers
//! quarantine it.

use super::{Result, Store, StoreError};
use crate::cbs::model::{RestoreJob, StatusClass};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
pub(super) struct CompactRecord {
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
pub(super) fn decode_record(key: &[u8], bytes: &[u8]) -> Result<JobRecord> {
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
            let tz: crate::tz::Tz = zone
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

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain data types always serialize.
    serde_json::to_vec(value).expect("store records serialize to JSON")
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        reason: e.to_string(),
    })
}

impl Store {
    /// A job record as this store writes them (see the `compact` field).
    pub(super) fn encode_job(&self, record: &JobRecord) -> Vec<u8> {
        if self.shared.compressed {
            encode_record(record)
        } else {
            encode(record)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::jobs::{day_key, job_key_bytes};
    use super::super::test_support::{classes, day, job, policy, raw_record};
    use super::super::Change;
    use super::*;
    use crate::test_data;
    use chrono::TimeZone;

    /// A record with every field set, in a zone with an offset, and some flags.
    fn full_record() -> JobRecord {
        let mut job = test_data::job(
            "obm",
            "7",
            "Asia/Kolkata".parse::<crate::tz::Tz>().unwrap(),
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
        store.t().unwrap().jobs.insert(&key, json.clone()).unwrap();
        store
            .t()
            .unwrap()
            .by_day
            .insert(day_key(day(), &key), &[])
            .unwrap();
        assert_eq!(store.job(&j.key()).unwrap(), Some(record.clone()));
        assert_eq!(store.jobs_on(day()).unwrap(), vec![record]);
        // Seen again: known (nothing queued) and left as it was.
        let obs = store.observe(&j, day(), &policy(&c, 15, false)).unwrap();
        assert_eq!(
            (obs.change, store.outbox_len().unwrap()),
            (Change::Unchanged, 0)
        );
        assert_eq!(
            store.t().unwrap().jobs.get(&key).unwrap().unwrap().as_ref(),
            &json[..]
        );
        assert_eq!(store.quarantined().unwrap(), 0);
    }

    #[test]
    fn new_job_records_are_written_compact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = classes();
        let j = job("2024-06-26-13-00-00", "", None);
        store.observe(&j, day(), &policy(&c, 14, false)).unwrap();
        let raw = raw_record(&store, &j);
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
        store.t().unwrap().jobs.insert(&key, bad.clone()).unwrap();
        assert_eq!(store.job(&j.key()).unwrap(), None);
        let q = store.quarantined_records().unwrap();
        assert_eq!((q.len(), &q[0].raw), (1, &bad));
        assert!(store.t().unwrap().jobs.get(&key).unwrap().is_none());
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
}
