//! restorewatch watches AhsayCBS restore jobs and tells the team in Discord when one fails.
//!
//! # Layout
//! - [`cbs`]: the backup-server client and its tolerant job model.
//! - [`event`]: what the poller has to tell the chat.
//! - [`store`]: the sled store: jobs seen, the outbox, the watch list, health.
//! - [`sink`]: the `Sink` trait, the console sink and the outbox drain.
//! - [`digest`]: the daily digest of one day's jobs, computed from the store, and its cards.
//! - [`render`]: events as Discord-limit-safe embeds and plain-text cards.
//! - [`discord`]: routing events to channels and delivering them through serenity.
//! - [`clock`]: "now", injectable.
//! - [`config`]: the TOML file and environment, checked into typed [`config::Settings`].
//! - [`schedule`]: cron schedules in the backup server's time zone.
//! - [`simulator`]: a stand-in CBS for tests, the demo and `restorewatch simulate`.
//! - [`discover`]: the users the backup server lists (`[discover]`), kept in the store.
//! - [`poller`]: one poll cycle: which users and dates, what changed, which events.
//! - [`app`]: the running program: parts built from the settings, the schedule loop.
//! - [`check`]: `restorewatch check`, the pre-flight of the config, the CBS and Discord.
//! - [`demo`]: `restorewatch demo`, the whole loop against the built-in simulator.
//! - [`commands`]: what the slash commands do, as plain functions.
//! - [`bot`]: the Discord gateway client and the poise wiring of the commands.
//! - [`gateway`]: whether slash commands are available (the gateway connection's state).
//! - [`mutes`]: alert mutes set from chat.
//! - [`actions`]: the buttons on failure alerts: what their `custom_id`s say.
//! - [`acks`]: who acknowledged which failure, from an alert's button.
//! - [`audit`]: who changed what from chat.
//! - [`metrics`]: the Prometheus metric names and one recording call per thing counted.
//! - [`server`]: the `[server] listen` endpoint: `/healthz` and `/metrics`.
//! - [`heartbeat`]: the dead-man's switch called after every cycle.
//! - [`logging`]: log format and colour on stderr.
//! - [`memory`]: giving freed memory back to the system between poll cycles.

pub mod acks;
pub mod actions;
pub mod app;
pub mod audit;
pub mod bot;
pub mod cbs;
pub mod check;
pub mod clock;
pub mod commands;
pub mod config;
pub mod demo;
pub mod digest;
pub mod discord;
pub mod discover;
pub mod escalation;
pub mod event;
pub mod gateway;
pub mod heartbeat;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod mutes;
pub mod poller;
pub mod render;
pub mod schedule;
pub mod server;
pub mod simulator;
pub mod sink;
pub mod store;
pub mod storm;
pub mod summary;
#[cfg(test)]
mod test_data;
pub mod tz;
