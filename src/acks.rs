//! Acknowledgements: who pressed **Acknowledge** on a failure alert, and when.
//!
//! They live in a sled tree of their own (`acks`) beside the job records, keyed like the
//! records' day index (`date \0 server \0 login \0 set \0 job`), so [`Acks::prune_before`]
//! drops them with the jobs past the retention horizon (the poller calls both) and the
//! tree stops growing like the rest of the store. The first acknowledgement of a job
//! stays: a second press is answered with it, never recorded over it.
//!
//! [`find_job`] resolves the job a button names ([`JobRef`]) among the store's records;
//! the digest reads [`Acks::on`] to list acknowledged and open failures apart.

use crate::actions::{job_hash, JobRef};
use crate::cbs::model::JobKey;
use crate::store::{JobRecord, Store, StoreError};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The name of the sled tree holding the acknowledgements.
const TREE: &str = "acks";
/// A button whose job had no readable start time is looked up this many days back.
const UNDATED_LOOKUP_DAYS: u64 = 62;

/// One acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The Discord user's id (shown as a mention).
    pub user_id: u64,
    /// Their name as Discord gave it at the time (for the digest and the log).
    pub user_name: String,
    pub at: DateTime<Utc>,
}

/// The acknowledgement store.
#[derive(Clone)]
pub struct Acks {
    /// For quarantining a record that does not decode.
    store: Store,
}

fn date_prefix(date: NaiveDate) -> Vec<u8> {
    let mut k = date.format("%Y-%m-%d").to_string().into_bytes();
    k.push(0);
    k
}

fn key(date: NaiveDate, job: &JobKey) -> Vec<u8> {
    let mut k = date_prefix(date);
    let parts = [
        job.server.as_str(),
        &job.login_name,
        &job.backup_set_id,
        &job.job_id,
    ];
    k.extend_from_slice(parts.join("\0").as_bytes());
    k
}

/// The job key of a tree key (after the date), if it has the four parts.
fn job_key_of(rest: &[u8]) -> Option<JobKey> {
    let text = std::str::from_utf8(rest).ok()?;
    let mut parts = text.split('\0');
    let job = JobKey {
        server: parts.next()?.to_owned(),
        login_name: parts.next()?.to_owned(),
        backup_set_id: parts.next()?.to_owned(),
        job_id: parts.next()?.to_owned(),
    };
    parts.next().is_none().then_some(job)
}

impl Acks {
    /// Opens the acknowledgements of `store` (their own tree in the same database).
    pub fn open(store: &Store) -> Result<Acks, StoreError> {
        Ok(Acks {
            store: store.clone(),
        })
    }

