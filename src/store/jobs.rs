//! Job records: [`Store::observe`] records a sighting and its event in one transaction; the
//! jobs last seen running and those their date's reply left out (vanishing); the by-day
//! index the digest reads and pruning past the retention horizon walks.

use super::meta::META_DAY_PREFIX;
use super::outbox::queue_in;
use super::record::{decode_record, encode};
use super::{decide, tx_result, Change, JobRecord, Observation, Policy, Result, Store};
use crate::cbs::model::{JobKey, RestoreJob, StatusClass};
use crate::event::EventKind;
use crate::metrics;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::Transactional;
use std::collections::BTreeSet;

/// A running job its date's reply left out: since when, and in how many reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub since: DateTime<Utc>,
    pub reads: u32,
}

pub(super) fn job_key_bytes(key: &JobKey) -> Vec<u8> {
    [
        key.server.as_str(),
        &key.login_name,
        &key.backup_set_id,
        &key.job_id,
    ]
    .join("\0")
    .into_bytes()
}

pub(super) fn day_key(date: NaiveDate, job_key: &[u8]) -> Vec<u8> {
    let mut k = date.format("%Y-%m-%d").to_string().into_bytes();
    k.push(0);
    k.extend_from_slice(job_key);
    k
}

impl Store {
    pub fn job(&self, key: &JobKey) -> Result<Option<JobRecord>> {
        self.job_at(&job_key_bytes(key))
    }

    /// The job record under `key`; one that does not decode is quarantined (`None`).
    fn job_at(&self, key: &[u8]) -> Result<Option<JobRecord>> {
        let t = self.t()?;
        let Some(v) = t.jobs.get(key)? else {
            return Ok(None);
        };
        match decode_record(key, &v) {
            Ok(record) => Ok(Some(record)),
            Err(e) => {
                self.quarantine(&t.jobs, key, &v, &e.to_string())?;
                Ok(None)
            }
        }
    }

