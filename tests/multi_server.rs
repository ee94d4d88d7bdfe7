//! Several CBS servers (`[[cbs]]`), end to end: the program built from a two-server config
//! polls two CBS simulators on loopback, each on its own. Both servers' failures alert and
//! name their server; one server down is an outage of that server only while the other
//! still alerts; discovery runs on the server that has it, users appearing and
//! disappearing, and a failing listing keeps its last list; `/status` and the digest name
//! each server.

mod support;

use chrono::{DateTime, TimeZone, Utc};
use restorewatch::app::App;
use restorewatch::clock::{Clock, ManualClock};
use restorewatch::commands::status::{status, StatusReport};
use restorewatch::config::Settings;
use restorewatch::digest::Digest;
use restorewatch::event::{Event, EventKind};
use restorewatch::render::digest_text;
use restorewatch::render::{render_event, RenderOptions};
use restorewatch::simulator::{Faults, SimConfig, SimHandle, SimUser, Simulator};
use restorewatch::sink::{drain, Delivered, Sink, SinkError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::world::{job, Recorder, TokioClock};
use tokio::time::Instant;

const FAILED: &str = "RESTORE_STOP_BY_ERROR";

fn at(h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, h, min, 0).unwrap()
}

/// Two simulators on one clock, `eu` and `us`, and the program built for them.
struct World {
    eu: SimHandle,
    us: SimHandle,
    clock: ManualClock,
    app: App,
    _dir: tempfile::TempDir,
}

async fn simulator(clock: &ManualClock, users: &[&str]) -> SimHandle {
    let sim = Simulator::new(SimConfig::with_clock(Arc::new(clock.clone())))
        .start()
        .await
        .expect("simulator starts");
    for login in users {
        add_user(&sim, login);
    }
    sim
}

fn add_user(sim: &SimHandle, login: &str) {
    sim.add_user(SimUser {
        login: login.into(),
        owner: "reseller".into(),
        user_id: login.into(),
    });
}

/// `alice` is watched on both servers, `bob` on `eu` only; `us` also discovers its users
/// (`us_extra` adds lines to its `[[cbs]]` entry, e.g. its own `discover` table).
async fn world(us_discover: &str) -> World {
    let clock = ManualClock::new(at(9, 0));
    let eu = simulator(&clock, &["alice", "bob"]).await;
    let us = simulator(&clock, &["alice"]).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
        [[cbs]]
        name = "eu"
        url = "{eu_url}"
        sys_user = "{eu_user}"
        request_timeout = "5s"
        down_after = 1

        [[cbs]]
        name = "us"
        url = "{us_url}"
        sys_user = "{us_user}"
        request_timeout = "5s"
        down_after = 1
        {us_discover}

        [[watch]]
        login = "alice"
        server = "eu"

        [[watch]]
        login = "bob"
        server = "eu"

        [[watch]]
        login = "alice"
        server = "us"

        [state]
        path = "{state}"
        "#,
        eu_url = eu.url(),
        eu_user = eu.sys_user(),
        us_url = us.url(),
        us_user = us.sys_user(),
        state = dir.path().display(),
    );
    let (eu_pwd, us_pwd) = (eu.sys_pwd().to_owned(), us.sys_pwd().to_owned());
    let env = move |name: &str| match name {
        "RESTOREWATCH_CBS_EU_SYS_PWD" => Some(eu_pwd.clone()),
        "RESTOREWATCH_CBS_US_SYS_PWD" => Some(us_pwd.clone()),
        _ => None,
    };
    let settings = Settings::from_toml_str(&toml, &env).expect("two-server config");
    let app = App::build(settings, Arc::new(clock.clone()))
        .await
        .expect("the program builds");
    World {
        eu,
        us,
        clock,
        app,
        _dir: dir,
    }
}

impl World {
    /// One cycle of both servers, then what it queued.
    async fn cycle(&self) -> Vec<Event> {
        self.app.cycle().await.expect("a cycle");
        let sink = Recorder::default();
        drain(&self.app.store, &sink).await.unwrap();
        let events = sink.events.lock().unwrap().clone();
        events
    }

    fn status(&self) -> String {
        let schedule = &self.app.settings.poll.schedule;
        let report =
            StatusReport::gather(&self.app.store, schedule, self.clock.now(), at(9, 0), 0).unwrap();
        let reply = status(&report, false).unwrap();
        let fields = reply.embeds[0].fields.iter();
        fields
            .map(|f| format!("{}: {}\n", f.name, f.value))
            .collect()
    }
}

