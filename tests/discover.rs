//! `[discover]` against the CBS simulator over loopback: users the server lists are watched,
//! new ones are baselined, vanished ones stop being polled and resume (not baselined again)
//! when listed again, and a failed or empty listing keeps the last list and says why.

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
use support::logs::LogCapture;
use support::world::{job, Harness, Recorder};

const FAILED: &str = "RESTORE_STOP_BY_ERROR";

fn at(h: u32, min: u32) -> DateTime<Utc> {
    on(10, h, min)
}

/// A time in March 2026.
fn on(day: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, h, min, 0).unwrap()
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
    let r = p.cycle().await.unwrap();
    assert_eq!((r.summary.users_polled, r.discovery_errors), (2, 0));

    h.sim.set_list_users_denied(true);
    server_user(&h, "carol");
    h.clock.advance(Duration::hours(2));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 2, "the last list is kept");
    // The polls went well; the cycle's report (and its log line) still counts the listing.
    assert!(r.ok(), "{:?}", r.summary.errors);
    assert_eq!(r.discovery_errors, 1, "the failed listing is counted");
    let d = discover::status(p.store()).unwrap();
    let error = d.last_error.clone().expect("the failure is recorded");
    assert!(error.contains("Admin or API role"), "{error}");
    assert_eq!(d.users, 2);

    let schedule = CronSchedule::parse("*/5 * * * *", restorewatch::tz::Tz::UTC).unwrap();
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
    let r = p.cycle().await.unwrap();
    assert_eq!((r.summary.users_polled, r.discovery_errors), (3, 0));
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

/// The events the cycles so far queued, delivered to a fresh recorder.
async fn delivered(p: &Poller) -> Recorder {
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    sink
}

/// The logins of the "Now watching" cards among `sink`'s events.
fn baselined_logins(sink: &Recorder) -> Vec<String> {
    sink.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Baseline { users, .. } => Some(users.clone()),
            _ => None,
        })
        .flatten()
        .map(|u| u.login_name)
        .collect()
}

/// The login of each of `sink`'s job alerts.
fn alerted(sink: &Recorder) -> Vec<String> {
    sink.alerts()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::JobFinished { job, .. } => Some(job.login_name.clone()),
            _ => None,
        })
        .collect()
}

/// A listing that leaves a user out (a CBS hiccup) and the next one that lists them again:
/// the user was baselined already and the store still knows them, so their failure that
/// ended in between is alerted, not recorded as a second baseline.
#[tokio::test]
async fn a_user_left_out_of_one_listing_and_listed_again_is_not_baselined_again() {
    let h = Harness::start(&[], at(12, 0)).await;
    for login in ["alice", "bob"] {
        server_user(&h, login);
    }
    let p = poller(&h);
    p.cycle().await.unwrap();
    assert_eq!(baselined_logins(&delivered(&p).await), ["alice", "bob"]);

    h.sim.remove_user("alice");
    h.clock.advance(Duration::hours(1));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 1);

    server_user(&h, "alice");
    h.sim
        .add_job(job("alice", "1", at(13, 10), Some(at(13, 20)), FAILED));
    h.clock.advance(Duration::hours(1));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 2);
    assert_eq!(r.baselined, 0, "alice is not baselined a second time");
    let sink = delivered(&p).await;
    assert_eq!(alerted(&sink), ["alice"], "one alert");
    assert!(
        baselined_logins(&sink).is_empty(),
        "no second \"Now watching\" line"
    );
}

