//! `restorewatch run` and `once` end to end: the CBS simulator, the poller, the store,
//! serenity's gateway client and REST delivery against the fake Discord, in one process
//! with one clean shutdown; and the binary's `once` posting to a fake through `api_base`.

mod support;

use restorewatch::app::IN_FLIGHT_GRACE;

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use restorewatch::app::App;
use restorewatch::clock::{Clock, ManualClock, SharedClock};
use restorewatch::config::Settings;
use restorewatch::event::EventKind;
use restorewatch::simulator::Faults;
use restorewatch::simulator::{SimConfig, SimHandle, SimJob, SimUser, Simulator};
use restorewatch::store::Store;
use std::sync::Arc;
use std::sync::Mutex;
use support::fake_discord::{FakeDiscord, GUILD_ID};
use support::world::{crash_image, Recorder, TokioClock};
use tokio_util::sync::CancellationToken;

/// Bound on every wait for the fake; the test fails rather than hangs. On the paused clock
/// it is virtual time, so it must outlast the schedule's ticks.
const WAIT: std::time::Duration = std::time::Duration::from_secs(3600);
const ALERTS: u64 = 4_000_000_000_000_000_001;

async fn simulator_on(clock: SharedClock) -> SimHandle {
    let sim = Simulator::new(SimConfig {
        clock,
        ..SimConfig::default()
    })
    .start()
    .await
    .unwrap();
    sim.add_user(SimUser {
        login: "obm".into(),
        owner: String::new(),
        user_id: "obm".into(),
    });
    sim
}

async fn simulator() -> SimHandle {
    simulator_on(Arc::new(restorewatch::clock::SystemClock)).await
}

/// A failed restore that starts `secs_from_now` seconds after `now` and lasts one second.
fn failure_at(now: DateTime<Utc>, secs_from_now: i64) -> SimJob {
    let start = (now + Duration::seconds(secs_from_now)).trunc_subsecs(0);
    SimJob {
        backup_set_name: "Accounts".into(),
        ..SimJob::new(
            "obm",
            "42",
            start,
            Some(start + Duration::seconds(1)),
            "RESTORE_STOP_BY_ERROR",
        )
    }
}

fn config(sim: &SimHandle, fake: &FakeDiscord, state: &std::path::Path, schedule: &str) -> String {
    format!(
        r#"
        [cbs]
        url = "{url}"
        server_name = "sim"
        sys_user = "{user}"
        [[watch]]
        login = "obm"
        [poll]
        schedule = "{schedule}"
        [state]
        path = "{state}"
        [discord]
        alert_channel = "{ALERTS}"
        api_base = "{api}"
        guild_id = "{GUILD_ID}"
        "#,
        url = sim.url(),
        user = sim.sys_user(),
        state = state.display(),
        api = fake.api_base(),
    )
}

/// Waits until a message in the alert channel contains `needle`; returns them all.
async fn wait_for_text(fake: &FakeDiscord, needle: &str) -> Vec<serde_json::Value> {
    let mut seen = 1;
    loop {
        let all = fake.wait_for_messages(ALERTS, seen).await;
        if all.iter().any(|m| m.to_string().contains(needle)) {
            return all;
        }
        seen = all.len() + 1;
    }
}

