//! Never silent (issue 9): odd fields, unreadable records, missed digests and outages
//! never cost an alert. The poller and the store against the CBS simulator over loopback,
//! with a manual clock and a sled store in a temporary directory.

mod support;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use restorewatch::cbs::model::{StatusClass, END_TIME_FIELD, RESTORE_SIZE_FIELD};
use restorewatch::event::EventKind;
use restorewatch::poller::Poller;
use restorewatch::simulator::{LoginFault, Quirks, SimJob};
use restorewatch::sink::drain;
use support::logs::LogCapture;
use support::world::{job, Harness, Recorder};

fn at(d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, min, 0).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

/// The digest of 2026-11-28, in UTC.
fn digest_of_the_28th(store: &restorewatch::store::Store) -> restorewatch::digest::Digest {
    restorewatch::digest::Digest::from_store(store, day(28), restorewatch::tz::Tz::UTC, vec![])
        .unwrap()
}

/// A failed job of `login` in set `set` with the quirks named.
fn odd_failure(login: &str, set: &str, start_min: u32, quirks: &[&str]) -> SimJob {
    let mut q = Quirks::default();
    for name in quirks {
        assert!(q.set_by_name(name), "{name}");
    }
    SimJob {
        quirks: q,
        ..job(
            login,
            set,
            at(28, 10, start_min),
            Some(at(28, 10, start_min + 5)),
            "RESTORE_STOP_BY_ERROR",
        )
    }
}

#[tokio::test]
async fn odd_fields_still_alert_and_reach_the_digest_and_a_nameless_item_is_counted() {
    let h = Harness::start(&["obm"], at(28, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap(); // the baseline: nothing yet
    for (set, quirks) in [
        ("1", &["epoch_millis_end"][..]),
        ("2", &["iso_times"]),
        ("3", &["size_minus_one"]),
        ("4", &["size_not_available"]),
        ("5", &["end_year_minus_one"]),
        ("6", &["no_identity"]),
    ] {
        h.sim.add_job(odd_failure("obm", set, 0, quirks));
    }
    h.clock.set(at(28, 11, 0));
    let report = p.cycle().await.unwrap();
    assert!(report.ok(), "{:?}", report.summary.errors);
    assert_eq!(
        report.summary.alerts, 5,
        "every job with an identity alerts"
    );
    assert_eq!(report.summary.unreadable_items, 1);
    assert!(
        report.summary.unreadable[0].message.contains("no job ID"),
        "{:?}",
        report.summary.unreadable
    );
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let alerts = sink.alerts();
    let by_set = |set: &str| {
        alerts
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::JobFinished { job, .. } if job.backup_set_id == set => Some(job.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no alert for set {set}"))
    };
    assert_eq!(
        by_set("1").end_time.map(|t| t.to_utc()),
        Some(at(28, 10, 5))
    );
    assert_eq!(
        by_set("2").start_time.map(|t| t.to_utc()),
        Some(at(28, 10, 0))
    );
    assert_eq!(by_set("3").unreadable_field(RESTORE_SIZE_FIELD), Some("-1"));
    assert_eq!(
        by_set("4").unreadable_field(RESTORE_SIZE_FIELD),
        Some("n/a")
    );
    let poison = by_set("5");
    assert_eq!(poison.class, StatusClass::Failure);
    assert_eq!(
        poison.unreadable_field(END_TIME_FIELD),
        Some("-0001-11-28 10:05:00")
    );
    // The summary says what could not be read.
    let summary = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CycleSummary(s) if s.unreadable_items > 0 => Some(s.clone()),
            _ => None,
        })
        .expect("a summary counts the skipped item");
    assert_eq!(summary.unreadable_items, 1);

    // The digest of the day lists all five failures.
    let digest = digest_of_the_28th(p.store());
    assert_eq!(digest.failures.len(), 5);
    assert!(digest
        .failures
        .iter()
        .any(|f| f.end_raw.as_deref() == Some("-0001-11-28 10:05:00")));

    // Seen again: nothing new, nothing re-alerted.
    h.clock.set(at(28, 11, 5));
    let again = p.cycle().await.unwrap();
    assert_eq!(again.summary.alerts, 0);
}

/// One cycle at 11:`min` on the 28th, delivered to `sink`; returns the items it skipped,
/// checked against the cycle's record (`/status`).
async fn cycle_at(h: &Harness, p: &Poller, sink: &Recorder, min: u32) -> u32 {
    h.clock.set(at(28, 11, min));
    let items = p.cycle().await.unwrap().summary.unreadable_items;
    drain(p.store(), sink).await.unwrap();
    let recorded = p.store().last_cycle().unwrap().unwrap().unreadable_items;
    assert_eq!(recorded, items, "/status counts every cycle's items");
    items
}

/// The same item without an identity in every reply is told once (one summary, one WARN
/// line), like a user whose requests keep failing the same way; it stays counted in every
/// cycle's record (`/status`). A new item is told once again. A failed request in between
/// and a restart do not make a known item new.
#[tokio::test]
async fn an_unreadable_item_seen_every_cycle_is_told_once() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let h = Harness::start(&["obm"], at(28, 9, 0)).await;
    let mut p = h.poller();
    p.cycle().await.unwrap(); // the baseline: nothing yet
    h.sim.add_job(odd_failure("obm", "1", 0, &["no_identity"]));
    let sink = Recorder::default();
    let summaries = || {
        sink.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::CycleSummary(_)))
            .count()
    };
    let warnings = || {
        logs.text()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("skipped a reply item"))
            .count()
    };
    let items = cycle_at(&h, &p, &sink, 0).await;
    assert_eq!(
        (items, summaries(), warnings()),
        (1, 1, 1),
        "first seen: told"
    );
    for min in [5, 10, 15] {
        let items = cycle_at(&h, &p, &sink, min).await;
        assert_eq!(
            (items, summaries(), warnings()),
            (1, 1, 1),
            "seen again: quiet"
        );
    }

    // A failed request and the recovery post for the errors, but the item is not new.
    h.sim.set_login_fault("obm", Some(LoginFault::NotFound));
    cycle_at(&h, &p, &sink, 20).await;
    h.sim.set_login_fault("obm", None);
    cycle_at(&h, &p, &sink, 25).await;
    assert_eq!(warnings(), 1, "the item is known across a failed request");
    let posted = summaries();

    // A restart remembers it.
    drop(p);
    p = h.poller();
    cycle_at(&h, &p, &sink, 30).await;
    assert_eq!(
        (summaries(), warnings()),
        (posted, 1),
        "known across a restart"
    );

    // A different item is news, once.
    h.sim.add_job(odd_failure("obm", "2", 1, &["no_identity"]));
    let items = cycle_at(&h, &p, &sink, 35).await;
    assert_eq!((items, summaries(), warnings()), (2, posted + 1, 2));
    let items = cycle_at(&h, &p, &sink, 40).await;
    assert_eq!((items, summaries(), warnings()), (2, posted + 1, 2));
}

