//! Watching the gateway connection while the bot runs. Once connected, serenity reconnects
//! a lost gateway by itself (resume, then a fresh identify every few seconds), logging only
//! its own warnings, and nothing reaches [`GatewayHealth`]. So the shard manager's view of
//! its shards is read every [`SHARD_CHECK_EVERY`]: a shard that is not connected for longer
//! than [`GATEWAY_LOST_GRACE`] (a resume takes a second or two, so a blip stays quiet) makes
//! slash commands unavailable, with one error line; connected again, they are available
//! again, with one info line.

use crate::clock::SharedClock;
use crate::gateway::{GatewayHealth, GatewayState};
use chrono::{DateTime, Utc};
use poise::serenity_prelude as serenity;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long the gateway may stay disconnected after a successful connect before slash
/// commands are reported unavailable.
pub const GATEWAY_LOST_GRACE: Duration = Duration::from_secs(30);
/// How often the shards' connection stage is read.
const SHARD_CHECK_EVERY: Duration = Duration::from_secs(2);
/// What `/healthz` and `/status` give as the reason.
const GATEWAY_LOST_REASON: &str = "gateway disconnected (reconnecting)";

/// What changed, as one observation of the shards shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Disconnected for the whole grace: since this time.
    Lost(DateTime<Utc>),
    /// Connected again after a reported loss.
    Back,
}

/// The watch's memory between observations: a plain state machine, fed the connection
/// state and the time, so the rules are tested without a gateway.
#[derive(Debug, Default)]
struct LossWatch {
    /// A loss can only follow a connection: the first connect's failures are reported
    /// by the start-up probe.
    seen_connected: bool,
    /// When the shard was first seen disconnected (monotonic, and as the wall clock shows).
    down_since: Option<(Instant, DateTime<Utc>)>,
    reported: bool,
}

impl LossWatch {
    /// `connected`: the shards now; `ready`: whether the health shows a connection made
    /// (the first READY sets it), so a loss right after the connect, before any
    /// observation saw the shard connected, still counts.
    fn observe(
        &mut self,
        connected: bool,
        ready: bool,
        at: Instant,
        now: DateTime<Utc>,
    ) -> Option<Change> {
        self.seen_connected |= ready;
        if connected {
            self.seen_connected = true;
            self.down_since = None;
            return std::mem::take(&mut self.reported).then_some(Change::Back);
        }
        if !self.seen_connected {
            return None;
        }
        let (since, since_utc) = *self.down_since.get_or_insert((at, now));
        if self.reported || at.duration_since(since) < GATEWAY_LOST_GRACE {
            return None;
        }
        self.reported = true;
        Some(Change::Lost(since_utc))
    }
}

/// Whether every shard has a runner that is connected. A shard being restarted has no
/// runner until its new connection is up.
async fn shards_connected(manager: &serenity::ShardManager) -> bool {
    let runners = manager.runners.lock().await;
    !runners.is_empty()
        && runners
            .values()
            .all(|r| r.stage == serenity::ConnectionStage::Connected)
}

/// Watches the shards until dropped (it never ends on its own), reporting a lost gateway to
/// `health` and the log as the module docs say.
pub(super) async fn watch_shards(
    manager: Arc<serenity::ShardManager>,
    health: GatewayHealth,
    clock: SharedClock,
) -> Infallible {
    let mut watch = LossWatch::default();
    loop {
        tokio::time::sleep(SHARD_CHECK_EVERY).await;
        let connected = shards_connected(&manager).await;
        let ready = health.get() == GatewayState::Connected;
        match watch.observe(connected, ready, Instant::now(), clock.now()) {
            Some(Change::Lost(since)) => {
                tracing::error!(
                    %since,
                    grace = %humantime::format_duration(GATEWAY_LOST_GRACE),
                    "slash commands unavailable: the Discord gateway connection was lost and \
                     has not come back; alerts still go out, reconnecting"
                );
                health.set_unavailable(since, GATEWAY_LOST_REASON.to_owned());
            }
            Some(Change::Back) => {
                tracing::info!("the Discord gateway is connected again; slash commands work");
                health.set_connected(clock.now());
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_loss_is_reported_once_after_the_grace_and_its_end_once() {
        let t0 = Instant::now();
        let utc0 = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        let at = |secs: u64| {
            (
                t0 + Duration::from_secs(secs),
                utc0 + chrono::Duration::seconds(secs as i64),
            )
        };
        let mut watch = LossWatch::default();
        let mut observe = |connected: bool, secs: u64| {
            let (i, u) = at(secs);
            watch.observe(connected, false, i, u)
        };
        assert_eq!(
            observe(false, 0),
            None,
            "not connected yet: the probe's job"
        );
        assert_eq!(observe(false, 60), None);
        assert_eq!(observe(true, 62), None);
        // A blip shorter than the grace stays quiet.
        assert_eq!(observe(false, 64), None);
        assert_eq!(observe(true, 80), None);
        // A real loss: reported once the grace has passed, with its start.
        assert_eq!(observe(false, 100), None);
        assert_eq!(observe(false, 129), None);
        let (_, since) = at(100);
        assert_eq!(observe(false, 130), Some(Change::Lost(since)));
        assert_eq!(observe(false, 200), None, "said once");
        assert_eq!(observe(true, 202), Some(Change::Back));
        assert_eq!(observe(true, 204), None, "said once");
    }

    #[test]
    fn a_loss_before_the_first_look_counts_once_ready_was_seen() {
        let t0 = Instant::now();
        let utc0 = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        let mut watch = LossWatch::default();
        // READY came and went between two looks: the shard was never seen connected.
        assert_eq!(watch.observe(false, true, t0, utc0), None);
        let later = t0 + GATEWAY_LOST_GRACE;
        assert_eq!(
            watch.observe(false, false, later, utc0),
            Some(Change::Lost(utc0))
        );
    }
}
