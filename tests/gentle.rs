//! Gentle on the backup server: never more than `cbs.max_concurrency` requests in flight,
//! and never more than `cbs.max_requests_per_second` in any second, checked at the
//! simulator on tokio's paused clock (the simulated latency and the rate limiter's waits
//! are tokio sleeps, so the timing is exact, not a race).

mod support;

use chrono::{TimeZone, Utc};
use restorewatch::simulator::Faults;
use std::num::NonZeroU32;
use std::time::Duration;
use support::world::Harness;

const USERS: usize = 60;

async fn harness(max_concurrency: usize, latency_ms: u64) -> Harness {
    let users: Vec<&'static str> = (0..USERS)
        .map(|i| &*Box::leak(format!("user{i:02}").into_boxed_str()))
        .collect();
    let mut h = Harness::start(&users, Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()).await;
    h.max_concurrency = max_concurrency;
    h.sim.set_faults(Faults {
        latency: Duration::from_millis(latency_ms),
        ..Faults::default()
    });
    h
}

/// The most requests that arrived within any one second (a window closed at its start,
/// open at its end).
fn busiest_second(arrivals: &[tokio::time::Instant]) -> usize {
    (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|t| t.duration_since(arrivals[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_is_never_exceeded_and_concurrency_stays_bounded() {
    // Slow replies: without the rate limit, 4 in flight for 400 ms is 10 per second.
    let mut h = harness(4, 400).await;
    h.max_requests_per_second = NonZeroU32::new(7);
    let started = tokio::time::Instant::now();
    let r = h.poller().cycle().await.unwrap();
    assert!(r.ok(), "{:?}", r.summary.errors);
    assert_eq!(h.sim.requests_served(), USERS as u64);
    assert!(h.sim.max_in_flight() <= 4, "{}", h.sim.max_in_flight());
    let arrivals = h.sim.arrivals();
    assert_eq!(arrivals.len(), USERS);
    assert_eq!(
        busiest_second(&arrivals),
        7,
        "the ceiling is reached, never passed"
    );
    // 60 requests at 7 per second, evenly spaced: the last leaves 59/7 s after the first.
    assert!(started.elapsed() >= Duration::from_millis(59_000 / 7));
}

#[tokio::test(start_paused = true)]
async fn without_a_rate_limit_only_concurrency_bounds_the_load() {
    // The control for the test above: the same load with no ceiling goes faster than 7
    // per second, so the ceiling above is what held it back.
    let h = harness(4, 400).await;
    h.poller().cycle().await.unwrap();
    assert_eq!(
        h.sim.max_in_flight(),
        4,
        "the bound is used and never exceeded"
    );
    assert_eq!(busiest_second(&h.sim.arrivals()), 12);
}

#[tokio::test(start_paused = true)]
async fn a_fast_server_is_paced_too() {
    // No latency: concurrency alone would send everything at once.
    let mut h = harness(32, 0).await;
    h.max_requests_per_second = NonZeroU32::new(20);
    h.poller().cycle().await.unwrap();
    assert!(h.sim.max_in_flight() <= 32);
    assert_eq!(busiest_second(&h.sim.arrivals()), 20);
}

/// Lookups from chat share the poller's bound: the bot's `/restores` go through the
/// poller's own client, so a member firing 20 of them during a cycle adds no request in
/// flight beyond `cbs.max_concurrency`.
#[tokio::test(start_paused = true)]
async fn lookups_from_chat_share_the_pollers_concurrency_bound() {
    let h = harness(4, 400).await;
    let poller = h.poller();
    let client = poller.client().clone();
    let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
    let lookups = (0..20).map(|i| {
        let client = client.clone();
        async move {
            client
                .list_restore_jobs(&format!("user{i:02}"), "", date)
                .await
        }
    });
    let (cycle, answers) = tokio::join!(poller.cycle(), futures_util::future::join_all(lookups));
    assert!(cycle.unwrap().ok());
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(h.sim.requests_served(), USERS as u64 + 20);
    assert_eq!(h.sim.max_in_flight(), 4, "the bound is shared, and used");
}