/// The built binary, with no RESTOREWATCH_* of the caller's environment.
fn restorewatch(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_restorewatch"));
    cmd.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("RESTOREWATCH_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A config for the binary: the simulator, user obm, a store in `state`, the console sink.
fn binary_config(sim: &restorewatch::simulator::SimHandle, state: &std::path::Path) -> String {
    format!(
        r#"
        [cbs]
        url = "{url}"
        server_name = "sim"
        sys_user = "{user}"
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
    )
}

/// `restorewatch once` with `config`; returns (exit code, stdout, stderr).
async fn once(
    sim: &restorewatch::simulator::SimHandle,
    config: &std::path::Path,
) -> (Option<i32>, String, String) {
    let out = restorewatch(&["once", "--config", config.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A simulator on the real clock with user obm.
async fn real_time_simulator() -> restorewatch::simulator::SimHandle {
    use restorewatch::simulator::{SimConfig, SimUser, Simulator};
    let sim = Simulator::new(SimConfig::default()).start().await.unwrap();
    sim.add_user(SimUser {
        login: "obm".into(),
        owner: String::new(),
        user_id: "obm".into(),
    });
    sim
}

/// A failure of obm in `set` that ended a few minutes ago, with the quirks named.
fn recent_odd_failure(set: &str, quirks: &[&str]) -> SimJob {
    use chrono::SubsecRound;
    let start = (Utc::now() - chrono::Duration::minutes(10)).trunc_subsecs(0);
    SimJob {
        quirks: {
            let mut q = Quirks::default();
            for name in quirks {
                assert!(q.set_by_name(name), "{name}");
            }
            q
        },
        ..job(
            "obm",
            set,
            start,
            Some(start + chrono::Duration::minutes(5)),
            "RESTORE_STOP_BY_ERROR",
        )
    }
}

#[tokio::test]
async fn the_binary_alerts_every_odd_job_and_says_what_it_could_not_read() {
    let sim = real_time_simulator().await;
    for (set, quirks) in [
        ("1", &["epoch_millis_end"][..]),
        ("2", &["iso_times"]),
        ("3", &["size_minus_one"]),
        ("4", &["size_not_available"]),
        ("5", &["end_year_minus_one"]),
        ("6", &["no_identity"]),
    ] {
        sim.add_job(recent_odd_failure(set, quirks));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rw.toml");
    std::fs::write(&config, binary_config(&sim, &dir.path().join("state"))).unwrap();
    let (code, out, err) = once(&sim, &config).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("Restore failed").count(), 5, "{out}");
    assert!(out.contains("`-1` (unreadable)"), "{out}");
    assert!(out.contains("`n/a` (unreadable)"), "{out}");
    assert!(out.contains("-0001-"), "{out}");
    assert!(out.contains("1 job could not be read"), "{out}");
    assert!(err.contains("without a job identity"), "logged: {err}");
    // A second run posts none of them again.
    let (code, again, err) = once(&sim, &config).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(again.matches("Restore failed").count(), 0, "{again}");
}

const ALERTS: u64 = 4_000_000_000_000_000_001;
const DIGEST: u64 = 4_000_000_000_000_000_002;

fn discord_sink(
    fake: &support::fake_discord::FakeDiscord,
    store: &restorewatch::store::Store,
) -> restorewatch::discord::DiscordSink {
    use restorewatch::config::DiscordSettings;
    use serenity::all::ChannelId;
    let settings = DiscordSettings {
        token: "fake-token".to_owned().into(),
        alert_channel: ChannelId::new(ALERTS),
        digest_channel: ChannelId::new(DIGEST),
        mention_role: None,
        api_base: Some(fake.api_base().parse().unwrap()),
        guilds: Vec::new(),
        admin_role: None,
        public_lookups: false,
        routes: vec![restorewatch::config::Route {
            owner: "reseller-a".into(),
            channel: ChannelId::new(RESELLER_A),
        }],
    };
    let render = restorewatch::render::RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: false,
    };
    restorewatch::discord::DiscordSink::new(&settings, store, render).unwrap()
}

/// Garbage bytes that no record type decodes from.
const GARBAGE: &[u8] = b"\x00\xffnot a record\xfe";

/// Writes garbage into every tree of the store in `dir`: new records that do not decode,
/// and existing records overwritten. Returns the tree names written to.
fn poison_every_tree(dir: &std::path::Path) -> Vec<String> {
    let store = restorewatch::store::Store::open(dir).unwrap();
    let mut poisoned = Vec::new();
    for name in [
        "jobs",
        "by_day",
        "running",
        "outbox",
        "users",
        "watch",
        "meta",
        "mutes",
        "discord_batches",
    ] {
        let tree = store.tree(name).unwrap();
        // Overwrite what is there (but the jobs tree keeps its records, so the test can
        // tell a re-alert from a first one; the running job's record is overwritten).
        if name != "jobs" && name != "outbox" {
            let keys: Vec<_> = tree.iter().keys().map(Result::unwrap).collect();
            for k in keys {
                tree.insert(k, GARBAGE).unwrap();
            }
        }
        let key: Vec<u8> = match name {
            // Sorts before every real day, so pruning meets it.
            "by_day" => b"1999-01-01 no separator".to_vec(),
            // An 8-byte id, like real events, between them.
            "outbox" => 1u64.to_be_bytes().to_vec(),
            "jobs" => b"cbs-test\0obm\0running-set\0x".to_vec(),
            _ => b"garbage".to_vec(),
        };
        tree.insert(key, GARBAGE).unwrap();
        poisoned.push(name.to_owned());
    }
    // The running job's record itself.
    let jobs = store.tree("jobs").unwrap();
    let running: Vec<_> = store
        .tree("running")
        .unwrap()
        .iter()
        .keys()
        .map(Result::unwrap)
        .collect();
    for k in running {
        if jobs.contains_key(&k).unwrap() {
            jobs.insert(k, GARBAGE).unwrap();
        }
    }
    store.flush().unwrap();
    poisoned
}

#[tokio::test]
async fn garbage_in_every_tree_is_quarantined_and_the_alerts_still_go_out() {
    use restorewatch::mutes::{Mute, Mutes};
    let fake = support::fake_discord::FakeDiscord::start().await;
    let h = Harness::start(&["obm"], at(28, 9, 0)).await;
    {
        let p = h.poller();
        p.cycle().await.unwrap(); // baseline
                                  // A job that runs on, one that will fail later, and a failure now.
        h.sim.add_job(job("obm", "2", at(28, 9, 10), None, ""));
        h.sim.add_job(job(
            "obm",
            "3",
            at(28, 9, 20),
            Some(at(28, 10, 30)),
            "RESTORE_STOP_BY_ERROR",
        ));
        h.sim.add_job(job(
            "obm",
            "1",
            at(28, 9, 15),
            Some(at(28, 9, 20)),
            "RESTORE_STOP_BY_ERROR",
        ));
        h.clock.set(at(28, 9, 30));
        Mutes::open(p.store())
            .unwrap()
            .mute(&Mute {
                server: None,
                login: "someone-else".into(),
                backup_set_id: None,
                until: at(29, 0, 0),
                muted_by: "op".into(),
                muted_at: at(28, 9, 0),
            })
            .unwrap();
        p.store()
            .add_watch(&restorewatch::store::DynamicWatch {
                login: "obm".into(),
                owner: String::new(),
                added_by: "op".into(),
                added_at: at(28, 9, 0),
            })
            .unwrap();
        let report = p.cycle().await.unwrap();
        assert_eq!(report.summary.alerts, 1);
        // Posted to Discord, then a "crash" before the outbox was acknowledged: the batch
        // record stays, so the restart below finds one in discord_batches.
        let sink = discord_sink(&fake, p.store());
        use restorewatch::sink::Sink;
        let pending = p.store().pending_events(100).unwrap();
        sink.deliver(&pending).await.unwrap();
        p.store().flush().unwrap();
    }
    let posted_before = fake.messages(ALERTS).len();
    assert!(posted_before >= 1);
    let poisoned = poison_every_tree(h.dir.path());

    // Restart on the poisoned store: set 3 fails, and it must be posted.
    h.clock.set(at(28, 10, 35));
    let p = h.poller();
    let report = p.cycle().await.expect("the cycle carries on");
    assert!(report.ok(), "{:?}", report.summary.errors);
    let sink = discord_sink(&fake, p.store());
    let drained = drain(p.store(), &sink).await.expect("delivery carries on");
    assert_eq!(drained.pending, 0, "{drained:?}");
    let texts: Vec<String> = fake
        .messages(ALERTS)
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("set 3")),
        "the new failure is posted: {texts:?}"
    );
    // Every tree's garbage sits in the quarantine tree, raw bytes kept.
    let quarantined = p.store().quarantined_records().unwrap();
    let trees: std::collections::BTreeSet<&str> =
        quarantined.iter().map(|q| q.tree.as_str()).collect();
    for name in &poisoned {
        assert!(trees.contains(name.as_str()), "{name} not in {trees:?}");
    }
    assert!(quarantined.iter().all(|q| q.raw == GARBAGE));
    assert_eq!(p.store().quarantined().unwrap(), quarantined.len());
    // Nothing poisoned stays behind: the next cycle and drain quarantine nothing more.
    let before = p.store().quarantined().unwrap();
    h.clock.set(at(28, 10, 40));
    p.cycle().await.unwrap();
    drain(p.store(), &sink).await.unwrap();
    assert_eq!(p.store().quarantined().unwrap(), before);
    assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
}

#[tokio::test]
async fn the_binary_carries_on_over_garbage_written_into_its_store_between_runs() {
    let sim = real_time_simulator().await;
    sim.add_job(recent_odd_failure("1", &[]));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("rw.toml");
    std::fs::write(&config, binary_config(&sim, &state)).unwrap();
    let (code, out, err) = once(&sim, &config).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("Restore failed").count(), 1, "{out}");

    poison_every_tree(&state);
    sim.add_job(recent_odd_failure("2", &[]));
    let (code, out, err) = once(&sim, &config).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("set 2"), "the new failure is posted: {out}");
    assert!(
        err.contains("quarantine"),
        "and the garbage is logged: {err}"
    );
    // A third run finds nothing left to quarantine and posts nothing twice.
    let (code, out, err) = once(&sim, &config).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("quarantine"), "{err}");
    assert!(!out.contains("Restore failed"), "{out}");
}