/// Back after days, a user's missed dates are caught up like after downtime; one gone
/// longer than the store keeps records (`state.retention_days`) is new again.
#[tokio::test]
async fn a_user_listed_again_days_later_is_caught_up_and_past_the_retention_is_new() {
    let h = Harness::start(&[], on(10, 12, 0)).await;
    for login in ["alice", "bob"] {
        server_user(&h, login);
    }
    let p = poller(&h);
    p.cycle().await.unwrap();
    h.sim.remove_user("alice");
    h.clock.set(on(10, 13, 0));
    p.cycle().await.unwrap();
    let _ = delivered(&p).await;

    // Two days later alice is listed again; her restores failed on both missed days, and
    // bob is no longer listed.
    server_user(&h, "alice");
    h.sim.remove_user("bob");
    for day in [10, 11] {
        h.sim.add_job(job(
            "alice",
            "1",
            on(day, 15, 0),
            Some(on(day, 15, 5)),
            FAILED,
        ));
    }
    h.clock.set(on(12, 12, 0));
    let r = p.cycle().await.unwrap();
    assert_eq!(h.sim.requests_for("alice", on(11, 0, 0).date_naive()), 1);
    assert_eq!((r.baselined, r.summary.alerts), (0, 2));
    let sink = delivered(&p).await;
    assert_eq!(alerted(&sink), ["alice", "alice"], "both missed failures");
    assert!(baselined_logins(&sink).is_empty());

    // bob comes back 40 days later: his records are pruned (35 days), so he is new.
    server_user(&h, "bob");
    let start = on(12, 12, 0) + Duration::days(40);
    h.sim.add_job(job(
        "bob",
        "1",
        start - Duration::hours(2),
        Some(start - Duration::hours(1)),
        FAILED,
    ));
    h.clock.set(start);
    let r = p.cycle().await.unwrap();
    assert_eq!((r.baselined, r.summary.alerts), (1, 0));
    assert_eq!(baselined_logins(&delivered(&p).await), ["bob"]);
}

/// `/watch remove` then `/watch add` (or the same in the config file) is an admin's
/// choice, and `/watch add` promises a baseline: with discovery on, a user added again
/// from chat whom discovery does not list is baselined again.
#[tokio::test]
async fn a_user_added_again_from_chat_is_baselined_again() {
    use restorewatch::store::DynamicWatch;
    let h = Harness::start(&[], at(9, 0)).await;
    server_user(&h, "alice");
    server_user(&h, "test-9");
    let watch = DynamicWatch {
        login: "test-9".into(),
        owner: "reseller".into(),
        added_by: "op (1)".into(),
        added_at: at(9, 0),
    };
    let p = poller(&h);
    p.store().add_watch(&watch).unwrap();
    p.cycle().await.unwrap();
    assert_eq!(baselined_logins(&delivered(&p).await), ["alice", "test-9"]);
    p.store().remove_watch("test-9").unwrap();
    h.clock.set(at(10, 0));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 1);
    h.sim
        .add_job(job("test-9", "1", at(10, 10), Some(at(10, 20)), FAILED));
    p.store().add_watch(&watch).unwrap();
    h.clock.set(at(11, 0));
    let r = p.cycle().await.unwrap();
    assert_eq!((r.baselined, r.summary.alerts), (1, 0));
    assert_eq!(baselined_logins(&delivered(&p).await), ["test-9"]);
}

/// A server that had users and lists nobody is taken for a fault: the last list is kept,
/// a warning names the server, `/status` says so, and the next cycle lists again.
#[tokio::test]
async fn an_empty_listing_keeps_the_last_list_and_shows_in_status() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let h = Harness::start(&[], at(12, 0)).await;
    for login in ["alice", "bob"] {
        server_user(&h, login);
    }
    let p = poller(&h);
    p.cycle().await.unwrap();

    for login in ["alice", "bob"] {
        h.sim.remove_user(login);
    }
    h.clock.advance(Duration::hours(2));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 2, "the last list is kept");
    let d = discover::status(p.store()).unwrap();
    assert_eq!(d.users, 2);
    assert_eq!(d.last_success, Some(at(12, 0)));
    let error = d.last_error.expect("recorded as a failed listing");
    assert!(error.contains("listed no users"), "{error}");
    let warning = log_line(&logs, "listed no users");
    assert!(
        warning.contains("WARN") && warning.contains("server=\"cbs-test\""),
        "{warning}"
    );
    let field = discovery_field(&p);
    assert!(
        field.contains("failed: 2/ListUsers.do listed no users")
            && field.contains("keeping the last list: 2 users"),
        "{field}"
    );

    // The next cycle lists again (a failure is retried at once) and takes what it finds.
    server_user(&h, "alice");
    h.clock.advance(Duration::minutes(5));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 1);
    let d = discover::status(p.store()).unwrap();
    assert_eq!((d.users, d.last_error), (1, None));
}

