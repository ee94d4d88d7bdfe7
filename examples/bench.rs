//! Benchmarks behind the performance statements in BENCHMARKS.md, each against the CBS
//! simulator on loopback with the real poller and a sled store in a temporary directory:
//!
//! 1. Concurrency: a cycle over many users with a fixed per-request latency, against the
//!    ideal `ceil(requests / max_concurrency) × latency`.
//! 2. Bounded state: records and bytes on disk over simulated weeks with retention, the
//!    late weeks against the first full retention window.
//! 3. Steady state: a cycle that finds nothing new against the cycle that recorded the jobs.
//! 4. Discovery: 10,000 users listed by `2/ListUsers.do` in one call, and kept in the store.
//!
//! Run: `cargo run --release --example bench` (about a minute); one section only with its
//! name as the argument (`-- discovery`).

use chrono::{DateTime, Duration, TimeZone, Utc};
use restorewatch::cbs::{CbsClient, CbsClientConfig};
use restorewatch::clock::ManualClock;
use restorewatch::config::{PollSettings, WatchEntry, DEFAULT_ALERT_CLASSES};
use restorewatch::discover::{DiscoverSettings, Discovery};
use restorewatch::poller::{Poller, PollerConfig};
use restorewatch::schedule::CronSchedule;
use restorewatch::simulator::{Faults, SimConfig, SimHandle, SimJob, SimUser, Simulator};
use restorewatch::store::Store;
use std::sync::Arc;
use std::time::Instant;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap()
        + Duration::days(day.into())
        + Duration::hours(hour.into())
}

fn login(i: usize) -> String {
    format!("user{i:04}")
}

fn job(user: usize, set: usize, start: DateTime<Utc>, status: &str) -> SimJob {
    SimJob {
        size_bytes: 1 << 30,
        client_version: "10.1.4.0".into(),
        destination_id: Some("1700000000000".into()),
        ..SimJob::new(
            &login(user),
            &set.to_string(),
            start,
            Some(start + Duration::minutes(10)),
            status,
        )
    }
}

struct Rig {
    sim: SimHandle,
    clock: ManualClock,
    _dir: tempfile::TempDir,
    poller: Poller,
}

async fn rig(users: usize, concurrency: usize, retention_days: u32, now: DateTime<Utc>) -> Rig {
    let clock = ManualClock::new(now);
    let sim = Simulator::new(SimConfig::with_clock(Arc::new(clock.clone())))
        .start()
        .await
        .expect("simulator starts");
    for i in 0..users {
        sim.add_user(SimUser {
            login: login(i),
            owner: String::new(),
            user_id: login(i),
        });
    }
    let client = CbsClient::new(CbsClientConfig {
        url: sim.url(),
        server_name: "bench".into(),
        sys_user: sim.sys_user().into(),
        sys_pwd: sim.sys_pwd().to_owned().into(),
        timezone: chrono_tz::UTC,
        request_timeout: std::time::Duration::from_secs(30),
        ca_cert: None,
    })
    .expect("client");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let config = PollerConfig {
        poll: PollSettings {
            schedule: CronSchedule::parse("*/5 * * * *", chrono_tz::UTC).expect("schedule"),
            midnight_grace: std::time::Duration::from_secs(3600),
            max_catch_up_days: 7,
            stuck_after: std::time::Duration::from_secs(12 * 3600),
            vanished_after: std::time::Duration::from_secs(30 * 60),
            alert_classes: DEFAULT_ALERT_CLASSES.into(),
            baseline_first_cycle: true,
        },
        watch: (0..users)
            .map(|i| WatchEntry {
                login: login(i),
                owner: String::new(),
            })
            .collect(),
        max_concurrency: concurrency,
        retention_days,
        alerts: Default::default(),
        routed_owners: Default::default(),
        summary: Default::default(),
        down_after: 2,
        fetch_reports: true,
    };
    let poller = Poller::new(client, store, config, Arc::new(clock.clone()));
    Rig {
        sim,
        clock,
        _dir: dir,
        poller,
    }
}

async fn concurrency() {
    const USERS: usize = 240;
    const LATENCY_MS: u64 = 20;
    println!(
        "## 1. Poll cycle over {USERS} users, {LATENCY_MS} ms simulated latency per request\n"
    );
    println!("| max_concurrency | measured | ideal ceil(N/C)×latency | measured / ideal | peak in flight |");
    println!("|---:|---:|---:|---:|---:|");
    for c in [1usize, 8, 32] {
        let r = rig(USERS, c, 35, at(0, 12)).await;
        r.sim.set_faults(Faults {
            latency: std::time::Duration::from_millis(LATENCY_MS),
            ..Faults::default()
        });
        let started = Instant::now();
        let report = r.poller.cycle().await.expect("cycle");
        let took = started.elapsed();
        assert!(report.ok());
        let ideal_ms = (USERS.div_ceil(c) as u64 * LATENCY_MS) as f64;
        println!(
            "| {c} | {:.0} ms | {ideal_ms:.0} ms | {:.2} | {} |",
            took.as_secs_f64() * 1000.0,
            took.as_secs_f64() * 1000.0 / ideal_ms,
            r.sim.max_in_flight()
        );
    }
    println!();
}

