//! Interactions the gateway delivers twice run once.
//!
//! After a resume the gateway may replay events the bot had already received, an
//! `INTERACTION_CREATE` among them: without a check, a replayed `/watch add`, `/mute` or
//! *Acknowledge* press would change the state a second time and answer twice. [`Dedup`]
//! wraps poise's framework (serenity's single entry point for every event) and drops an
//! interaction whose id it has seen among the last [`REMEMBERED_INTERACTIONS`], before
//! anything (commands, autocomplete, buttons) sees it.

use poise::serenity_prelude as serenity;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many interaction ids are remembered. A replay follows the original within a
/// resume (seconds to minutes), while a team's bot sees a few interactions a minute.
pub(super) const REMEMBERED_INTERACTIONS: usize = 4096;

/// The last `capacity` ids seen, oldest first out.
pub(super) struct RecentIds {
    capacity: usize,
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

impl RecentIds {
    pub(super) fn new(capacity: usize) -> Self {
        RecentIds {
            capacity,
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
        }
    }

    /// Remembers `id`; `false` when it was already remembered (a replay).
    pub(super) fn first_time(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }
}

/// A serenity framework that passes every event to `inner` except an interaction already
/// passed on.
pub(super) struct Dedup<F> {
    inner: F,
    recent: Mutex<RecentIds>,
}

impl<F> Dedup<F> {
    pub(super) fn new(inner: F) -> Self {
        Dedup {
            inner,
            recent: Mutex::new(RecentIds::new(REMEMBERED_INTERACTIONS)),
        }
    }

    /// Whether `event` is an interaction seen before.
    fn is_replay(&self, event: &serenity::FullEvent) -> bool {
        let serenity::FullEvent::InteractionCreate { interaction } = event else {
            return false;
        };
        let id = interaction.id().get();
        // A poisoned lock only means another dispatch panicked mid-insert; the set is
        // still a set.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.first_time(id) {
            return false;
        }
        tracing::info!(interaction = id, "ignored an interaction delivered again");
        true
    }
}

#[poise::async_trait]
impl<F: serenity::Framework> serenity::Framework for Dedup<F> {
    async fn init(&mut self, client: &serenity::Client) {
        self.inner.init(client).await;
    }

    async fn dispatch(&self, ctx: serenity::Context, event: serenity::FullEvent) {
        if !self.is_replay(&event) {
            self.inner.dispatch(ctx, event).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_and_forgotten_past_the_capacity() {
        let mut recent = RecentIds::new(3);
        assert!(recent.first_time(1));
        assert!(!recent.first_time(1), "a replay");
        assert!(recent.first_time(2));
        assert!(recent.first_time(3));
        assert!(!recent.first_time(2));
        assert!(recent.first_time(4), "pushes 1 out");
        assert!(recent.first_time(1), "forgotten");
        assert_eq!((recent.order.len(), recent.seen.len()), (3, 3));
        assert!(!recent.first_time(4));
    }
}