/// A listing that drops more than half of the last one's users at once (a reply cut short
/// that still decodes) is refused once: the last list is kept, a warning and `/status` say
/// so. A listing as short at the next refresh is taken; one back to normal clears it.
#[tokio::test]
async fn a_listing_that_drops_most_users_is_refused_once_then_taken() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let h = Harness::start(&[], at(12, 0)).await;
    let logins: Vec<String> = (0..10).map(|i| format!("user-{i}")).collect();
    logins.iter().for_each(|l| server_user(&h, l));
    let p = poller(&h);
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 10);

    // Six of ten gone: refused once, all ten still polled.
    logins[4..].iter().for_each(|l| h.sim.remove_user(l));
    h.clock.advance(Duration::hours(2));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 10);
    let d = discover::status(p.store()).unwrap();
    assert_eq!((d.users, d.last_success), (10, Some(at(12, 0))));
    let error = d.last_error.expect("recorded as a failed listing");
    assert!(
        error.contains("listed 4 users where the last listing had 10"),
        "{error}"
    );
    let warning = log_line(&logs, "far fewer users than before");
    assert!(
        warning.contains("WARN") && warning.contains("server=\"cbs-test\""),
        "{warning}"
    );
    assert!(discovery_field(&p).contains("listed 4 users"));

    // Back to normal at the next refresh: taken, and the refusal forgotten.
    logins[4..].iter().for_each(|l| server_user(&h, l));
    h.clock.advance(Duration::minutes(5));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 10);
    let d = discover::status(p.store()).unwrap();
    assert_eq!((d.listed, d.last_error, d.refused_drop), (10, None, None));

    // Half gone is not "most": taken at once.
    logins[5..].iter().for_each(|l| h.sim.remove_user(l));
    h.clock.advance(Duration::hours(2));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 5);

    // Four of five gone: refused, then taken when the next listing is as short.
    logins[1..5].iter().for_each(|l| h.sim.remove_user(l));
    h.clock.advance(Duration::hours(2));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 5);
    h.clock.advance(Duration::minutes(5));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 1);
    let d = discover::status(p.store()).unwrap();
    assert_eq!((d.users, d.listed, d.last_error), (1, 1, None));
}

/// `discover.exclude` (or `owners`) keeping nobody of a listing with users is the config's
/// choice, and a server that never listed anyone has no list to keep: both are taken.
#[tokio::test]
async fn filters_that_keep_nobody_and_an_empty_server_are_taken_as_listed() {
    let h = Harness::start(&[], at(12, 0)).await;
    server_user(&h, "alice");
    server_user(&h, "test-1");
    let p = poller(&h);
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 1);

    h.sim.remove_user("alice");
    h.clock.advance(Duration::hours(2));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 0);
    let d = discover::status(p.store()).unwrap();
    assert_eq!((d.users, d.last_error), (0, None), "only test-1, excluded");

    h.sim.remove_user("test-1");
    h.clock.advance(Duration::hours(2));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 0);
    let d = discover::status(p.store()).unwrap();
    assert_eq!((d.last_success, d.last_error), (Some(at(16, 0)), None));
}