const RESELLER_A: u64 = 4_000_000_000_000_000_003;

/// Queues a baseline notice of owner `owner` naming `marker`: a small event whose message
/// shows the marker.
fn queue_marked(store: &restorewatch::store::Store, owner: &str, marker: &str) -> u64 {
    use restorewatch::event::BaselineUser;
    let kind = EventKind::Baseline {
        owner: owner.into(),
        users: vec![BaselineUser {
            login_name: marker.into(),
            counts: Default::default(),
        }],
        would_alert: vec![],
        would_alert_total: 0,
        server: String::new(),
    };
    store.push_event(kind, at(28, 9, 0)).unwrap().id
}

#[tokio::test]
async fn a_huge_retry_after_rests_delivery_instead_of_killing_it() {
    use support::fake_discord::{FakeDiscord, Scripted};
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = restorewatch::store::Store::open(dir.path()).unwrap();
    queue_marked(&store, "", "user-1");
    let sink = discord_sink(&fake, &store);
    for retry_after_secs in [1e20, f64::MAX] {
        fake.script(
            ALERTS,
            [Scripted::TooManyRequests {
                retry_after_secs,
                global: false,
            }],
        );
        let report = drain(&store, &sink)
            .await
            .expect("no panic, no store error");
        assert_eq!(report.pending, 1, "the event stays queued");
        let error = report.error.expect("the drain says why");
        assert!(error.contains("3600s"), "capped at an hour: {error}");
        assert!(fake.messages(ALERTS).is_empty());
    }
}

