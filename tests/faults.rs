//! The fault suite, in process: what a bad backup server and a bad Discord do to a cycle
//! and to delivery. Each test names the fault; RELIABILITY.md lists them with the outcome.
//! (The process faults, SIGKILL, SIGTERM and the store's directory, are in
//! `tests/process.rs`.)

mod support;

use chrono::{DateTime, TimeZone, Utc};
use restorewatch::cbs::{CbsClient, CbsClientConfig, CbsError};
use restorewatch::config::{DiscordSettings, Route};
use restorewatch::discord::{DeliveryTiming, DiscordSink};
use restorewatch::event::{EventKind, OutageReason};
use restorewatch::poller::Poller;
use restorewatch::render::RenderOptions;
use restorewatch::simulator::{Faults, LoginFault};
use restorewatch::sink::drain;
use serenity::all::ChannelId;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use support::fake_discord::{FakeDiscord, NonceMemory, Scripted};
use support::world::{job, Harness, SERVER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALERTS: u64 = 4_000_000_000_000_000_001;
const RESELLER_A: u64 = 4_000_000_000_000_000_003;
const FAILED: &str = "RESTORE_STOP_BY_ERROR";

fn at(h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 26, h, min, 0).unwrap()
}

// ----- CBS -------------------------------------------------------------------------------

