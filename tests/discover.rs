//! `[discover]` against the CBS simulator over loopback: users the server lists are watched,
//! new ones are baselined, vanished ones stop being polled, and a failed listing keeps the
//! last list and says which role is missing.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use restorewatch::commands::status::{status, StatusReport};
use restorewatch::commands::Scope;
use restorewatch::discover::{self, DiscoverSettings};
use restorewatch::event::EventKind;
use restorewatch::poller::Poller;
use restorewatch::schedule::CronSchedule;
use restorewatch::simulator::SimUser;
use restorewatch::sink::drain;
use support::world::{job, Harness, Recorder};

fn at(h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, h, min, 0).unwrap()
}

fn settings(exclude: &[&str]) -> DiscoverSettings {
    let mut globs = globset::GlobSetBuilder::new();
    for g in exclude {
        globs.add(globset::Glob::new(g).unwrap());
    }
    DiscoverSettings {
        enabled: true,
        owners: Vec::new(),
        exclude: globs.build().unwrap(),
        exclude_patterns: exclude.iter().map(|g| g.to_string()).collect(),
        refresh: std::time::Duration::from_secs(3600),
    }
}

fn server_user(h: &Harness, login: &str) {
    h.sim.add_user(SimUser {
        login: login.into(),
        owner: "reseller".into(),
        user_id: login.into(),
    });
}

fn poller(h: &Harness) -> Poller {
    h.poller().with_discovery(settings(&["test-*"]))
}

fn polled(h: &Harness, login: &str) -> u64 {
    h.sim.requests_for(login, at(0, 0).date_naive())
}

#[tokio::test]
async fn users_appear_and_disappear() {
    let h = Harness::start(&[], at(12, 0)).await;
    for login in ["alice", "bob", "test-1"] {
        server_user(&h, login);
    }
    h.sim.add_job(job(
        "alice",
        "1",
        at(9, 0),
        Some(at(9, 5)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.sim.add_job(job(
        "bob",
        "1",
        at(10, 0),
        Some(at(10, 5)),
        "RESTORE_STOP_SUCCESS",
    ));
    let p = poller(&h);
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 2, "alice and bob, not test-1");
    assert_eq!(polled(&h, "test-1"), 0, "excluded by glob");
    assert_eq!(
        r.baselined, 2,
        "alice's and bob's jobs are a baseline, not alerts"
    );

    // carol appears; she is found at the next refresh, an hour after the last list.
    server_user(&h, "carol");
    h.sim.add_job(job(
        "carol",
        "1",
        at(8, 0),
        Some(at(8, 5)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.clock.advance(Duration::minutes(30));
    p.cycle().await.unwrap();
    assert_eq!(polled(&h, "carol"), 0, "not yet refreshed");
    h.clock.advance(Duration::minutes(30));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 3);
    assert_eq!(polled(&h, "carol"), 1);
    assert_eq!(r.baselined, 1, "carol's old failure is her baseline");
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    assert!(
        sink.alerts().is_empty(),
        "a newly discovered user does not flood: {:?}",
        sink.alerts()
    );
    assert!(sink
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Baseline { users, .. }
            if users.iter().any(|u| u.login_name == "carol"))));

    // bob disappears from the server: no longer polled, his state is kept.
    h.sim.remove_user("bob");
    let bob_before = polled(&h, "bob");
    h.clock.advance(Duration::minutes(60));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 2);
    assert_eq!(polled(&h, "bob"), bob_before);
    assert!(
        r.ok(),
        "no request for a vanished user fails: {:?}",
        r.summary.errors
    );
    let records = p.store().jobs_on(at(0, 0).date_naive()).unwrap();
    assert!(
        records.iter().any(|r| r.job.login_name == "bob"),
        "records stay until retention"
    );
}

#[tokio::test]
async fn a_failed_listing_keeps_the_last_list_and_names_the_role() {
    let h = Harness::start(&[], at(12, 0)).await;
    for login in ["alice", "bob"] {
        server_user(&h, login);
    }
    let p = poller(&h);
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 2);

    h.sim.set_list_users_denied(true);
    server_user(&h, "carol");
    h.clock.advance(Duration::hours(2));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 2, "the last list is kept");
    let d = discover::status(p.store()).unwrap();
    let error = d.last_error.clone().expect("the failure is recorded");
    assert!(error.contains("Admin or API role"), "{error}");
    assert_eq!(d.users, 2);

    let schedule = CronSchedule::parse("*/5 * * * *", chrono_tz::UTC).unwrap();
    let report = StatusReport::gather(p.store(), &schedule, at(14, 1), at(12, 0), 0).unwrap();
    let reply = status(&report, false).unwrap();
    let field = reply.embeds[0]
        .fields
        .iter()
        .find(|f| f.name == "Discovery")
        .expect("/status shows discovery");
    assert!(field.value.contains("failed") && field.value.contains("Admin or API role"));
    assert!(
        field.value.contains("keeping the last list: 2 users"),
        "{}",
        field.value
    );

    let list =
        restorewatch::commands::watch::list(p.store(), &[], &[], &Scope::default(), None, false)
            .unwrap();
    let footer = list.embeds[0].footer.clone().unwrap();
    assert_eq!(footer, "2 watched · config file 0 · chat 0 · discovered 2");

    // Healed: the next cycle lists again (a failure is retried at once) and finds carol.
    h.sim.set_list_users_denied(false);
    h.clock.advance(Duration::minutes(5));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 3);
    assert_eq!(discover::status(p.store()).unwrap().last_error, None);
}

