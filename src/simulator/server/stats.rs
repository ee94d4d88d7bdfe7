//! Request accounting: the [`Stats`] counters every handler feeds, and the [`InFlight`]
//! guard that counts a request while it is being answered.

use super::lock;
use chrono::NaiveDate;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Request counters.
#[derive(Default)]
pub(crate) struct Stats {
    pub received: AtomicU64,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Requests per (LoginName, RestoreDate), for requests that named both readably.
    pub per_user_date: Mutex<HashMap<(String, NaiveDate), u64>>,
    /// When the last [`ARRIVALS_KEPT`] requests arrived (tokio time), oldest first.
    pub arrivals: Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

/// How many arrival times the simulator keeps, for rate checks.
pub const ARRIVALS_KEPT: usize = 4096;

/// Counts a request as in flight for as long as it lives.
pub(super) struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    pub(super) fn enter(stats: &'a Stats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        stats.received.fetch_add(1, Ordering::SeqCst);
        let mut arrivals = lock(&stats.arrivals);
        if arrivals.len() == ARRIVALS_KEPT {
            arrivals.pop_front();
        }
        arrivals.push_back(tokio::time::Instant::now());
        drop(arrivals);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
