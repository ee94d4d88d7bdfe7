//! restorewatch watches AhsayCBS restore jobs and tells the team in Discord when one fails.
//!
//! # Layout
//! - [`cbs`]: the backup-server client and its tolerant job model.
//! - [`simulator`]: a stand-in CBS for tests, the demo and `restorewatch simulate`.
//! - [`event`]: what the poller has to tell the chat.
//! - [`clock`]: "now", injectable.
//! - [`config`]: the TOML file and environment, checked into typed [`config::Settings`].
//! - [`schedule`]: cron schedules in the backup server's time zone.

pub mod cbs;
pub mod clock;
pub mod config;
pub mod event;
pub mod schedule;
