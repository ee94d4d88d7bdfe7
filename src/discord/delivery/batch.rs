//! Batches: the events one packed message carries, recorded in a sled tree of their own
//! before the message is posted (see the [module docs](super)). A batch's nonce is derived
//! from its event ids, so every resend of it is the same message under the same nonce;
//! a batch is forgotten once its events have left the outbox, and one that does not decode
//! is quarantined.

use super::message::Newer;
use super::DiscordSink;
use crate::event::Event;
use crate::render::pack_items;
use crate::sink::SinkError;
use serde::{Deserialize, Serialize};
use serenity::all::ChannelId;

/// The sled tree holding batches (see the module docs).
pub(super) const BATCH_TREE: &str = "discord_batches";

/// A batch: the events one packed message carries (more than one message only when a single
/// event is too big for one, which today's rendering never makes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Batch {
    channel: u64,
    pub(super) ids: Vec<u64>,
    /// Messages of the batch Discord accepted so far.
    pub(super) parts_sent: usize,
    /// Every message accepted (or the batch dropped after a 400).
    pub(super) done: bool,
    /// Dropped after a 400: its events leave the outbox undelivered. (Absent in batches
    /// recorded by earlier versions, which never kept a dropped batch apart.)
    #[serde(default)]
    pub(super) dropped: bool,
    /// What the message of the next part to post must be newer than to be found by a
    /// read-back: recorded before the first post, then moved past each part Discord
    /// accepts. (Absent in batches recorded by earlier versions: no bound.)
    #[serde(default)]
    pub(super) newer: Newer,
}

impl Batch {
    /// Derived from the store's install id and the event ids only, so the same batch
    /// always gets the same nonce: `{install}{hash of all ids}`, plus `.{part}` after the
    /// first message. Every id counts, so two batches that share their first event and
    /// their size (a batch split after a 400) never share a nonce. The install id keeps two
    /// bots sharing a token (or a wiped state directory) from reusing each other's nonces;
    /// it is shortened only as far as Discord's 25-character limit needs.
    pub(super) fn nonce(&self, install: &str, part: usize) -> String {
        use std::hash::Hasher as _;
        // SipHash-1-3 with fixed keys: the same ids give the same hash in every release.
        let mut hasher = siphasher::sip::SipHasher13::new();
        for id in &self.ids {
            hasher.write_u64(*id);
        }
        let hash = hasher.finish() >> (64 - NONCE_HASH_BITS);
        let mut tail = format!("{hash:0width$x}", width = NONCE_HASH_BITS as usize / 4);
        if part > 0 {
            tail.push_str(&format!(".{part}"));
        }
        let room = NONCE_MAX_CHARS.saturating_sub(tail.len());
        let prefix: String = install.chars().take(room).collect();
        format!("{prefix}{tail}")
    }

    fn key(&self) -> [u8; 16] {
        batch_key(
            ChannelId::new(self.channel),
            self.ids.first().copied().unwrap_or_default(),
        )
    }
}

/// The sled tree holding, per channel, the id of the last message Discord accepted from
/// us there (8 bytes of channel id, big-endian, to 8 bytes of message id).
pub(super) const LAST_POSTED_TREE: &str = "discord_last_posted";

/// Discord's limit on a message nonce (characters).
const NONCE_MAX_CHARS: usize = 25;
/// Bits of the id hash in a nonce: 13 hex digits, leaving room for the install id and a
/// part number.
const NONCE_HASH_BITS: u32 = 52;

/// Batches are keyed by channel and first event id.
fn batch_key(channel: ChannelId, first_id: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&channel.get().to_be_bytes());
    key[8..].copy_from_slice(&first_id.to_be_bytes());
    key
}

impl DiscordSink {
    /// The batch tree (see [`Store::tree`](crate::store::Store::tree)).
    fn batches(&self) -> Result<sled::Tree, SinkError> {
        (self.store.tree(BATCH_TREE))
            .map_err(|e| SinkError(format!("opening the delivery tree: {e}")))
    }

    /// Per channel, the id of the last message Discord accepted from us there.
    fn last_posted_tree(&self) -> Result<sled::Tree, SinkError> {
        (self.store.tree(LAST_POSTED_TREE))
            .map_err(|e| SinkError(format!("opening the delivery tree: {e}")))
    }

    /// The id of the last message Discord accepted from us in `channel` (0: none known).
    pub(super) fn last_posted(&self, channel: ChannelId) -> u64 {
        let stored = (self.last_posted_tree().ok())
            .and_then(|tree| tree.get(channel.get().to_be_bytes()).ok());
        let bytes = stored.flatten().and_then(|v| <[u8; 8]>::try_from(&*v).ok());
        bytes.map_or(0, u64::from_be_bytes)
    }

    /// Remembers `message` as the last one Discord accepted from us in `channel`. Not
    /// flushed here: the batch saved next is, and a lost record only widens the read-back
    /// to the clock's bound.
    pub(super) fn note_posted(&self, channel: ChannelId, message: u64) -> Result<(), SinkError> {
        if message <= self.last_posted(channel) {
            return Ok(());
        }
        self.last_posted_tree()?
            .insert(channel.get().to_be_bytes(), &message.to_be_bytes())
            .map_err(|e| SinkError(format!("saving the last message id: {e}")))?;
        Ok(())
    }