async fn bounded_state() {
    const USERS: usize = 50;
    const JOBS_PER_USER_DAY: usize = 4;
    const RETENTION: u32 = 7;
    const DAYS: u32 = 35;
    println!(
        "## 2. Store size: {USERS} users × {JOBS_PER_USER_DAY} jobs a day, retention {RETENTION} days, {DAYS} days\n"
    );
    println!("| day | job records | bytes on disk |");
    println!("|---:|---:|---:|");
    let r = rig(USERS, 8, RETENTION, at(0, 1)).await;
    r.poller.cycle().await.expect("baseline cycle");
    let mut samples = Vec::new();
    for day in 0..DAYS {
        // Keep only a day's worth of jobs in the simulator: the store must not depend on
        // the server forgetting old jobs.
        let mut jobs = Vec::new();
        for u in 0..USERS {
            for k in 0..JOBS_PER_USER_DAY {
                let status = if (u + k) % 10 == 0 {
                    "RESTORE_STOP_BY_ERROR"
                } else {
                    "RESTORE_STOP_SUCCESS"
                };
                jobs.push(job(u, k, at(day, 2 + k as u32), status));
            }
        }
        r.sim.set_jobs(jobs);
        r.clock.set(at(day, 20));
        r.poller.cycle().await.expect("cycle");
        // Delivery is not measured here; drop the queued events like a sink would.
        let store = r.poller.store();
        let ids: Vec<u64> = store
            .pending_events(usize::MAX)
            .expect("outbox")
            .iter()
            .map(|e| e.id)
            .collect();
        store.ack(&ids).expect("ack");
        store.flush().expect("flush");
        let bytes = store.size_on_disk().expect("size");
        samples.push((day + 1, store.job_count(), bytes));
        if (day + 1) % 7 == 0 {
            println!("| {} | {} | {} |", day + 1, store.job_count(), bytes);
        }
    }
    // Records reach their bound after one retention window; sled's log-structured file
    // settles a little later, once freed segments are reused.
    let last = samples[samples.len() - 1];
    for window in [2 * RETENTION, 3 * RETENTION] {
        let w = samples[(window - 1) as usize];
        println!(
            "\nday {} / day {}: records {:.2}, bytes {:.2}",
            last.0,
            w.0,
            last.1 as f64 / w.1 as f64,
            last.2 as f64 / w.2 as f64
        );
    }
    println!();
}

async fn steady_state() {
    const USERS: usize = 200;
    const JOBS: usize = 10;
    println!("## 3. Steady state: {USERS} users × {JOBS} finished jobs, no latency\n");
    let r = rig(USERS, 8, 35, at(0, 1)).await;
    r.poller.cycle().await.expect("baseline");
    let mut jobs = Vec::new();
    for u in 0..USERS {
        for k in 0..JOBS {
            jobs.push(job(
                u,
                k,
                at(0, 2) + Duration::minutes(k as i64),
                "RESTORE_STOP_SUCCESS",
            ));
        }
    }
    r.sim.set_jobs(jobs);
    r.clock.set(at(0, 6));
    let t = Instant::now();
    r.poller.cycle().await.expect("recording cycle");
    let recording = t.elapsed();
    let mut steady = std::time::Duration::MAX;
    for minute in 1..=5 {
        r.clock.set(at(0, 6) + Duration::minutes(minute));
        let t = Instant::now();
        r.poller.cycle().await.expect("steady cycle");
        steady = steady.min(t.elapsed());
    }
    println!("| cycle | time |\n|---|---:|");
    println!(
        "| recording {} new jobs | {:.1} ms |",
        USERS * JOBS,
        recording.as_secs_f64() * 1000.0
    );
    println!(
        "| nothing new (best of 5) | {:.1} ms |",
        steady.as_secs_f64() * 1000.0
    );
    println!(
        "\nsteady / recording: {:.2}\n",
        steady.as_secs_f64() / recording.as_secs_f64()
    );
}

/// Users discovered in one `2/ListUsers.do` call, and the same call plus filtering and the
/// store write of the list, median of five runs each.
async fn discovery() {
    const USERS: usize = 10_000;
    const RUNS: usize = 5;
    let now = at(10, 12);
    let rig = rig(USERS, 8, 35, now).await;
    let client = CbsClient::new(CbsClientConfig {
        url: rig.sim.url(),
        server_name: "bench".into(),
        sys_user: rig.sim.sys_user().into(),
        sys_pwd: rig.sim.sys_pwd().to_owned().into(),
        timezone: chrono_tz::UTC,
        request_timeout: std::time::Duration::from_secs(30),
        ca_cert: None,
    })
    .expect("client");
    let discovery = Discovery::from_settings(DiscoverSettings {
        enabled: true,
        ..DiscoverSettings::default()
    })
    .expect("enabled");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut call = Vec::new();
    let mut whole = Vec::new();
    for run in 0..RUNS {
        let t = Instant::now();
        let listed = client.list_users("").await.expect("list users");
        call.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(listed.len(), USERS);
        // Each run is due: two hours past the last.
        let at = now + Duration::hours(2 * run as i64 + 2);
        let t = Instant::now();
        discovery
            .refresh_if_due(&client, rig.poller.store(), at)
            .await
            .expect("store");
        whole.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            rig.poller.store().discovered_users().expect("store").len(),
            USERS
        );
    }
    println!("## 4. Discovery: {USERS} users in one call (median of {RUNS})\n");
    println!("| step | time | target |\n|---|---:|---:|");
    println!(
        "| `2/ListUsers.do` call and decode | {:.0} ms | < 1000 ms |",
        median(call)
    );
    println!(
        "| call, filter and store write (`discover::Discovery::refresh_if_due`) | {:.0} ms | < 1000 ms |",
        median(whole)
    );
    println!();
}

#[tokio::main]
async fn main() {
    let only = std::env::args().nth(1);
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    println!("# restorewatch benchmarks\n");
    if run("concurrency") {
        concurrency().await;
    }
    if run("bounded_state") {
        bounded_state().await;
    }
    if run("steady_state") {
        steady_state().await;
    }
    if run("discovery") {
        discovery().await;
    }
}