/// On tokio's paused clock with a wall clock that follows it ([`TokioClock`]): the program
/// sleeps until each five-minute tick, and virtual time jumps there at once.
#[tokio::test(start_paused = true)]
async fn run_registers_commands_polls_posts_and_stops_cleanly() {
    let clock = TokioClock::new(Utc.with_ymd_and_hms(2024, 6, 26, 9, 2, 30).unwrap());
    let clock: SharedClock = Arc::new(clock);
    let fake = FakeDiscord::start().await;
    let sim = simulator_on(clock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config(&sim, &fake, dir.path(), "*/5 * * * *");
    let env = |name: &str| match name {
        "RESTOREWATCH_CBS_SYS_PWD" => Some(sim.sys_pwd().to_owned()),
        "RESTOREWATCH_DISCORD_TOKEN" => Some("fake-token".to_owned()),
        _ => None,
    };
    let settings = Settings::from_toml_str(&toml, &env).unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(restorewatch::app::run(
        settings,
        clock.clone(),
        shutdown.clone(),
    ));

    let commands = tokio::time::timeout(WAIT, fake.wait_for_commands(Some(GUILD_ID)))
        .await
        .expect("commands are registered in the guild");
    let names: Vec<&str> = commands.iter().filter_map(|c| c["name"].as_str()).collect();
    for name in [
        "restores", "failures", "watch", "mute", "unmute", "digest", "status",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // The first cycle baselines obm; a failure after it alerts.
    tokio::time::timeout(WAIT, wait_for_text(&fake, "Now watching obm"))
        .await
        .expect("the first cycle's baseline is posted");
    let first_cycle = clock.now();
    sim.add_job(failure_at(first_cycle, 60));
    let messages = tokio::time::timeout(WAIT, wait_for_text(&fake, "Restore failed"))
        .await
        .expect("the failure is posted");
    let failures: Vec<_> = messages
        .iter()
        .filter(|m| m.to_string().contains("Restore failed"))
        .collect();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].to_string().contains("Accounts"));
    // The failure ended at 09:06; the 09:10 tick found it, not an earlier one.
    assert_eq!(clock.now().format("%H:%M").to_string(), "09:10");

    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("run stops after the shutdown token")
        .unwrap()
        .expect("run ends cleanly");
    assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
}

#[tokio::test]
async fn once_posts_to_the_fake_at_api_base() {
    let fake = FakeDiscord::start().await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    // A failure that ended before the first cycle is part of the baseline; turn that off
    // so this single `once` alerts it.
    let toml = config(&sim, &fake, dir.path(), "*/5 * * * *")
        .replace("[state]", "baseline_first_cycle = false\n[state]");
    sim.add_job(failure_at(Utc::now(), -120));
    let path = dir.path().join("rw.toml");
    std::fs::write(&path, toml).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_restorewatch"))
        .args(["once", "--config", path.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .env("RESTOREWATCH_DISCORD_TOKEN", "fake-token-xyz")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("fake-token-xyz"), "the token never shows");
    let messages = fake.messages(ALERTS);
    let text: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
    assert!(
        text.iter().any(|m| m.contains("Restore failed")),
        "{text:?}"
    );
    let posts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(posts
        .iter()
        .all(|r| r.header("authorization") == Some("Bot fake-token-xyz")));
    assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
}

/// Settings for the simulator's `obm` with the state in `state`, without Discord.
fn settings_without_discord(sim: &SimHandle, state: &std::path::Path) -> Settings {
    let toml = format!(
        r#"
        [cbs]
        url = "{url}"
        server_name = "sim"
        sys_user = "{user}"
        request_timeout = "1h"
        [[watch]]
        login = "obm"
        [poll]
        schedule = "*/5 * * * *"
        baseline_first_cycle = false
        [state]
        path = "{state}"
        "#,
        url = sim.url(),
        user = sim.sys_user(),
        state = state.display(),
    );
    let pwd = sim.sys_pwd().to_owned();
    let env = move |name: &str| (name == "RESTOREWATCH_CBS_SYS_PWD").then(|| pwd.clone());
    Settings::from_toml_str(&toml, &env).unwrap()
}

/// What a cycle recorded is on disk before its delivery starts: the program dies as the
/// sink is handed the first event (the store as a SIGKILL leaves it), and a restart knows
/// the job and still has its alert queued.
#[tokio::test]
async fn a_cycle_is_on_disk_before_its_delivery_starts() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 6, 26, 9, 30, 0).unwrap());
    let sim = simulator_on(Arc::new(clock.clone())).await;
    sim.add_job(failure_at(clock.now(), -600));
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_without_discord(&sim, dir.path());
    let app = App::build(settings.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let image = Arc::new(Mutex::new(None));
    let sink = Recorder {
        fail_after: Some(0),
        on_call: Some(Box::new({
            let (image, dir) = (Arc::clone(&image), dir.path().to_owned());
            move |_| {
                image
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| crash_image(&dir));
            }
        })),
        ..Recorder::default()
    };
    let (report, drained) = app.cycle_and_deliver(&sink).await.unwrap();
    assert_eq!(report.summary.alerts, 1);
    assert!(drained.pending > 0);
    drop(app);

    let image = image.lock().unwrap().take().expect("the sink was called");
    let store = Store::open(image.path()).unwrap();
    assert_eq!(store.job_count().unwrap(), 1, "the job is remembered");
    let queued = store.pending_events(usize::MAX).unwrap();
    let alerts = queued
        .iter()
        .filter(|e| matches!(e.kind, EventKind::JobFinished { .. }))
        .count();
    assert_eq!(alerts, 1, "and its alert is queued");
}