    pub fn job_count(&self) -> Result<usize> {
        Ok(self.t()?.jobs.len())
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
        let t = self.t()?;
        let result = (&t.jobs, &t.by_day, &t.running, &t.outbox).transaction(
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

    /// The listing dates of `login`'s jobs last seen running.
    pub fn running_dates(&self, server: &str, login: &str) -> Result<BTreeSet<NaiveDate>> {
        let t = self.t()?;
        let prefix = format!("{server}\0{login}\0");
        let mut dates = BTreeSet::new();
        for kv in t.running.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv?;
            dates.extend(self.decode_or_quarantine::<NaiveDate>(&t.running, &k, &v)?);
        }
        Ok(dates)
    }

    /// Every user of `server` with a job last seen running, but those `skip` names: login
    /// → (the owner the job was listed with, its listing dates). The poller asks it for
    /// the users who left the watch list (skipping the watched ones, whose job records are
    /// then never read), whose running jobs are still polled for until their end is
    /// recorded.
    pub fn running_users(
        &self,
        server: &str,
        skip: impl Fn(&str) -> bool,
    ) -> Result<std::collections::BTreeMap<String, (String, BTreeSet<NaiveDate>)>> {
        let t = self.t()?;
        let prefix = format!("{server}\0");
        let mut users = std::collections::BTreeMap::new();
        for kv in t.running.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv?;
            // The key is the job's: `server \0 login \0 …`.
            let login = k[prefix.len()..]
                .split(|b| *b == 0)
                .next()
                .unwrap_or_default();
            if skip(&String::from_utf8_lossy(login)) {
                continue;
            }
            let Some(date) = self.decode_or_quarantine::<NaiveDate>(&t.running, &k, &v)? else {
                continue;
            };
            let Some(record) = self.job_at(&k)? else {
                continue;
            };
            let (_, dates) = users
                .entry(record.job.login_name.clone())
                .or_insert_with(|| (record.job.owner.clone(), BTreeSet::new()));
            dates.insert(date);
        }
        Ok(users)
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
        let t = self.t()?;
        let seen: BTreeSet<Vec<u8>> = seen.iter().map(job_key_bytes).collect();
        let prefix = format!("{server}\0{login}\0");
        let mut out = Vec::new();
        for kv in t.running.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv?;
            if seen.contains(k.as_ref()) {
                // Listed again: no longer missing.
                t.vanishing.remove(&k)?;
                continue;
            }
            if self.decode_or_quarantine::<NaiveDate>(&t.running, &k, &v)? == Some(date) {
                out.push(k.to_vec());
            }
        }
        Ok(out)
    }

    /// Counts one more read that left the running job `key` out; returns the count so far.
    pub fn note_missing(&self, key: &[u8], now: DateTime<Utc>) -> Result<Missing> {
        let t = self.t()?;
        let mut missing = match t.vanishing.get(key)? {
            Some(v) => self.decode_or_quarantine(&t.vanishing, key, &v)?,
            None => None,
        }
        .unwrap_or(Missing {
            since: now,
            reads: 0,
        });
        missing.reads = missing.reads.saturating_add(1);
        t.vanishing.insert(key, encode(&missing))?;
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
        let t = self.t()?;
        let Some(mut record) = self.job_at(key)? else {
            t.running.remove(key)?;
            t.vanishing.remove(key)?;
            return Ok(None);
        };
        record.job.class = StatusClass::Unknown;
        record.vanished = true;
        record.last_seen = now;
        let alerted = alert(&record.job);
        record.alerted = alerted;
        let result = (&t.jobs, &t.running, &t.outbox).transaction(|(jobs, running, outbox)| {
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
        t.vanishing.remove(key)?;
        Ok(Some((record.job, alerted)))
    }

    /// Every job record listed under `date`.
    pub fn jobs_on(&self, date: NaiveDate) -> Result<Vec<JobRecord>> {
        let mut prefix = date.format("%Y-%m-%d").to_string().into_bytes();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.t()?.by_day.scan_prefix(&prefix) {
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
        let t = self.t()?;
        let end = cutoff.format("%Y-%m-%d").to_string().into_bytes();
        let mut pruned = 0;
        for kv in t.by_day.range(..end) {
            let (k, v) = kv?;
            let Some(sep) = k.iter().position(|b| *b == 0) else {
                self.quarantine(&t.by_day, &k, &v, "not a `date \\0 job` key")?;
                continue;
            };
            let job_key = &k[sep + 1..];
            // A job still running is still polled for (its date stays asked for): its
            // record stays until its end is recorded, else that end would be news to
            // nobody (no alert, no vanished notice). Vanished jobs leave `running`.
            if t.running.contains_key(job_key)? {
                continue;
            }
            t.jobs.remove(job_key)?;
            t.running.remove(job_key)?;
            t.vanishing.remove(job_key)?;
            t.by_day.remove(&k)?;
            pruned += 1;
        }
        // This handle's server's day health (each server prunes its own).
        let (day_start, day_end) = (self.meta_key(META_DAY_PREFIX), self.day_health_key(cutoff));
        for kv in self
            .t()?
            .meta
            .range(day_start.as_bytes()..day_end.as_bytes())
        {
            let (k, _) = kv?;
            t.meta.remove(k)?;
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{classes, day, job, policy};
    use super::*;

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
        assert_eq!(store.outbox_len().unwrap(), 1);
        assert!(store.job(&j.key()).unwrap().is_some());
        store.observe(&j, day(), &policy(&c, 15, false)).unwrap();
        assert_eq!(
            store.outbox_len().unwrap(),
            1,
            "a job seen again queues nothing"
        );
        assert_eq!(store.jobs_on(day()).unwrap().len(), 1);
        assert_eq!(store.prune_before(day()).unwrap(), 0);
        assert_eq!(store.prune_before(day().succ_opt().unwrap()).unwrap(), 1);
        assert!(store.job(&j.key()).unwrap().is_none());
        assert!(store.jobs_on(day()).unwrap().is_empty());
    }

    #[test]
    fn a_job_still_running_outlasts_the_retention_until_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = classes();
        let running = job("2024-06-26-13-00-00", "", None);
        store
            .observe(&running, day(), &policy(&c, 14, false))
            .unwrap();
        let later = day().succ_opt().unwrap();
        assert_eq!(store.prune_before(later).unwrap(), 0);
        assert!(store.job(&running.key()).unwrap().is_some());
        assert_eq!(
            store.running_dates("cbs", "obm").unwrap(),
            BTreeSet::from([day()]),
            "still asked for"
        );
        // It ends long after: alerted as any end, then pruned.
        let failed = job(
            "2024-06-26-13-00-00",
            "RESTORE_STOP_BY_ERROR",
            Some("2024-06-26 23:00:00"),
        );
        let obs = store
            .observe(&failed, day(), &policy(&c, 23, false))
            .unwrap();
        assert!(obs.event.is_some(), "its end is alerted");
        assert_eq!(store.prune_before(later).unwrap(), 1);
        assert!(store.job(&running.key()).unwrap().is_none());
    }
}
