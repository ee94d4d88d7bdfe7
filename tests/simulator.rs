//! The CBS simulator on loopback, driven through the real client: the clock moves jobs from
//! running to finished, dates follow the server zone, workloads are reproducible, and the
//! statistics, faults and down switch behave as the poller's tests rely on.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use restorewatch::cbs::model::StatusClass;
use restorewatch::cbs::{CbsClient, CbsClientConfig, CbsError};
use restorewatch::clock::ManualClock;
use restorewatch::simulator::{
    generate, serve_on, Faults, GenParams, LoginFault, Pace, Scenario, SimConfig, SimHandle,
    SimJob, SimulateArgs, Simulator, WorkloadSource,
};
use restorewatch::tz::Tz;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn berlin() -> Tz {
    "Europe/Berlin".parse().unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap()
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

async fn sim_with(clock: &ManualClock) -> SimHandle {
    let config = SimConfig {
        timezone: berlin(),
        ..SimConfig::with_clock(Arc::new(clock.clone()))
    };
    Simulator::new(config)
        .start()
        .await
        .expect("simulator starts")
}

fn client(sim: &SimHandle) -> CbsClient {
    CbsClient::new(CbsClientConfig {
        url: sim.url(),
        server_name: "sim".into(),
        sys_user: sim.sys_user().to_owned(),
        sys_pwd: sim.sys_pwd().to_owned().into(),
        timezone: sim.timezone(),
        request_timeout: std::time::Duration::from_secs(10),
        ca_cert: None,
    })
    .expect("client builds")
}

fn job(login: &str, start: DateTime<Utc>, end: Option<DateTime<Utc>>, status: &str) -> SimJob {
    SimJob {
        user_id: format!("id-{login}"),
        backup_set_name: "Documents".into(),
        size_bytes: 4096,
        client_version: "10.1.4.0".into(),
        ..SimJob::new(login, "100", start, end, status)
    }
}

#[tokio::test]
async fn jobs_go_from_running_to_finished_as_the_clock_moves() {
    let clock = ManualClock::new(t0());
    let sim = sim_with(&clock).await;
    let today = d(2024, 6, 26);
    sim.add_job(job(
        "alice",
        t0() - Duration::seconds(60),
        Some(t0() + Duration::seconds(120)),
        "RESTORE_STOP_BY_ERROR",
    ));
    let later = job(
        "alice",
        t0() + Duration::minutes(10),
        Some(t0() + Duration::minutes(15)),
        "RESTORE_STOP_SUCCESS",
    );
    sim.add_job(later.clone());
    let client = client(&sim);

    let first = client.list_restore_jobs("alice", "", today).await.unwrap();
    assert_eq!(first.jobs.len(), 1, "the later job has not started yet");
    assert_eq!(first.jobs[0].class, StatusClass::Running);
    assert_eq!(first.jobs[0].raw_status, "");
    assert_eq!(first.jobs[0].end_time, None);

    clock.advance(Duration::seconds(120));
    let second = client.list_restore_jobs("alice", "", today).await.unwrap();
    assert_eq!(second.jobs.len(), 1);
    assert_eq!(second.jobs[0].class, StatusClass::Failure);
    assert_eq!(second.jobs[0].raw_status, "RESTORE_STOP_BY_ERROR");
    assert_eq!(second.jobs[0].duration_secs(), Some(180));
    assert_eq!(second.jobs[0].job_id, first.jobs[0].job_id);

    clock.advance(Duration::minutes(10));
    let third = client.list_restore_jobs("alice", "", today).await.unwrap();
    assert_eq!(third.jobs.len(), 2);
    assert_eq!(third.jobs[1].job_id, later.job_id(berlin()));
    assert_eq!(third.jobs[1].class, StatusClass::Running);
    assert_eq!(third.jobs, sim.expected("sim", "alice", today));
}

#[tokio::test]
async fn jobs_are_listed_under_their_start_date_in_the_server_zone() {
    let clock = ManualClock::new(t0());
    let sim = sim_with(&clock).await;
    // 23:50 Berlin on the 25th (21:50 UTC), ending 00:20 on the 26th.
    let across_midnight = job(
        "bob",
        Utc.with_ymd_and_hms(2024, 6, 25, 21, 50, 0).unwrap(),
        Some(Utc.with_ymd_and_hms(2024, 6, 25, 22, 20, 0).unwrap()),
        "RESTORE_STOP_SUCCESS",
    );
    // 00:30 Berlin on the 26th, which is still the 25th in UTC.
    let after_midnight = job(
        "bob",
        Utc.with_ymd_and_hms(2024, 6, 25, 22, 30, 0).unwrap(),
        Some(Utc.with_ymd_and_hms(2024, 6, 25, 22, 40, 0).unwrap()),
        "RESTORE_STOP_SUCCESS",
    );
    sim.set_jobs(vec![across_midnight, after_midnight]);
    let client = client(&sim);
    let ids = |list: restorewatch::cbs::model::JobList| {
        list.jobs.into_iter().map(|j| j.job_id).collect::<Vec<_>>()
    };
    let on_25th = client
        .list_restore_jobs("bob", "", d(2024, 6, 25))
        .await
        .unwrap();
    assert_eq!(ids(on_25th), ["2024-06-25-23-50-00"]);
    let on_26th = client
        .list_restore_jobs("bob", "", d(2024, 6, 26))
        .await
        .unwrap();
    assert_eq!(ids(on_26th), ["2024-06-26-00-30-00"]);
}

#[tokio::test]
async fn generated_workload_is_deterministic_and_served_as_generated() {
    let params = GenParams {
        users: 30,
        seed: 42,
        anchor: t0(),
        pace: Pace::Realistic,
        timezone: berlin(),
    };
    let workload = generate(&params);
    assert_eq!(workload, generate(&params));
    assert_ne!(workload, generate(&GenParams { seed: 43, ..params }));
    assert_ne!(
        workload,
        generate(&GenParams {
            pace: Pace::Compressed,
            ..params
        })
    );

    let clock = ManualClock::new(t0());
    let sim = sim_with(&clock).await;
    sim.set_workload(workload.clone());
    let client = client(&sim);
    let mut seen = 0;
    for user in &workload.users {
        for date in [d(2024, 6, 25), d(2024, 6, 26)] {
            let list = client
                .list_restore_jobs(&user.login, &user.owner, date)
                .await
                .unwrap();
            assert!(list.skipped.is_empty(), "{:?}", list.skipped);
            assert_eq!(list.jobs, sim.expected("sim", &user.login, date));
            seen += list.jobs.len();
        }
    }
    assert!(seen > 30, "only {seen} jobs");
}

// Paused clock: the latency below is a tokio sleep, so the requests overlap exactly.
#[tokio::test(start_paused = true)]
async fn max_in_flight_measures_overlapping_requests() {
    let clock = ManualClock::new(t0());
    let sim = sim_with(&clock).await;
    sim.add_job(job("alice", t0(), None, ""));
    let client = client(&sim);
    let today = d(2024, 6, 26);

    for _ in 0..3 {
        client.list_restore_jobs("alice", "", today).await.unwrap();
    }
    assert_eq!(sim.max_in_flight(), 1, "sequential requests never overlap");
    assert_eq!(sim.requests_served(), 3);

    sim.reset_stats();
    // The latency holds every request open long enough for all of them to overlap.
    sim.set_faults(Faults {
        latency: std::time::Duration::from_millis(1500),
        ..Faults::default()
    });
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.list_restore_jobs("alice", "", today).await })
        })
        .collect();
    for r in requests {
        r.await.unwrap().unwrap();
    }
    assert_eq!(sim.max_in_flight(), 6);
    assert_eq!(sim.in_flight(), 0);
    assert_eq!(sim.requests_served(), 6);
    assert_eq!(sim.requests_for("alice", today), 6);
    assert_eq!(sim.requests_for("alice", d(2024, 6, 25)), 0);
}

