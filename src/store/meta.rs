//! Single values in the `meta` tree: the last cycle and each day's poller health, the down
//! streak and the outage, the digest day, the install id, the watched, erroring and
//! refused names, and the unreadable reply items already reported. Per-server values sit under the handle's server (see
//! [`Store::for_server`]).

use super::outbox::queue_in;
use super::record::encode;
use super::{tx_result, Result, Store};
use crate::event::{Event, EventKind, OutageReason};
use crate::metrics;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::Transactional;
use std::collections::BTreeSet;

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

/// The reply items of one (user, date) that could not be read, as the poller last saw
/// them: stable hashes of their raw text, so one that comes back every cycle is told once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableSeen {
    pub login: String,
    pub date: NaiveDate,
    pub items: BTreeSet<u64>,
}

const META_LAST_CYCLE: &str = "last_cycle";
const META_OUTAGE: &str = "outage";
const META_ERROR_LOGINS: &str = "error_logins";
const META_REFUSED: &str = "refused_destinations";
const META_WATCHED: &str = "watched_logins";
pub(super) const META_INSTALL_ID: &str = "install_id";
const META_LAST_DIGEST: &str = "last_digest_day";
const META_DOWN_STREAK: &str = "down_streak";
const META_LAST_RECOVERY: &str = "last_recovery";
const META_PRUNE_HELD: &str = "prune_held_since";
const META_UNREADABLE_SEEN: &str = "unreadable_seen";
pub(super) const META_DAY_PREFIX: &str = "day:";

impl Store {
    /// A single value; one that does not decode is quarantined (`None`).
    pub(super) fn meta_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let t = self.t()?;
        match t.meta.get(key)? {
            Some(v) => self.decode_or_quarantine(&t.meta, key.as_bytes(), &v),
            None => Ok(None),
        }
    }

    pub(super) fn meta_put<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.t()?.meta.insert(key, encode(value))?;
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

    pub(super) fn day_health_key(&self, day: NaiveDate) -> String {
        self.meta_key(&format!("{META_DAY_PREFIX}{}", day.format("%Y-%m-%d")))
    }

    /// Since when pruning waits, after the clock jumped between two cycles (see the
    /// poller).
    pub fn prune_held_since(&self) -> Result<Option<DateTime<Utc>>> {
        self.meta_get(&self.meta_key(META_PRUNE_HELD))
    }

    pub fn set_prune_held_since(&self, since: Option<DateTime<Utc>>) -> Result<()> {
        match since {
            Some(at) => self.meta_put(&self.meta_key(META_PRUNE_HELD), &at),
            None => {
                self.t()?.meta.remove(self.meta_key(META_PRUNE_HELD))?;
                Ok(())
            }
        }
    }

    /// When this handle's server last answered again after an outage.
    pub fn last_recovery(&self) -> Result<Option<DateTime<Utc>>> {
        self.meta_get(&self.meta_key(META_LAST_RECOVERY))
    }

    pub fn set_last_recovery(&self, at: DateTime<Utc>) -> Result<()> {
        self.meta_put(&self.meta_key(META_LAST_RECOVERY), &at)
    }

    pub fn down_streak(&self) -> Result<Option<DownStreak>> {
        self.meta_get(&self.meta_key(META_DOWN_STREAK))
    }

    pub fn set_down_streak(&self, streak: Option<DownStreak>) -> Result<()> {
        match streak {
            Some(s) => self.meta_put(&self.meta_key(META_DOWN_STREAK), &s),
            None => {
                self.t()?.meta.remove(self.meta_key(META_DOWN_STREAK))?;
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
        let t = self.t()?;
        let result = (&t.meta, &t.outbox).transaction(|(meta, outbox)| {
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
        let t = self.t()?;
        let result = (&t.meta, &t.outbox).transaction(|(meta, outbox)| {
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
        let _ = self.t()?.meta.compare_and_swap(
            META_INSTALL_ID,
            None as Option<&[u8]>,
            Some(encode(&fresh)),
        )?;
        Ok(self.meta_get(META_INSTALL_ID)?.unwrap_or(fresh))
    }

    /// The logins the last cycle polled. Should that record be lost, the users with a
    /// poll state stand in for it, so nobody is baselined (silenced) again.
    pub fn watched_logins(&self) -> Result<BTreeSet<String>> {
        let stored = self.t()?.meta.contains_key(self.meta_key(META_WATCHED))?;
        match self.meta_get(&self.meta_key(META_WATCHED))? {
            Some(logins) => Ok(logins),
            None if stored => self
                .users_tree()?
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

    /// The unreadable reply items already reported, per (user, date).
    pub fn unreadable_seen(&self) -> Result<Vec<UnreadableSeen>> {
        Ok(self
            .meta_get(&self.meta_key(META_UNREADABLE_SEEN))?
            .unwrap_or_default())
    }

    pub fn set_unreadable_seen(&self, seen: &[UnreadableSeen]) -> Result<()> {
        self.meta_put(&self.meta_key(META_UNREADABLE_SEEN), &seen)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::day;
    use super::*;
    use chrono::TimeZone;

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
