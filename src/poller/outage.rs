//! Outages: from a cycle's successful and failed requests, whether the backup server is
//! down (`cbs.down_after` cycles in a row), when it is back, the one notice for each, and
//! the downtime the cycle adds to the day's health.

use super::Poller;
use crate::cbs::CbsError;
use crate::event::{CycleSummary, EventKind, OutageReason, FLAP_WINDOW_MINUTES};
use crate::store::{DownStreak, Outage, StoreError};
use chrono::{DateTime, NaiveDate, Utc};

impl Poller {
    /// Tells the truth about outages. A cycle in which no request succeeded and one
    /// failed for a server-wide reason is a down cycle; `cbs.down_after` of them in a row
    /// open the outage, with one notice (and one more should the reason change). A cycle
    /// with a successful request closes it, with one "recovered" notice naming the past
    /// dates that cycle read (`caught_up`). A cycle of per-user errors only (an unknown
    /// login) changes nothing either way. Returns the outage seconds this cycle adds to
    /// the day's health.
    pub(super) fn track_outage(
        &self,
        summary: &CycleSummary,
        previous_start: Option<DateTime<Utc>>,
        succeeded: u32,
        outage_errors: &[CbsError],
        caught_up: Vec<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        // Downtime counted for this cycle: since the later of the outage start and the
        // previous cycle, so consecutive cycles never count the same minutes twice.
        let down_secs = |outage: &Outage| {
            let from = previous_start.map_or(outage.since, |p| p.max(outage.since));
            (summary.started_at - from).num_seconds().max(0)
        };
        let previous = self.store.outage()?;
        if succeeded > 0 {
            self.store.set_down_streak(None)?;
            let Some(outage) = previous else {
                return Ok(0);
            };
            tracing::info!(server = self.client.server_name(), since = %outage.since, ?caught_up, "the backup server answers again");
            let event = EventKind::CbsRecovered {
                server: Some(self.client.server_name().to_owned()),
                down_since: outage.since,
                recovered_at: summary.started_at,
                caught_up,
                reason: Some(outage.reason),
            };
            self.store.set_outage_with_event(None, event, now)?;
            self.store.set_last_recovery(summary.started_at)?;
            return Ok(down_secs(&outage));
        }
        let Some(first) = outage_errors.first() else {
            // Nothing asked, or only per-user errors: no news about the server.
            return Ok(previous.as_ref().map_or(0, down_secs));
        };
        let streak = match self.store.down_streak()? {
            Some(s) => DownStreak {
                cycles: s.cycles.saturating_add(1),
                ..s
            },
            None => DownStreak {
                cycles: 1,
                since: summary.started_at,
            },
        };
        self.store.set_down_streak(Some(streak))?;
        let reason = first.outage_reason().unwrap_or(OutageReason::Unreachable);
        if streak.cycles < self.config.down_after.max(1) {
            tracing::warn!(
                server = self.client.server_name(),
                cycles = streak.cycles,
                down_after = self.config.down_after,
                error = %first,
                "no CBS request succeeded this cycle"
            );
            return Ok(0);
        }
        match previous {
            // Down, or down for a new reason (say unreachable, then the password expired):
            // one notice per reason, written with the outage record in one transaction.
            Some(outage) if outage.reason == reason => Ok(down_secs(&outage)),
            previous => {
                let outage = Outage {
                    since: previous.as_ref().map_or(streak.since, |o| o.since),
                    reason,
                    error: first.to_string(),
                };
                tracing::error!(server = self.client.server_name(), error = %outage.error, ?reason, "the backup server is unreachable");
                // Down again soon after it came back: a flapping server, told without a
                // ping (its first outage pinged). A new reason while down is no flap.
                let window = chrono::Duration::minutes(FLAP_WINDOW_MINUTES);
                let again_after = match previous {
                    Some(_) => None,
                    None => self
                        .store
                        .last_recovery()?
                        .filter(|&answered| outage.since - answered < window),
                };
                let event = EventKind::CbsUnreachable {
                    server: Some(self.client.server_name().to_owned()),
                    since: outage.since,
                    reason,
                    error: outage.error.clone(),
                    again_after,
                };
                self.store
                    .set_outage_with_event(Some(&outage), event, now)?;
                // The whole streak was down time, counted from its start.
                Ok(previous.as_ref().map_or_else(
                    || {
                        let from = previous_start.map_or(streak.since, |p| p.max(streak.since));
                        (summary.started_at - from).num_seconds().max(0)
                    },
                    &down_secs,
                ))
            }
        }
    }
}