    pub(super) fn save(&self, batch: &Batch) -> Result<(), SinkError> {
        let bytes = serde_json::to_vec(batch).map_err(|e| SinkError(e.to_string()))?;
        let batches = self.batches()?;
        batches
            .insert(batch.key(), bytes)
            .map_err(|e| SinkError(format!("saving a delivery batch: {e}")))?;
        // On disk before the post: a crash after it must find the same batch (and nonce).
        // Synchronous on purpose: sled's async flush waits outside tokio.
        batches
            .flush()
            .map_err(|e| SinkError(format!("saving a delivery batch: {e}")))?;
        Ok(())
    }

    /// A recorded batch; one that does not decode is quarantined (`None`).
    fn read_batch(&self, key: &[u8], value: &[u8]) -> Result<Option<Batch>, SinkError> {
        match serde_json::from_slice::<Batch>(value) {
            Ok(batch) => Ok(Some(batch)),
            Err(e) => {
                self.store
                    .quarantine(&self.batches()?, key, value, &e.to_string())
                    .map_err(|e| SinkError(e.to_string()))?;
                Ok(None)
            }
        }
    }

    /// Forgets batches whose events have left the outbox. The drain offers a contiguous
    /// slice of the outbox, so a batch id inside the offered range but not offered is gone;
    /// and so is any id below the oldest event still queued.
    pub(super) fn forget_delivered(&self, offered: &[Event]) -> Result<(), SinkError> {
        let oldest = self
            .store
            .pending_events(1)
            .map_err(|e| SinkError(e.to_string()))?
            .first()
            .map(|e| e.id);
        let (Some(low), Some(high)) = (
            offered.iter().map(|e| e.id).min(),
            offered.iter().map(|e| e.id).max(),
        ) else {
            return Ok(());
        };
        let batches = self.batches()?;
        for kv in batches.iter() {
            let (key, value) = kv.map_err(|e| SinkError(e.to_string()))?;
            let Some(batch) = self.read_batch(&key, &value)? else {
                continue;
            };
            let below_queue = oldest.is_none_or(|o| batch.ids.iter().all(|id| *id < o));
            let gone_from_slice = batch
                .ids
                .iter()
                .all(|id| (low..=high).contains(id) && !offered.iter().any(|e| e.id == *id));
            if below_queue || gone_from_slice {
                batches.remove(key).map_err(|e| SinkError(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The batch starting at `events[0]`: the recorded one, or a new one (saved). A
    /// recorded batch may reach past `events` (the drain's window now ends inside it).
    /// The flag says whether the batch was recorded before: a post of it may have been
    /// cut short (a crash, a lost answer) after Discord created the message.
    pub(super) fn batch_at(
        &self,
        channel: ChannelId,
        events: &[&Event],
    ) -> Result<(Batch, bool), SinkError> {
        let key = batch_key(channel, events[0].id);
        let recorded = match self
            .batches()?
            .get(key)
            .map_err(|e| SinkError(e.to_string()))?
        {
            Some(v) => self.read_batch(&key, &v)?,
            None => None,
        };
        if let Some(batch) = recorded {
            // Offered in order as far as the window goes: the same batch.
            let offered = events.iter().map(|e| e.id);
            if batch.ids.iter().copied().zip(offered).all(|(a, b)| a == b) {
                return Ok((batch, true));
            }
            // A different set under the same first event cannot have been posted whole;
            // start afresh.
        }
        let first = pack_items(self.items(events), &self.render)
            .into_iter()
            .next()
            .map_or(events.len(), |p| p.items.end);
        let batch = Batch {
            channel: channel.get(),
            ids: events[..first].iter().map(|e| e.id).collect(),
            parts_sent: 0,
            done: false,
            dropped: false,
            newer: Newer::now(self.last_posted(channel)),
        };
        self.save(&batch)?;
        Ok((batch, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_follow_the_event_ids_and_fit_25_chars() {
        let batch = |ids: Vec<u64>| Batch {
            channel: 1,
            ids,
            parts_sent: 0,
            done: false,
            dropped: false,
            newer: Newer::default(),
        };
        let first = batch(vec![10, 11, 12]).nonce("1f2e3d4c", 0);
        assert_eq!(first.len(), 21);
        assert!(first.starts_with("1f2e3d4c"), "{first}");
        assert_eq!(
            batch(vec![10, 11, 12]).nonce("1f2e3d4c", 0),
            first,
            "stable"
        );
        assert_eq!(
            batch(vec![10, 11, 12]).nonce("1f2e3d4c", 1),
            format!("{first}.1")
        );
        // Same first id and count, another id in the middle: another nonce.
        assert_ne!(batch(vec![10, 13, 12]).nonce("1f2e3d4c", 0), first);
        assert_ne!(batch(vec![10, 11]).nonce("1f2e3d4c", 0), first);
        assert_ne!(
            batch(vec![10, 11, 12]).nonce("1f2e3d4c", 0),
            batch(vec![10, 11, 12]).nonce("99999999", 0),
            "another install never reuses the nonce"
        );
        let worst = batch((u64::MAX - 255..=u64::MAX).collect()).nonce("1f2e3d4c", 99);
        assert!(worst.chars().count() <= 25, "{worst}");
    }
}
