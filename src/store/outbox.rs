//! The outbox: events queued for delivery, kept until a sink acknowledges them. An event
//! that goes with a write elsewhere is queued inside that write's transaction
//! ([`queue_in`]).

use super::record::encode;
use super::{tx_result, Result, Store};
use crate::event::{Event, EventKind};
use crate::metrics;
use chrono::{DateTime, Utc};

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

impl Store {
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
}