#[tokio::test]
async fn a_crash_between_discords_200_and_the_ack_resumes_the_same_messages_across_windows() {
    use restorewatch::sink::DRAIN_BATCH_EVENTS;
    use support::fake_discord::{FakeDiscord, Scripted};
    const WAIT: std::time::Duration = std::time::Duration::from_secs(20);
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A refusing channel's backlog first, then more alerts than two drain windows hold.
    fake.set_channel_forbidden(RESELLER_A, true);
    let refused = 100;
    let alerts = 2 * DRAIN_BATCH_EVENTS;
    let store = restorewatch::store::Store::open(dir.path()).unwrap();
    for n in 0..refused {
        queue_marked(&store, "reseller-a", &format!("refused-{n:04}"));
    }
    for n in 0..alerts {
        queue_marked(&store, "", &format!("user-{n:04}"));
    }
    // Ten small notices go in one message. The first window holds the 100 refused events
    // and user-0000..0155 (16 messages); the second starts at user-0156. Its 16th message
    // (user-0306..0315) is created at Discord, but its answer never comes, and the process
    // dies there: nothing of the second window was acknowledged.
    fake.script(
        ALERTS,
        std::iter::repeat_n(Scripted::Accept, 31).chain([Scripted::AcceptThenHang]),
    );
    let crashed = {
        let store = store.clone();
        let sink = discord_sink(&fake, &store);
        tokio::spawn(async move { drain(&store, &sink).await })
    };
    // Discord creates the 32nd message, but the bot never hears back.
    let posted = tokio::time::timeout(WAIT, fake.wait_for_messages(ALERTS, 32))
        .await
        .expect("the drain reaches the message whose answer never comes");
    crashed.abort();
    let _ = crashed.await;
    assert_eq!(posted.len(), 32);
    assert!(
        posted[30].to_string().contains("user-0305"),
        "ten a message"
    );
    assert!(posted[31].to_string().contains("user-0315"));

    // The restart's first window now ends at user-0311, inside the hung message.
    let sink = discord_sink(&fake, &store);
    let report = drain(&store, &sink).await.unwrap();
    assert_eq!(
        report.pending, refused,
        "only the refusing channel's events wait"
    );
    let texts: Vec<String> = fake
        .messages(ALERTS)
        .iter()
        .map(|m| m.to_string())
        .collect();
    for n in 0..alerts {
        let marker = format!("user-{n:04}");
        let count = texts.iter().filter(|t| t.contains(&marker)).count();
        assert_eq!(count, 1, "{marker} posted {count} times");
    }
    let hung = texts
        .iter()
        .find(|t| t.contains("user-0311"))
        .expect("posted");
    assert!(
        hung.contains("user-0306") && hung.contains("user-0315"),
        "the message cut by the window is resent whole, under its nonce: {hung}"
    );
    assert!(fake.messages(RESELLER_A).is_empty());
}

/// `restorewatch run` as a child process, its output gathered as it comes.
struct RunningBinary {
    child: tokio::process::Child,
    /// (stdout, stderr) so far; bumped on every line.
    output: tokio::sync::watch::Receiver<(String, String)>,
}

impl RunningBinary {
    fn start(sim: &restorewatch::simulator::SimHandle, config: &std::path::Path) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut child = restorewatch(&["run", "--config", config.to_str().unwrap()])
            .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, output) = tokio::sync::watch::channel((String::new(), String::new()));
        let tx = std::sync::Arc::new(tx);
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (is_err, stream) in [
            (
                false,
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            ),
            (true, Box::new(stderr)),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tx.send_modify(|(out, err)| {
                        let s = if is_err { err } else { out };
                        s.push_str(&line);
                        s.push('\n');
                    });
                }
            });
        }
        RunningBinary { child, output }
    }

    /// Waits (bounded) until stderr contains `needle` `times` times; returns (stdout,
    /// stderr).
    async fn wait_for_logs(&mut self, needle: &str, times: usize) -> (String, String) {
        let mut output = self.output.clone();
        let wait = output.wait_for(|(_, err)| err.matches(needle).count() >= times);
        let seen = match tokio::time::timeout(std::time::Duration::from_secs(30), wait).await {
            Ok(seen) => seen.unwrap().clone(),
            Err(_) => panic!("no {needle:?} in: {:?}", self.output.borrow()),
        };
        seen
    }

    /// SIGTERM, then the exit code.
    async fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        let killed = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        self.child.wait().await.unwrap().code()
    }
}

