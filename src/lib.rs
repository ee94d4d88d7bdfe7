//! restorewatch watches AhsayCBS restore jobs and tells the team in Discord when one fails.
//!
//! # Layout
//! - [`cbs`]: the backup-server client and its tolerant job model.
//! - [`event`]: what the poller has to tell the chat.
//! - [`store`]: the sled store: jobs seen, the outbox, the watch list, health.
//! - [`sink`]: the `Sink` trait, the console sink and the outbox drain.
//! - [`render`]: events as Discord-limit-safe embeds and plain-text cards.
//! - [`clock`]: "now", injectable.
//! - [`config`]: the TOML file and environment, checked into typed [`config::Settings`].
//! - [`schedule`]: cron schedules in the backup server's time zone.
//! - [`commands`]: what the slash commands do, as plain functions.
//! - [`bot`]: the Discord gateway client and the poise wiring of the commands.
//! - [`mutes`]: alert mutes set from chat.

pub mod app;
pub mod bot;
pub mod cbs;
pub mod clock;
pub mod commands;
pub mod config;
pub mod event;
pub mod mutes;
pub mod poller;
pub mod render;
pub mod schedule;
pub mod simulator;
pub mod sink;
pub mod store;