    /// Its tree, taken for each use (see [`Store::tree`]).
    fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.store.tree(TREE)
    }

    fn decode(&self, k: &[u8], v: &[u8]) -> Result<Option<Ack>, StoreError> {
        match serde_json::from_slice(v) {
            Ok(ack) => Ok(Some(ack)),
            Err(e) => {
                self.store.quarantine(&self.tree()?, k, v, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Records `ack` for the job of `record`, unless it is acknowledged already: then the
    /// first acknowledgement is returned and nothing changes.
    pub fn acknowledge(&self, record: &JobRecord, ack: &Ack) -> Result<Option<Ack>, StoreError> {
        let k = key(record.date, &record.job.key());
        // Our own plain data always serializes.
        let value = serde_json::to_vec(ack).expect("an acknowledgement serializes to JSON");
        let tree = self.tree()?;
        loop {
            match tree.compare_and_swap(&k, None::<&[u8]>, Some(value.clone()))? {
                Ok(()) => {
                    tree.flush()?;
                    return Ok(None);
                }
                Err(existing) => {
                    let Some(current) = existing.current else {
                        continue;
                    };
                    match self.decode(&k, &current)? {
                        Some(first) => return Ok(Some(first)),
                        // Quarantined: the key is free again.
                        None => continue,
                    }
                }
            }
        }
    }

    /// The acknowledgement of `record`'s job, if any.
    pub fn get(&self, record: &JobRecord) -> Result<Option<Ack>, StoreError> {
        let k = key(record.date, &record.job.key());
        match self.tree()?.get(&k)? {
            Some(v) => self.decode(&k, &v),
            None => Ok(None),
        }
    }

    /// The acknowledgements of the jobs listed under `date`.
    pub fn on(&self, date: NaiveDate) -> Result<BTreeMap<JobKey, Ack>, StoreError> {
        let prefix = date_prefix(date);
        let mut out = BTreeMap::new();
        for kv in self.tree()?.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let Some(job) = job_key_of(&k[prefix.len()..]) else {
                self.store
                    .quarantine(&self.tree()?, &k, &v, "not a `date \\0 job` key")?;
                continue;
            };
            if let Some(ack) = self.decode(&k, &v)? {
                out.insert(job, ack);
            }
        }
        Ok(out)
    }

    /// Drops the acknowledgements of jobs listed before `cutoff` (the job records'
    /// retention); returns how many.
    pub fn prune_before(&self, cutoff: NaiveDate) -> Result<usize, StoreError> {
        let end = cutoff.format("%Y-%m-%d").to_string().into_bytes();
        let mut pruned = 0;
        for k in self.tree()?.range(..end).keys() {
            self.tree()?.remove(k?)?;
            pruned += 1;
        }
        Ok(pruned)
    }
}

/// The job record a button names: among the records listed on its day and the days either
/// side; else, since buttons posted by earlier versions name the day the job started, on
/// the later days up to `today` (at most `UNDATED_LOOKUP_DAYS`: a restore that ran for
/// days is listed under a later one); for a job without a readable start, the last
/// `UNDATED_LOOKUP_DAYS` before `today`. `None` once the record is gone (past the
/// retention horizon, or another store).
pub fn find_job(
    store: &Store,
    job: JobRef,
    today: NaiveDate,
) -> Result<Option<JobRecord>, StoreError> {
    let find = |from: NaiveDate, to: NaiveDate| -> Result<Option<JobRecord>, StoreError> {
        Ok(store
            .jobs_between(from, to)?
            .into_iter()
            .find(|r| job_hash(&r.job.key()) == job.hash))
    };
    let lookback = |to: NaiveDate| {
        to.checked_sub_days(Days::new(UNDATED_LOOKUP_DAYS))
            .unwrap_or(to)
    };
    let Some(date) = job.date else {
        return find(lookback(today), today);
    };
    let after = date.succ_opt().unwrap_or(date);
    if let Some(found) = find(date.pred_opt().unwrap_or(date), after)? {
        return Ok(Some(found));
    }
    let later = after.succ_opt().unwrap_or(after);
    let until = today.min(
        date.checked_add_days(Days::new(UNDATED_LOOKUP_DAYS))
            .unwrap_or(today),
    );
    if later > until {
        return Ok(None);
    }
    find(later.max(lookback(until)), until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test_support::{at, day, job, record, store};

    fn ack(name: &str) -> Ack {
        Ack {
            user_id: 7,
            user_name: name.into(),
            at: at(26, 10),
        }
    }

    #[test]
    fn the_first_acknowledgement_stays_and_survives_a_reopen() {
        let (dir, store) = store();
        let failed = job("obm", "1", 25, 9, "RESTORE_STOP_BY_ERROR");
        record(&store, std::slice::from_ref(&failed));
        let found = find_job(&store, JobRef::of(&failed, None), day(26))
            .unwrap()
            .expect("found by its day and hash");
        assert_eq!(found.job.key(), failed.key());
        let acks = Acks::open(&store).unwrap();
        assert_eq!(acks.acknowledge(&found, &ack("first")).unwrap(), None);
        assert_eq!(
            acks.acknowledge(&found, &ack("second")).unwrap(),
            Some(ack("first"))
        );
        drop((acks, store));
        let store = Store::open(dir.path()).unwrap();
        let acks = Acks::open(&store).unwrap();
        assert_eq!(acks.get(&found).unwrap(), Some(ack("first")));
        let on = acks.on(day(25)).unwrap();
        assert_eq!(on.get(&failed.key()), Some(&ack("first")));
        assert!(acks.on(day(26)).unwrap().is_empty());
    }

    #[test]
    fn acknowledgements_end_with_the_retention_of_their_jobs() {
        let (_dir, store) = store();
        let old = job("obm", "1", 20, 9, "RESTORE_STOP_BY_ERROR");
        let new = job("obm", "1", 25, 9, "RESTORE_STOP_BY_ERROR");
        record(&store, &[old.clone(), new.clone()]);
        let acks = Acks::open(&store).unwrap();
        for j in [&old, &new] {
            let r = find_job(&store, JobRef::of(j, None), day(26))
                .unwrap()
                .unwrap();
            acks.acknowledge(&r, &ack("op")).unwrap();
        }
        assert_eq!(acks.prune_before(day(21)).unwrap(), 1);
        assert_eq!(acks.tree().unwrap().len(), 1);
        store.prune_before(day(21)).unwrap();
        assert!(find_job(&store, JobRef::of(&old, None), day(26))
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_unknown_job_is_not_found() {
        let (_dir, store) = store();
        let j = job("obm", "1", 25, 9, "RESTORE_STOP_BY_ERROR");
        record(&store, std::slice::from_ref(&j));
        let other = JobRef {
            hash: JobRef::of(&j, None).hash ^ 1,
            ..JobRef::of(&j, None)
        };
        assert!(find_job(&store, other, day(26)).unwrap().is_none());
        let undated = JobRef {
            date: None,
            ..JobRef::of(&j, None)
        };
        assert!(find_job(&store, undated, day(26)).unwrap().is_some());
    }
}