fn opts() -> RenderOptions {
    RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: true,
    }
}

/// `(server, login)` of each failure alert.
fn failures(events: &[Event]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::JobFinished { job, .. } => {
                Some((job.server.clone(), job.login_name.clone()))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// `(server, down)` of each outage notice: `true` unreachable, `false` recovered.
fn outages(events: &[Event]) -> Vec<(Option<String>, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CbsUnreachable { server, .. } => Some((server.clone(), true)),
            EventKind::CbsRecovered { server, .. } => Some((server.clone(), false)),
            _ => None,
        })
        .collect()
}

fn named(server: &str) -> Option<String> {
    Some(server.to_owned())
}

#[tokio::test]
async fn both_servers_failures_alert_naming_their_server() {
    let w = world("").await;
    assert_eq!(w.app.pollers.len(), 2);
    w.cycle().await;
    // The same login, set and start time on both servers: two jobs, told apart by server.
    w.eu.add_job(job("alice", "1", at(9, 1), Some(at(9, 2)), FAILED));
    w.us.add_job(job("alice", "1", at(9, 1), Some(at(9, 2)), FAILED));
    w.eu.add_job(job("bob", "1", at(9, 3), Some(at(9, 4)), FAILED));
    w.clock.set(at(9, 5));
    let events = w.cycle().await;
    assert_eq!(
        failures(&events),
        [
            ("eu".into(), "alice".into()),
            ("eu".into(), "bob".into()),
            ("us".into(), "alice".into())
        ]
    );
    let titles: Vec<String> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::JobFinished { .. }))
        .map(|e| render_event(e, &opts())[0].title.clone())
        .collect();
    assert!(
        titles.contains(&"us · Restore failed: alice / set 1".to_owned()),
        "{titles:?}"
    );
    assert!(
        titles.contains(&"eu · Restore failed: alice / set 1".to_owned()),
        "{titles:?}"
    );
    // With one server the title stays as it was.
    let single = RenderOptions {
        servers_named: false,
        ..opts()
    };
    let event = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::JobFinished { .. }));
    assert!(render_event(event.unwrap(), &single)[0]
        .title
        .starts_with("Restore failed: "));
    // Nothing twice, on either server.
    w.clock.set(at(9, 10));
    assert!(failures(&w.cycle().await).is_empty());
    // The digest lists each failure with its server.
    let digest = Digest::from_store(
        &w.app.store,
        at(9, 0).date_naive(),
        restorewatch::tz::Tz::UTC,
        vec![],
    )
    .unwrap();
    let text = digest_text(&digest, at(9, 0).date_naive());
    assert!(text.contains("alice / set 1 on eu"), "{text}");
    assert!(text.contains("alice / set 1 on us"), "{text}");
    assert!(text.contains("bob / set 1 on eu"), "{text}");
}

#[tokio::test]
async fn one_server_down_is_an_outage_of_that_server_only() {
    let w = world("").await;
    w.cycle().await;
    w.eu.set_down(true).await.unwrap();
    w.us.add_job(job("alice", "2", at(9, 1), Some(at(9, 2)), FAILED));
    w.clock.set(at(9, 5));
    let events = w.cycle().await;
    assert_eq!(outages(&events), [(named("eu"), true)]);
    assert_eq!(
        failures(&events),
        [("us".into(), "alice".into())],
        "us still alerts"
    );
    let notice = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::CbsUnreachable { .. }))
        .unwrap();
    assert!(render_event(notice, &opts())[0]
        .title
        .starts_with("eu · Backup server unreachable"));
    let shown = w.status();
    assert!(
        shown.contains("Backup server eu") && shown.contains("unreachable since"),
        "{shown}"
    );
    assert!(shown.contains("Backup server us: answering"), "{shown}");

    // Still down: no second notice; us keeps alerting.
    w.us.add_job(job("alice", "3", at(9, 6), Some(at(9, 7)), FAILED));
    w.clock.set(at(9, 10));
    let events = w.cycle().await;
    assert!(outages(&events).is_empty(), "{events:?}");
    assert_eq!(failures(&events), [("us".into(), "alice".into())]);

    // eu answers again: one recovery, of eu, and what failed meanwhile on eu alerts.
    w.eu.add_job(job("bob", "4", at(9, 11), Some(at(9, 12)), FAILED));
    w.eu.set_down(false).await.unwrap();
    w.clock.set(at(9, 15));
    let events = w.cycle().await;
    assert_eq!(outages(&events), [(named("eu"), false)]);
    assert_eq!(failures(&events), [("eu".into(), "bob".into())]);
    assert!(!w.status().contains("unreachable since"));

    // The day's digest names the server that was down, beside the one that was not.
    let today = at(9, 0).date_naive();
    let digest =
        Digest::from_store(&w.app.store, today, restorewatch::tz::Tz::UTC, vec![]).unwrap();
    let text = digest_text(&digest, today);
    assert!(
        text.contains("eu: 4 cycles, 3 request errors, CBS down 10 min"),
        "{text}"
    );
    assert!(
        text.contains("us: 4 cycles, 0 request errors, no CBS outage"),
        "{text}"
    );
}

