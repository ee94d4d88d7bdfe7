//! Delivery end to end: the CBS simulator → the poller → the sled store → `DiscordSink` →
//! the fake Discord on loopback, through serenity's own request routing.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use restorewatch::config::{DiscordSettings, Route, SummarySettings, SummaryWhen};
use restorewatch::discord::{DeliveryTiming, DiscordSink};
use restorewatch::poller::Poller;
use restorewatch::render::{escape_markdown, RenderOptions};
use restorewatch::sink::{drain, Sink};
use serde_json::{json, Value};
use serenity::all::{ChannelId, RoleId};
use support::fake_discord::{FakeDiscord, NonceMemory, RecordedRequest, Scripted};
use support::logs::LogCapture;
use support::world::{job, Harness};
use tokio::time::timeout;

/// Upper bound on any wait; the real waits are milliseconds.
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const ALERTS: u64 = 4_000_000_000_000_000_001;
const DIGEST: u64 = 4_000_000_000_000_000_002;
const RESELLER_A: u64 = 4_000_000_000_000_000_003;
const ROLE: u64 = 5_000_000_000_000_000_001;
const FAILED: &str = "RESTORE_STOP_BY_ERROR";

fn at(h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 26, h, min, 0).unwrap()
}

fn settings(fake: &FakeDiscord, role: Option<u64>) -> DiscordSettings {
    DiscordSettings {
        token: "fake-token".to_owned().into(),
        alert_channel: ChannelId::new(ALERTS),
        digest_channel: ChannelId::new(DIGEST),
        mention_role: role.map(RoleId::new),
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

fn sink(fake: &FakeDiscord, poller: &Poller, role: Option<u64>) -> DiscordSink {
    let render = RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: false,
    };
    DiscordSink::new(&settings(fake, role), poller.store(), render).unwrap()
}

/// `obm` polled once (an empty baseline), then `jobs` (`(set, status)`) end, one a minute,
/// and a second cycle queues their events.
async fn world_with(jobs: &[(&str, &str)]) -> (Harness, Poller) {
    world_with_summary(jobs, SummarySettings::default()).await
}

/// [`world_with`] under another `[summary]` policy.
async fn world_with_summary(jobs: &[(&str, &str)], summary: SummarySettings) -> (Harness, Poller) {
    let mut h = Harness::start(&["obm"], at(9, 0)).await;
    h.summary = summary;
    let p = h.poller();
    p.cycle().await.unwrap();
    for (i, (set, status)) in jobs.iter().enumerate() {
        let start = at(9, 1) + Duration::minutes(i as i64);
        let end = start + Duration::seconds(30);
        h.sim.add_job(job("obm", set, start, Some(end), status));
    }
    h.clock.set(at(9, 59));
    p.cycle().await.unwrap();
    (h, p)
}

fn message_posts(fake: &FakeDiscord) -> Vec<RecordedRequest> {
    let posts = fake.requests().into_iter();
    posts
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .collect()
}

/// Every embed posted to `channel` whose title starts with `prefix`.
fn embeds_titled(fake: &FakeDiscord, channel: u64, prefix: &str) -> Vec<Value> {
    let messages = fake.messages(channel).into_iter();
    let embeds = messages.flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default());
    embeds
        .filter(|e| e["title"].as_str().is_some_and(|t| t.starts_with(prefix)))
        .collect()
}

fn field<'e>(embed: &'e Value, name: &str) -> &'e str {
    let fields = embed["fields"].as_array().unwrap();
    let found = fields.iter().find(|f| f["name"] == name);
    found.and_then(|f| f["value"].as_str()).unwrap_or_default()
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

#[tokio::test]
async fn a_failed_restore_is_one_message_that_pings_only_the_role() {
    let (_h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p, Some(ROLE));

    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(report.pending, 0);
    let messages = timeout(WAIT, fake.wait_for_messages(ALERTS, 1))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let failed = embeds_titled(&fake, ALERTS, "Restore failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["title"], "Restore failed: obm / set 1");
    assert!(field(&failed[0], "Status").contains(FAILED));
    assert_eq!(field(&failed[0], "Owner"), "—");
    // Times as Discord's tags, each reader's own zone; the server's zone in the footer.
    let tag = |text: &str, style: &str| {
        let inner = text.strip_prefix("<t:").and_then(|t| t.strip_suffix('>'));
        let (secs, got) = inner.and_then(|i| i.split_once(':')).unwrap_or_default();
        secs.parse::<i64>().is_ok() && got == style
    };
    assert!(tag(field(&failed[0], "Started"), "f"), "{}", failed[0]);
    let (at, ago) = field(&failed[0], "Ended").split_once(' ').unwrap();
    assert!(
        tag(at, "f") && tag(ago.trim_matches(['(', ')']), "R"),
        "{ago}"
    );
    let footer = failed[0]["footer"]["text"].as_str().unwrap();
    let server_zone = format!("{} · started ", support::world::SERVER);
    assert!(footer.starts_with(&server_zone), "{footer}");
    assert!(
        footer.contains(" · ended ") && footer.ends_with("(UTC)"),
        "{footer}"
    );
    assert_eq!(messages[0]["content"], format!("<@&{ROLE}> 1 alert"));

    let posts = message_posts(&fake);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].path,
        format!("/api/v10/channels/{ALERTS}/messages")
    );
    assert_eq!(posts[0].header("authorization"), Some("Bot fake-token"));
    assert_eq!(
        posts[0].body["allowed_mentions"],
        json!({"parse": [], "roles": [ROLE.to_string()], "users": []})
    );
    assert_eq!(posts[0].body["enforce_nonce"], true);
    assert!(posts[0].body["nonce"]
        .as_str()
        .is_some_and(|n| n.len() <= 25));
    assert!(fake.unexpected().is_empty());
    assert!(fake.messages(DIGEST).is_empty() && fake.messages(RESELLER_A).is_empty());
}