#[tokio::test]
async fn the_binary_posts_the_digests_it_missed_while_down_oldest_first_once() {
    let sim = real_time_simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("rw.toml");
    // Poll every second, so a second "poll cycle done" in the log says the start-up is
    // over (a missed digest goes out after the first cycle); the digest at midnight UTC.
    let toml = binary_config(&sim, &state)
        .replace("schedule = \"*/5 * * * *\"", "schedule = \"* * * * * *\"")
        + "\n[digest]\nschedule = \"0 0 * * *\"\nmax_catch_up_days = 3\n";
    std::fs::write(&config, toml).unwrap();
    let today = Utc::now().date_naive();
    let ago = |n: u64| today.checked_sub_days(chrono::Days::new(n)).unwrap();

    // A fresh store starts quietly: no digest of days it never watched.
    let mut first = RunningBinary::start(&sim, &config);
    let (out, _) = first.wait_for_logs("poll cycle done", 2).await;
    assert_eq!(first.stop().await, Some(0));
    assert!(!out.contains("Restore digest"), "{out}");

    // The bot was down over the last two midnights: the store says it last digested the
    // day three days ago.
    {
        let store = restorewatch::store::Store::open(&state).unwrap();
        store.set_last_digest_day(ago(3)).unwrap();
        store.flush().unwrap();
    }
    let mut second = RunningBinary::start(&sim, &config);
    let (out, _) = second.wait_for_logs("poll cycle done", 2).await;
    assert_eq!(second.stop().await, Some(0));
    let two = out
        .find(&format!("Restore digest for {}", ago(2)))
        .unwrap_or_else(|| panic!("{out}"));
    let one = out
        .find(&format!("Restore digest for {}", ago(1)))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(two < one, "oldest first");
    assert_eq!(out.matches("Restore digest for").count(), 2, "{out}");

    // Another restart posts none of them again.
    let mut third = RunningBinary::start(&sim, &config);
    let (out, _) = third.wait_for_logs("poll cycle done", 2).await;
    assert_eq!(third.stop().await, Some(0));
    assert!(!out.contains("Restore digest"), "{out}");
}

/// The events queued so far, and the outbox emptied.
async fn take_events(p: &restorewatch::poller::Poller) -> Vec<EventKind> {
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let events = sink.events.lock().unwrap();
    events.iter().map(|e| e.kind.clone()).collect()
}

fn outage_notices(events: &[EventKind]) -> Vec<&EventKind> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                EventKind::CbsUnreachable { .. } | EventKind::CbsRecovered { .. }
            )
        })
        .collect()
}

/// A short outage inside the midnight grace: yesterday is read by every cycle then, so the
/// recovery does not call it caught up.
#[tokio::test]
async fn a_recovery_in_the_midnight_grace_lists_no_routine_date_as_caught_up() {
    use restorewatch::simulator::LoginFault;
    let mut h = Harness::start(&["obm"], at(28, 1, 0)).await;
    h.down_after = 1;
    let p = h.poller();
    p.cycle().await.unwrap();
    take_events(&p).await;
    h.sim.set_login_fault("obm", Some(LoginFault::Http500));
    h.clock.set(at(28, 1, 5));
    p.cycle().await.unwrap();
    take_events(&p).await;
    h.sim.set_login_fault("obm", None);
    h.clock.set(at(28, 1, 10));
    p.cycle().await.unwrap();
    let events = take_events(&p).await;
    match outage_notices(&events)[..] {
        [EventKind::CbsRecovered { caught_up, .. }] => {
            assert_eq!(
                caught_up,
                &[] as &[chrono::NaiveDate],
                "27th is routine at 01:10"
            )
        }
        ref other => panic!("{other:?}"),
    }
}

/// A flapping server (down, back, down again within the hour) gets a notice each time,
/// but only its first outage pings: the next ones say when it had answered again (and do
/// not ping: `render::wants_ping`'s test). An outage more than an hour after the last
/// recovery is news again.
#[tokio::test]
async fn a_flapping_server_pings_once_an_hour_at_most() {
    let mut h = Harness::start(&["obm"], at(28, 9, 0)).await;
    h.down_after = 1;
    let p = h.poller();
    p.cycle().await.unwrap();
    take_events(&p).await;
    // Each cycle's outage notices, by when the server had last answered again (`None`:
    // a first outage, which pings; `Some`: a flap, which does not).
    let step = |minute: i64, down: bool| {
        h.sim
            .set_login_fault("obm", down.then_some(LoginFault::Http500));
        h.clock
            .set(at(28, 9, 0) + chrono::Duration::minutes(minute));
        async {
            p.cycle().await.unwrap();
            let events = take_events(&p).await;
            let notices: Vec<Option<DateTime<Utc>>> = events
                .iter()
                .filter_map(|e| match e {
                    EventKind::CbsUnreachable { again_after, .. } => Some(*again_after),
                    _ => None,
                })
                .collect();
            notices
        }
    };
    assert_eq!(step(5, true).await, [None]);
    assert_eq!(step(10, false).await, []);
    assert_eq!(step(15, true).await, [Some(at(28, 9, 10))]);
    assert_eq!(step(20, false).await, []);
    assert_eq!(step(50, true).await, [Some(at(28, 9, 20))]);
    assert_eq!(step(55, false).await, []);
    // More than an hour after the last recovery: news again.
    assert_eq!(step(120, true).await, [None]);
}