const LEFT_QUEUED: usize = 12;

/// Failure alerts left queued one by one, as a stop between a storm's sightings and its
/// card leaves them (the sightings are recorded, so no later cycle sees them as new and
/// folds them), or a Discord that refused them for a while: a cycle with grouping off
/// and a sink refusing everything. Returns the app started again (grouping on) on that
/// store, at 09:30, with the simulator and the store's directory it needs.
async fn left_queued() -> (App, ManualClock, SimHandle, tempfile::TempDir) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 6, 26, 9, 30, 0).unwrap());
    let sim = simulator_on(Arc::new(clock.clone())).await;
    for i in 0..LEFT_QUEUED {
        let mut job = failure_at(clock.now(), -3600 + 60 * i as i64);
        job.backup_set_id = format!("{i}");
        sim.add_job(job);
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_without_discord(&sim, dir.path());
    let mut ungrouped = settings.clone();
    ungrouped.alerts.group_after = 100;
    let app = App::build(ungrouped, Arc::new(clock.clone()))
        .await
        .unwrap();
    let refusing = Recorder {
        fail_after: Some(0),
        ..Recorder::default()
    };
    let (report, _) = app.cycle_and_deliver(&refusing).await.unwrap();
    assert_eq!(report.summary.alerts as usize, LEFT_QUEUED);
    drop(app);
    let app = App::build(settings, Arc::new(clock.clone())).await.unwrap();
    (app, clock, sim, dir)
}

/// What `sink` got holds one card listing every failure left queued and the alerts of
/// the first few only.
fn one_card_and_a_few(sink: &Recorder) {
    let got = sink.events.lock().unwrap().clone();
    let cards: Vec<usize> = (got.iter())
        .filter_map(|e| match &e.kind {
            EventKind::FailureStorm { jobs, .. } => Some(jobs.len()),
            _ => None,
        })
        .collect();
    assert_eq!(cards, vec![LEFT_QUEUED], "one card listing every failure");
    assert_eq!(
        sink.alerts().len(),
        restorewatch::storm::STORM_INDIVIDUAL_ALERTS,
        "and the alerts of the first few only"
    );
}

/// A poll round folds the failure alerts left queued into one card before anything is
/// delivered, rather than posting each.
#[tokio::test]
async fn failure_alerts_left_queued_go_out_as_one_card_after_a_round() {
    let (app, clock, _sim, _dir) = left_queued().await;
    let sink = Recorder::default();
    clock.set(clock.now() + Duration::minutes(5));
    app.cycle_and_deliver(&sink).await.unwrap();
    one_card_and_a_few(&sink);
}

