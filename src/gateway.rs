//! Whether slash commands are available: the state of the Discord gateway connection, set
//! by [`crate::bot`] and read by `/status` (and anything else that reports health).
//!
//! Polling and alert delivery use Discord's REST API only, so they carry on while the
//! gateway is down; what is lost is the slash commands, and this says so and why.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// The gateway connection's state, shared between the bot and its readers.
#[derive(Clone, Debug, Default)]
pub struct GatewayHealth(Arc<Mutex<Health>>);

#[derive(Debug, Default)]
struct Health {
    state: GatewayState,
    /// The last outage that has ended: since, until, reason. `/status` can only answer
    /// once the gateway is back, so this is what it usually shows.
    last_outage: Option<(DateTime<Utc>, DateTime<Utc>, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GatewayState {
    /// Not connected yet, and no failure so far.
    #[default]
    Connecting,
    /// Connected and identified: slash commands are answered.
    Connected,
    /// Slash commands are unavailable, since `since`, for `reason`.
    Unavailable {
        since: DateTime<Utc>,
        reason: String,
    },
}

impl GatewayHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> GatewayState {
        self.lock().state.clone()
    }

    /// Connected (again) at `now`; an outage before it becomes the last outage.
    pub fn set_connected(&self, now: DateTime<Utc>) {
        let mut health = self.lock();
        if let GatewayState::Unavailable { since, reason } = &health.state {
            health.last_outage = Some((*since, now, reason.clone()));
        }
        health.state = GatewayState::Connected;
    }

    /// Records the failure; an outage already recorded keeps its start time.
    pub fn set_unavailable(&self, now: DateTime<Utc>, reason: String) {
        let mut health = self.lock();
        let since = match &health.state {
            GatewayState::Unavailable { since, .. } => *since,
            _ => now,
        };
        health.state = GatewayState::Unavailable { since, reason };
    }

    /// "slash commands unavailable since ...: reason" during an outage, "... were
    /// unavailable from ... to ...: reason" after one; `None` when there was none.
    pub fn unavailable(&self) -> Option<String> {
        let at = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        let health = self.lock();
        match (&health.state, &health.last_outage) {
            (GatewayState::Unavailable { since, reason }, _) => Some(format!(
                "slash commands unavailable since {}: {reason}",
                at(*since)
            )),
            (_, Some((since, until, reason))) => Some(format!(
                "slash commands were unavailable from {} to {}: {reason}",
                at(*since),
                at(*until)
            )),
            (_, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_outage_keeps_its_start_and_ends_on_connect() {
        let health = GatewayHealth::default();
        assert_eq!(health.unavailable(), None);
        health.set_connected(Utc.with_ymd_and_hms(2026, 3, 1, 7, 0, 0).unwrap());
        assert_eq!(health.unavailable(), None);
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        health.set_unavailable(t0, "connection refused".into());
        health.set_unavailable(t0 + chrono::Duration::minutes(5), "timed out".into());
        assert_eq!(
            health.unavailable().as_deref(),
            Some("slash commands unavailable since 2026-03-01 08:00 UTC: timed out")
        );
        health.set_connected(t0 + chrono::Duration::minutes(7));
        assert_eq!(health.get(), GatewayState::Connected);
        assert_eq!(
            health.unavailable().as_deref(),
            Some(
                "slash commands were unavailable from 2026-03-01 08:00 UTC to \
                 2026-03-01 08:07 UTC: timed out"
            )
        );
    }
}