#[tokio::test]
async fn an_outage_opens_after_down_after_cycles_and_a_per_user_error_is_no_recovery() {
    use restorewatch::simulator::LoginFault;
    let mut h = Harness::start(&["obm", "bob"], at(28, 9, 0)).await;
    h.down_after = 2;
    let p = h.poller();
    p.cycle().await.unwrap();
    take_events(&p).await;
    // The server fails for obm; bob's login is unknown (a per-user error, no news).
    h.sim.set_login_fault("obm", Some(LoginFault::Http500));
    h.sim.set_login_fault("bob", Some(LoginFault::NotFound));
    h.clock.set(at(28, 9, 5));
    p.cycle().await.unwrap();
    assert!(
        outage_notices(&take_events(&p).await).is_empty(),
        "one cycle is not an outage"
    );
    h.clock.set(at(28, 9, 10));
    p.cycle().await.unwrap();
    let events = take_events(&p).await;
    match outage_notices(&events)[..] {
        [EventKind::CbsUnreachable { since, .. }] => assert_eq!(*since, at(28, 9, 5)),
        ref other => panic!("{other:?}"),
    }
    // bob's 404 alone (obm still failing) is no recovery, and no new notice either.
    for minute in [15, 20] {
        h.clock.set(at(28, 9, minute));
        p.cycle().await.unwrap();
        assert!(outage_notices(&take_events(&p).await).is_empty());
    }
    // Back the next day: one recovery, saying how long and which dates it read again.
    h.sim.set_login_fault("obm", None);
    h.clock.set(at(29, 9, 0));
    p.cycle().await.unwrap();
    let events = take_events(&p).await;
    match outage_notices(&events)[..] {
        [EventKind::CbsRecovered {
            down_since,
            recovered_at,
            caught_up,
            ..
        }] => {
            assert_eq!((*down_since, *recovered_at), (at(28, 9, 5), at(29, 9, 0)));
            assert_eq!(caught_up, &[day(28)]);
        }
        ref other => panic!("{other:?}"),
    }
    // A single down cycle after it opens nothing (the streak starts again).
    h.sim.set_login_fault("obm", Some(LoginFault::Http500));
    h.clock.set(at(29, 9, 5));
    p.cycle().await.unwrap();
    assert!(outage_notices(&take_events(&p).await).is_empty());
}

