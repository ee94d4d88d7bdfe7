//! Operability over loopback: `/healthz` and `/metrics` served by the real listener, the
//! heartbeat against a recording receiver, ticks that never stack, and the binary's
//! `healthcheck` subcommand and log output.

mod support;

use axum::extract::State;
use axum::http::Uri;
use axum::Router;
use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use restorewatch::app::App;
use restorewatch::clock::{Clock, SharedClock};
use restorewatch::config::Settings;
use restorewatch::server::{self, ServerState};
use restorewatch::simulator::{Faults, SimConfig, SimHandle, SimJob, SimUser, Simulator};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use support::world::console;
use tokio_util::sync::CancellationToken;

/// Bound on waits in paused-time tests (virtual time: an hour of minute ticks).
const WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// "Now" that follows tokio's clock from a fixed start, so paused-time tests see the
/// wall clock move exactly as far as tokio's timers do.
struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.base + Duration::from_std(elapsed).unwrap()
    }
}

fn tokio_clock() -> SharedClock {
    Arc::new(TokioClock {
        base: Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap(),
        start: tokio::time::Instant::now(),
    })
}

async fn simulator(clock: SharedClock) -> SimHandle {
    let sim = Simulator::new(SimConfig::with_clock(clock))
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

fn failure(at: DateTime<Utc>) -> SimJob {
    let start = at.trunc_subsecs(0);
    SimJob::new(
        "obm",
        "42",
        start,
        Some(start + Duration::seconds(1)),
        "RESTORE_STOP_BY_ERROR",
    )
}

fn settings(sim: &SimHandle, state: &std::path::Path, extra: &str) -> Settings {
    let text = format!(
        r#"
        [cbs]
        url = "{url}"
        server_name = "sim"
        sys_user = "{user}"
        request_timeout = "1h"
        [[watch]]
        login = "obm"
        [poll]
        schedule = "0 * * * * *"
        baseline_first_cycle = false
        [state]
        path = "{state}"
        {extra}
        "#,
        url = sim.url(),
        user = sim.sys_user(),
        state = state.display(),
    );
    let pwd = sim.sys_pwd().to_owned();
    Settings::from_toml_str(&text, &move |name| {
        (name == "RESTOREWATCH_CBS_SYS_PWD").then(|| pwd.clone())
    })
    .unwrap()
}

/// Serves the app's store on a loopback port; returns the base URL.
async fn serve(app: &App, shutdown: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ServerState::new(
        app.store.clone(),
        app.clock.clone(),
        app.settings.poll.schedule.clone(),
        false,
        restorewatch::metrics::install(),
    );
    tokio::spawn(server::serve(listener, state, shutdown.clone()));
    format!("http://{addr}")
}

#[tokio::test]
async fn healthz_and_metrics_over_loopback() {
    // A fixed midday, so no midnight-grace request for yesterday changes the counts.
    let now = Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap();
    let clock: SharedClock = Arc::new(restorewatch::clock::ManualClock::new(now));
    let sim = simulator(clock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(settings(&sim, dir.path(), ""), clock)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let base = serve(&app, &shutdown).await;
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "starting up counts as healthy");
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["last_cycle"], Value::Null);
    assert_eq!(body["discord_token"], "not_configured");
    assert_eq!(body["store_writable"], true);

    sim.add_job(failure(now - Duration::minutes(5)));
    let (report, drained) = app.cycle_and_deliver(&console()).await.unwrap();
    assert_eq!((report.summary.alerts, drained.delivered), (1, 2));
    // One more event waits, to show up in the outbox gauges.
    sim.add_job(SimJob {
        backup_set_id: "43".into(),
        ..failure(now - Duration::minutes(4))
    });
    app.cycle().await.unwrap();

    let body: Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["last_cycle"]["requests"], 1);
    assert_eq!(
        body["outbox_events"], 2,
        "the failure and the cycle summary"
    );
    assert!(body["oldest_undelivered_age_seconds"].as_i64().unwrap() >= 0);

    // (The bot's own counting is `slash_commands_are_counted_by_name_and_result`.)
    restorewatch::metrics::command("failures", "error");
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    for line in [
        "# TYPE restorewatch_cycles_total counter",
        "# TYPE restorewatch_cycle_duration_seconds histogram",
        "# TYPE restorewatch_cbs_requests_total counter",
        "# TYPE restorewatch_jobs_observed_total counter",
        "# TYPE restorewatch_alerts_total counter",
        "# TYPE restorewatch_events_delivered_total counter",
        "# TYPE restorewatch_outbox_events gauge",
        "# TYPE restorewatch_outbox_oldest_age_seconds gauge",
        "# TYPE restorewatch_store_bytes gauge",
        "# TYPE restorewatch_last_success_timestamp_seconds gauge",
        "# TYPE restorewatch_quarantined_total counter",
        "# TYPE restorewatch_commands_total counter",
        "# TYPE restorewatch_build_info gauge",
        "# TYPE restorewatch_ticks_skipped_total counter",
        "restorewatch_outbox_events 2",
        "restorewatch_cycle_duration_seconds_bucket{le=\"+Inf\"}",
        "restorewatch_commands_total{command=\"failures\",result=\"error\"}",
        &format!(
            "restorewatch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
    };
    assert!(value("restorewatch_cycles_total{result=\"success\"}") >= 1.0);
    // This test's server: the other tests of this binary count theirs in the same
    // (process-wide) metrics, listed in no fixed order.
    assert!(value("restorewatch_cbs_requests_total{outcome=\"ok\",server=\"sim\"}") >= 2.0);
    assert!(text.contains("restorewatch_cbs_up{server=\""), "{text}");
    assert!(value("restorewatch_jobs_observed_total{class=\"failure\"}") >= 2.0);
    assert!(value("restorewatch_alerts_total{kind=\"job_finished\"}") >= 2.0);
    assert!(value("restorewatch_events_delivered_total") >= 2.0);
    assert!(value("restorewatch_store_bytes") > 0.0);
    assert!(value("restorewatch_last_success_timestamp_seconds") > 1.7e9);
    shutdown.cancel();
}

