//! The poller against the CBS simulator over loopback, with a manual clock and a sled store
//! in a temporary directory: dedup, running → finished, midnight, catch-up, stuck, baseline,
//! failing users, the concurrency bound, retention, and delivery that survives a crash.

mod support;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use restorewatch::cbs::model::StatusClass;
use restorewatch::event::{Event, EventKind};
use restorewatch::simulator::{Faults, LoginFault, ReportFault};
use restorewatch::sink::{drain, DRAIN_BATCH_EVENTS};
use std::sync::{Arc, Mutex};
use support::world::{crash_image, job, Harness, Recorder};

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn finished_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::JobFinished { job, .. } => Some(format!(
                "{}/{}/{}",
                job.login_name, job.backup_set_id, job.job_id
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn running_then_finished_alerts_exactly_once_and_a_restart_posts_nothing_again() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    // The first cycle is the baseline: nothing there yet.
    {
        let p = h.poller();
        p.cycle().await.unwrap();
    }
    h.sim.add_job(job(
        "obm",
        "1",
        at(2024, 6, 26, 9, 10),
        Some(at(2024, 6, 26, 9, 40)),
        "RESTORE_STOP_BY_ERROR",
    ));
    let sink = Recorder::default();

    h.clock.set(at(2024, 6, 26, 9, 15));
    let p = h.poller();
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.started_running, 1);
    assert_eq!(
        r.summary.alerts, 0,
        "a running job is recorded, not alerted"
    );
    drain(p.store(), &sink).await.unwrap();
    assert!(sink.alerts().is_empty());

    h.clock.set(at(2024, 6, 26, 9, 45));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts, 1);
    assert_eq!(r.summary.finished.get(&StatusClass::Failure), Some(&1));
    drain(p.store(), &sink).await.unwrap();

    h.clock.set(at(2024, 6, 26, 9, 50));
    p.cycle().await.unwrap();
    drain(p.store(), &sink).await.unwrap();
    p.store().flush().unwrap();
    drop(p);

    // Restart: a new store handle on the same directory knows the job.
    h.clock.set(at(2024, 6, 26, 9, 55));
    let p = h.poller();
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts, 0);
    drain(p.store(), &sink).await.unwrap();
    assert_eq!(finished_ids(&sink.alerts()), ["obm/1/2024-06-26-09-10-00"]);
}

#[tokio::test]
async fn a_success_alerts_nothing() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.add_job(job(
        "obm",
        "1",
        at(2024, 6, 26, 9, 10),
        Some(at(2024, 6, 26, 9, 20)),
        "RESTORE_STOP_SUCCESS",
    ));
    h.clock.set(at(2024, 6, 26, 9, 30));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.finished.get(&StatusClass::Success), Some(&1));
    assert_eq!(r.summary.alerts, 0);
}