/// Outage notices (`true`: unreachable, `false`: recovered) a cycle queued.
async fn outage_notices(p: &Poller) -> Vec<bool> {
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let events = sink.events.lock().unwrap();
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CbsUnreachable { .. } => Some(true),
            EventKind::CbsRecovered { .. } => Some(false),
            _ => None,
        })
        .collect()
}

/// A server watched only through discovery that is down has no user to probe: the failed
/// listing is the news about the server, so the outage is told like any other, and it
/// recovers when the listing works again.
#[tokio::test]
async fn a_discovery_only_server_that_is_down_is_an_outage() {
    let h = Harness::start(&[], at(12, 0)).await;
    server_user(&h, "alice");
    h.sim.set_down(true).await.unwrap();
    let p = poller(&h);
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 0);
    assert_eq!(outage_notices(&p).await, [true], "down from the start");
    assert!(p.store().outage().unwrap().is_some());

    h.clock.advance(Duration::minutes(5));
    p.cycle().await.unwrap();
    assert!(outage_notices(&p).await.is_empty(), "one notice per outage");

    h.sim.set_down(false).await.unwrap();
    h.clock.advance(Duration::minutes(5));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 1, "listed once it answers");
    assert_eq!(outage_notices(&p).await, [false]);
}

/// While a server with watched users is down, its one probe request is all it is asked:
/// the listing is not retried every cycle (each a timeout more on a hanging server), and
/// is refreshed in the cycle after the server answers again.
#[tokio::test]
async fn a_down_server_is_probed_not_listed_again() {
    let h = Harness::start(&[], at(12, 0)).await;
    server_user(&h, "alice");
    let p = poller(&h);
    p.cycle().await.unwrap();
    let _ = outage_notices(&p).await;

    h.sim.set_down(true).await.unwrap();
    h.clock.advance(Duration::hours(2));
    p.cycle().await.unwrap();
    assert_eq!(outage_notices(&p).await, [true]);
    // The listing is due (two hours since the last), but the server is down.
    h.clock.advance(Duration::hours(2));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.requests, 1, "the probe");
    let d = discover::status(p.store()).unwrap();
    assert_eq!(d.last_attempt, Some(at(14, 0)), "not listed while down");

    server_user(&h, "bob");
    h.sim.set_down(false).await.unwrap();
    h.clock.advance(Duration::minutes(5));
    let r = p.cycle().await.unwrap();
    assert_eq!(outage_notices(&p).await, [false]);
    assert_eq!(
        r.summary.users_polled, 1,
        "the probe's cycle polls the last list"
    );
    h.clock.advance(Duration::minutes(5));
    assert_eq!(
        p.cycle().await.unwrap().summary.users_polled,
        2,
        "listed again"
    );
}