#[tokio::test]
async fn healthz_names_a_late_cycle_and_an_old_undelivered_event() {
    let clock = restorewatch::clock::ManualClock::new(Utc::now().trunc_subsecs(0));
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = simulator(shared.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(settings(&sim, dir.path(), ""), shared)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let base = serve(&app, &shutdown).await;
    sim.add_job(failure(clock.now() - Duration::minutes(5)));
    app.cycle().await.unwrap();
    // Schedule: every minute. Three minutes later the cycle is late and the alert waits.
    clock.advance(Duration::minutes(3));
    let response = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    let reasons: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{body}");
    assert!(
        reasons[0].contains("the last poll cycle ended 180s ago"),
        "{body}"
    );
    assert!(
        reasons[1].contains("oldest undelivered event is 180s old"),
        "{body}"
    );
    shutdown.cancel();
}

/// A heartbeat receiver: records each path; answers at once, or never when `hang`.
#[derive(Clone, Default)]
struct Receiver {
    paths: Arc<Mutex<Vec<String>>>,
    hang: bool,
    changed: Arc<tokio::sync::Notify>,
}

impl Receiver {
    async fn start(self) -> String {
        async fn record(State(r): State<Receiver>, uri: Uri) -> &'static str {
            r.paths.lock().unwrap().push(uri.path().to_owned());
            r.changed.notify_waiters();
            if r.hang {
                std::future::pending::<()>().await;
            }
            "OK"
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(record).with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/ping/abc")
    }

    async fn wait_for(&self, n: usize) -> Vec<String> {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.changed.notified();
                let paths = self.paths.lock().unwrap().clone();
                if paths.len() >= n {
                    return paths;
                }
                notified.await;
            }
        })
        .await
        .expect("heartbeats arrive")
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeat_after_each_cycle_fail_when_no_cbs_request_succeeded() {
    let clock = tokio_clock();
    let sim = simulator(clock.clone()).await;
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(
        settings(&sim, dir.path(), &format!("[heartbeat]\nurl = \"{url}\"")),
        clock,
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { app.run_loop(&console(), shutdown).await })
    };
    assert_eq!(receiver.wait_for(1).await, ["/ping/abc"]);
    sim.set_down(true).await.unwrap();
    // Cycles may have run between the two lines above; the one after them fails.
    let n = receiver.wait_for(1).await.len();
    let paths = receiver.wait_for(n + 2).await;
    assert_eq!(paths[n + 1], "/ping/abc/fail", "{paths:?}");
    sim.set_down(false).await.unwrap();
    let n = receiver.wait_for(1).await.len();
    let paths = receiver.wait_for(n + 2).await;
    assert_eq!(paths[n + 1], "/ping/abc", "{paths:?}");
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hanging_heartbeat_never_delays_a_cycle() {
    let clock = tokio_clock();
    let sim = simulator(clock.clone()).await;
    let receiver = Receiver {
        hang: true,
        ..Receiver::default()
    };
    let url = receiver.clone().start().await;
    let dir = tempfile::tempdir().unwrap();
    // Poll every second: well inside the heartbeat's own 10 s timeout.
    let mut settings = settings(&sim, dir.path(), &format!("[heartbeat]\nurl = \"{url}\""));
    settings.poll.schedule =
        restorewatch::schedule::CronSchedule::parse("* * * * * *", restorewatch::tz::Tz::UTC)
            .unwrap();
    let app = App::build(settings, clock.clone()).await.unwrap();
    let store = app.store.clone();
    let shutdown = CancellationToken::new();
    let started = clock.now();
    let running = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { app.run_loop(&console(), shutdown).await })
    };
    // Five heartbeats, none answered, within five seconds: the cycles did not wait.
    receiver.wait_for(5).await;
    let last = store.last_cycle().unwrap().unwrap();
    assert!(
        last.finished_at - started <= Duration::seconds(5),
        "cycles waited for the heartbeat: {last:?}"
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn ticks_never_stack_a_slow_cycle_skips_and_counts_them() {
    let clock = tokio_clock();
    let sim = simulator(clock.clone()).await;
    // Every request takes 150 s against a schedule of once a minute.
    sim.set_faults(Faults {
        latency: std::time::Duration::from_secs(150),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(settings(&sim, dir.path(), ""), clock.clone())
        .await
        .unwrap();
    let store = app.store.clone();
    let handle = restorewatch::metrics::install();
    let skipped_before = skipped(&handle.render());
    let shutdown = CancellationToken::new();
    let running = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { app.run_loop(&console(), shutdown).await })
    };
    // Wait (in paused time) for three cycles.
    tokio::time::timeout(std::time::Duration::from_secs(3600), async {
        while sim.requests_served() < 3 || store.last_cycle().unwrap().is_none() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
    .await
    .unwrap();
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(sim.max_in_flight(), 1, "cycles overlapped");
    // Each 150 s cycle started on a minute covers two more minute ticks, which are skipped.
    let counted = skipped(&handle.render()) - skipped_before;
    assert!(counted >= 4.0, "skipped ticks counted: {counted}");
}

fn skipped(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix("restorewatch_ticks_skipped_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn slash_commands_are_counted_by_name_and_result() {
    let metrics = restorewatch::metrics::install();
    let h = support::bot::Harness::start().await;
    let bot = h.start_bot().await;
    let (callback, _) = h
        .invoke(support::fake_discord::SlashCommand::new("status"))
        .await;
    assert_eq!(callback["type"], 4, "{callback}");
    // From a server that is not ours: refused.
    let elsewhere = support::fake_discord::SlashCommand::new("restores")
        .option("user", "obm")
        .in_channel(9_000_000_000_000_000_001, 9_000_000_000_000_000_002);
    h.invoke(elsewhere).await;
    // In our server, by a member who may not change state: refused too, though answered.
    let member_mutes = support::fake_discord::SlashCommand::new("mute")
        .option("user", "obm")
        .option("duration", "2h");
    let (callback, _) = h.invoke(member_mutes).await;
    assert_eq!(
        callback["data"]["flags"], 64,
        "a private refusal: {callback}"
    );
    // poise counts after the command returns, just after its answer went out.
    for line in [
        "restorewatch_commands_total{command=\"status\",result=\"ok\"}",
        "restorewatch_commands_total{command=\"restores\",result=\"refused\"}",
        "restorewatch_commands_total{command=\"mute\",result=\"refused\"}",
    ] {
        tokio::time::timeout(support::bot::WAIT, async {
            while !metrics.render().contains(line) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {line} in\n{}", metrics.render()));
    }
    bot.stop().await;
}

/// `restorewatch_quarantined_total` counts each record moved aside because it does not
/// decode.
#[tokio::test]
async fn quarantined_records_are_counted_in_metrics() {
    let handle = restorewatch::metrics::install();
    let count = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("restorewatch_quarantined_total "))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    let before = count(&handle.render());
    let dir = tempfile::tempdir().unwrap();
    let store = restorewatch::store::Store::open(dir.path()).unwrap();
    let mutes = store.tree("mutes").unwrap();
    mutes.insert(b"obm\0", &b"\xff not json"[..]).unwrap();
    mutes.insert(b"shop\0", &b"{"[..]).unwrap();
    let active = restorewatch::mutes::Mutes::open(&store)
        .unwrap()
        .active(chrono::Utc::now())
        .unwrap();
    assert!(active.is_empty());
    assert_eq!(store.quarantined().unwrap(), 2);
    assert_eq!(count(&handle.render()) - before, 2.0);
}

/// Waits (in virtual time) until `check` holds, for at most `within`; whether it did.
async fn until(within: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let waited = tokio::time::timeout(within, async {
        while !check() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    waited.await.is_ok()
}

/// The gateway dies after a successful connect and serenity keeps reconnecting: once it has
/// been down for the grace, slash commands show as unavailable (what `/healthz` and
/// `/status` read) with one error line; when it is back, that clears with one info line.
#[tokio::test(start_paused = true)]
async fn a_gateway_lost_after_the_connect_is_reported_after_the_grace_and_cleared() {
    use restorewatch::bot::GATEWAY_LOST_GRACE;
    use restorewatch::gateway::GatewayState;
    let logs = support::logs::LogCapture::default();
    let _guard = logs.install();
    let h = support::bot::Harness::start().await;
    let running = h.start_bot().await;
    let gateway = running.bot.gateway();
    assert!(
        until(WAIT, || gateway.get() == GatewayState::Connected).await,
        "connected"
    );
    assert_eq!(gateway.unavailable(), None);

    h.fake.set_gateway_down(true);
    let lost_at = tokio::time::Instant::now();
    assert!(
        until(WAIT, || gateway.unavailable().is_some()).await,
        "the loss is never reported: {}",
        logs.text()
    );
    assert!(
        lost_at.elapsed() >= GATEWAY_LOST_GRACE,
        "reported after {:?}, within the grace",
        lost_at.elapsed()
    );
    let shown = gateway.unavailable().unwrap();
    assert!(
        shown.starts_with("slash commands unavailable since ")
            && shown.ends_with(": gateway disconnected (reconnecting)"),
        "{shown}"
    );
    // Said once, however long serenity keeps retrying.
    tokio::time::sleep(GATEWAY_LOST_GRACE * 4).await;
    let lost_lines = |text: &str| {
        text.lines()
            .filter(|l| l.contains("ERROR") && l.contains("gateway connection was lost"))
            .count()
    };
    assert_eq!(lost_lines(&logs.text()), 1, "{}", logs.text());

    h.fake.set_gateway_down(false);
    assert!(
        until(WAIT, || gateway.get() == GatewayState::Connected).await,
        "never reconnected: {}",
        logs.text()
    );
    let shown = gateway.unavailable().unwrap();
    assert!(
        shown.starts_with("slash commands were unavailable from "),
        "{shown}"
    );
    tokio::time::sleep(GATEWAY_LOST_GRACE).await;
    let text = logs.text();
    let back = text
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("gateway is connected again"))
        .count();
    assert_eq!(back, 1, "{text}");
    assert_eq!(lost_lines(&text), 1, "{text}");
    running.stop().await;
}

/// Discord ends the session for good (4014: an intent the bot may not use): slash
/// commands show as unavailable with the reason and one error line, and a new client
/// connects after a wait, without a restart, once Discord lets it in.
#[tokio::test(start_paused = true)]
async fn a_session_discord_ends_for_good_is_tried_again_after_a_wait() {
    use restorewatch::gateway::GatewayState;
    let logs = support::logs::LogCapture::default();
    let _guard = logs.install();
    let h = support::bot::Harness::start().await;
    h.fake.set_identify_close(Some(4014));
    let running = h.start_bot_unwaited(h.open_store()).await;
    let gateway = running.bot.gateway();
    let refused_at = tokio::time::Instant::now();
    assert!(
        until(WAIT, || gateway.unavailable().is_some()).await,
        "never reported: {}",
        logs.text()
    );
    let retry_lines = |text: &str| {
        text.lines()
            .filter(|l| l.contains("ERROR") && l.contains("connecting again after a wait"))
            .count()
    };
    let shown = gateway.unavailable().unwrap();
    assert!(shown.contains("Disallowed gateway intents"), "{shown}");
    assert_eq!(retry_lines(&logs.text()), 1, "{}", logs.text());
    assert_eq!(h.fake.identify_attempts(), 1);

    // Not tried again at once: the first wait is a minute.
    tokio::time::sleep(std::time::Duration::from_secs(50)).await;
    assert_eq!(h.fake.identify_attempts(), 1, "{}", logs.text());

    // Still refused at the next try, then let in: connected, commands registered.
    assert!(until(WAIT, || h.fake.identify_attempts() == 2).await);
    assert!(refused_at.elapsed() >= std::time::Duration::from_secs(60));
    assert_eq!(retry_lines(&logs.text()), 2, "{}", logs.text());
    h.fake.set_identify_close(None);
    assert!(
        until(WAIT, || gateway.get() == GatewayState::Connected).await,
        "never connected again: {}",
        logs.text()
    );
    assert!(
        refused_at.elapsed() >= std::time::Duration::from_secs(60 + 120),
        "the wait doubles"
    );
    let registered = h.fake.wait_for_requests(1, |r| {
        r.method == "PUT" && r.path.ends_with("/commands") && r.path.contains("/guilds/")
    });
    tokio::time::timeout(WAIT, registered)
        .await
        .expect("commands registered by the new client");
    // The stop is a clean one (not the session's old failure).
    running.stop().await;
}

/// Two `[[cbs]]` servers, `eu` and `us`, each watching `obm`, on a five-second schedule
/// with the default 30 s request timeout.
fn two_servers(eu: &SimHandle, us: &SimHandle, state: &std::path::Path, extra: &str) -> Settings {
    let entry = |name: &str, sim: &SimHandle| {
        format!(
            "[[cbs]]\nname = \"{name}\"\nurl = \"{url}\"\nsys_user = \"{user}\"\nsys_pwd = \"{pwd}\"\n\
             [[watch]]\nlogin = \"obm\"\nserver = \"{name}\"\n",
            url = sim.url(),
            user = sim.sys_user(),
            pwd = sim.sys_pwd(),
        )
    };
    let text = format!(
        "{}{}[poll]\nschedule = \"*/5 * * * * *\"\n[state]\npath = \"{}\"\n{extra}",
        entry("eu", eu),
        entry("us", us),
        state.display(),
    );
    Settings::from_toml_str(&text, &|_| None).unwrap()
}

/// Samples `/healthz` once a (virtual) second for `secs` seconds; the failing answers'
/// reasons.
async fn failing_samples(state: &ServerState, secs: u64) -> Vec<Vec<String>> {
    let mut failing = Vec::new();
    for _ in 0..secs {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let health = server::check(state);
        if health.status != "ok" {
            failing.push(health.reasons);
        }
    }
    failing
}

/// Runs `settings`' run loop beside `sampling`, which is given the `/healthz` state, until
/// `sampling` ends.
async fn run_while<F: std::future::Future<Output = ()>>(
    settings: Settings,
    clock: SharedClock,
    sampling: impl FnOnce(ServerState) -> F,
) {
    let app = App::build(settings, clock.clone()).await.unwrap();
    let state = ServerState::from_settings(
        &app.settings,
        app.store.clone(),
        clock,
        restorewatch::metrics::install(),
        app.progress.clone(),
    );
    let shutdown = CancellationToken::new();
    let sampling = async {
        sampling(state).await;
        shutdown.cancel();
    };
    let sink = console();
    let (ran, ()) = tokio::join!(app.run_loop(&sink, shutdown.clone()), sampling);
    ran.unwrap();
}

/// A five-second schedule with one backup server answering only after 45 s (its requests
/// time out at 30 s, so every cycle overruns several ticks): the bot still polls the other
/// server and reads healthy, and so it does once both servers are down (an outage of the
/// backup servers is not the bot's). The heartbeat follows the server that answers.
#[tokio::test(start_paused = true)]
async fn a_short_schedule_and_a_slow_server_keep_a_polling_bot_healthy() {
    let clock = tokio_clock();
    let eu = simulator(clock.clone()).await;
    let us = simulator(clock.clone()).await;
    us.set_faults(Faults {
        latency: std::time::Duration::from_secs(45),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let heartbeat = format!("[heartbeat]\nurl = \"{url}\"\n");
    let settings = two_servers(&eu, &us, dir.path(), &heartbeat);
    run_while(settings, clock, |state| async move {
        let failing = failing_samples(&state, 180).await;
        assert_eq!(failing, Vec::<Vec<String>>::new(), "one server answers");
        assert!(eu.requests_served() >= 5, "eu was polled");
        // The heartbeat follows eu's cycles, one a tick, not us's 30 s timeouts; and it
        // says alive, as eu answers.
        let beats = receiver.paths.lock().unwrap().clone();
        assert!(beats.len() >= 30, "{} heartbeats in 180 s", beats.len());
        assert!(beats.iter().all(|p| p == "/ping/abc"), "{beats:?}");
        let health = server::check(&state);
        let us_health = health.servers.iter().find(|s| s.name == "us").unwrap();
        assert!(us_health.outage_since.is_some(), "{health:?}");
        // Now eu hangs too. Cycles still end and every outage has its notice: the bot is
        // doing its job, and `/healthz` says so (the outage is in `servers`, and in the
        // heartbeat's `/fail`).
        eu.set_faults(Faults {
            latency: std::time::Duration::from_secs(45),
            ..Faults::default()
        });
        let failing = failing_samples(&state, 300).await;
        assert_eq!(failing, Vec::<Vec<String>>::new(), "every server down");
        let beats = receiver.paths.lock().unwrap().clone();
        assert_eq!(beats.last().map(String::as_str), Some("/ping/abc/fail"));
        let health = server::check(&state);
        assert!(
            health.servers.iter().all(|s| s.outage_since.is_some()),
            "{health:?}"
        );
    })
    .await;
}

/// A five-second schedule with one healthy server never reads failing between cycles.
#[tokio::test(start_paused = true)]
async fn a_five_second_schedule_reads_healthy() {
    let clock = tokio_clock();
    let sim = simulator(clock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&sim, dir.path(), "");
    settings.poll.schedule =
        restorewatch::schedule::CronSchedule::parse("*/5 * * * * *", restorewatch::tz::Tz::UTC)
            .unwrap();
    run_while(settings, clock, |state| async move {
        let failing = failing_samples(&state, 120).await;
        assert_eq!(failing, Vec::<Vec<String>>::new());
    })
    .await;
}

/// A first cycle longer than two periods and the request timeout together (thirteen users
/// asked one at a time, each answer taking 10 s, on a five-second schedule with a 30 s
/// timeout: 130 s against a 40 s limit) reads healthy while its answers keep coming, and
/// so does the failure it queued on its first answer, which waits for the cycle's end.
#[tokio::test(start_paused = true)]
async fn a_long_first_cycle_whose_answers_keep_coming_reads_healthy() {
    let clock = tokio_clock();
    let sim = simulator(clock.clone()).await;
    sim.add_job(failure(clock.now() - Duration::hours(1)));
    let mut watch = String::from("[[watch]]\nlogin = \"obm\"\n");
    for i in 0..12 {
        let login = format!("user{i:02}");
        sim.add_user(SimUser {
            login: login.clone(),
            owner: String::new(),
            user_id: login.clone(),
        });
        watch.push_str(&format!("[[watch]]\nlogin = \"{login}\"\n"));
    }
    sim.set_faults(Faults {
        latency: std::time::Duration::from_secs(10),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[cbs]\nurl = \"{url}\"\nsys_user = \"{user}\"\nsys_pwd = \"{pwd}\"\n\
         max_concurrency = 1\nrequest_timeout = \"30s\"\n{watch}\
         [poll]\nschedule = \"*/5 * * * * *\"\nbaseline_first_cycle = false\n\
         [state]\npath = \"{state}\"\n",
        url = sim.url(),
        user = sim.sys_user(),
        pwd = sim.sys_pwd(),
        state = dir.path().display(),
    );
    let settings = Settings::from_toml_str(&text, &|_| None).unwrap();
    run_while(settings, clock, |state| async move {
        tokio::time::sleep(std::time::Duration::from_secs(20)).await;
        let health = server::check(&state);
        assert_eq!(health.outbox_events, 1, "the failure is queued: {health:?}");
        assert!(health.servers[0].cycle_started_at.is_some(), "{health:?}");
        let failing = failing_samples(&state, 120).await;
        assert_eq!(failing, Vec::<Vec<String>>::new(), "answers keep coming");
        assert!(sim.requests_served() >= 13, "the first cycle ended");
        let health = server::check(&state);
        assert_eq!(health.outbox_events, 0, "delivered at its end: {health:?}");
    })
    .await;
}

/// Discord's REST API stops answering (every post and read of a channel hangs) while a
/// failure waits to be posted. Each poll round's delivery gives up after one 30 s timeout,
/// so the backup server is still polled at every minute tick, instead of not at all while
/// the delivery retried timeout after timeout; once Discord answers again the alert goes
/// out, once.
#[tokio::test(start_paused = true)]
async fn a_hanging_discord_does_not_stop_polling() {
    const ALERTS: u64 = 4_000_000_000_000_000_001;
    let clock = tokio_clock();
    let sim = simulator(clock.clone()).await;
    sim.add_job(failure(clock.now() - Duration::minutes(5)));
    let fake = support::fake_discord::FakeDiscord::start().await;
    fake.set_messages_hanging(true);
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(settings(&sim, dir.path(), ""), clock.clone())
        .await
        .unwrap();
    let discord = restorewatch::config::DiscordSettings {
        token: "fake-token".to_owned().into(),
        alert_channel: serenity::all::ChannelId::new(ALERTS),
        digest_channel: serenity::all::ChannelId::new(ALERTS),
        mention_role: None,
        api_base: Some(fake.api_base().parse().unwrap()),
        guilds: Vec::new(),
        admin_role: None,
        public_lookups: false,
        routes: Vec::new(),
    };
    let render = restorewatch::render::RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: false,
    };
    let sink = restorewatch::discord::DiscordSink::new(&discord, &app.store, render).unwrap();
    let shutdown = CancellationToken::new();
    let running = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { app.run_loop(&sink, shutdown).await })
    };

    // Eight minute ticks: a poll at each of them, though no delivery got an answer.
    let started = tokio::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(8 * 60 + 30)).await;
    let polls = sim.requests_served();
    assert!(
        polls >= 8,
        "{polls} CBS requests in {:?}",
        started.elapsed()
    );
    assert!(fake.messages(ALERTS).is_empty());

    fake.set_messages_hanging(false);
    let posted = tokio::time::timeout(WAIT, fake.wait_for_messages(ALERTS, 1))
        .await
        .expect("the alert goes out once Discord answers");
    tokio::time::sleep(std::time::Duration::from_secs(3 * 60)).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let alerts = fake.messages(ALERTS);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert!(
        posted[0].to_string().contains("Restore failed"),
        "{posted:?}"
    );
}