#[tokio::test]
async fn a_success_posts_no_alert_and_a_message_without_a_ping_allows_nothing() {
    // `summary.when = "changes"`: a success is a change (the default posts nothing for it).
    let changes = SummarySettings {
        when: SummaryWhen::Changes,
        ..SummarySettings::default()
    };
    let (_h, p) = world_with_summary(&[("1", "RESTORE_STOP_SUCCESS")], changes).await;
    let queued = p.store().outbox_len().unwrap();
    assert!(queued > 0, "the cycle queued its summary");
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p, Some(ROLE));

    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!((report.delivered, report.pending), (queued, 0));
    assert_eq!(
        p.store().outbox_len().unwrap(),
        0,
        "everything left the outbox"
    );
    // The cycle's summary is posted, and counts the success; no alert is.
    let summaries = embeds_titled(&fake, ALERTS, "Poll cycle");
    assert_eq!(summaries.len(), 1, "{:#?}", fake.all_messages());
    assert!(
        summaries[0].to_string().contains("success"),
        "{:#}",
        summaries[0]
    );
    assert!(embeds_titled(&fake, ALERTS, "Restore").is_empty());
    let posts = message_posts(&fake);
    assert_eq!(posts.len(), 1, "one message for the summary");
    for post in posts {
        assert!(post.body.get("content").is_none(), "{:#}", post.body);
        assert_eq!(
            post.body["allowed_mentions"],
            json!({"parse": [], "roles": [], "users": []})
        );
    }
}

#[tokio::test]
async fn an_owner_route_sends_its_failures_to_its_channel() {
    let (_h, p) = Harness::with_a_reseller_failing().await;
    let fake = FakeDiscord::start().await;

    drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    let routed = embeds_titled(&fake, RESELLER_A, "Restore failed");
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0]["title"], "Restore failed: shop / set 7");
    assert_eq!(field(&routed[0], "Owner"), "reseller-a");
    let main = embeds_titled(&fake, ALERTS, "Restore failed");
    assert_eq!(main.len(), 1);
    assert_eq!(main[0]["title"], "Restore failed: obm / set 1");
}