#[tokio::test]
async fn a_job_across_midnight_is_found_under_its_start_date() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 23, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.add_job(job(
        "obm",
        "1",
        at(2024, 6, 26, 23, 30),
        Some(at(2024, 6, 27, 0, 40)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.clock.set(at(2024, 6, 26, 23, 45));
    assert_eq!(p.cycle().await.unwrap().summary.started_running, 1);
    // After midnight the job is still listed under the 26th, and has ended.
    h.clock.set(at(2024, 6, 27, 0, 45));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts, 1);
    assert_eq!(h.sim.requests_for("obm", day("2024-06-26")), 3);
}

#[tokio::test]
async fn a_job_found_only_after_midnight_is_caught_by_the_grace_window() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 22, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    // Starts and fails between two cycles that straddle midnight.
    h.sim.add_job(job(
        "obm",
        "1",
        at(2024, 6, 26, 23, 50),
        Some(at(2024, 6, 26, 23, 58)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.clock.set(at(2024, 6, 27, 0, 5));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts, 1);
}

#[tokio::test]
async fn catch_up_after_downtime_finds_the_missed_dates_failure() {
    let h = Harness::start(&["obm"], at(2024, 6, 24, 10, 0)).await;
    {
        let p = h.poller();
        p.cycle().await.unwrap();
        p.store().flush().unwrap();
    }
    // The bot is down for two days; a restore fails on the day in between.
    h.sim.add_job(job(
        "obm",
        "1",
        at(2024, 6, 25, 14, 0),
        Some(at(2024, 6, 25, 14, 30)),
        "RESTORE_STOP_SUCCESS_WITH_ERROR",
    ));
    h.clock.set(at(2024, 6, 26, 15, 0));
    let p = h.poller();
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts, 1);
    assert_eq!(h.sim.requests_for("obm", day("2024-06-25")), 1);
    assert_eq!(h.sim.requests_for("obm", day("2024-06-24")), 2);
}

/// A user's state is written when it changes, not each cycle: a later success on the same
/// date is not written (only the date starts a catch-up), and the catch-up after a failed
/// day still starts at the last successful date.
#[tokio::test]
async fn a_users_state_is_written_once_a_day_and_the_catch_up_still_starts_right() {
    let h = Harness::start(&["obm"], at(2024, 6, 24, 10, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    let first = p.store().user_state("obm").unwrap();
    assert_eq!(first.last_success, Some(at(2024, 6, 24, 10, 0)));
    h.clock.set(at(2024, 6, 24, 18, 0));
    p.cycle().await.unwrap();
    assert_eq!(
        p.store().user_state("obm").unwrap(),
        first,
        "the same date: not written again"
    );
    // The next day's success moves it; then a day of failures, and a catch-up.
    h.clock.set(at(2024, 6, 25, 10, 0));
    p.cycle().await.unwrap();
    let second = p.store().user_state("obm").unwrap();
    assert_eq!(second.last_success, Some(at(2024, 6, 25, 10, 0)));
    h.sim.set_down(true).await.unwrap();
    h.clock.set(at(2024, 6, 26, 10, 0));
    p.cycle().await.unwrap();
    assert_eq!(
        p.store().user_state("obm").unwrap().last_success,
        second.last_success
    );
    h.sim.set_down(false).await.unwrap();
    h.sim.reset_stats();
    h.clock.set(at(2024, 6, 27, 10, 0));
    p.cycle().await.unwrap();
    for date in ["2024-06-25", "2024-06-26", "2024-06-27"] {
        assert_eq!(h.sim.requests_for("obm", day(date)), 1, "{date}");
    }
    assert_eq!(h.sim.requests_for("obm", day("2024-06-24")), 0);
}

#[tokio::test]
async fn catch_up_is_bounded() {
    let mut h = Harness::start(&["obm"], at(2024, 6, 1, 10, 0)).await;
    h.max_concurrency = 2;
    h.poller().cycle().await.unwrap();
    h.clock.set(at(2024, 6, 26, 15, 0));
    let r = h.poller().cycle().await.unwrap();
    // Today plus seven days back.
    assert_eq!(r.summary.requests, 8);
    assert_eq!(h.sim.requests_for("obm", day("2024-06-18")), 0);
}

#[tokio::test]
async fn a_stuck_job_is_reported_once_and_then_its_end() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 1, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.add_job(job(
        "obm",
        "1",
        at(2024, 6, 26, 1, 30),
        Some(at(2024, 6, 27, 9, 0)),
        "RESTORE_STOP_BY_ERROR",
    ));
    let sink = Recorder::default();
    for hour in [2, 10, 14, 15, 20] {
        h.clock.set(at(2024, 6, 26, hour, 0));
        p.cycle().await.unwrap();
    }
    // Past midnight the job's date is still polled because the store knows it is running.
    h.clock.set(at(2024, 6, 27, 9, 30));
    p.cycle().await.unwrap();
    drain(p.store(), &sink).await.unwrap();
    let kinds: Vec<&str> = sink
        .alerts()
        .iter()
        .map(|e| match e.kind {
            EventKind::JobStuck { .. } => "stuck",
            _ => "finished",
        })
        .collect();
    assert_eq!(kinds, ["stuck", "finished"]);
}

#[tokio::test]
async fn the_first_cycle_is_a_baseline_not_a_flood() {
    let h = Harness::start(&["obm", "alice"], at(2024, 6, 26, 18, 0)).await;
    let mut jobs = Vec::new();
    for i in 0..12 {
        let start = at(2024, 6, 26, 8, 0) + Duration::minutes(20 * i);
        let status = if i % 3 == 0 {
            "RESTORE_STOP_BY_ERROR"
        } else {
            "RESTORE_STOP_SUCCESS"
        };
        jobs.push(job(
            "obm",
            "1",
            start,
            Some(start + Duration::minutes(5)),
            status,
        ));
    }
    h.sim.set_jobs(jobs);
    let p = h.poller();
    let sink = Recorder::default();
    let r = p.cycle().await.unwrap();
    assert_eq!(r.baselined, 12);
    assert_eq!(r.summary.alerts, 0);
    drain(p.store(), &sink).await.unwrap();
    assert!(sink.alerts().is_empty());
    let events = sink.events.lock().unwrap().clone();
    let baselines: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Baseline { users, .. } => Some(users.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(baselines.len(), 1, "one event for the owner: {baselines:?}");
    let users: Vec<(String, _)> = baselines[0]
        .iter()
        .map(|u| (u.login_name.clone(), u.counts.clone()))
        .collect();
    assert_eq!(users.len(), 2, "one line per user: {users:?}");
    let obm = &users.iter().find(|(l, _)| l == "obm").unwrap().1;
    assert_eq!(obm.get(&StatusClass::Failure), Some(&4));
    assert_eq!(obm.get(&StatusClass::Success), Some(&8));

    // Later failures alert normally, whatever their timestamps.
    h.sim.add_job(job(
        "obm",
        "2",
        at(2024, 6, 26, 7, 0),
        Some(at(2024, 6, 26, 7, 30)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.clock.set(at(2024, 6, 26, 18, 5));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 1);
}

#[tokio::test]
async fn a_failing_user_does_not_stop_the_others() {
    let h = Harness::start(&["alice", "bob", "carol"], at(2024, 6, 26, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.set_login_fault("bob", Some(LoginFault::Http500));
    for login in ["alice", "carol"] {
        h.sim.add_job(job(
            login,
            "1",
            at(2024, 6, 26, 9, 1),
            Some(at(2024, 6, 26, 9, 2)),
            "RESTORE_STOP_BY_ERROR",
        ));
    }
    h.clock.set(at(2024, 6, 26, 9, 5));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts, 2);
    assert_eq!(r.summary.errors.len(), 1);
    assert_eq!(r.summary.errors[0].login_name, "bob");
    assert!(!r.ok());
    let bob = p.store().user_state("bob").unwrap();
    assert!(bob.last_error.is_some());
    assert!(
        p.store().outage().unwrap().is_none(),
        "one failing user is no outage"
    );
}

/// On tokio's paused clock: the simulated latency is a tokio sleep, and time moves only when
/// every request in flight is waiting in it, so the overlap is exact, not a race.
#[tokio::test(start_paused = true)]
async fn concurrency_never_exceeds_the_configured_bound() {
    let users: Vec<&'static str> = (0..24)
        .map(|i| &*Box::leak(format!("user{i:02}").into_boxed_str()))
        .collect();
    let mut h = Harness::start(&users, at(2024, 6, 26, 9, 0)).await;
    h.max_concurrency = 3;
    h.sim.set_faults(Faults {
        latency: std::time::Duration::from_millis(30),
        ..Faults::default()
    });
    let r = h.poller().cycle().await.unwrap();
    assert_eq!(r.summary.requests, 24);
    assert_eq!(h.sim.requests_served(), 24);
    assert_eq!(
        h.sim.max_in_flight(),
        3,
        "the bound is used and never exceeded"
    );
}

#[tokio::test]
async fn a_down_server_is_one_outage_notice_and_one_recovery() {
    let h = Harness::start(&["alice", "bob"], at(2024, 6, 26, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.set_down(true).await.unwrap();
    for min in [5, 10, 15] {
        h.clock.set(at(2024, 6, 26, 9, min));
        p.cycle().await.unwrap();
    }
    h.sim.set_down(false).await.unwrap();
    h.clock.set(at(2024, 6, 26, 9, 20));
    p.cycle().await.unwrap();
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let events = sink.events.lock().unwrap().clone();
    let down = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::CbsUnreachable { .. }))
        .count();
    let up = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::CbsRecovered { .. }))
        .count();
    assert_eq!((down, up), (1, 1));
    assert_eq!(
        p.store().day_health(day("2024-06-26")).unwrap().outage_secs,
        15 * 60
    );
}

/// Jobs a day in the retention test: enough that sled needs several segments for a window.
const JOBS_A_DAY: u32 = 60;
/// Days the retention test runs: sixty retention windows. The store is zstd-compressed and
/// its records compact, so a day of this test adds only about 36 KB to sled's log; sled
/// reuses freed 512 KiB segments only once about five are in use, which this store reaches
/// after two and a half months (day 75 in one run, then a band of 2.0 to 2.6 MB; in 45
/// days it was still filling its first segments, which looked like steady growth). The
/// months past that show whether it stays.
const RETENTION_TEST_DAYS: u32 = 180;

#[tokio::test]
async fn retention_prunes_old_records_and_the_store_stops_growing() {
    let mut h = Harness::start(&["obm"], at(2024, 6, 1, 0, 30)).await;
    // The shortest retention the config allows with a one-day catch-up and the grace.
    h.retention_days = 3;
    h.max_catch_up_days = 1;
    let p = h.poller();
    let tree_len = |name: &str| p.store().tree(name).unwrap().len();
    let mut bytes = Vec::new();
    for d in 0..RETENTION_TEST_DAYS {
        let noon = at(2024, 6, 1, 12, 0) + Duration::days(i64::from(d));
        // Only this day's jobs on the server: the store must not rely on it forgetting.
        let jobs = (0..JOBS_A_DAY).map(|k| {
            let start = noon - Duration::hours(11) + Duration::minutes(i64::from(k));
            let status = if k % 10 == 0 {
                "RESTORE_STOP_BY_ERROR"
            } else {
                "RESTORE_STOP_SUCCESS"
            };
            job(
                "obm",
                &format!("{k}"),
                start,
                Some(start + Duration::seconds(20)),
                status,
            )
        });
        h.sim.set_jobs(jobs.collect());
        h.clock.set(noon);
        p.cycle().await.unwrap();
        let report = drain(p.store(), &Recorder::default()).await.unwrap();
        assert_eq!(report.pending, 0);
        // The outbox is empty after each drain; the indexes hold what the jobs hold.
        assert_eq!(p.store().outbox_len().unwrap(), 0, "day {d}");
        assert_eq!(tree_len("outbox"), 0, "day {d}");
        let jobs = p.store().job_count().unwrap();
        assert!(jobs <= 4 * JOBS_A_DAY as usize, "day {d}: {jobs} records");
        assert_eq!(tree_len("by_day"), jobs, "day {d}: one day entry per job");
        assert_eq!(tree_len("running"), 0, "day {d}: nothing runs");
        p.store().flush().unwrap();
        bytes.push(p.store().size_on_disk().unwrap());
    }
    // The date before the last four is gone; the last four remain in full.
    let last = day("2024-06-01") + Duration::days(i64::from(RETENTION_TEST_DAYS - 1));
    assert!(p
        .store()
        .jobs_on(last - Duration::days(4))
        .unwrap()
        .is_empty());
    for back in 0..4 {
        let date = last - Duration::days(back);
        assert_eq!(p.store().jobs_on(date).unwrap().len(), JOBS_A_DAY as usize);
    }
    // Bytes on disk: sled's log grows until freed segments are reused (about two months
    // here, see RETENTION_TEST_DAYS), then stays in a band (BENCHMARKS.md, section 4): the
    // last third of the run stays within a quarter above the middle third. Without pruning
    // it grows by half.
    let third = bytes.len() / 3;
    let middle = *bytes[third..2 * third].iter().max().unwrap();
    let late = *bytes[2 * third..].iter().max().unwrap();
    assert!(late * 4 <= middle * 5, "{bytes:?}");
}

#[tokio::test]
async fn a_crash_during_delivery_loses_nothing_and_repeats_nothing() {
    // More events than one drain offers at a time, so the drain calls the sink twice.
    const FAILURES: usize = DRAIN_BATCH_EVENTS + 44;
    let mut h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    // Every alert stays one (not a storm card): this is about delivery, not grouping.
    h.alerts.group_after = u32::MAX;
    let p = h.poller();
    p.cycle().await.unwrap();
    let jobs = (0..FAILURES).map(|i| {
        let start = at(2024, 6, 26, 9, 1) + Duration::seconds(i as i64);
        let end = Some(start + Duration::seconds(1));
        job("obm", &format!("{i}"), start, end, "RESTORE_STOP_BY_ERROR")
    });
    h.sim.set_jobs(jobs.collect());
    h.clock.set(at(2024, 6, 26, 9, 30));
    assert_eq!(p.cycle().await.unwrap().summary.alerts as usize, FAILURES);
    // The sink takes the first batch; the program dies as the drain offers it the second
    // (the store as a SIGKILL leaves it at that moment).
    let image = Arc::new(Mutex::new(None));
    let first = Recorder {
        fail_after: Some(DRAIN_BATCH_EVENTS),
        on_call: Some(Box::new({
            let (image, dir) = (Arc::clone(&image), h.dir.path().to_owned());
            move |call| {
                if call == 2 {
                    *image.lock().unwrap() = Some(crash_image(&dir));
                }
            }
        })),
        ..Recorder::default()
    };
    drain(p.store(), &first).await.unwrap();
    assert_eq!(first.events.lock().unwrap().len(), DRAIN_BATCH_EVENTS);
    h.dir = image
        .lock()
        .unwrap()
        .take()
        .expect("crashed in the second call");
    drop(p);

    let p = h.poller();
    let second = Recorder::default();
    let report = drain(p.store(), &second).await.unwrap();
    assert_eq!(report.pending, 0);
    let mut all = first.alerts();
    all.extend(second.alerts());
    let mut ids = finished_ids(&all);
    assert_eq!(ids.len(), FAILURES, "every alert once, none twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), FAILURES, "every alert exactly once");
}

/// Hundreds of resellers at a first start post a handful of "now watching" cards, not
/// one each: past five, the owners without a channel of their own share one card (a
/// routed owner keeps its own, in its channel), with every user and every job that would
/// have alerted.
#[tokio::test]
async fn past_a_handful_of_owners_the_unrouted_ones_share_one_baseline_card() {
    let mut h = Harness::start(&[], at(2024, 6, 26, 18, 0)).await;
    for i in 0..8 {
        let login = format!("user{i}");
        h.add_user(&login, &format!("reseller-{i}"));
        let start = at(2024, 6, 26, 8, 0);
        let mut failed = job(
            &login,
            "1",
            start,
            Some(start + Duration::minutes(5)),
            "RESTORE_STOP_BY_ERROR",
        );
        failed.owner = format!("reseller-{i}");
        h.sim.add_job(failed);
    }
    h.routed_owners = ["reseller-3".to_owned()].into();
    let p = h.poller();
    p.cycle().await.unwrap();
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let mut cards: Vec<(String, usize, usize)> = (sink.events.lock().unwrap().iter())
        .filter_map(|e| match &e.kind {
            EventKind::Baseline {
                owner,
                users,
                would_alert_total,
                ..
            } => Some((owner.clone(), users.len(), *would_alert_total)),
            _ => None,
        })
        .collect();
    cards.sort();
    assert_eq!(
        cards,
        [(String::new(), 7, 7), ("reseller-3".to_owned(), 1, 1)],
        "one shared card and the routed owner's own"
    );
    // Five owners or fewer: one card each, as before.
    let mut h = Harness::start(&[], at(2024, 6, 26, 18, 0)).await;
    for i in 0..5 {
        h.add_user(&format!("user{i}"), &format!("reseller-{i}"));
    }
    let p = h.poller();
    p.cycle().await.unwrap();
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let owners = (sink.events.lock().unwrap().iter())
        .filter(|e| matches!(&e.kind, EventKind::Baseline { owner, .. } if !owner.is_empty()))
        .count();
    assert_eq!(owners, 5);
}

#[tokio::test]
async fn without_the_baseline_the_first_cycle_alerts_every_failure() {
    let mut h = Harness::start(&["obm"], at(2024, 6, 26, 18, 0)).await;
    h.baseline_first_cycle = false;
    for i in 0..3 {
        let start = at(2024, 6, 26, 8, 0) + Duration::hours(i);
        h.sim.add_job(job(
            "obm",
            "1",
            start,
            Some(start + Duration::minutes(5)),
            "RESTORE_STOP_BY_ERROR",
        ));
    }
    let p = h.poller();
    let r = p.cycle().await.unwrap();
    assert_eq!((r.baselined, r.summary.alerts), (0, 3));
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let cards = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Baseline { .. }))
        .count();
    assert_eq!(
        cards, 0,
        "no \"Now watching\" card when nothing was baselined"
    );
}

#[tokio::test]
async fn a_user_watched_again_is_baselined_again_not_caught_up() {
    let mut h = Harness::start(&["obm", "alice"], at(2024, 6, 20, 9, 0)).await;
    h.poller().cycle().await.unwrap();
    // obm is no longer watched for a few days, during which its restores fail.
    let everyone = h.watch.clone();
    h.watch.retain(|w| w.login != "obm");
    h.clock.set(at(2024, 6, 21, 9, 0));
    h.poller().cycle().await.unwrap();
    for d in 22..=24 {
        h.sim.add_job(job(
            "obm",
            "1",
            at(2024, 6, d, 8, 0),
            Some(at(2024, 6, d, 8, 5)),
            "RESTORE_STOP_BY_ERROR",
        ));
    }
    h.watch = everyone;
    h.clock.set(at(2024, 6, 24, 10, 0));
    let p = h.poller();
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts, 0, "the unwatched days are not replayed");
    assert_eq!(r.baselined, 1, "today's job is part of the new baseline");
    assert_eq!(h.sim.requests_for("obm", day("2024-06-22")), 0);
    assert!(p.store().user_state("obm").unwrap().baselined);
}

#[tokio::test]
async fn a_new_outage_reason_gets_its_own_notice() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.set_down(true).await.unwrap();
    h.clock.set(at(2024, 6, 26, 9, 5));
    p.cycle().await.unwrap();
    // The server answers again, but the API password has expired meanwhile.
    h.sim.set_down(false).await.unwrap();
    h.sim.set_password_expired(true);
    for min in [10, 15] {
        h.clock.set(at(2024, 6, 26, 9, min));
        p.cycle().await.unwrap();
    }
    h.sim.set_password_expired(false);
    h.clock.set(at(2024, 6, 26, 9, 20));
    p.cycle().await.unwrap();
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let notices: Vec<String> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CbsUnreachable { reason, since, .. } => {
                Some(format!("down {reason:?} since {}", since.format("%H:%M")))
            }
            EventKind::CbsRecovered {
                down_since, reason, ..
            } => Some(format!(
                "up, down {reason:?} since {}",
                down_since.format("%H:%M")
            )),
            _ => None,
        })
        .collect();
    // The recovery names the reason the outage ended with (its card words it so).
    assert_eq!(
        notices,
        [
            "down Unreachable since 09:05",
            "down PasswordExpired since 09:05",
            "up, down Some(PasswordExpired) since 09:05"
        ]
    );
}