#[tokio::test]
async fn a_failing_yesterday_does_not_hold_back_todays_alerts() {
    use restorewatch::simulator::LoginFault;
    // 01:00: inside the midnight grace, so the 27th and the 28th are asked for.
    let h = Harness::start(&["obm"], at(28, 1, 0)).await;
    h.sim
        .set_login_date_fault("obm", day(27), Some(LoginFault::Http500));
    // An old failure on the 27th: part of the baseline once the 27th is read.
    h.sim.add_job(job(
        "obm",
        "old",
        at(27, 20, 0),
        Some(at(27, 20, 30)),
        "RESTORE_STOP_BY_ERROR",
    ));
    let p = h.poller();
    let first = p.cycle().await.unwrap();
    assert_eq!(first.summary.errors.len(), 1, "the 27th fails");
    h.sim.add_job(job(
        "obm",
        "new",
        at(28, 1, 10),
        Some(at(28, 1, 20)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.clock.set(at(28, 1, 30));
    let second = p.cycle().await.unwrap();
    assert_eq!(second.summary.alerts, 1, "today's new failure alerts");
    // The 27th reads at last: its old failure is baseline, not an alert.
    h.sim.set_login_date_fault("obm", day(27), None);
    h.clock.set(at(28, 1, 35));
    let third = p.cycle().await.unwrap();
    assert_eq!(third.summary.alerts, 0);
    assert_eq!(third.baselined, 1);
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let alerted: Vec<String> = sink
        .alerts()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::JobFinished { job, .. } => Some(job.backup_set_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(alerted, ["new"]);
}

/// The sets alerted when the CBS is down from the 24th to the 28th (one failure a day from
/// the 20th to the 27th), with this retention and a 7-day catch-up.
async fn alerts_across_four_down_days(retention_days: u32) -> Vec<String> {
    let mut h = Harness::start(&["obm"], at(20, 12, 0)).await;
    h.max_catch_up_days = 7;
    h.retention_days = retention_days;
    let p = h.poller();
    p.cycle().await.unwrap(); // baseline
    let sink = Recorder::default();
    for d in 20..=27 {
        if d == 24 {
            h.sim.set_down(true).await.unwrap();
        }
        h.sim.add_job(job(
            "obm",
            &format!("day{d}"),
            at(d, 10, 0),
            Some(at(d, 10, 30)),
            "RESTORE_STOP_BY_ERROR",
        ));
        h.clock.set(at(d, 12, 5));
        p.cycle().await.unwrap();
        drain(p.store(), &sink).await.unwrap();
    }
    h.sim.set_down(false).await.unwrap();
    h.clock.set(at(28, 12, 5));
    p.cycle().await.unwrap();
    drain(p.store(), &sink).await.unwrap();
    let mut sets: Vec<String> = sink
        .alerts()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::JobFinished { job, .. } => Some(job.backup_set_id.clone()),
            _ => None,
        })
        .collect();
    sets.sort();
    sets
}

#[tokio::test]
async fn four_days_of_cbs_downtime_with_the_shortest_retention_post_nothing_twice() {
    use restorewatch::config::min_retention_days;
    let shortest = min_retention_days(7, std::time::Duration::from_secs(6 * 3600));
    assert_eq!(shortest, 9);
    let want: Vec<String> = (20..=27).map(|d| format!("day{d}")).collect();
    assert_eq!(alerts_across_four_down_days(shortest).await, want);
    // A shorter one (which the config refuses) still prunes nothing a catch-up reads.
    assert_eq!(alerts_across_four_down_days(2).await, want);
}

#[tokio::test]
async fn a_retention_a_catch_up_could_outrun_stops_the_start_naming_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rw.toml");
    let text = |retention: u32| {
        format!(
            "[cbs]\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\n[[watch]]\nlogin = \"obm\"\n\
             [poll]\nmax_catch_up_days = 5\n[state]\npath = \"{}\"\nretention_days = {retention}\n",
            dir.path().join("state").display()
        )
    };
    // 5 days of catch-up and the grace day reach back 6 days: 6 is not enough.
    std::fs::write(&config, text(6)).unwrap();
    let out = restorewatch(&["check", "--config", config.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", "pw")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("state.retention_days"), "{err}");
    assert!(err.contains("poll.max_catch_up_days"), "{err}");
    let env = |name: &str| (name == "RESTOREWATCH_CBS_SYS_PWD").then(|| "pw".to_owned());
    assert!(restorewatch::config::Settings::from_toml_str(&text(6), &env).is_err());
    assert!(restorewatch::config::Settings::from_toml_str(&text(7), &env).is_ok());
}

#[tokio::test]
async fn a_login_spelt_in_another_case_is_one_user_with_one_key() {
    use restorewatch::mutes::{Mute, Mutes};
    use restorewatch::simulator::SimUser;
    // The CBS stores "OBM"; the config watches "obm"; chat added "Obm" too.
    let mut h = Harness::start(&[], at(28, 9, 0)).await;
    h.sim.add_user(SimUser {
        login: "OBM".into(),
        owner: String::new(),
        user_id: "OBM".into(),
    });
    h.watch.push(restorewatch::config::WatchEntry {
        login: "obm".into(),
        owner: String::new(),
    });
    let p = h.poller();
    p.store()
        .add_watch(&restorewatch::store::DynamicWatch {
            login: "Obm".into(),
            owner: String::new(),
            added_by: "op".into(),
            added_at: at(28, 9, 0),
        })
        .unwrap();
    let first = p.cycle().await.unwrap();
    assert_eq!(first.summary.users_polled, 1, "one user, not two");
    // A job that runs, and a failure in a set muted from chat as "OBM".
    h.sim.add_job(job("OBM", "run", at(28, 9, 1), None, ""));
    h.sim.add_job(job(
        "OBM",
        "muted",
        at(28, 9, 2),
        Some(at(28, 9, 3)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.sim.add_job(job(
        "OBM",
        "loud",
        at(28, 9, 2),
        Some(at(28, 9, 3)),
        "RESTORE_STOP_BY_ERROR",
    ));
    Mutes::open(p.store())
        .unwrap()
        .mute(&Mute {
            server: None,
            login: "OBM".into(),
            backup_set_id: Some("muted".into()),
            until: at(29, 0, 0),
            muted_by: "op".into(),
            muted_at: at(28, 9, 0),
        })
        .unwrap();
    h.clock.set(at(28, 9, 5));
    let second = p.cycle().await.unwrap();
    assert_eq!((second.summary.alerts, second.summary.muted), (1, 1));
    // Recorded under the watched spelling: its running date is found by that login.
    assert_eq!(
        p.store()
            .running_dates(support::world::SERVER, "obm")
            .unwrap(),
        [day(28)].into()
    );
    let sink = Recorder::default();
    drain(p.store(), &sink).await.unwrap();
    let logins: Vec<String> = sink
        .alerts()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::JobFinished { job, .. } => Some(job.login_name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(logins, ["obm"]);
    h.clock.set(at(28, 9, 10));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 0, "nothing twice");
}

#[test]
fn a_store_made_for_another_server_name_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = restorewatch::store::Store::open(dir.path()).unwrap();
    store.check_server_name("10.0.0.5").unwrap();
    store.check_server_name("10.0.0.5").unwrap();
    let err = store.check_server_name("cbs.example.com").unwrap_err();
    assert!(
        err.contains("\"10.0.0.5\"") && err.contains("\"cbs.example.com\""),
        "{err}"
    );
    assert!(err.contains("cbs.server_name"), "{err}");
}

#[tokio::test]
async fn the_binary_refuses_a_store_whose_server_name_changed() {
    let sim = real_time_simulator().await;
    sim.add_job(recent_odd_failure("1", &[]));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("rw.toml");
    std::fs::write(&config, binary_config(&sim, &state)).unwrap();
    let (code, out, err) = once(&sim, &config).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("Restore failed").count(), 1);
    // cbs.url moves to another host name for the same server: server_name follows it.
    let moved = binary_config(&sim, &state).replace("server_name = \"sim\"\n", "");
    std::fs::write(&config, moved).unwrap();
    let (code, out, err) = once(&sim, &config).await;
    assert_eq!(code, Some(2), "a config error: {err}");
    assert!(!out.contains("Restore failed"), "nothing re-alerted: {out}");
    assert!(
        err.contains("\"sim\"") && err.contains("\"127.0.0.1\""),
        "{err}"
    );
    assert!(err.contains("cbs.server_name"), "{err}");
}

#[tokio::test]
async fn a_running_job_that_vanishes_gets_one_notice_and_leaves_the_poll() {
    let h = Harness::start(&["obm"], at(28, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.add_job(job("obm", "gone", at(28, 9, 1), None, ""));
    h.clock.set(at(28, 9, 5));
    assert_eq!(p.cycle().await.unwrap().summary.started_running, 1);
    take_events(&p).await;
    // The server forgets it. Three reads are not enough before 30 minutes have passed.
    h.sim.set_jobs(Vec::new());
    for minute in [10, 15, 20] {
        h.clock.set(at(28, 9, minute));
        assert_eq!(p.cycle().await.unwrap().summary.alerts, 0, "09:{minute}");
    }
    h.clock.set(at(28, 9, 45));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 1);
    let events = take_events(&p).await;
    let vanished: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::JobVanished { job, missing_since } => Some((job, *missing_since)),
            _ => None,
        })
        .collect();
    assert_eq!(vanished.len(), 1, "{events:?}");
    assert_eq!(vanished[0].0.class, StatusClass::Unknown);
    assert_eq!(vanished[0].1, at(28, 9, 10));
    // Its date is no longer polled for it, and it is told once.
    assert!(p
        .store()
        .running_dates(support::world::SERVER, "obm")
        .unwrap()
        .is_empty());
    h.clock.set(at(28, 9, 50));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 0);
    // The digest lists it as vanished.
    let digest = digest_of_the_28th(p.store());
    assert!(digest.failures.iter().any(|f| f.vanished));
    let text = restorewatch::render::digest_text(&digest, day(28));
    assert!(text.contains("vanished"), "{text}");
}

#[tokio::test]
async fn a_vanished_job_listed_again_gets_its_real_end_and_one_alert() {
    let mut h = Harness::start(&["obm"], at(28, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    let running = |set| job("obm", set, at(28, 9, 1), None, "");
    h.sim.set_jobs(vec![running("failed"), running("back")]);
    h.clock.set(at(28, 9, 5));
    assert_eq!(p.cycle().await.unwrap().summary.started_running, 2);
    // Both vanish: two notices.
    h.sim.set_jobs(Vec::new());
    for minute in [10, 15, 20, 45] {
        h.clock.set(at(28, 9, minute));
        p.cycle().await.unwrap();
    }
    let events = take_events(&p).await;
    let vanished = |e: &&EventKind| matches!(e, EventKind::JobVanished { .. });
    assert_eq!(events.iter().filter(vanished).count(), 2, "{events:?}");
    // The server lists them again: one ended in failure, the other still runs.
    h.sim.set_jobs(vec![
        job(
            "obm",
            "failed",
            at(28, 9, 1),
            Some(at(28, 9, 40)),
            "RESTORE_STOP_BY_ERROR",
        ),
        job(
            "obm",
            "back",
            at(28, 9, 1),
            Some(at(28, 11, 0)),
            "RESTORE_STOP_BY_ERROR",
        ),
    ]);
    h.clock.set(at(28, 9, 50));
    let report = p.cycle().await.unwrap();
    assert_eq!(report.summary.alerts, 1);
    let events = take_events(&p).await;
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::JobFinished {
                job,
                was_vanished,
                listed_on,
                ..
            } => Some(job).filter(|_| *was_vanished && *listed_on == Some(day(28))),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "said to have vanished before: {events:?}");
    assert_eq!(failed[0].backup_set_id, "failed");
    assert_eq!(failed[0].class, StatusClass::Failure);
    assert_eq!(failed[0].end_time.map(|t| t.to_utc()), Some(at(28, 9, 40)));
    // Listed running again, the other is polled for again and alerts when it ends.
    assert_eq!(
        p.store()
            .running_dates(support::world::SERVER, "obm")
            .unwrap(),
        [day(28)].into()
    );
    h.clock.set(at(28, 11, 5));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 1);
    assert_eq!(
        take_events(&p)
            .await
            .iter()
            .filter(|e| matches!(e, EventKind::JobFinished { .. }))
            .count(),
        1
    );
    // Told once: not again, not after a restart.
    h.clock.set(at(28, 11, 10));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 0);
    drop(p);
    h.crash();
    let p = h.poller();
    h.clock.set(at(28, 11, 15));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 0);
    assert!(take_events(&p).await.iter().all(|e| !matches!(
        e,
        EventKind::JobFinished { .. } | EventKind::JobVanished { .. }
    )));
    // The digest shows their real outcome, not "vanished".
    let digest = digest_of_the_28th(p.store());
    assert_eq!(digest.failures.len(), 2, "{:?}", digest.failures);
    assert!(digest.failures.iter().all(|f| !f.vanished));
    let text = restorewatch::render::digest_text(&digest, day(28));
    assert!(!text.contains("vanished"), "{text}");
}