#[tokio::test]
async fn down_refuses_connections_then_recovers_on_the_same_address() {
    let clock = ManualClock::new(t0());
    let sim = sim_with(&clock).await;
    sim.add_job(job("alice", t0(), None, ""));
    let client = client(&sim);
    let today = d(2024, 6, 26);
    // A first request leaves a pooled keep-alive connection behind.
    client.list_restore_jobs("alice", "", today).await.unwrap();

    sim.set_down(true).await.unwrap();
    let err = client
        .list_restore_jobs("alice", "", today)
        .await
        .unwrap_err();
    assert!(matches!(err, CbsError::Connect { .. }), "{err:?}");
    let raw = tokio::net::TcpStream::connect(sim.addr()).await;
    assert_eq!(
        raw.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    assert_eq!(sim.requests_served(), 1, "nothing got through while down");

    sim.set_down(false).await.unwrap();
    let list = client.list_restore_jobs("alice", "", today).await.unwrap();
    assert_eq!(list.jobs.len(), 1);
    assert_eq!(sim.requests_served(), 2);
}

#[tokio::test]
async fn going_down_cuts_a_request_in_flight() {
    let clock = ManualClock::new(t0());
    let sim = sim_with(&clock).await;
    sim.add_job(job("alice", t0(), None, ""));
    sim.set_faults(Faults {
        latency: std::time::Duration::from_secs(60),
        ..Faults::default()
    });
    let client = client(&sim);
    let pending =
        tokio::spawn(async move { client.list_restore_jobs("alice", "", d(2024, 6, 26)).await });
    // Wait until the request is inside the simulator, then pull the plug.
    while sim.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    sim.set_down(true).await.unwrap();
    let err = pending.await.unwrap().unwrap_err();
    assert!(matches!(err, CbsError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn faults_hit_one_login_only_and_random_faults_repeat_for_a_seed() {
    let clock = ManualClock::new(t0());
    let sim = sim_with(&clock).await;
    for login in ["alice", "bob", "carol"] {
        sim.add_job(job(login, t0(), None, ""));
    }
    sim.set_login_fault("alice", Some(LoginFault::Http500));
    sim.set_login_fault("bob", Some(LoginFault::NotFound));
    let client = client(&sim);
    let today = d(2024, 6, 26);
    let alice = client.list_restore_jobs("alice", "", today).await;
    assert!(
        matches!(&alice, Err(CbsError::Http { status, .. }) if status.as_u16() == 500),
        "{alice:?}"
    );
    let bob = client.list_restore_jobs("bob", "", today).await;
    assert!(
        matches!(&bob, Err(CbsError::Api { message, .. }) if message.contains("not found")),
        "{bob:?}"
    );
    assert_eq!(
        client
            .list_restore_jobs("carol", "", today)
            .await
            .unwrap()
            .jobs
            .len(),
        1
    );
    sim.set_login_fault("alice", None);
    assert!(client.list_restore_jobs("alice", "", today).await.is_ok());

    let faults = Faults {
        http_500_ratio: 0.2,
        malformed_ratio: 0.2,
        api_error_ratio: 0.2,
        seed: 9,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        sim.set_faults(faults.clone());
        let mut outcomes = Vec::new();
        for _ in 0..30 {
            outcomes.push(match client.list_restore_jobs("carol", "", today).await {
                Ok(_) => "ok",
                Err(CbsError::Http { .. }) => "http",
                Err(CbsError::Decode { .. }) => "decode",
                Err(CbsError::Api { .. }) => "api",
                Err(e) => panic!("unexpected {e:?}"),
            });
        }
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1]);
    for kind in ["ok", "http", "decode", "api"] {
        assert!(runs[0].contains(&kind), "{kind} missing from {:?}", runs[0]);
    }
}

#[tokio::test]
async fn the_example_scenario_loads_and_is_served() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenario.example.toml");
    let now = t0();
    let scenario =
        Scenario::load(&path, restorewatch::tz::Tz::UTC, now).expect("example scenario loads");
    assert_eq!(scenario.timezone, berlin());
    let logins: Vec<_> = scenario
        .workload
        .users
        .iter()
        .map(|u| u.login.as_str())
        .collect();
    assert_eq!(logins, ["alice", "bob", "carol"]);
    assert_eq!(scenario.workload.jobs.len(), 5);

    let clock = ManualClock::new(now);
    let sim = sim_with(&clock).await;
    sim.set_workload(scenario.workload);
    let client = client(&sim);
    let today = d(2024, 6, 26);
    let carol = client
        .list_restore_jobs("carol", "reseller-b", today)
        .await
        .unwrap();
    let classes: Vec<_> = carol.jobs.iter().map(|j| j.class).collect();
    assert_eq!(classes, [StatusClass::Unknown, StatusClass::Running]);
    assert_eq!(carol.jobs[0].raw_status, "RESTORE_STOP_BY_QUOTA_EXCEEDED");
    let alice = client
        .list_restore_jobs("alice", "", d(2024, 6, 25))
        .await
        .unwrap();
    assert_eq!(alice.jobs.len(), 2);
    assert_eq!(alice.jobs[1].class, StatusClass::PartialFailure);
    assert_eq!(alice.jobs[1].missed_databases, ["sales", "crm"]);
}

#[tokio::test]
async fn standalone_serve_answers_until_cancelled() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let args = SimulateArgs::new(
        addr,
        WorkloadSource::Generated {
            users: 5,
            seed: 1,
            pace: Pace::Realistic,
        },
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve_on(listener, args.clone(), stop.clone()));
    let client = CbsClient::new(CbsClientConfig {
        url: reqwest::Url::parse(&format!("http://{addr}")).unwrap(),
        server_name: "standalone".into(),
        sys_user: args.sys_user.clone(),
        sys_pwd: args.sys_pwd.clone().into(),
        timezone: args.timezone,
        request_timeout: std::time::Duration::from_secs(10),
        ca_cert: None,
    })
    .unwrap();
    let today = Utc::now().date_naive();
    assert!(client.list_restore_jobs("user001", "", today).await.is_ok());
    let unknown = client.list_restore_jobs("user999", "", today).await;
    assert!(matches!(unknown, Err(CbsError::Api { .. })), "{unknown:?}");
    stop.cancel();
    server.await.unwrap().expect("serve ends cleanly");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