/// Mutes every set of `obm` from 09:00 until `until`.
fn mute_obm(p: &restorewatch::poller::Poller, until: chrono::DateTime<chrono::Utc>) {
    use restorewatch::mutes::{Mute, Mutes};
    let mute = Mute {
        server: None,
        login: "obm".into(),
        backup_set_id: None,
        until,
        muted_by: "ops".into(),
        muted_at: at(2024, 6, 26, 9, 0),
    };
    Mutes::open(p.store()).unwrap().mute(&mute).unwrap();
}

#[tokio::test]
async fn a_muted_user_is_recorded_not_alerted_until_the_mute_ends() {
    let h = Harness::start(&["obm", "alice"], at(2024, 6, 26, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    mute_obm(&p, at(2024, 6, 26, 11, 0));
    for login in ["obm", "alice"] {
        h.sim.add_job(job(
            login,
            "1",
            at(2024, 6, 26, 9, 1),
            Some(at(2024, 6, 26, 9, 2)),
            "RESTORE_STOP_BY_ERROR",
        ));
    }
    h.clock.set(at(2024, 6, 26, 9, 5));
    let r = p.cycle().await.unwrap();
    assert_eq!((r.summary.alerts, r.summary.muted), (1, 1));
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    assert_eq!(
        finished_ids(&sink.alerts()),
        ["alice/1/2024-06-26-09-01-00"]
    );
    // The digest still lists the muted failure.
    let digest = restorewatch::digest::Digest::from_store(
        p.store(),
        day("2024-06-26"),
        restorewatch::tz::Tz::UTC,
        vec![],
    )
    .unwrap();
    assert!(digest.failures.iter().any(|f| f.login_name == "obm"));
    // After the mute, obm's failures alert again.
    h.sim.add_job(job(
        "obm",
        "2",
        at(2024, 6, 26, 11, 1),
        Some(at(2024, 6, 26, 11, 2)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.clock.set(at(2024, 6, 26, 11, 5));
    let r = p.cycle().await.unwrap();
    assert_eq!((r.summary.alerts, r.summary.muted), (1, 0));
}

/// A failure that ended inside a mute, first seen after the mute ended (the bot was down
/// through the maintenance window), is muted as it would have been had the bot been up.
#[tokio::test]
async fn a_failure_that_ended_while_muted_stays_muted_when_seen_later() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    mute_obm(&p, at(2024, 6, 26, 10, 0));
    let failed = |set: &str, start, end| job("obm", set, start, Some(end), "RESTORE_STOP_BY_ERROR");
    // One ended at 09:50, in the mute; one started at 09:55 and ended at 10:02, after it.
    h.sim
        .add_job(failed("1", at(2024, 6, 26, 9, 40), at(2024, 6, 26, 9, 50)));
    h.sim
        .add_job(failed("2", at(2024, 6, 26, 9, 55), at(2024, 6, 26, 10, 2)));
    h.clock.set(at(2024, 6, 26, 10, 30));
    let r = p.cycle().await.unwrap();
    assert_eq!((r.summary.alerts, r.summary.muted), (1, 1));
}

/// Mutes fail open: a mute record that does not decode is quarantined and mutes nothing,
/// while a valid mute beside it still holds.
#[tokio::test]
async fn an_unreadable_mute_mutes_nothing_and_a_valid_one_still_holds() {
    use restorewatch::mutes::{Mute, Mutes};
    let h = Harness::start(&["obm", "office"], at(2024, 6, 26, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    Mutes::open(p.store())
        .unwrap()
        .mute(&Mute {
            server: None,
            login: "office".into(),
            backup_set_id: None,
            until: at(2024, 6, 26, 11, 0),
            muted_by: "ops".into(),
            muted_at: at(2024, 6, 26, 9, 0),
        })
        .unwrap();
    // A record that does not decode, under the key a mute of `obm` would have.
    let tree = p.store().tree("mutes").unwrap();
    tree.insert(b"obm\0", &b"\xff not json"[..]).unwrap();
    for login in ["obm", "office"] {
        h.sim.add_job(job(
            login,
            "1",
            at(2024, 6, 26, 9, 1),
            Some(at(2024, 6, 26, 9, 2)),
            "RESTORE_STOP_BY_ERROR",
        ));
    }
    h.clock.set(at(2024, 6, 26, 9, 5));
    let r = p.cycle().await.unwrap();
    assert_eq!((r.summary.alerts, r.summary.muted), (1, 1));
    assert_eq!(
        p.store().quarantined().unwrap(),
        1,
        "the bad record is kept aside"
    );
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    assert_eq!(finished_ids(&sink.alerts()), ["obm/1/2024-06-26-09-01-00"]);
}

/// An unchanged job costs a read and no write: a second cycle that sees the same finished
/// jobs writes nothing to the job records, their indexes or the outbox.
#[tokio::test]
async fn an_unchanged_job_writes_nothing() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    for set in ["1", "2", "3"] {
        h.sim.add_job(job(
            "obm",
            set,
            at(2024, 6, 26, 9, 1),
            Some(at(2024, 6, 26, 9, 2)),
            "RESTORE_STOP_BY_ERROR",
        ));
    }
    h.clock.set(at(2024, 6, 26, 9, 5));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 3);
    // Every insert or remove on these trees, even of an equal value, is an event here.
    let mut watches: Vec<(&str, sled::Subscriber)> = ["jobs", "by_day", "running", "outbox"]
        .into_iter()
        .map(|name| (name, p.store().tree(name).unwrap().watch_prefix(vec![])))
        .collect();
    h.clock.set(at(2024, 6, 26, 9, 10));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts, 0);
    for (name, watch) in &mut watches {
        let write = watch.next_timeout(std::time::Duration::ZERO);
        assert!(write.is_err(), "{name} was written: {write:?}");
    }
}

/// A failure found after the baseline: one cycle that queues its alert, run under `h`.
/// Returns the queued alert and how long (tokio time) the alerting cycle took.
async fn failure_alert(h: &Harness) -> (Event, std::time::Duration) {
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.add_job(job(
        "obm",
        "1",
        at(2024, 6, 26, 9, 10),
        Some(at(2024, 6, 26, 9, 40)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.clock.set(at(2024, 6, 26, 9, 45));
    let started = tokio::time::Instant::now();
    let r = p.cycle().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.summary.alerts, 1);
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let alerts = sink.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    (alerts[0].clone(), took)
}

fn report_of(event: &Event) -> Option<restorewatch::cbs::model::JobReport> {
    match &event.kind {
        EventKind::JobFinished { report, .. } => report.clone(),
        other => panic!("not a job alert: {other:?}"),
    }
}

fn rendered_fields(event: &Event) -> Vec<(String, String)> {
    let opts = restorewatch::render::RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: false,
    };
    restorewatch::render::render_event(event, &opts)
        .into_iter()
        .flat_map(|e| e.fields.into_iter().map(|f| (f.name, f.value)))
        .collect()
}

#[tokio::test]
async fn a_failure_alert_carries_the_job_reports_files_and_error_lines() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    let (alert, _) = failure_alert(&h).await;
    assert_eq!(h.sim.report_requests(), 1);
    let report = report_of(&alert).expect("the report is on the alert");
    assert!(report.file_count.is_some(), "{report:?}");
    assert!(report.total_size.is_some(), "{report:?}");
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("[ERROR] Cannot write")),
        "{report:?}"
    );
    let fields = rendered_fields(&alert);
    let logs = fields
        .iter()
        .find(|(name, _)| name == "Last log lines")
        .map(|(_, v)| v.clone())
        .expect("the log lines are rendered");
    assert!(logs.contains("Cannot write"), "{logs}");
    assert!(fields.iter().any(|(name, _)| name == "Files"), "{fields:?}");
    // Once per failure: a later cycle does not ask again.
    h.clock.set(at(2024, 6, 26, 9, 50));
    h.poller().cycle().await.unwrap();
    assert_eq!(h.sim.report_requests(), 1);
}

#[tokio::test]
async fn a_refused_report_leaves_the_alert_without_details() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    h.sim.set_report_fault(Some(ReportFault::ReadOnlyRole));
    let (alert, _) = failure_alert(&h).await;
    assert_eq!(h.sim.report_requests(), 1, "the report was asked for");
    assert_eq!(report_of(&alert), None);
    let fields = rendered_fields(&alert);
    assert!(
        fields.iter().all(|(name, _)| name != "Last log lines"),
        "{fields:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_report_holds_the_alert_at_most_one_timeout() {
    let h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    h.sim.set_report_fault(Some(ReportFault::Hang));
    let (alert, took) = failure_alert(&h).await;
    assert_eq!(h.sim.report_requests(), 1, "the report was asked for");
    assert_eq!(report_of(&alert), None);
    // The harness's request_timeout is 10s: the cycle waits for the report no longer.
    assert!(took >= std::time::Duration::from_secs(10), "{took:?}");
    assert!(took < std::time::Duration::from_secs(11), "{took:?}");
}

/// A storm card lists its failures without their details: only the alerts that still
/// go out one by one after it are worth a `GetRestoreJobReport.do`.
#[tokio::test]
async fn a_storm_asks_only_for_the_reports_of_the_alerts_that_follow_its_card() {
    const FAILURES: usize = 12;
    let mut h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    h.alerts.group_after = 5;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.set_jobs(
        (0..FAILURES)
            .map(|i| {
                let start = at(2024, 6, 26, 9, 1) + Duration::minutes(i as i64);
                let end = Some(start + Duration::seconds(30));
                job("obm", &format!("{i}"), start, end, "RESTORE_STOP_BY_ERROR")
            })
            .collect(),
    );
    h.clock.set(at(2024, 6, 26, 9, 30));
    assert_eq!(p.cycle().await.unwrap().summary.alerts as usize, FAILURES);
    let individual = restorewatch::storm::STORM_INDIVIDUAL_ALERTS;
    assert_eq!(h.sim.report_requests() as usize, individual);
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let alerts = sink.alerts();
    assert_eq!(alerts.len(), individual, "the card and the first few");
    assert!(alerts.iter().all(|a| report_of(a).is_some()), "{alerts:?}");
}

#[tokio::test]
async fn fetch_reports_false_asks_for_no_report() {
    let mut h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    h.fetch_reports = false;
    let (alert, _) = failure_alert(&h).await;
    assert_eq!(h.sim.report_requests(), 0);
    assert_eq!(report_of(&alert), None);
}

/// Several failures with one call in flight at a time and every report hanging: all the
/// alerts still go out after one timeout, not one timeout per queued call.
#[tokio::test(start_paused = true)]
async fn queued_report_calls_share_one_timeout() {
    let mut h = Harness::start(&["obm"], at(2024, 6, 26, 9, 0)).await;
    h.max_concurrency = 1;
    h.sim.set_report_fault(Some(ReportFault::Hang));
    let p = h.poller();
    p.cycle().await.unwrap();
    for set in ["1", "2", "3"] {
        h.sim.add_job(job(
            "obm",
            set,
            at(2024, 6, 26, 9, 10),
            Some(at(2024, 6, 26, 9, 40)),
            "RESTORE_STOP_BY_ERROR",
        ));
    }
    h.clock.set(at(2024, 6, 26, 9, 45));
    let started = tokio::time::Instant::now();
    let r = p.cycle().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.summary.alerts, 3);
    assert!(took < std::time::Duration::from_secs(11), "{took:?}");
    assert_eq!(
        h.sim.report_requests(),
        1,
        "max_concurrency 1: one call in flight"
    );
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let alerts = sink.alerts();
    assert_eq!(finished_ids(&alerts).len(), 3);
    assert!(alerts.iter().all(|a| report_of(a).is_none()));
}