/// A user who leaves the watch list (discovery no longer lists them, or an admin removes
/// them from chat) while a restore of theirs is running: that job's date is still polled for
/// until its end is recorded, and its failure alerts; then they are polled no more.
#[tokio::test]
async fn a_running_job_of_a_user_no_longer_listed_is_polled_until_it_ends() {
    use restorewatch::store::DynamicWatch;
    let h = Harness::start(&[], at(12, 0)).await;
    for login in ["alice", "bob", "test-9"] {
        server_user(&h, login);
    }
    h.sim
        .add_job(job("bob", "1", at(11, 0), Some(at(13, 30)), FAILED));
    // test-9, added from chat (discovery leaves it out), has a restore running too.
    h.sim
        .add_job(job("test-9", "1", at(11, 0), Some(at(13, 30)), FAILED));
    let p = poller(&h);
    p.store()
        .add_watch(&DynamicWatch {
            login: "test-9".into(),
            owner: "reseller".into(),
            added_by: "op (1)".into(),
            added_at: at(9, 0),
        })
        .unwrap();
    p.cycle().await.unwrap();
    let today = at(0, 0).date_naive();
    assert_eq!(p.store().running_dates("cbs-test", "bob").unwrap().len(), 1);
    assert_eq!(
        p.store().running_dates("cbs-test", "test-9").unwrap().len(),
        1
    );

    // A new exclude glob (a restart with a changed config) leaves bob out of the next
    // listing, and test-9 is removed from chat.
    drop(p);
    let p = h.poller().with_discovery(settings(&["test-*", "b*"]));
    p.store().remove_watch("test-9").unwrap();
    h.clock.set(at(13, 0));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 1, "alice is the one watched user");
    assert_eq!(
        polled(&h, "bob"),
        2,
        "bob's running job's date is still asked"
    );
    assert_eq!(polled(&h, "test-9"), 2);
    assert!(alerted(&delivered(&p).await).is_empty(), "still running");

    // Both jobs fail: the next cycle polls their date and alerts each once.
    h.clock.set(at(14, 0));
    let r = p.cycle().await.unwrap();
    assert!(r.ok(), "{:?}", r.summary.errors);
    assert_eq!((polled(&h, "bob"), polled(&h, "test-9")), (3, 3));
    let sink = delivered(&p).await;
    let mut told = alerted(&sink);
    told.sort();
    assert_eq!(told, ["bob", "test-9"], "each failure alerted once");
    assert!(p
        .store()
        .running_dates("cbs-test", "bob")
        .unwrap()
        .is_empty());

    // Their ends are recorded: they are polled no more.
    h.clock.set(at(15, 0));
    p.cycle().await.unwrap();
    assert_eq!((polled(&h, "bob"), polled(&h, "test-9")), (3, 3));
    assert_eq!(h.sim.requests_for("bob", today), 3);
}

/// With `discover.owners`, an owner whose call fails (a reseller since deleted or renamed)
/// keeps its last known users and is named in the log and `/status`; the owners that
/// listed are taken, new users and all; an unknown reseller is not blamed on the role.
#[tokio::test]
async fn an_owner_whose_listing_fails_keeps_its_users_and_the_others_are_taken() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let h = Harness::start(&[], at(12, 0)).await;
    for (login, owner) in [("alice", "r1"), ("bob", "r2"), ("carol", "gone")] {
        h.sim.add_user(SimUser {
            login: login.into(),
            owner: owner.into(),
            user_id: login.into(),
        });
    }
    let mut s = settings(&[]);
    s.owners = ["r1", "r2", "gone"].map(String::from).to_vec();
    let p = h.poller().with_discovery(s);
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 3);

    // "gone" is deleted on the server; r2 gets a new user.
    h.sim.set_reseller_missing("gone", true);
    h.sim.add_user(SimUser {
        login: "dave".into(),
        owner: "r2".into(),
        user_id: "dave".into(),
    });
    h.clock.advance(Duration::hours(2));
    let r = p.cycle().await.unwrap();
    let logins = |p: &Poller| -> Vec<String> {
        p.watch_list()
            .unwrap()
            .into_iter()
            .map(|w| w.login)
            .collect()
    };
    assert_eq!(logins(&p), ["alice", "bob", "carol", "dave"]);
    assert_eq!(r.summary.users_polled, 4, "dave is found, carol kept");
    let d = discover::status(p.store()).unwrap();
    let error = d.last_error.clone().expect("the failure is recorded");
    assert!(
        error.contains("owner \"gone\"") && error.contains("Reseller 'gone' not found"),
        "{error}"
    );
    assert!(!error.contains("role"), "not a role refusal: {error}");
    assert_eq!((d.users, d.last_success), (4, Some(at(14, 0))));
    let warning = log_line(&logs, "failed for this owner");
    assert!(
        warning.contains("WARN") && warning.contains("owner=gone"),
        "{warning}"
    );
    let field = discovery_field(&p);
    assert!(
        field.contains("owner \"gone\"") && field.contains("not found"),
        "{field}"
    );

    // Every owner failing keeps the whole last list, each owner named.
    h.sim.set_list_users_denied(true);
    h.clock.advance(Duration::hours(2));
    assert_eq!(p.cycle().await.unwrap().summary.users_polled, 4);
    let error = discover::status(p.store()).unwrap().last_error.unwrap();
    assert!(
        error.contains("owner \"r1\"") && error.contains("Admin or API role"),
        "a role refusal names the role: {error}"
    );
}