/// `run` delivers what an earlier run left queued before its first tick: folded too.
#[tokio::test]
async fn failure_alerts_left_queued_go_out_as_one_card_when_run_starts() {
    let (app, _clock, _sim, _dir) = left_queued().await;
    let shutdown = CancellationToken::new();
    // Stops the loop once the first delivery has begun: before any round.
    let sink = Recorder {
        on_call: Some(Box::new({
            let shutdown = shutdown.clone();
            move |_| shutdown.cancel()
        })),
        ..Recorder::default()
    };
    app.run_loop(&sink, shutdown).await.unwrap();
    assert_eq!(sink.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    one_card_and_a_few(&sink);
}

/// Shutdown does not wait for a slow cycle: with the CBS taking an hour to answer, `run`
/// gives the cycle its grace ([`IN_FLIGHT_GRACE`]) and returns then. (Paused tokio time:
/// the hour is virtual, and waiting for it would show as an hour passed.)
#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_a_slow_cycle() {
    let clock: SharedClock = Arc::new(TokioClock::new(
        Utc.with_ymd_and_hms(2024, 6, 26, 9, 4, 0).unwrap(),
    ));
    let sim = simulator_on(clock.clone()).await;
    sim.set_faults(Faults {
        latency: std::time::Duration::from_secs(1800),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_without_discord(&sim, dir.path());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(restorewatch::app::run(settings, clock, shutdown.clone()));
    while sim.in_flight() == 0 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let asked_at = tokio::time::Instant::now();
    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("run stops")
        .unwrap()
        .expect("run ends cleanly");
    assert_eq!(
        asked_at.elapsed(),
        IN_FLIGHT_GRACE,
        "the cycle gets its grace and no more"
    );
}

/// Opening the store waits for a lock held elsewhere (a previous process still shutting
/// down) without stalling the runtime: on a one-thread runtime, the task that releases the
/// lock still runs while `App::build` waits.
#[tokio::test]
async fn waiting_for_the_store_lock_does_not_stall_the_runtime() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let held = Store::open(dir.path()).unwrap();
    let settings = settings_without_discord(&sim, dir.path());
    let building = tokio::spawn(App::build(settings, Arc::new(ManualClock::new(Utc::now()))));
    // Let the build start and meet the lock, then release it from this (the only) thread.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!building.is_finished(), "the lock is still held");
    drop(held);
    let app = tokio::time::timeout(WAIT, building)
        .await
        .expect("build finishes")
        .unwrap()
        .expect("the store opens once the lock is free");
    assert_eq!(app.store.job_count().unwrap(), 0);
}

/// A digest tick that falls inside a long cycle is not lost: the 08:02 digest tick passes
/// while the 08:00 cycle waits ten minutes for the CBS, and the digest of the day before
/// goes out right after the cycle, once. (Paused tokio time: the minutes are virtual.)
#[tokio::test(start_paused = true)]
async fn a_digest_tick_inside_a_long_cycle_is_posted_after_it() {
    let clock: SharedClock = Arc::new(TokioClock::new(
        Utc.with_ymd_and_hms(2024, 6, 26, 7, 58, 0).unwrap(),
    ));
    let sim = simulator_on(clock.clone()).await;
    sim.set_faults(Faults {
        latency: std::time::Duration::from_secs(600),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_without_discord(&sim, dir.path());
    settings.digest.schedule =
        restorewatch::schedule::CronSchedule::parse("2 8 * * *", restorewatch::tz::Tz::UTC)
            .unwrap();
    let app = App::build(settings, clock.clone()).await.unwrap();
    let sink = Recorder::default();
    let shutdown = CancellationToken::new();
    let stop = async {
        // 08:12: the cycle (08:00-08:10) is over, the next (08:15) not yet started.
        tokio::time::sleep(std::time::Duration::from_secs(14 * 60)).await;
        shutdown.cancel();
    };
    let (ran, ()) = tokio::join!(app.run_loop(&sink, shutdown.clone()), stop);
    ran.unwrap();
    let cycle = app.store.last_cycle().unwrap().expect("the cycle ran");
    assert!(
        cycle.finished_at >= Utc.with_ymd_and_hms(2024, 6, 26, 8, 10, 0).unwrap(),
        "the cycle ran past the digest tick: {}",
        cycle.finished_at
    );
    let digests: Vec<String> = (sink.events.lock().unwrap().iter())
        .filter_map(|e| match &e.kind {
            EventKind::Digest(d) => Some(d.date.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(digests, ["2024-06-25"]);
}

/// While it waits for the next tick, `run` closes the store and opens it again once the
/// store has settled after being written (by the start, a round, or sled's own clean-up),
/// so what sled keeps of the pages read or rewritten is let go while it idles
/// (BENCHMARKS.md), and the store works on after it. (Paused tokio time: the minutes are
/// virtual.)
#[tokio::test(start_paused = true)]
async fn the_store_is_reopened_once_settled_after_each_round_and_works_on() {
    let clock: SharedClock = Arc::new(TokioClock::new(
        Utc.with_ymd_and_hms(2024, 6, 26, 7, 58, 0).unwrap(),
    ));
    let sim = simulator_on(clock.clone()).await;
    sim.add_job(failure_at(clock.now(), -600));
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(settings_without_discord(&sim, dir.path()), clock.clone())
        .await
        .unwrap();
    let sink = Recorder::default();
    let shutdown = CancellationToken::new();
    let reopens = || app.store.work().reopens;
    let stop = async {
        // 07:59: the store the build wrote has settled; no round yet.
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let at_start = reopens();
        // 08:03: the round of 08:00 is over and has settled.
        tokio::time::sleep(std::time::Duration::from_secs(4 * 60)).await;
        let after_first = reopens();
        // 08:04:59, nothing written since: no reopen however long the wait.
        tokio::time::sleep(std::time::Duration::from_secs(119)).await;
        let before_second = reopens();
        // 08:07: the round of 08:05 is over and has settled.
        tokio::time::sleep(std::time::Duration::from_secs(121)).await;
        let after_second = reopens();
        // Until 08:09, a write every 10 s, each settling before the next: still the wait
        // that began after the round of 08:05, which reopens at most 3 times.
        for _ in 0..12 {
            app.store.flush().unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        }
        let writes_later = reopens();
        shutdown.cancel();
        [
            at_start,
            after_first,
            before_second,
            after_second,
            writes_later,
        ]
    };
    let (ran, seen) = tokio::join!(app.run_loop(&sink, shutdown.clone()), stop);
    ran.unwrap();
    assert_eq!(
        seen,
        [1, 2, 2, 3, 5],
        "one reopen once each write settled, at most 3 per wait"
    );
    let cycle = app.store.last_cycle().unwrap().expect("the cycles ran");
    assert_eq!(
        cycle.finished_at.format("%H:%M").to_string(),
        "08:05",
        "the second round wrote to the reopened store"
    );
    assert_eq!(app.store.outbox_len().unwrap(), 0, "everything delivered");
    assert!(!sink.alerts().is_empty(), "the failure was alerted");
}

/// Stopped in the evening, started again after the next morning's digest tick: the late
/// digest of the evening's day is built after a cycle has caught that day up, so it lists
/// the failure of 22:00 that the stop hid, rather than "no failures" followed a moment
/// later by that failure's alert. (Paused tokio time: the hours are virtual.)
#[tokio::test(start_paused = true)]
async fn a_digest_missed_while_stopped_is_built_after_the_catch_up_cycle() {
    let clock: SharedClock = Arc::new(TokioClock::new(
        Utc.with_ymd_and_hms(2024, 6, 26, 19, 58, 0).unwrap(),
    ));
    let sim = simulator_on(clock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let run_until = |app: App, secs: u64| async move {
        let sink = Recorder::default();
        let shutdown = CancellationToken::new();
        let stop = async {
            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            shutdown.cancel();
        };
        let (ran, ()) = tokio::join!(app.run_loop(&sink, shutdown.clone()), stop);
        ran.unwrap();
        let events = sink.events.lock().unwrap().clone();
        events
    };

    // The evening: one cycle at 20:00, with the 25th digested already; then stopped.
    let app = App::build(settings_without_discord(&sim, dir.path()), clock.clone())
        .await
        .unwrap();
    app.store
        .set_last_digest_day(chrono::NaiveDate::from_ymd_opt(2024, 6, 25).unwrap())
        .unwrap();
    run_until(app, 3 * 60).await;

    // 22:00, while stopped: a restore fails. The bot starts again at 08:30 the next day,
    // past the 08:00 digest tick.
    sim.add_job(SimJob {
        backup_set_name: "Accounts".into(),
        ..SimJob::new(
            "obm",
            "42",
            Utc.with_ymd_and_hms(2024, 6, 26, 22, 0, 0).unwrap(),
            Some(Utc.with_ymd_and_hms(2024, 6, 26, 22, 30, 0).unwrap()),
            "RESTORE_STOP_BY_ERROR",
        )
    });
    tokio::time::advance(std::time::Duration::from_secs(12 * 3600 + 29 * 60)).await;
    assert_eq!(
        clock.now(),
        Utc.with_ymd_and_hms(2024, 6, 27, 8, 30, 0).unwrap()
    );
    let app = App::build(settings_without_discord(&sim, dir.path()), clock.clone())
        .await
        .unwrap();
    // A minute: before the next poll tick (08:35).
    let events = run_until(app, 60).await;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Digest(d) => {
                format!("digest {} with {} failure(s)", d.date, d.failures.len())
            }
            EventKind::JobFinished { job, .. } => format!("alert {}", job.backup_set_name),
            other => format!("{other:?}").chars().take(40).collect(),
        })
        .collect();
    assert!(
        kinds.contains(&"digest 2024-06-26 with 1 failure(s)".to_owned()),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"alert Accounts".to_owned()), "{kinds:?}");
}