#[tokio::test]
async fn a_hostile_set_name_pings_nobody_and_renders_escaped() {
    let hostile = "@everyone **x** <@&1> [a](http://evil)";
    let h = Harness::start(&["obm"], at(9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    let mut evil = job("obm", "1", at(9, 1), Some(at(9, 2)), FAILED);
    evil.backup_set_name = hostile.into();
    h.sim.add_job(evil);
    h.clock.set(at(9, 30));
    p.cycle().await.unwrap();
    let fake = FakeDiscord::start().await;

    drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    let failed = embeds_titled(&fake, ALERTS, "Restore failed");
    assert_eq!(failed.len(), 1);
    let title = failed[0]["title"].as_str().unwrap();
    assert!(title.ends_with(&escape_markdown(hostile)), "{title}");
    assert!(
        !title.contains("@everyone") && !title.contains("**x**"),
        "{title}"
    );
    for post in message_posts(&fake) {
        assert!(post.body.get("content").is_none());
        assert_eq!(
            post.body["allowed_mentions"],
            json!({"parse": [], "roles": [], "users": []})
        );
    }
}

#[tokio::test]
async fn a_burst_of_40_failures_is_delivered_once_within_discord_limits() {
    let sets: Vec<String> = (0..40).map(|i| format!("{i:02}")).collect();
    let jobs: Vec<(&str, &str)> = sets.iter().map(|s| (s.as_str(), FAILED)).collect();
    let (mut h, p) = world_with(&[]).await;
    // Packing is the point here, not grouping (tests/signal.rs has the storm card).
    drop(p);
    h.alerts.group_after = 100;
    let p = h.poller();
    for (i, (set, status)) in jobs.iter().enumerate() {
        let mut j = job("obm", set, at(10, 0), Some(at(10, 1)), status);
        j.missed_databases = (0..30).map(|d| format!("database-{i}-{d:03}")).collect();
        h.sim.add_job(j);
    }
    h.clock.set(at(10, 30));
    p.cycle().await.unwrap();
    let fake = FakeDiscord::start().await;

    let report = drain(p.store(), &sink(&fake, &p, Some(ROLE)))
        .await
        .unwrap();
    assert_eq!(report.pending, 0);
    let posts = message_posts(&fake);
    assert!(posts.len() >= 4, "40 embeds need at least 4 messages");
    for post in &posts {
        let embeds = post.body["embeds"].as_array().unwrap();
        assert!(embeds.len() <= 10);
        let mut total = 0;
        for e in embeds {
            assert!(chars(&e["title"]) <= 256 && chars(&e["description"]) <= 4096);
            let fields = e["fields"].as_array().cloned().unwrap_or_default();
            assert!(fields.len() <= 25);
            for f in fields {
                assert!(chars(&f["name"]) <= 256 && chars(&f["value"]) <= 1024);
                total += chars(&f["name"]) + chars(&f["value"]);
            }
            total += chars(&e["title"]) + chars(&e["description"]) + chars(&e["footer"]["text"]);
        }
        assert!(total <= 6000, "{total}");
    }
    let mut titles: Vec<String> = embeds_titled(&fake, ALERTS, "Restore failed")
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles.len(), 40);
    titles.sort();
    titles.dedup();
    assert_eq!(titles.len(), 40, "each failure exactly once");
    assert!(fake.unexpected().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_its_retry_after() {
    let (_h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    let retry_after = std::time::Duration::from_millis(2500);
    fake.script(
        ALERTS,
        [Scripted::TooManyRequests {
            retry_after_secs: retry_after.as_secs_f64(),
            global: false,
        }],
    );

    let report = drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    assert_eq!(report.pending, 0);
    let posts = message_posts(&fake);
    assert_eq!(posts.len(), 2);
    // On the paused clock the only time that passes is the sink's own wait: exactly it.
    assert_eq!(posts[1].at.duration_since(posts[0].at), retry_after);
    assert_eq!(posts[0].body["nonce"], posts[1].body["nonce"]);
    assert_eq!(fake.messages(ALERTS).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn three_server_errors_back_off_then_one_message() {
    let (_h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    fake.script(ALERTS, [500, 502, 503].map(Scripted::ServerError));

    let report = drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    assert_eq!(report.pending, 0);
    let posts = message_posts(&fake);
    assert_eq!(posts.len(), 4);
    let gaps: Vec<u64> = posts
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_secs())
        .collect();
    assert_eq!(gaps, [1, 2, 4], "exponential backoff");
    assert_eq!(fake.messages(ALERTS).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_channel_keeps_its_events_until_it_allows_us_again() {
    let (_h, p) = Harness::with_a_reseller_failing().await;
    let fake = FakeDiscord::start().await;
    fake.set_channel_forbidden(RESELLER_A, true);
    let sink = sink(&fake, &p, None);

    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(
        report.pending, 2,
        "the reseller's baseline and failure wait"
    );
    assert_eq!(embeds_titled(&fake, ALERTS, "Restore failed").len(), 1);
    let refused = sink.refused_channels();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, ChannelId::new(RESELLER_A));
    assert!(refused[0].1.starts_with("403"), "{}", refused[0].1);
    // `/status` and the digest read the refusal from the store.
    let shown = p.store().refused_destinations().unwrap();
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0].contains(&RESELLER_A.to_string()) && shown[0].contains("403"),
        "{shown:?}"
    );

    // Allowed again, but the channel rests until the slow retry is due.
    fake.set_channel_forbidden(RESELLER_A, false);
    let posts_before = message_posts(&fake).len();
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 2);
    assert_eq!(message_posts(&fake).len(), posts_before);

    tokio::time::advance(std::time::Duration::from_secs(10 * 60)).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    assert_eq!(embeds_titled(&fake, RESELLER_A, "Restore failed").len(), 1);
    assert!(sink.refused_channels().is_empty());
    assert!(p.store().refused_destinations().unwrap().is_empty());
}

#[tokio::test]
async fn a_message_discord_rejects_is_dropped_and_does_not_block_the_channel() {
    let h = Harness::start(&["obm"], at(9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p, None);
    drain(p.store(), &sink).await.unwrap();
    for set in ["1", "2"] {
        h.sim
            .add_job(job("obm", set, at(9, 1), Some(at(9, 2)), FAILED));
    }
    h.clock.set(at(9, 30));
    p.cycle().await.unwrap();
    // The packed message is rejected, then its first event alone: that one is dropped.
    let invalid = json!({"message": "Invalid Form Body", "code": 50035});
    fake.script(
        ALERTS,
        [Scripted::Status(400), Scripted::Body(400, invalid)],
    );

    let first = p.store().pending_events(1).unwrap()[0].id;
    let queued = p.store().outbox_len().unwrap();
    let logs = LogCapture::default();
    let report = {
        let _guard = logs.install();
        drain(p.store(), &sink).await.unwrap()
    };
    assert_eq!(report.pending, 0);
    // The dropped event is not counted as delivered: Discord showed nobody.
    assert_eq!(
        (report.delivered, report.dropped),
        (queued - 1, 1),
        "{report:?}"
    );
    assert_eq!(sink.rejected_events(), 1);
    let text = logs.text();
    let dropped: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("dropping the event"))
        .collect();
    assert_eq!(dropped.len(), 1, "{text}");
    // Which event, and what Discord said.
    assert!(dropped[0].contains(&format!("event={first}")), "{text}");
    assert!(dropped[0].contains("Invalid Form Body"), "{text}");
    let titles: Vec<Value> = embeds_titled(&fake, ALERTS, "Restore failed")
        .iter()
        .map(|e| e["title"].clone())
        .collect();
    assert_eq!(titles, [json!("Restore failed: obm / set 2")]);
}

/// The failure titles posted to the alert channel, sorted.
fn failure_titles(fake: &FakeDiscord) -> Vec<String> {
    let mut titles: Vec<String> = embeds_titled(fake, ALERTS, "Restore failed")
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    titles
}

/// Failures 1 and 2 are queued; Discord creates their message but its answer never comes,
/// and the program dies in that window (the store as a SIGKILL leaves it). It stays down
/// for `down_for`, a third failure comes in meanwhile, and the restarted program delivers
/// everything. Packing all three afresh would make a different message (and nonce).
/// `history`: whether the bot may read the channel's messages back.
async fn crash_while_discord_answers(
    memory: NonceMemory,
    down_for: Duration,
    history: bool,
) -> FakeDiscord {
    let (mut h, p) = world_with(&[("1", FAILED), ("2", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    fake.set_nonce_memory(memory);
    fake.set_history_readable(ALERTS, history);
    fake.script(ALERTS, [Scripted::AcceptThenHang]);
    let delivering = {
        let (store, sink) = (p.store().clone(), sink(&fake, &p, Some(ROLE)));
        tokio::spawn(async move { drain(&store, &sink).await })
    };
    timeout(WAIT, fake.wait_for_messages(ALERTS, 1))
        .await
        .expect("Discord got the message");
    h.crash();
    delivering.abort();
    drop(p);
    assert_eq!(failure_titles(&fake).len(), 2);

    tokio::time::advance(down_for.to_std().unwrap()).await;
    let p = h.poller();
    h.sim
        .add_job(job("obm", "3", at(10, 0), Some(at(10, 1)), FAILED));
    h.clock.set(at(10, 30));
    p.cycle().await.unwrap();
    let report = drain(p.store(), &sink(&fake, &p, Some(ROLE)))
        .await
        .unwrap();
    assert_eq!(report.pending, 0);
    assert_eq!(p.store().outbox_len().unwrap(), 0);
    fake
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_discord_accepted_but_before_its_answer_posts_nothing_twice() {
    let fake = crash_while_discord_answers(NonceMemory::Forever, Duration::seconds(5), true).await;
    assert_eq!(
        failure_titles(&fake),
        [
            "Restore failed: obm / set 1",
            "Restore failed: obm / set 2",
            "Restore failed: obm / set 3"
        ]
    );
    // The restarted sink read the channel back, found the interrupted message and did not
    // post it again.
    let posts = message_posts(&fake);
    assert_eq!(posts.len(), 2, "the post and the new failure, no resend");
    assert_ne!(posts[0].body["nonce"], posts[1].body["nonce"]);
    let read_back = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/channels/{ALERTS}/messages")))
        .count();
    assert_eq!(read_back, 1, "one read-back, for the resumed batch only");
}

/// Real Discord remembers a nonce for minutes, not forever: a restart inside that window
/// is still deduplicated.
#[tokio::test(start_paused = true)]
async fn a_restart_within_discords_nonce_window_posts_nothing_twice() {
    let window = std::time::Duration::from_secs(5 * 60);
    let fake =
        crash_while_discord_answers(NonceMemory::Window(window), Duration::minutes(2), true).await;
    assert_eq!(
        failure_titles(&fake),
        [
            "Restore failed: obm / set 1",
            "Restore failed: obm / set 2",
            "Restore failed: obm / set 3"
        ]
    );
}

/// Without Discord's help the store and a read-back still hold: a crash in the window posts
/// nothing twice with deduplication off, and with a restart after the nonce window has
/// passed (where real Discord would post a resend). The resumed batch's message is found
/// in the channel and not posted again.
#[tokio::test(start_paused = true)]
async fn without_nonce_deduplication_a_crash_in_the_window_posts_nothing_twice() {
    let window = std::time::Duration::from_secs(5 * 60);
    for (memory, down_for) in [
        (NonceMemory::Off, Duration::seconds(5)),
        (NonceMemory::Window(window), Duration::minutes(10)),
    ] {
        let fake = crash_while_discord_answers(memory, down_for, true).await;
        assert_eq!(
            failure_titles(&fake),
            [
                "Restore failed: obm / set 1",
                "Restore failed: obm / set 2",
                "Restore failed: obm / set 3"
            ],
            "{memory:?}"
        );
        assert_eq!(fake.messages(ALERTS).len(), 2, "{memory:?}");
    }
}

/// When the channel cannot be read back (no Read Message History), the resumed batch is
/// posted again under its nonce: Discord's nonce check is then what keeps it single.
#[tokio::test(start_paused = true)]
async fn an_unreadable_channel_history_falls_back_to_the_nonce() {
    let fake = crash_while_discord_answers(NonceMemory::Forever, Duration::seconds(5), false).await;
    assert_eq!(
        failure_titles(&fake),
        [
            "Restore failed: obm / set 1",
            "Restore failed: obm / set 2",
            "Restore failed: obm / set 3"
        ]
    );
    let posts = message_posts(&fake);
    assert_eq!(posts.len(), 3, "the post, its resend, the new failure");
    assert_eq!(
        posts[0].body, posts[1].body,
        "the resend is the same message"
    );
}

/// The other window: Discord answered and the sink recorded its batch as posted, but the
/// drain's acknowledgement never reached the disk. The batch record, not the nonce, keeps
/// the resend from happening, so this runs with deduplication off.
#[tokio::test]
async fn a_crash_between_discords_answer_and_the_ack_posts_nothing_twice() {
    let (mut h, p) = world_with(&[("1", FAILED), ("2", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    fake.set_nonce_memory(NonceMemory::Off);
    let events = p.store().pending_events(256).unwrap();
    let accepted = sink(&fake, &p, Some(ROLE)).deliver(&events).await.unwrap();
    assert_eq!(accepted.accepted.len(), events.len());
    h.crash();
    drop(p);
    assert_eq!(fake.messages(ALERTS).len(), 1);

    let p = h.poller();
    assert_eq!(
        p.store().outbox_len().unwrap(),
        events.len(),
        "nothing was acknowledged"
    );
    h.sim
        .add_job(job("obm", "3", at(10, 0), Some(at(10, 1)), FAILED));
    h.clock.set(at(10, 30));
    p.cycle().await.unwrap();
    let report = drain(p.store(), &sink(&fake, &p, Some(ROLE)))
        .await
        .unwrap();
    assert_eq!(report.pending, 0);
    assert_eq!(
        failure_titles(&fake),
        [
            "Restore failed: obm / set 1",
            "Restore failed: obm / set 2",
            "Restore failed: obm / set 3"
        ]
    );
    assert_eq!(message_posts(&fake).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn server_errors_that_persist_end_the_drain_and_rest_the_sink() {
    let (_h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    let timing = DeliveryTiming::default();
    let attempts = timing.server_error_attempts as usize;
    fake.script(ALERTS, vec![Scripted::ServerError(502); attempts]);
    let sink = sink(&fake, &p, None);
    let queued = p.store().outbox_len().unwrap();

    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(report.pending, queued, "nothing lost, nothing sent");
    assert!(
        report.error.as_deref().is_some_and(|e| e.contains("502")),
        "{report:?}"
    );
    assert_eq!(
        message_posts(&fake).len(),
        attempts,
        "gave up after the set attempts"
    );
    // Resting: the next drain posts nothing until the rest is over.
    let started = tokio::time::Instant::now();
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, queued);
    assert_eq!(message_posts(&fake).len(), attempts);
    assert_eq!(
        started.elapsed(),
        std::time::Duration::ZERO,
        "a rest does not wait"
    );
    tokio::time::advance(timing.backoff_max).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    assert_eq!(failure_titles(&fake), ["Restore failed: obm / set 1"]);
}

/// Discord's REST API stops answering: every post and every read of the channel hangs
/// until the client's 30 s timeout. The drain gives up after the one post that timed out,
/// saying so at warn level, instead of retrying timeout after timeout (post, read-back,
/// post ...) for minutes while the poll round waits for it. The sink rests as after 5xx;
/// the next drain's read-back times out too and ends it at once. Once Discord answers
/// again the alert goes out once: nothing lost, nothing twice.
#[tokio::test(start_paused = true)]
async fn a_discord_that_does_not_answer_ends_the_drain_after_one_timeout() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let (_h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    fake.set_nonce_memory(NonceMemory::Off);
    fake.set_messages_hanging(true);
    let timing = DeliveryTiming::default();
    let sink = sink(&fake, &p, None);
    let queued = p.store().outbox_len().unwrap();
    let timeout_secs = std::time::Duration::from_secs(30);
    let reads = |fake: &FakeDiscord| {
        let requests = fake.requests().into_iter();
        requests
            .filter(|r| r.method == "GET" && r.path.ends_with("/messages"))
            .count()
    };

    let started = tokio::time::Instant::now();
    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(started.elapsed(), timeout_secs, "one timeout, no more");
    assert_eq!(report.pending, queued, "nothing lost, nothing sent");
    assert!(
        report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{report:?}"
    );
    assert_eq!(message_posts(&fake).len(), 1, "no retry into the hang");
    let text = logs.text();
    let warned = text
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("timed out"));
    assert!(warned.count() >= 1, "{text}");
    assert!(!text.contains("fake-token"), "{text}");

    // After the rest, the recorded batch is read back first; that read times out too.
    tokio::time::advance(timing.backoff_max).await;
    let started = tokio::time::Instant::now();
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, queued);
    assert_eq!(started.elapsed(), timeout_secs);
    assert_eq!((message_posts(&fake).len(), reads(&fake)), (1, 1));

    // Discord answers again (the hung requests stay hung: the client gave up on them).
    fake.set_messages_hanging(false);
    tokio::time::advance(timing.backoff_max).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    assert_eq!(failure_titles(&fake), ["Restore failed: obm / set 1"]);
    assert_eq!(message_posts(&fake).len(), 2);
}

/// Discord answers, but with 5xx each only after 20 s (an overloaded proxy): the retries
/// stop once the drain has run [`DeliveryTiming::drain_limit`], not after all six attempts.
#[tokio::test(start_paused = true)]
async fn slow_server_errors_end_the_drain_at_its_time_limit() {
    let (_h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    fake.set_post_delay(std::time::Duration::from_secs(20));
    let timing = DeliveryTiming::default();
    fake.script(ALERTS, vec![Scripted::ServerError(503); 6]);
    let sink = sink(&fake, &p, None);

    let started = tokio::time::Instant::now();
    let report = drain(p.store(), &sink).await.unwrap();
    assert!(report.pending > 0 && report.error.is_some(), "{report:?}");
    // 20 s, 1 s backoff, 20 s, 2 s, 20 s: the next wait would pass the limit.
    assert_eq!(message_posts(&fake).len(), 3);
    assert!(started.elapsed() <= timing.drain_limit + std::time::Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_long_retry_after_ends_the_drain_and_rests_that_long() {
    let (_h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    let long = DeliveryTiming::default().max_retry_after * 2;
    fake.script(
        ALERTS,
        [Scripted::TooManyRequests {
            retry_after_secs: long.as_secs_f64(),
            global: true,
        }],
    );
    let sink = sink(&fake, &p, None);
    let queued = p.store().outbox_len().unwrap();

    let started = tokio::time::Instant::now();
    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(
        started.elapsed(),
        std::time::Duration::ZERO,
        "did not sit out the wait"
    );
    assert_eq!(report.pending, queued);
    assert_eq!(message_posts(&fake).len(), 1);
    tokio::time::advance(long - std::time::Duration::from_secs(1)).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, queued);
    assert_eq!(message_posts(&fake).len(), 1, "still resting");
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    assert_eq!(failure_titles(&fake), ["Restore failed: obm / set 1"]);
}

/// 404 (Unknown Channel) is a refusal like 403: the channel's events wait, the reason is
/// logged once however many drains meet it, and other channels carry on.
#[tokio::test(start_paused = true)]
async fn a_404_channel_is_refused_and_logged_once() {
    let (_h, p) = Harness::with_a_reseller_failing().await;
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p, None);
    let logs = LogCapture::default();
    let _guard = logs.install();
    for _ in 0..3 {
        fake.script(RESELLER_A, [Scripted::Status(404)]);
        let report = drain(p.store(), &sink).await.unwrap();
        assert_eq!(report.pending, 2, "the reseller's events wait");
        tokio::time::advance(DeliveryTiming::default().refused_retry).await;
    }
    assert_eq!(embeds_titled(&fake, ALERTS, "Restore failed").len(), 1);
    let refused = sink.refused_channels();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].1.starts_with("404"), "{}", refused[0].1);
    let posts = message_posts(&fake).into_iter();
    let tries = posts.filter(|r| r.path.contains(&RESELLER_A.to_string()));
    assert_eq!(tries.count(), 3, "retried after each rest");
    let text = logs.text();
    assert_eq!(
        text.matches("channel refuses our messages").count(),
        1,
        "{text}"
    );
}

/// Log lines written to memory.
/// A digest too long for one message is one event sent as several messages (a multi-part
/// batch). When Discord accepted the first part and the rest failed, the next drain sends
/// only the parts still missing; with nonce deduplication off, so the batch's record of the
/// parts sent, not the nonce, is what keeps part one from posting twice.
#[tokio::test(start_paused = true)]
async fn a_multi_part_digest_resumes_after_the_parts_discord_accepted() {
    let (h, p) = world_with(&[]).await;
    let jobs = (0..300).map(|i| {
        let start = at(10, 0) + Duration::seconds(i);
        job(
            "obm",
            &format!("{i:03}"),
            start,
            Some(start + Duration::seconds(1)),
            FAILED,
        )
    });
    h.sim.set_jobs(jobs.collect());
    h.clock.set(at(11, 0));
    p.cycle().await.unwrap();
    let ids: Vec<u64> = p
        .store()
        .pending_events(usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    p.store().ack(&ids).unwrap();
    let day = at(9, 0).date_naive();
    restorewatch::digest::queue_digest(
        p.store(),
        day,
        restorewatch::tz::Tz::UTC,
        vec![],
        at(11, 0),
    )
    .unwrap();
    assert_eq!(p.store().outbox_len().unwrap(), 1, "one digest event");

    let fake = FakeDiscord::start().await;
    fake.set_nonce_memory(NonceMemory::Off);
    let attempts = DeliveryTiming::default().server_error_attempts as usize;
    // The first part is accepted; the second fails until the drain gives up.
    let mut script = vec![Scripted::Accept];
    script.extend(vec![Scripted::ServerError(500); attempts]);
    fake.script(DIGEST, script);
    let report = drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    assert_eq!(report.pending, 1, "the digest waits for its other parts");
    let first = fake.messages(DIGEST);
    assert_eq!(first.len(), 1);

    // Restarted (a new sink, the same store): the missing parts only.
    let report = drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    assert_eq!(report.pending, 0);
    let parts = fake.messages(DIGEST);
    assert!(
        parts.len() >= 3,
        "a long digest takes several messages: {}",
        parts.len()
    );
    let nonces: Vec<&str> = parts.iter().map(|m| m["nonce"].as_str().unwrap()).collect();
    let mut unique = nonces.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), nonces.len(), "no part twice: {nonces:?}");
    assert!(nonces[1].ends_with(".1"), "{nonces:?}");
    let titles = parts
        .iter()
        .filter(|m| m.to_string().contains("Restore digest for"))
        .count();
    assert_eq!(titles, 1, "the digest's heading once");
}

/// A channel no message can be posted in (a forum or a category: Discord answers 400 with
/// code 50008) refuses us like a 403: its events wait, it is listed as refusing for
/// `/status` and `/healthz`, and it is tried again after the rest. Nothing is dropped as
/// a malformed message.
#[tokio::test(start_paused = true)]
async fn a_forum_channel_keeps_its_events_like_a_forbidden_one() {
    let (_h, p) = Harness::with_a_reseller_failing().await;
    let fake = FakeDiscord::start().await;
    fake.set_channel_type(RESELLER_A, 15);
    let sink = sink(&fake, &p, None);

    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!((report.pending, report.dropped), (2, 0), "{report:?}");
    assert_eq!(sink.rejected_events(), 0);
    assert_eq!(embeds_titled(&fake, ALERTS, "Restore failed").len(), 1);
    let refused = sink.refused_channels();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, ChannelId::new(RESELLER_A));
    assert!(refused[0].1.contains("code 50008"), "{}", refused[0].1);
    let shown = p.store().refused_destinations().unwrap();
    assert!(
        shown.len() == 1 && shown[0].contains(&RESELLER_A.to_string()),
        "{shown:?}"
    );

    // Made a text channel again: delivered at the next try after the rest.
    fake.set_channel_type(RESELLER_A, 0);
    tokio::time::advance(DeliveryTiming::default().refused_retry).await;
    assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    assert_eq!(embeds_titled(&fake, RESELLER_A, "Restore failed").len(), 1);
    assert!(sink.refused_channels().is_empty());
}

/// The thread errors are about the channel too: an archived thread (400, code 50083) and
/// a locked one (code 160005) keep their events.
#[tokio::test(start_paused = true)]
async fn an_archived_or_locked_thread_keeps_its_events() {
    for (status, message, code) in [
        (400, "Cannot execute action on an archived thread", 50083),
        (400, "Thread is locked", 160005),
        (403, "Thread is locked", 160005),
    ] {
        let (_h, p) = Harness::with_a_reseller_failing().await;
        let fake = FakeDiscord::start().await;
        let body = json!({"message": message, "code": code});
        fake.script(RESELLER_A, [Scripted::Body(status, body)]);
        let sink = sink(&fake, &p, None);
        let report = drain(p.store(), &sink).await.unwrap();
        assert_eq!(
            (report.pending, report.dropped),
            (2, 0),
            "{code}: {report:?}"
        );
        let refused = sink.refused_channels();
        assert!(
            refused.len() == 1 && refused[0].1.contains(&format!("code {code}")),
            "{refused:?}"
        );
    }
}

/// Two cycles with the same counts queue two identical summaries (only their footers,
/// which the read-back does not compare, differ). Discord accepted the first; the post of
/// the second never got an answer (Discord did not create it), and the program died.
/// After the restart the read-back must not take the first summary for the second: it is
/// posted. Nonce deduplication is off, so the read-back decides.
#[tokio::test(start_paused = true)]
async fn an_identical_earlier_message_is_not_taken_for_the_interrupted_post() {
    const SUCCESS: &str = "RESTORE_STOP_SUCCESS";
    let mut h = Harness::start(&["obm"], at(9, 0)).await;
    h.summary = SummarySettings {
        when: SummaryWhen::Changes,
        ..SummarySettings::default()
    };
    let fake = FakeDiscord::start().await;
    fake.set_nonce_memory(NonceMemory::Off);
    let p = h.poller();
    // The baseline, then a cycle in which job 1 ends: each drained on its own.
    for (set, minute) in [(None, 0), (Some("1"), 30)] {
        if let Some(set) = set {
            let (start, end) = (at(9, minute - 10), at(9, minute - 5));
            h.sim.add_job(job("obm", set, start, Some(end), SUCCESS));
        }
        h.clock.set(at(9, minute));
        p.cycle().await.unwrap();
        let report = drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
        assert_eq!(report.pending, 0);
    }
    assert_eq!(embeds_titled(&fake, ALERTS, "Poll cycle").len(), 1);

    h.sim
        .add_job(job("obm", "2", at(10, 1), Some(at(10, 2)), SUCCESS));
    h.clock.set(at(10, 30));
    p.cycle().await.unwrap();
    fake.script(ALERTS, [Scripted::Hang]);
    let delivering = {
        let (store, sink) = (p.store().clone(), sink(&fake, &p, None));
        tokio::spawn(async move { drain(&store, &sink).await })
    };
    let post = |r: &RecordedRequest| r.method == "POST" && r.path.ends_with("/messages");
    timeout(WAIT, fake.wait_for_requests(3, post))
        .await
        .expect("the second summary is posted");
    h.crash();
    delivering.abort();
    drop(p);

    let p = h.poller();
    let report = drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    assert_eq!(report.pending, 0);
    let summaries = embeds_titled(&fake, ALERTS, "Poll cycle");
    assert_eq!(summaries.len(), 2, "{summaries:#?}");
    for part in ["title", "description", "fields"] {
        assert_eq!(summaries[0][part], summaries[1][part], "the same {part}");
    }
    assert_eq!(
        message_posts(&fake).len(),
        4,
        "two, the cut post, its resend"
    );
}

/// The same without the store's help: a fresh state directory, and an identical message
/// of ours in the channel from an hour ago (say, before the state was wiped). The read-back
/// after the interrupted post looks only at messages created since the post began (less a
/// minute for clock skew), so the old one cannot pass for it.
#[tokio::test(start_paused = true)]
async fn an_identical_message_from_before_the_post_began_is_not_taken_for_it() {
    let (mut h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    fake.set_nonce_memory(NonceMemory::Off);
    fake.script(ALERTS, [Scripted::Hang]);
    let delivering = {
        let (store, sink) = (p.store().clone(), sink(&fake, &p, None));
        tokio::spawn(async move { drain(&store, &sink).await })
    };
    let post = |r: &RecordedRequest| r.method == "POST" && r.path.ends_with("/messages");
    let cut = timeout(WAIT, fake.wait_for_request(post))
        .await
        .expect("the alert is posted");
    h.crash();
    delivering.abort();
    drop(p);
    fake.seed_message(ALERTS, &cut.body, std::time::Duration::from_secs(60 * 60));

    let p = h.poller();
    let report = drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    assert_eq!(report.pending, 0);
    assert_eq!(
        failure_titles(&fake),
        ["Restore failed: obm / set 1", "Restore failed: obm / set 1"],
        "the old message and the new one"
    );
    assert_eq!(message_posts(&fake).len(), 2, "the cut post and its resend");
}

/// A Discord whose ids are not snowflakes (they count 1001, 1002, ...: some test doubles)
/// says nothing about when a message was created. The read-back then goes by Discord's
/// order alone and still finds the message of an interrupted post: nothing twice, with
/// nonce deduplication off.
#[tokio::test(start_paused = true)]
async fn the_read_back_finds_the_interrupted_post_where_ids_are_not_snowflakes() {
    let (mut h, p) = world_with(&[("1", FAILED)]).await;
    let fake = FakeDiscord::start().await;
    fake.set_plain_ids();
    fake.set_nonce_memory(NonceMemory::Off);
    fake.script(ALERTS, [Scripted::AcceptThenHang]);
    let delivering = {
        let (store, sink) = (p.store().clone(), sink(&fake, &p, None));
        tokio::spawn(async move { drain(&store, &sink).await })
    };
    let created = timeout(WAIT, fake.wait_for_messages(ALERTS, 1))
        .await
        .expect("Discord got the message");
    assert_eq!(created[0]["id"], "1001");
    h.crash();
    delivering.abort();
    drop(p);

    let p = h.poller();
    let report = drain(p.store(), &sink(&fake, &p, None)).await.unwrap();
    assert_eq!(report.pending, 0);
    assert_eq!(failure_titles(&fake), ["Restore failed: obm / set 1"]);
    assert_eq!(message_posts(&fake).len(), 1, "found, not posted again");
}