/// A listing larger than the client reads (past 64 MiB) comes from a server that answered:
/// with discovery the only source of users, it is no outage (no "unreachable" notice);
/// the error, in `/status`, is about the listing and says what to do.
#[tokio::test]
async fn a_listing_too_large_is_no_outage_and_says_what_to_do() {
    let h = Harness::start(&[], at(12, 0)).await;
    for i in 0..100 {
        server_user(&h, &format!("user{i}"));
    }
    h.sim.set_list_users_padding(700_000);
    let p = poller(&h);
    for _ in 0..2 {
        let r = p.cycle().await.unwrap();
        assert_eq!(r.summary.users_polled, 0);
        h.clock.advance(Duration::minutes(5));
    }
    assert!(outage_notices(&p).await.is_empty(), "the server answered");
    assert!(p.store().outage().unwrap().is_none());
    let error = discover::status(p.store()).unwrap().last_error.unwrap();
    assert!(
        error.contains("the user listing is larger than 64 MiB")
            && error.contains("discover.owners"),
        "{error}"
    );
}

/// The first log line holding `needle`.
fn log_line(logs: &LogCapture, needle: &str) -> String {
    (logs.text().lines())
        .find(|l| l.contains(needle))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no log line with {needle:?}"))
}

/// `/status`'s Discovery field at 14:01, the bot started at 12:00.
fn discovery_field(p: &Poller) -> String {
    let schedule = CronSchedule::parse("*/5 * * * *", restorewatch::tz::Tz::UTC).unwrap();
    let report = StatusReport::gather(p.store(), &schedule, at(14, 1), at(12, 0), 0).unwrap();
    let reply = status(&report, false).unwrap();
    (reply.embeds[0].fields.iter())
        .find(|f| f.name == "Discovery")
        .map(|f| f.value.clone())
        .expect("/status shows discovery")
}

/// A login no slash command would take (longer than 128 characters, a NUL, a direction
/// override) is no user to watch: it is left out of the list, the listing's other users are
/// kept, and one warning names the server and counts what was left out.
#[tokio::test]
async fn logins_past_the_bounds_are_left_out_and_counted_once() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let h = Harness::start(&[], at(12, 0)).await;
    let long = "x".repeat(restorewatch::cbs::model::LOGIN_MAX_CHARS + 1);
    let odd = [long.as_str(), "nul\u{0}login", "rtl\u{202E}nimda"];
    for login in ["alice", "bob"].iter().chain(&odd) {
        server_user(&h, login);
    }
    let p = poller(&h);
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.users_polled, 2, "alice and bob");
    for login in odd {
        assert_eq!(polled(&h, login), 0, "{login:?} is not polled");
    }
    assert_eq!(discover::status(p.store()).unwrap().users, 2);
    let warning = log_line(&logs, "they are not watched");
    assert!(
        warning.contains("WARN")
            && warning.contains("server=cbs-test")
            && warning.contains("refused=3")
            // The first one shown escaped, so it cannot forge a log line.
            && warning.contains(r#"first="nul\0login" (9 characters)"#),
        "{warning}"
    );
    let warnings = logs.text().matches("they are not watched").count();
    assert_eq!(warnings, 1, "one line for the listing");
}
