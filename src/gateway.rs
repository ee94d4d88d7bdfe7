//! Whether slash commands are available: the state of the Discord gateway connection, set
//! by [`crate::bot`] and read by `/status` (and anything else that reports health).
//!
//! Polling and alert delivery use Discord's REST API only, so they carry on while the
//! gateway is down; what is lost is the slash commands, and this says so and why.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// The gateway connection's state, shared between the bot and its readers.
#[derive(Clone, Debug, Default)]
pub struct GatewayHealth(Arc<Mutex<GatewayState>>);

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
    pub fn get(&self) -> GatewayState {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_connected(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = GatewayState::Connected;
    }

    /// Records the failure; an outage already recorded keeps its start time.
    pub fn set_unavailable(&self, now: DateTime<Utc>, reason: String) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let since = match &*state {
            GatewayState::Unavailable { since, .. } => *since,
            _ => now,
        };
        *state = GatewayState::Unavailable { since, reason };
    }

    /// "unavailable since ...: reason" while slash commands are unavailable.
    pub fn unavailable(&self) -> Option<String> {
        match self.get() {
            GatewayState::Unavailable { since, reason } => Some(format!(
                "slash commands unavailable since {}: {reason}",
                since.format("%Y-%m-%d %H:%M UTC")
            )),
            GatewayState::Connecting | GatewayState::Connected => None,
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
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        health.set_unavailable(t0, "connection refused".into());
        health.set_unavailable(t0 + chrono::Duration::minutes(5), "timed out".into());
        assert_eq!(
            health.unavailable().as_deref(),
            Some("slash commands unavailable since 2026-03-01 08:00 UTC: timed out")
        );
        health.set_connected();
        assert_eq!(health.get(), GatewayState::Connected);
        assert_eq!(health.unavailable(), None);
    }
}
