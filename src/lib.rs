//! restorewatch watches AhsayCBS restore jobs and tells the team in Discord when one fails.
//!
//! # Layout
//! - [`cbs`]: the backup-server client and its tolerant job model.
//! - [`event`]: what the poller has to tell the chat.
//! - [`store`]: the sled store: jobs seen, the outbox, the watch list, health.
//! - [`sink`]: the `Sink` trait, the console sink and the outbox drain.
//! - [`render`]: events as Discord-limit-safe embeds and plain-text cards.
//! - [`discord`]: routing events to channels and delivering them through serenity.
//! - [`clock`]: "now", injectable.
//! - [`config`]: the TOML file and environment, checked into typed [`config::Settings`].
//! - [`schedule`]: cron schedules in the backup server's time zone.

pub mod app;
pub mod cbs;
pub mod clock;
pub mod config;
pub mod discord;
pub mod event;
pub mod poller;
pub mod render;
pub mod schedule;
pub mod simulator;
pub mod sink;
pub mod store;