/// A host clock 40 days ahead for a cycle (past `state.retention_days`) would prune
/// today's records, and once it is right again the failure the CBS still lists would be
/// new and alerted twice. A clock that jumps (or goes back) holds pruning for a day of
/// cycles, saying so; a day later pruning resumes.
#[tokio::test]
async fn a_clock_that_jumps_ahead_and_back_prunes_nothing_and_alerts_nothing_twice() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let h = Harness::start(&["obm"], at(28, 9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim.add_job(job(
        "obm",
        "1",
        at(28, 9, 1),
        Some(at(28, 9, 2)),
        "RESTORE_STOP_BY_ERROR",
    ));
    h.clock.set(at(28, 9, 5));
    assert_eq!(p.cycle().await.unwrap().summary.alerts, 1);

    h.clock.set(at(28, 9, 10) + chrono::Duration::days(40));
    assert_eq!(
        p.cycle().await.unwrap().pruned,
        0,
        "a jump holds the pruning"
    );
    assert!(logs
        .text()
        .contains("the clock moved ahead by 40d since the last cycle"));
    h.clock.set(at(28, 9, 15));
    let back = p.cycle().await.unwrap();
    assert_eq!((back.pruned, back.summary.alerts), (0, 0), "nothing twice");
    assert!(logs
        .text()
        .contains("the clock moved back by 39d 23h since the last cycle"));

    // Real time goes on: a day later pruning resumes (nothing is old enough yet).
    h.clock.set(at(29, 9, 20));
    p.cycle().await.unwrap();
    assert_eq!(p.store().prune_held_since().unwrap(), None);
}
