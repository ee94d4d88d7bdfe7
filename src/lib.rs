//! restorewatch watches AhsayCBS restore jobs and tells the team in Discord when one fails.
//!
//! # Layout
//! - [`cbs`]: the backup-server client and its tolerant job model.
//! - [`event`]: what the poller has to tell the chat.
//! - [`store`]: the sled store: jobs seen, the outbox, the watch list, health.
//! - [`sink`]: the `Sink` trait, the console sink and the outbox drain.
//! - [`digest`]: the daily digest of one day's jobs, computed from the store, and its cards.
//! - [`render`]: events as Discord-limit-safe embeds and plain-text cards.
//! - [`clock`]: "now", injectable.

pub mod cbs;
pub mod clock;
pub mod digest;
pub mod event;
pub mod render;
pub mod sink;
pub mod store;