/// Each server-wide fault: the cycle ends, names the user and date, queues exactly one
/// outage notice with the right reason; the next good cycle queues one recovery.
#[tokio::test(start_paused = true)]
async fn each_cbs_fault_ends_the_cycle_with_one_notice_and_one_recovery() {
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        Refused,
        Timeout,
        Http5xx,
        Malformed,
        BadPassword,
        ExpiredPassword,
    }
    let metrics = restorewatch::metrics::install();
    for fault in [
        Fault::Refused,
        Fault::Timeout,
        Fault::Http5xx,
        Fault::Malformed,
        Fault::BadPassword,
        Fault::ExpiredPassword,
    ] {
        let h = Harness::start(&["obm"], at(9, 0)).await;
        let p = h.poller();
        p.cycle().await.unwrap();
        drain_all(&p).await;
        let outcome = match fault {
            Fault::Refused => "connect_error",
            Fault::Timeout => "timeout",
            Fault::Http5xx => "http_5xx",
            Fault::Malformed => "malformed",
            Fault::BadPassword => "api_error",
            Fault::ExpiredPassword => "password_expired",
        };
        let expected = match fault {
            Fault::Refused => {
                h.sim.set_down(true).await.unwrap();
                OutageReason::Unreachable
            }
            Fault::Timeout => {
                // The harness's request timeout is 10 s.
                h.sim.set_faults(Faults {
                    latency: std::time::Duration::from_secs(60),
                    ..Faults::default()
                });
                OutageReason::Unreachable
            }
            Fault::Http5xx => {
                h.sim.set_faults(Faults {
                    http_500_ratio: 1.0,
                    ..Faults::default()
                });
                OutageReason::Unreachable
            }
            Fault::Malformed => {
                h.sim.set_faults(Faults {
                    malformed_ratio: 1.0,
                    ..Faults::default()
                });
                OutageReason::Unreachable
            }
            Fault::BadPassword => {
                h.sim.set_login_fault(
                    "obm",
                    Some(LoginFault::ApiError(
                        "Incorrect system username/password".into(),
                    )),
                );
                OutageReason::AuthFailed
            }
            Fault::ExpiredPassword => {
                h.sim.set_password_expired(true);
                OutageReason::PasswordExpired
            }
        };
        for minute in [5, 10] {
            h.clock.set(at(9, minute));
            let report = p.cycle().await.unwrap();
            assert_eq!(report.summary.errors.len(), 1, "{fault:?}");
            let error = &report.summary.errors[0];
            assert_eq!(
                (error.login_name.as_str(), error.date),
                ("obm", at(9, 0).date_naive()),
                "{fault:?}: the error names the user and the date"
            );
        }
        let notices: Vec<OutageReason> = pending_kinds(&p)
            .into_iter()
            .filter_map(|k| match k {
                EventKind::CbsUnreachable { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(
            notices,
            [expected],
            "{fault:?}: one notice, not one per cycle"
        );
        // Two failed requests of this kind so far (this test is the only poller here).
        let line = format!(
            "restorewatch_cbs_requests_total{{outcome=\"{outcome}\",server=\"{SERVER}\"}} 2"
        );
        assert!(metrics.render().contains(&line), "{fault:?}: no {line:?}");
        let up = |v: u8| format!("restorewatch_cbs_up{{server=\"{SERVER}\"}} {v}\n");
        assert!(
            metrics.render().contains(&up(0)),
            "{fault:?}: the server is down"
        );

        h.sim.set_down(false).await.unwrap();
        h.sim.set_faults(Faults::default());
        h.sim.set_login_fault("obm", None);
        h.sim.set_password_expired(false);
        h.clock.set(at(9, 15));
        assert!(p.cycle().await.unwrap().ok(), "{fault:?}");
        let recoveries = pending_kinds(&p)
            .into_iter()
            .filter(|k| matches!(k, EventKind::CbsRecovered { .. }))
            .count();
        assert_eq!(recoveries, 1, "{fault:?}");
        assert!(
            metrics.render().contains(&up(1)),
            "{fault:?}: the server is up"
        );
    }
}

async fn drain_all(p: &Poller) {
    let sink = support::world::Recorder::default();
    drain(p.store(), &sink).await.unwrap();
}

fn pending_kinds(p: &Poller) -> Vec<EventKind> {
    let events = p.store().pending_events(1000).unwrap();
    events.into_iter().map(|e| e.kind).collect()
}

fn client(url: &str, timeout: std::time::Duration) -> CbsClient {
    CbsClient::new(CbsClientConfig {
        url: url.parse().unwrap(),
        server_name: "raw".into(),
        sys_user: "api".into(),
        sys_pwd: "pw".to_owned().into(),
        timezone: restorewatch::tz::Tz::UTC,
        request_timeout: timeout,
        ca_cert: None,
    })
    .unwrap()
}

/// Counts the bytes each thread holds, and the peak, so a test on a current-thread runtime
/// can measure its own memory while other tests run beside it.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call goes straight to the system allocator; the counting touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts measuring this thread's peak; returns the baseline.
fn peak_reset() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    live
}

#[tokio::test]
async fn a_50_mb_reply_is_refused_by_the_size_bound_with_memory_bounded() {
    const BODY_BYTES: usize = 50 * 1024 * 1024;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {BODY_BYTES}\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < BODY_BYTES {
            if socket.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let before = peak_reset();
    let result = client(&url, std::time::Duration::from_secs(60))
        .list_restore_jobs("obm", "", at(9, 0).date_naive())
        .await;
    match result {
        Err(e @ CbsError::TooLarge { .. }) => {
            assert!(e.to_string().contains("larger than 16 MiB"), "{e}");
            assert_eq!(e.outage_reason(), None, "the server answered");
        }
        other => panic!("expected the size bound, got {other:?}"),
    }
    let sent = server.await.unwrap();
    assert!(
        sent < 40 * 1024 * 1024,
        "the client read on past the bound: the server sent {sent} bytes"
    );
    // The bound is 16 MiB of body; buffers around it may add to that, but never as much
    // again (copying the refused body for its error snippet did, and failed here).
    let grew = PEAK.with(Cell::get) - before;
    assert!(
        grew < 32 * 1024 * 1024,
        "peak memory grew by {grew} bytes for a refused 50 MB reply"
    );
}

#[tokio::test]
async fn a_slow_drip_body_is_ended_by_the_request_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n{";
        socket.write_all(head.as_bytes()).await.unwrap();
        // One byte every 50 ms: always "making progress", never done.
        let mut drip = tokio::time::interval(std::time::Duration::from_millis(50));
        loop {
            drip.tick().await;
            if socket.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let timeout = std::time::Duration::from_millis(800);
    let started = std::time::Instant::now();
    let result = client(&url, timeout)
        .list_restore_jobs("obm", "", at(9, 0).date_naive())
        .await;
    assert!(
        matches!(result, Err(CbsError::Timeout { .. })),
        "{result:?}"
    );
    let took = started.elapsed();
    assert!(
        took < timeout * 4,
        "the drip kept the request alive for {took:?}"
    );
}

// ----- Discord ---------------------------------------------------------------------------

fn discord_settings(fake: &FakeDiscord) -> DiscordSettings {
    DiscordSettings {
        token: "fake-token".to_owned().into(),
        alert_channel: ChannelId::new(ALERTS),
        digest_channel: ChannelId::new(ALERTS),
        mention_role: None,
        api_base: Some(fake.api_base().parse().unwrap()),
        guilds: Vec::new(),
        admin_role: None,
        public_lookups: false,
        routes: vec![Route {
            owner: "reseller-a".into(),
            channel: ChannelId::new(RESELLER_A),
        }],
    }
}

fn sink(fake: &FakeDiscord, p: &Poller) -> DiscordSink {
    let render = RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: false,
    };
    DiscordSink::new(&discord_settings(fake), p.store(), render)
        .unwrap()
        .with_timing(DeliveryTiming::default())
}

/// `obm` and `shop` (owner reseller-a) baselined, then set 1 of obm and set 7 of shop
/// fail; their events are queued.
async fn two_channel_world() -> (Harness, Poller) {
    let mut h = Harness::start(&["obm"], at(9, 0)).await;
    h.add_user("shop", "reseller-a");
    let p = h.poller();
    p.cycle().await.unwrap();
    drain_all(&p).await;
    let mut owned = job("shop", "7", at(9, 1), Some(at(9, 2)), FAILED);
    owned.owner = "reseller-a".into();
    h.sim.add_job(owned);
    h.sim
        .add_job(job("obm", "1", at(9, 1), Some(at(9, 2)), FAILED));
    h.clock.set(at(9, 30));
    p.cycle().await.unwrap();
    (h, p)
}

fn failures_in(fake: &FakeDiscord, channel: u64) -> Vec<String> {
    let embeds = fake
        .messages(channel)
        .into_iter()
        .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default());
    embeds
        .filter_map(|e| e["title"].as_str().map(str::to_owned))
        .filter(|t| t.starts_with("Restore failed"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_429_storm_keeps_events_queued_then_delivers_each_once() {
    let metrics = restorewatch::metrics::install();
    let (_h, p) = two_channel_world().await;
    let fake = FakeDiscord::start().await;
    let storm = (0..50).map(|_| Scripted::TooManyRequests {
        retry_after_secs: 2.0,
        global: true,
    });
    fake.script(ALERTS, storm);
    let sink = sink(&fake, &p);
    let pending_before = p.store().outbox_len().unwrap();

    let report = drain(p.store(), &sink).await.unwrap();
    assert!(report.error.is_some(), "the storm is reported");
    assert!(report.pending > 0, "nothing is dropped during the storm");
    assert!(report.pending <= pending_before);
    // Later drains get through once the storm has passed.
    for _ in 0..20 {
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        if drain(p.store(), &sink).await.unwrap().pending == 0 {
            break;
        }
    }
    assert_eq!(p.store().outbox_len().unwrap(), 0);
    assert_eq!(failures_in(&fake, ALERTS), ["Restore failed: obm / set 1"]);
    assert_eq!(
        failures_in(&fake, RESELLER_A),
        ["Restore failed: shop / set 7"]
    );
    // Counted (at least the 429s of this test's first drain).
    let text = metrics.render();
    let limited = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("restorewatch_delivery_failures_total{reason=\"rate_limited\"} ")
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(limited.is_some_and(|n| n >= 5.0), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_5xx_run_longer_than_the_retries_keeps_events_for_the_next_drain() {
    let (_h, p) = two_channel_world().await;
    let fake = FakeDiscord::start().await;
    fake.script(ALERTS, (0..6).map(|_| Scripted::ServerError(502)));
    let sink = sink(&fake, &p);
    let report = drain(p.store(), &sink).await.unwrap();
    assert!(report.pending > 0 && report.error.is_some(), "{report:?}");
    tokio::time::advance(std::time::Duration::from_secs(60)).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    assert_eq!(failures_in(&fake, ALERTS), ["Restore failed: obm / set 1"]);
}

#[tokio::test(start_paused = true)]
async fn a_403_on_one_channel_does_not_hold_back_another() {
    let (_h, p) = two_channel_world().await;
    let fake = FakeDiscord::start().await;
    fake.set_channel_forbidden(ALERTS, true);
    let sink = sink(&fake, &p);
    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(
        failures_in(&fake, RESELLER_A),
        ["Restore failed: shop / set 7"]
    );
    assert!(failures_in(&fake, ALERTS).is_empty());
    assert!(report.pending >= 1, "the refused channel's events wait");
    fake.set_channel_forbidden(ALERTS, false);
    tokio::time::advance(std::time::Duration::from_secs(10 * 60)).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    assert_eq!(failures_in(&fake, ALERTS), ["Restore failed: obm / set 1"]);
    assert_eq!(failures_in(&fake, RESELLER_A).len(), 1);
}

/// Discord created the message but the connection dropped before its answer: before the
/// retry the channel is read back, the message is found and not posted again. Nonce
/// deduplication is off, so the read-back, not Discord, keeps it single.
#[tokio::test(start_paused = true)]
async fn a_connection_dropped_after_discord_accepted_posts_once() {
    let (_h, p) = two_channel_world().await;
    let fake = FakeDiscord::start().await;
    fake.set_nonce_memory(NonceMemory::Off);
    fake.script(ALERTS, [Scripted::AcceptThenDrop]);
    let sink = sink(&fake, &p);
    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(report.pending, 0, "{report:?}");
    let to_alerts = |method: &str| {
        let requests = fake.requests().into_iter();
        let path = format!("{ALERTS}/messages");
        requests
            .filter(|r| r.method == method && r.path.ends_with(&path))
            .count()
    };
    assert_eq!(
        to_alerts("POST"),
        1,
        "the created message is not posted again"
    );
    assert_eq!(
        to_alerts("GET"),
        1,
        "it was found by reading the channel back"
    );
    assert_eq!(failures_in(&fake, ALERTS), ["Restore failed: obm / set 1"]);
}

#[tokio::test(start_paused = true)]
async fn a_401_keeps_every_event_and_healthz_names_the_token() {
    let (_h, p) = two_channel_world().await;
    let fake = FakeDiscord::start().await;
    // A 401 is about the token, so it holds for every channel alike.
    fake.set_token_rejected(true);
    let sink = sink(&fake, &p);
    let queued = p.store().outbox_len().unwrap();
    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(
        report.pending, queued,
        "nothing is lost or dropped on a 401"
    );
    assert!(fake.all_messages().is_empty());

    let state = restorewatch::server::ServerState::new(
        p.store().clone(),
        std::sync::Arc::new(restorewatch::clock::ManualClock::new(at(9, 30))),
        restorewatch::schedule::CronSchedule::parse("*/5 * * * *", restorewatch::tz::Tz::UTC)
            .unwrap(),
        true,
        restorewatch::metrics::install(),
    );
    let health = restorewatch::server::check(&state);
    assert_eq!(health.discord_token, "rejected");
    assert!(
        health.reasons.iter().any(|r| r.contains("token")),
        "{health:?}"
    );

    // Once the token works again (a new token, a restart), everything goes out once.
    fake.set_token_rejected(false);
    tokio::time::advance(std::time::Duration::from_secs(10 * 60)).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    assert_eq!(failures_in(&fake, ALERTS), ["Restore failed: obm / set 1"]);
    assert_eq!(
        failures_in(&fake, RESELLER_A),
        ["Restore failed: shop / set 7"]
    );
    assert_eq!(
        restorewatch::server::check(&state).discord_token,
        "not_refused"
    );
}