/// After a first cycle, `us` hangs until its requests time out (`request_timeout` is 5 s)
/// and `eu` has a failure to alert.
async fn eu_fails_while_us_hangs() -> World {
    let w = world("").await;
    w.cycle().await;
    w.us.set_faults(Faults {
        latency: Duration::from_secs(3600),
        ..Faults::default()
    });
    w.eu.add_job(job("bob", "1", at(9, 1), Some(at(9, 2)), FAILED));
    w.clock.set(at(9, 5));
    w
}

/// A server that hangs until its requests time out holds up
/// none of the other server's alerts: they are delivered as soon as that server's cycle
/// ends, while the hanging one still waits.
#[tokio::test(start_paused = true)]
async fn a_hanging_server_holds_up_no_alert_of_the_other() {
    let w = eu_fails_while_us_hangs().await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let sink = Recorder {
        on_call: Some(Box::new(move |_| seen.lock().unwrap().push(Instant::now()))),
        ..Recorder::default()
    };
    let started = Instant::now();
    let (_, drained) = w.app.cycle_and_deliver(&sink).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the us requests timed out"
    );
    let first_call = calls.lock().unwrap()[0];
    assert!(
        first_call - started < Duration::from_secs(5),
        "eu's alert went out {:?} after the start, after us timed out",
        first_call - started
    );
    let events = sink.events.lock().unwrap().clone();
    assert_eq!(failures(&events), [("eu".into(), "bob".into())]);
    // The totals count every server's delivery of the round, not only the last one.
    assert_eq!(drained.delivered, events.len(), "{events:?}");
}

/// A sink that refuses every event for good (as Discord refuses a message it cannot
/// take): each leaves the outbox as dropped.
#[derive(Default)]
struct Refuser {
    refused: Mutex<Vec<Event>>,
}

impl Sink for Refuser {
    async fn deliver(&self, events: &[Event]) -> Result<Delivered, SinkError> {
        self.refused.lock().unwrap().extend_from_slice(events);
        Ok(Delivered {
            accepted: Vec::new(),
            dropped: events.iter().map(|e| e.id).collect(),
        })
    }
}

/// The round's `dropped` total counts every server's delivery too: `eu`'s alert, dropped
/// while `us` still hangs, is in it after `us`'s cycle ends with nothing to deliver.
#[tokio::test(start_paused = true)]
async fn a_rounds_dropped_total_counts_the_drain_of_every_server() {
    let w = eu_fails_while_us_hangs().await;
    let sink = Refuser::default();
    let (_, drained) = w.app.cycle_and_deliver(&sink).await.unwrap();
    let refused = sink.refused.lock().unwrap().clone();
    assert_eq!(failures(&refused), [("eu".into(), "bob".into())]);
    assert_eq!((drained.delivered, drained.dropped), (0, refused.len()));
}

