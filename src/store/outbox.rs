//! The outbox: events queued for delivery, kept until a sink acknowledges them. An event
//! that goes with a write elsewhere is queued inside that write's transaction
//! ([`queue_in`]).

use super::record::encode;
use super::{tx_result, Result, Store};
use crate::event::{Event, EventKind};
use crate::metrics;
use chrono::{DateTime, Utc};
use sled::Transactional as _;

/// Queues an event of `kind` in `outbox` inside a transaction (a fresh id, `now`), so it is
/// written together with whatever else the transaction writes, or not at all.
pub(super) fn queue_in(
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

/// Where a fold (the queued events a storm card replaces, 8 bytes of id each) waits in
/// `meta` until they are removed, under the card's id.
const FOLD_PREFIX: &[u8] = b"fold\0";
/// Events read at a time by [`Store::each_pending`], so a backlog is never decoded
/// whole: 50,000 queued alerts are about 40 MiB decoded.
const OUTBOX_PAGE: usize = 1024;
/// Events removed from the outbox in one batch while a fold completes.
const FOLD_BATCH: usize = 512;

fn fold_key(card: u64) -> Vec<u8> {
    [FOLD_PREFIX, &card.to_be_bytes()].concat()
}

impl Store {
    /// Queues an event that no job record goes with (summaries, notices).
    pub fn push_event(&self, kind: EventKind, now: DateTime<Utc>) -> Result<Event> {
        let t = self.t()?;
        let event = Event {
            id: t.db.generate_id()?,
            created_at: now,
            kind,
        };
        t.outbox.insert(event.id.to_be_bytes(), encode(&event))?;
        metrics::event_queued(&event.kind);
        Ok(event)
    }

    /// Rewrites a queued event in place (same id, same place in the outbox). An event no
    /// longer queued (delivered meanwhile) is left alone. Returns whether it was rewritten.
    pub fn update_event(&self, event: &Event) -> Result<bool> {
        let bytes = encode(event);
        let old = (self.t()?.outbox)
            .fetch_and_update(event.id.to_be_bytes(), |old| old.map(|_| bytes.clone()))?;
        Ok(old.is_some())
    }

    /// Replaces queued events by others (a storm's alerts by its card): both or neither,
    /// as delivery sees them. One transaction queues `add` and records `remove` as a
    /// fold in `meta`; the removals then go in batches of 512 (`FOLD_BATCH`), and the
    /// fold is cleared. A crash in between leaves the fold, which `Store::finish_folds`
    /// completes when the store opens, before anything is delivered. (One transaction for it all
    /// held over 300 MiB for a storm of 50,000 alerts: sled keeps every page version a
    /// transaction replaces until it ends.) Returns the events added, in order.
    pub fn replace_events(
        &self,
        remove: &[u64],
        add: &[EventKind],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        let added = self.begin_fold(remove, add, now)?;
        if let Some(first) = added.first() {
            self.finish_fold(&fold_key(first.id))?;
        }
        Ok(added)
    }

    /// The first step of [`Store::replace_events`]: `add` queued and `remove` recorded as
    /// a fold, in one transaction.
    fn begin_fold(
        &self,
        remove: &[u64],
        add: &[EventKind],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        let ids: Vec<u8> = remove.iter().flat_map(|id| id.to_be_bytes()).collect();
        let t = self.t()?;
        let result = (&t.outbox, &t.meta).transaction(|(outbox, meta)| {
            let mut added = Vec::with_capacity(add.len());
            for kind in add {
                added.push(queue_in(outbox, kind.clone(), now)?);
            }
            if let Some(first) = added.first() {
                meta.insert(fold_key(first.id), ids.as_slice())?;
            }
            Ok(added)
        });
        // Not counted as queued again: what it holds was counted when first queued.
        tx_result(result)
    }

    /// Completes the folds a stop left unfinished (see [`Store::replace_events`]).
    /// Returns how many there were.
    pub(super) fn finish_folds(&self) -> Result<usize> {
        let keys: Vec<sled::IVec> = (self.t()?.meta.scan_prefix(FOLD_PREFIX).keys())
            .collect::<std::result::Result<_, _>>()?;
        for key in &keys {
            self.finish_fold(key)?;
        }
        Ok(keys.len())
    }

    fn finish_fold(&self, key: &[u8]) -> Result<()> {
        let t = self.t()?;
        let Some(ids) = t.meta.get(key)? else {
            return Ok(());
        };
        for chunk in ids.chunks(8 * FOLD_BATCH) {
            let mut batch = sled::Batch::default();
            for id in chunk.chunks_exact(8) {
                batch.remove(id);
            }
            t.outbox.apply_batch(batch)?;
        }
        t.meta.remove(key)?;
        Ok(())
    }

    /// Up to `limit` undelivered events, oldest first. An event that does not decode, or
    /// sits under a key that is not its id (so it could never be acknowledged), is
    /// quarantined and the rest are still offered.
    pub fn pending_events(&self, limit: usize) -> Result<Vec<Event>> {
        self.pending_events_after(None, limit)
    }

    /// Calls `f` with every queued event, oldest first, reading 1,024 of them at a time
    /// (`OUTBOX_PAGE`). `f` returning `false` ends the scan.
    pub fn each_pending(&self, mut f: impl FnMut(Event) -> Result<bool>) -> Result<()> {
        let mut after = None;
        loop {
            let page = self.pending_events_after(after, OUTBOX_PAGE)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.id);
            for event in page {
                if !f(event)? {
                    return Ok(());
                }
            }
        }
    }

    /// Like [`Store::pending_events`], starting after the event `after`.
    pub fn pending_events_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        let t = self.t()?;
        let mut out = Vec::with_capacity(limit.min(1024));
        let start = match after {
            Some(id) => std::ops::Bound::Excluded(id.to_be_bytes().to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        for kv in t.outbox.range((start, std::ops::Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            self.shared
                .counters
                .outbox_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(event) = self.decode_or_quarantine::<Event>(&t.outbox, &k, &v)? else {
                continue;
            };
            if k.as_ref() != event.id.to_be_bytes() {
                self.quarantine(&t.outbox, &k, &v, "the key is not the event's id")?;
                continue;
            }
            out.push(event);
        }
        Ok(out)
    }

    /// The queued events with these ids, in the order given; ids no longer queued are
    /// left out.
    pub fn events_by_id(&self, ids: &[u64]) -> Result<Vec<Event>> {
        let t = self.t()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let key = id.to_be_bytes();
            if let Some(v) = t.outbox.get(key)? {
                out.extend(self.decode_or_quarantine::<Event>(&t.outbox, &key, &v)?);
            }
        }
        Ok(out)
    }

    pub fn outbox_len(&self) -> Result<usize> {
        Ok(self.t()?.outbox.len())
    }

    /// Removes delivered events from the outbox.
    pub fn ack(&self, ids: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.to_be_bytes());
        }
        self.t()?.outbox.apply_batch(batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StormJob;

    fn summary(n: u32) -> EventKind {
        EventKind::CycleSummary(crate::event::CycleSummary {
            users_polled: n,
            ..Default::default()
        })
    }

    fn card() -> EventKind {
        EventKind::FailureStorm {
            owner: None,
            jobs: vec![StormJob::from_job(&crate::test_data::job(
                "obm",
                "1",
                crate::tz::Tz::UTC,
                "2024-06-26 09:00:00",
                Some("2024-06-26 10:00:00"),
                "RESTORE_STOP_BY_ERROR",
            ))],
        }
    }

    fn queued(store: &Store) -> Vec<EventKind> {
        let events = store.pending_events(usize::MAX).unwrap();
        events.into_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_fold_removes_more_events_than_a_batch_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let count = 2 * FOLD_BATCH as u32 + 7;
        let ids: Vec<u64> = (0..count)
            .map(|n| store.push_event(summary(n), now).unwrap().id)
            .collect();
        let kept = store.push_event(summary(count), now).unwrap();
        let added = store.replace_events(&ids, &[card()], now).unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(queued(&store), vec![kept.kind, card()]);
        assert_eq!(store.t().unwrap().meta.scan_prefix(FOLD_PREFIX).count(), 0);
    }

    #[test]
    fn a_fold_a_stop_interrupted_is_finished_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        {
            let store = Store::open(dir.path()).unwrap();
            let ids: Vec<u64> = (0..FOLD_BATCH as u32 + 3)
                .map(|n| store.push_event(summary(n), now).unwrap().id)
                .collect();
            // The card is in, the alerts it replaces not yet removed: what a stop between
            // the two steps leaves.
            store.begin_fold(&ids, &[card()], now).unwrap();
            assert_eq!(store.outbox_len().unwrap(), FOLD_BATCH + 4);
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(queued(&store), vec![card()]);
        assert_eq!(store.t().unwrap().meta.scan_prefix(FOLD_PREFIX).count(), 0);
    }
}