/// The run loop on a five-second schedule with `us` answering only after 45 s (its requests
/// time out at 30 s, so each of its cycles runs past six ticks): `eu` still polls at every
/// tick and its failure is posted within one tick of ending, not after `us` timed out.
#[tokio::test(start_paused = true)]
async fn a_slow_server_holds_up_neither_the_others_alerts_nor_their_next_cycles() {
    let clock: restorewatch::clock::SharedClock = Arc::new(TokioClock::new(
        Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 2).unwrap(),
    ));
    let start = |users: &'static [&'static str]| {
        let clock = clock.clone();
        async move {
            let sim = Simulator::new(SimConfig::with_clock(clock))
                .start()
                .await
                .expect("simulator starts");
            for login in users {
                add_user(&sim, login);
            }
            sim
        }
    };
    let (eu, us) = (start(&["bob"]).await, start(&["alice"]).await);
    us.set_faults(Faults {
        latency: Duration::from_secs(45),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let entry = |name: &str, sim: &SimHandle, login: &str| {
        format!(
            "[[cbs]]\nname = \"{name}\"\nurl = \"{url}\"\nsys_user = \"{user}\"\n\
             sys_pwd = \"{pwd}\"\nrequest_timeout = \"30s\"\n\
             [[watch]]\nlogin = \"{login}\"\nserver = \"{name}\"\n",
            url = sim.url(),
            user = sim.sys_user(),
            pwd = sim.sys_pwd(),
        )
    };
    let toml = format!(
        "{}{}[poll]\nschedule = \"*/5 * * * * *\"\n[state]\npath = \"{}\"\n",
        entry("eu", &eu, "bob"),
        entry("us", &us, "alice"),
        dir.path().display(),
    );
    let settings = Settings::from_toml_str(&toml, &|_| None).expect("two-server config");
    let app = App::build(settings, clock.clone()).await.unwrap();
    let sink = Recorder::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let test = async {
        // 12:00:41: us's first cycle (12:00:05) timed out at 12:00:35, its second began at
        // 12:00:40 and waits until 12:01:10; eu was polled at 12:00:40.
        tokio::time::sleep(Duration::from_secs(39)).await;
        let ended = clock.now();
        let began = ended - chrono::Duration::seconds(1);
        eu.add_job(job("bob", "1", began, Some(ended), FAILED));
        let posted = tokio::time::timeout(Duration::from_secs(300), async {
            while failures(&sink.events.lock().unwrap()).is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            clock.now()
        })
        .await
        .expect("eu's failure is posted");
        assert!(
            posted - ended <= chrono::Duration::seconds(6),
            "eu's failure ended at {ended} and was posted at {posted}"
        );
        let polled = eu.requests_for("bob", ended.date_naive());
        assert!(polled >= 9, "eu polled at every tick: {polled}");
        assert_eq!(us.max_in_flight(), 1, "us's cycles overlapped");
        shutdown.cancel();
    };
    let (ran, ()) = tokio::join!(app.run_loop(&sink, shutdown.clone()), test);
    ran.unwrap();
    assert_eq!(
        failures(&sink.events.lock().unwrap()),
        [("eu".into(), "bob".into())]
    );
}

/// A server that is down gets one probe request per cycle, not one per user and date;
/// when the probe answers again, the full cycle (catch-up included) runs.
#[tokio::test(start_paused = true)]
async fn a_down_server_gets_one_probe_request_per_cycle() {
    let w = world("").await;
    w.cycle().await;
    w.us.set_faults(Faults {
        latency: Duration::from_secs(60),
        ..Faults::default()
    });
    w.clock.set(at(9, 5));
    assert_eq!(outages(&w.cycle().await), [(named("us"), true)]);
    // Two days later: alice on us has three dates to read, but only the probe goes out.
    w.clock.set(at(9, 0) + chrono::Duration::days(2));
    w.us.reset_stats();
    let (report, _) = w.app.cycle_and_deliver(&Recorder::default()).await.unwrap();
    assert_eq!(w.us.requests_served(), 1, "one probe, not users × dates");
    let today = w.clock.now().date_naive();
    assert_eq!(w.us.requests_for("alice", today), 1);
    let us_errors = report.summary.errors.iter().filter(|e| e.date == today);
    assert!(us_errors.count() >= 1, "{report:?}");
    // It answers again: the probe succeeds and the cycle reads every date.
    w.us.set_faults(Faults::default());
    w.clock.set(at(9, 5) + chrono::Duration::days(2));
    w.us.reset_stats();
    let events = w.cycle().await;
    assert_eq!(outages(&events), [(named("us"), false)]);
    assert!(w.us.requests_served() >= 3, "{}", w.us.requests_served());
    assert_eq!(w.us.requests_for("alice", w.clock.now().date_naive()), 1);
}

#[tokio::test]
async fn discovery_on_one_server_users_appear_disappear_and_a_failed_listing_keeps_the_list() {
    let w = world("[cbs.discover]\nenabled = true\nexclude = [\"test-*\"]\nrefresh = \"1h\"").await;
    add_user(&w.us, "carol");
    add_user(&w.us, "test-1");
    // A user only the eu server has: eu does not discover, so dave is never polled there.
    add_user(&w.eu, "dave");
    let today = at(0, 0).date_naive();
    let events = w.cycle().await;
    assert!(failures(&events).is_empty(), "first cycles are a baseline");
    assert_eq!(w.us.requests_for("carol", today), 1, "discovered on us");
    assert_eq!(w.us.requests_for("test-1", today), 0, "excluded by glob");
    assert_eq!(w.eu.requests_for("dave", today), 0, "eu has no discovery");
    assert_eq!(
        w.eu.requests_for("carol", today),
        0,
        "carol is not asked of eu"
    );

    // erin appears on us: found at the next refresh, baselined, not alerted.
    add_user(&w.us, "erin");
    w.us.add_job(job("erin", "1", at(8, 0), Some(at(8, 5)), FAILED));
    w.clock.set(at(10, 0));
    let events = w.cycle().await;
    assert_eq!(w.us.requests_for("erin", today), 1);
    assert!(failures(&events).is_empty(), "{events:?}");

    // The listing fails on us: the last list is kept and its users still alert; eu is
    // untouched; /status says which server's discovery failed.
    w.us.set_list_users_denied(true);
    w.us.add_job(job("carol", "2", at(10, 30), Some(at(10, 31)), FAILED));
    w.eu.add_job(job("bob", "2", at(10, 30), Some(at(10, 31)), FAILED));
    w.clock.set(at(11, 5));
    let events = w.cycle().await;
    assert_eq!(
        failures(&events),
        [("eu".into(), "bob".into()), ("us".into(), "carol".into())]
    );
    assert!(outages(&events).is_empty(), "a failed listing is no outage");
    let shown = w.status();
    let us_field = shown
        .split("Backup server us")
        .nth(1)
        .expect("a field for us");
    assert!(us_field.contains("discovery: failed"), "{shown}");
    assert!(
        !shown
            .split("Backup server us")
            .next()
            .unwrap()
            .contains("discovery"),
        "eu has no discovery: {shown}"
    );

    // carol disappears from us once listing works again: no longer polled there.
    w.us.set_list_users_denied(false);
    w.us.remove_user("carol");
    let before = w.us.requests_for("carol", today);
    w.clock.set(at(12, 10));
    w.cycle().await;
    assert_eq!(w.us.requests_for("carol", today), before);
    assert!(w.us.requests_for("erin", today) > 1, "erin still polled");
}

/// A `[[cbs]]` table named `name` for `sim`, watching `user` there.
fn entry(name: &str, sim: &SimHandle, user: &str) -> String {
    format!(
        "[[cbs]]\nname = \"{name}\"\nurl = \"{}\"\nsys_user = \"{}\"\nsys_pwd = \"{}\"\n\
         [[watch]]\nlogin = \"{user}\"\nserver = \"{name}\"\n",
        sim.url(),
        sim.sys_user(),
        sim.sys_pwd()
    )
}

/// A single-server install gains a second server: the first keeps its state and its job
/// keys (nothing re-baselined, nothing alerted twice), wherever it is listed; a config
/// naming none of the store's servers is refused.
#[tokio::test]
async fn a_single_server_store_keeps_its_state_when_a_second_server_is_added() {
    let clock = ManualClock::new(at(9, 0));
    let old = simulator(&clock, &["alice"]).await;
    let new = simulator(&clock, &["zoe"]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().display().to_string();
    let single = format!(
        "[cbs]\nurl = \"{}\"\nserver_name = \"old\"\nsys_user = \"{}\"\nsys_pwd = \"{}\"\n\
         [[watch]]\nlogin = \"alice\"\n[state]\npath = \"{state}\"\n",
        old.url(),
        old.sys_user(),
        old.sys_pwd()
    );
    let build = |text: String| {
        let clock = clock.clone();
        async move {
            let settings = Settings::from_toml_str(&text, &|_| None).expect("config");
            App::build(settings, Arc::new(clock)).await
        }
    };
    old.add_job(job("alice", "1", at(8, 0), Some(at(8, 5)), FAILED));
    let app = build(single).await.unwrap();
    app.cycle().await.unwrap();
    old.add_job(job("alice", "2", at(9, 1), Some(at(9, 2)), FAILED));
    clock.set(at(9, 5));
    app.cycle().await.unwrap();
    drain(&app.store, &Recorder::default()).await.unwrap();
    drop(app);

    // The old server listed second, a new one first.
    let two = format!(
        "{}{}[state]\npath = \"{state}\"\n",
        entry("new", &new, "zoe"),
        entry("old", &old, "alice")
    );
    let app = build(two.clone()).await.unwrap();
    old.add_job(job("alice", "3", at(9, 6), Some(at(9, 7)), FAILED));
    new.add_job(job("zoe", "1", at(8, 0), Some(at(8, 5)), FAILED));
    clock.set(at(9, 10));
    app.cycle().await.unwrap();
    let sink = Recorder::default();
    drain(&app.store, &sink).await.unwrap();
    let events = sink.events.lock().unwrap().clone();
    // alice is not new: only her new failure alerts, her two old ones stay told. zoe is
    // new on the new server: her old failure is a baseline.
    assert_eq!(failures(&events), [("old".into(), "alice".into())]);
    let baselined: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Baseline { users, .. } => Some(
                users
                    .iter()
                    .map(|u| u.login_name.clone())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(baselined, ["zoe"]);
    drop(app);

    // Neither name known: refused, naming both lists.
    let renamed = two
        .replace("\"old\"", "\"old-2\"")
        .replace("\"new\"", "\"new-2\"");
    let err = build(renamed).await.err().expect("refused").to_string();
    assert!(
        err.contains("\"old\"") && err.contains("\"new-2\""),
        "{err}"
    );

    // The store's first server (its state unscoped) leaves the config: /status and
    // /healthz read the servers configured now, not its stale state.
    let only_new = format!("{}[state]\npath = \"{state}\"\n", entry("new", &new, "zoe"));
    let app = build(only_new).await.unwrap();
    clock.set(at(10, 0));
    app.cycle().await.unwrap();
    clock.set(at(10, 1));
    let schedule = &app.settings.poll.schedule;
    let report = StatusReport::gather(&app.store, schedule, clock.now(), at(9, 0), 0).unwrap();
    assert_eq!(report.last_cycle.map(|c| c.finished_at), Some(at(10, 0)));
    let mut state = restorewatch::server::ServerState::new(
        app.store.clone(),
        Arc::new(clock.clone()),
        schedule.clone(),
        false,
        restorewatch::metrics::install(),
    );
    state.started_at = at(9, 0);
    let health = restorewatch::server::check(&state);
    assert_eq!(health.status, "ok", "{:?}", health.reasons);
    assert_eq!(health.last_cycle.map(|c| c.finished_at), Some(at(10, 0)));
    let names: Vec<&str> = health.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["new"]);
    assert_eq!(health.servers[0].last_cycle_finished_at, Some(at(10, 0)));
}

/// The built binary: `once` with two `[[cbs]]` servers, each password from its own
/// variable; the console shows each server's failure under its name, and one server down
/// is a notice of that server while the other's failure still shows.
#[tokio::test]
async fn the_binary_polls_both_servers_and_names_them_on_the_console() {
    let start = |users: &'static [&'static str]| async move {
        let sim = Simulator::new(SimConfig::default()).start().await.unwrap();
        for login in users {
            add_user(&sim, login);
        }
        sim
    };
    let (eu, us) = (start(&["alice"]).await, start(&["alice"]).await);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rw.toml");
    let entry = |name: &str, sim: &SimHandle| {
        format!(
            "[[cbs]]\nname = \"{name}\"\nurl = \"{}\"\nsys_user = \"{}\"\nrequest_timeout = \"3s\"\n\
             down_after = 1\n[[watch]]\nlogin = \"alice\"\nserver = \"{name}\"\n",
            sim.url(),
            sim.sys_user()
        )
    };
    let text = format!(
        "{}{}[state]\npath = \"{}\"\n",
        entry("eu", &eu),
        entry("us", &us),
        dir.path().join("state").display()
    );
    std::fs::write(&config, text).unwrap();
    let once = || {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_restorewatch"));
        cmd.args(["once", "--config", config.to_str().unwrap()]);
        for (name, _) in std::env::vars() {
            if name.starts_with("RESTOREWATCH_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("RESTOREWATCH_CBS_EU_SYS_PWD", eu.sys_pwd())
            .env("RESTOREWATCH_CBS_US_SYS_PWD", us.sys_pwd());
        cmd.output()
    };
    let out = once().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ended = Utc::now() - chrono::Duration::minutes(2);
    let failed = |set: &str| {
        job(
            "alice",
            set,
            ended - chrono::Duration::minutes(1),
            Some(ended),
            FAILED,
        )
    };
    eu.add_job(failed("1"));
    us.add_job(failed("2"));
    let out = once().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("eu · Restore failed: alice / set 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("us · Restore failed: alice / set 2"),
        "{stdout}"
    );

    eu.set_down(true).await.unwrap();
    us.add_job(failed("3"));
    let out = once().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("eu · Backup server unreachable"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("us · Backup server unreachable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("us · Restore failed: alice / set 3"),
        "{stdout}"
    );
    assert!(!stdout.contains(eu.sys_pwd()) && !stdout.contains(us.sys_pwd()));
}

/// Two servers, `a` and `b`; bob's restore on `b` is recorded as running. `b` renamed `b2`
/// in one go (the same server) would start `b2` with a baseline that records bob's failure
/// without an alert, so it is refused, a config error naming both names. `b` removed on
/// its own starts with a warning naming it and its running restore, and `/status` shows
/// it; a start that then adds `b2` is taken (another server, after the operator saw it).
#[tokio::test]
async fn a_server_renamed_while_it_has_a_running_restore_is_refused_naming_both() {
    let clock = ManualClock::new(at(9, 0));
    let a = simulator(&clock, &["alice"]).await;
    let b = simulator(&clock, &["bob"]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().display().to_string();
    let config = |second: Option<&str>| {
        let b_entry = second.map_or_else(String::new, |name| entry(name, &b, "bob"));
        format!(
            "{}{b_entry}[state]\npath = \"{state}\"\n",
            entry("a", &a, "alice")
        )
    };
    let build = |text: String| {
        let clock = clock.clone();
        async move {
            let settings = Settings::from_toml_str(&text, &|_| None).expect("config");
            App::build(settings, Arc::new(clock)).await
        }
    };
    b.add_job(job("bob", "1", at(8, 50), None, "RESTORE_RUNNING"));
    let app = build(config(Some("b"))).await.unwrap();
    let report = app.cycle().await.unwrap();
    assert_eq!(report.summary.errors, []);
    assert_eq!(app.store.running_dates("b", "bob").unwrap().len(), 1);
    drop(app);
    b.set_jobs(vec![job("bob", "1", at(8, 50), Some(at(9, 6)), FAILED)]);
    clock.set(at(9, 10));

    let err = build(config(Some("b2"))).await.err().expect("refused");
    let config_error = err
        .downcast_ref::<restorewatch::config::ConfigError>()
        .unwrap_or_else(|| panic!("not a config error (exit 2): {err:#}"));
    assert_eq!(config_error.key(), Some("cbs.name"));
    let text = err.to_string();
    assert!(
        text.contains("\"b\" (1 restore recorded as running)")
            && text.contains("and \"b2\" joined"),
        "{text}"
    );

    // b removed on its own: a warning and a /status line, then b2 is taken.
    let logs = support::logs::LogCapture::default();
    let guard = logs.install();
    let app = build(config(None)).await.unwrap();
    drop(guard);
    let warned = logs.text();
    assert!(
        warned.contains("WARN")
            && warned.contains("backup server \"b\" has records in the state store but is not in the configuration; its 1 restore recorded as running is no longer followed"),
        "{warned}"
    );
    let report = StatusReport::gather(
        &app.store,
        &app.settings.poll.schedule,
        at(9, 10),
        at(9, 0),
        0,
    )
    .unwrap();
    let names: Vec<(&str, usize)> = (report.unconfigured.iter())
        .map(|s| (s.name.as_str(), s.running))
        .collect();
    assert_eq!(names, [("b", 1)]);
    let reply = status(&report, false).unwrap();
    let field = (reply.embeds[0].fields.iter())
        .find(|f| f.name == "Backup servers not configured")
        .expect("a /status field");
    assert!(
        field
            .value
            .starts_with("b: its 1 restore recorded as running"),
        "{}",
        field.value
    );
    drop(app);
    build(config(Some("b2")))
        .await
        .expect("b2 after b was removed");
}
