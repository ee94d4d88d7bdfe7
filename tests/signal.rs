//! Signal over noise (issue 11), end to end: the CBS simulator → the poller → the sled
//! store → `DiscordSink` → the fake Discord on loopback. Quiet cycles post nothing,
//! summaries go where `summary.channel` says, a roll-up replaces per-cycle summaries, and
//! an alert whose job report cannot be had goes out without it.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use restorewatch::config::{
    AlertSettings, DiscordSettings, PingWhen, SummarySettings, SummaryWhen,
};
use restorewatch::discord::DiscordSink;
use restorewatch::poller::Poller;
use restorewatch::render::RenderOptions;
use restorewatch::schedule::CronSchedule;
use restorewatch::simulator::ReportFault;
use restorewatch::sink::drain;
use serde_json::Value;
use serenity::all::{ChannelId, RoleId};
use support::fake_discord::FakeDiscord;
use support::logs::LogCapture;
use support::world::{job, Harness};

const ALERTS: u64 = 4_000_000_000_000_000_001;
const DIGEST: u64 = 4_000_000_000_000_000_002;
const SUMMARIES: u64 = 4_000_000_000_000_000_004;
const ROLE: u64 = 5_000_000_000_000_000_001;
const FAILED: &str = "RESTORE_STOP_BY_ERROR";
const SUCCESS: &str = "RESTORE_STOP_SUCCESS";

fn at(h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 26, h, min, 0).unwrap()
}

fn settings(fake: &FakeDiscord) -> DiscordSettings {
    DiscordSettings {
        token: "fake-token".to_owned().into(),
        alert_channel: ChannelId::new(ALERTS),
        digest_channel: ChannelId::new(DIGEST),
        mention_role: Some(RoleId::new(ROLE)),
        api_base: Some(fake.api_base().parse().unwrap()),
        guilds: Vec::new(),
        admin_role: None,
        public_lookups: false,
        routes: Vec::new(),
    }
}

fn sink(fake: &FakeDiscord, poller: &Poller) -> DiscordSink {
    let render = RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: false,
    };
    DiscordSink::new(&settings(fake), poller.store(), render).unwrap()
}

/// Every embed posted to `channel`.
fn embeds(fake: &FakeDiscord, channel: u64) -> Vec<Value> {
    let messages = fake.messages(channel).into_iter();
    messages
        .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Runs the baseline cycle, then ten cycles five minutes apart in which jobs of `obm` start
/// and, one cycle later, succeed; delivers after each. Returns the messages posted after
/// the baseline.
async fn ten_quiet_cycles(summary: SummarySettings) -> (usize, FakeDiscord) {
    let mut h = Harness::start(&["obm"], at(9, 0)).await;
    h.summary = summary;
    let p = h.poller();
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p);
    p.cycle().await.unwrap();
    drain(p.store(), &sink).await.unwrap();
    let after_baseline = fake.all_messages().len();
    for i in 0..10 {
        let start = at(9, 1) + Duration::minutes(5 * i);
        let end = start + Duration::minutes(6);
        h.sim
            .add_job(job("obm", &format!("{i}"), start, Some(end), SUCCESS));
        h.clock.set(at(9, 3) + Duration::minutes(5 * i));
        let r = p.cycle().await.unwrap();
        assert!(r.summary.started_running + r.summary.finished.values().sum::<u32>() > 0);
        drain(p.store(), &sink).await.unwrap();
    }
    assert!(fake.unexpected().is_empty());
    (fake.all_messages().len() - after_baseline, fake)
}

#[tokio::test]
async fn ten_cycles_of_starts_and_successes_post_nothing_with_the_defaults() {
    let (posted, fake) = ten_quiet_cycles(SummarySettings::default()).await;
    assert_eq!(posted, 0, "{:#?}", fake.all_messages());
}

#[tokio::test]
async fn summary_when_changes_posts_the_same_cycles_and_never_posts_none() {
    let changes = SummarySettings {
        when: SummaryWhen::Changes,
        ..SummarySettings::default()
    };
    let (posted, _fake) = ten_quiet_cycles(changes).await;
    assert_eq!(
        posted, 10,
        "one summary per cycle in which a job started or ended"
    );
    let never = SummarySettings {
        when: SummaryWhen::Never,
        ..SummarySettings::default()
    };
    assert_eq!(ten_quiet_cycles(never).await.0, 0);
}

#[tokio::test]
async fn a_failure_posts_its_summary_to_summary_channel_and_the_alert_to_the_alert_channel() {
    let h = Harness::start(&["obm"], at(9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim
        .add_job(job("obm", "1", at(9, 1), Some(at(9, 2)), FAILED));
    h.clock.set(at(9, 30));
    p.cycle().await.unwrap();
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p).with_summary_channel(ChannelId::new(SUMMARIES));
    drain(p.store(), &sink).await.unwrap();

    let summaries = embeds(&fake, SUMMARIES);
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    assert_eq!(summaries[0]["title"], "Poll cycle summary");
    let alerts = embeds(&fake, ALERTS);
    assert!(alerts
        .iter()
        .any(|e| e["title"] == "Restore failed: obm / set 1"));
    assert!(alerts.iter().all(|e| e["title"] != "Poll cycle summary"));
}

#[tokio::test]
async fn a_summary_schedule_posts_one_roll_up_of_all_cycles_since_the_last() {
    let rollup = SummarySettings {
        schedule: Some(CronSchedule::parse("0 * * * *", restorewatch::tz::Tz::UTC).unwrap()),
        ..SummarySettings::default()
    };
    let mut h = Harness::start(&["obm"], at(9, 0)).await;
    h.summary = rollup;
    let p = h.poller();
    p.cycle().await.unwrap();
    h.sim
        .add_job(job("obm", "1", at(9, 1), Some(at(9, 2)), FAILED));
    h.sim
        .add_job(job("obm", "2", at(9, 1), Some(at(9, 2)), SUCCESS));
    for i in 0..5 {
        h.clock.set(at(9, 5) + Duration::minutes(5 * i));
        p.cycle().await.unwrap();
    }
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p);
    drain(p.store(), &sink).await.unwrap();
    assert!(
        embeds(&fake, ALERTS).iter().all(|e| !e["title"]
            .as_str()
            .unwrap_or_default()
            .contains("summary")
            && !e["title"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Roll-up")),
        "no per-cycle summaries with a roll-up schedule"
    );

    assert!(restorewatch::summary::queue_rollup(p.store(), at(10, 0)).unwrap());
    drain(p.store(), &sink).await.unwrap();
    let rollups: Vec<Value> = embeds(&fake, ALERTS)
        .into_iter()
        .filter(|e| {
            e["title"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Roll-up")
        })
        .collect();
    assert_eq!(rollups.len(), 1);
    assert_eq!(rollups[0]["title"], "Roll-up of 6 poll cycles");
    let text = rollups[0].to_string();
    assert!(
        text.contains("1 failure") && text.contains("1 success"),
        "{text}"
    );
    // Nothing since: the next tick posts nothing.
    assert!(!restorewatch::summary::queue_rollup(p.store(), at(11, 0)).unwrap());
}

/// `users` users (`u000`…), an empty baseline, then `per_user` failed restores each (one
/// per set) in one cycle; delivered to the fake Discord with the role set.
async fn storm(users: usize, per_user: usize) -> (Harness, Poller, FakeDiscord) {
    let mut h = Harness::start(&[], at(9, 0)).await;
    // No baseline card: the storm's messages are all the fake gets.
    h.baseline_first_cycle = false;
    for u in 0..users {
        h.add_user(&format!("u{u:03}"), "");
    }
    let p = h.poller();
    p.cycle().await.unwrap();
    assert_eq!(p.store().outbox_len().unwrap(), 0);
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p);
    for u in 0..users {
        for s in 0..per_user {
            let end = at(9, 2) + Duration::seconds((u * per_user + s) as i64);
            h.sim.add_job(job(
                &format!("u{u:03}"),
                &format!("{s:02}"),
                at(9, 1),
                Some(end),
                FAILED,
            ));
        }
    }
    h.clock.set(at(9, 45));
    let r = p.cycle().await.unwrap();
    assert_eq!(r.summary.alerts as usize, users * per_user);
    let report = drain(p.store(), &sink).await.unwrap();
    assert_eq!(report.pending, 0);
    assert_eq!(p.store().outbox_len().unwrap(), 0);
    (h, p, fake)
}

fn titles(fake: &FakeDiscord, prefix: &str) -> Vec<Value> {
    embeds(fake, ALERTS)
        .into_iter()
        .filter(|e| e["title"].as_str().unwrap_or_default().starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn a_storm_of_2000_failures_posts_at_most_5_messages_listing_or_counting_each_once() {
    let (_h, _p, fake) = storm(100, 20).await;
    let messages = fake.messages(ALERTS);
    assert!(messages.len() <= 5, "{} messages", messages.len());
    let cards = titles(&fake, "2000 restores failed");
    assert_eq!(cards.len(), 1, "one card");
    let text = cards[0]["description"].as_str().unwrap();
    // Each listed line names one job; the rest is counted once.
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" · ")).collect();
    let distinct: std::collections::BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(distinct.len(), lines.len(), "no job listed twice");
    let counted: usize = text
        .split("… and ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the rest is counted");
    assert_eq!(lines.len() + counted, 2000);
    assert!(
        text.ends_with("not listed here: `/failures days:1` shows every one."),
        "{text}"
    );
    // In order: the first line is the first job to end.
    assert!(lines[0].contains("u000 · set 00"), "{}", lines[0]);
    // The first few still get their own alert, after the card.
    let individual = titles(&fake, "Restore failed:");
    assert_eq!(individual.len(), 3);
    assert_eq!(individual[0]["title"], "Restore failed: u000 / set 00");
    // The card's message pings the role once.
    assert!(messages[0]["content"]
        .as_str()
        .is_some_and(|c| c.starts_with(&format!("<@&{ROLE}>"))));
    assert!(fake.unexpected().is_empty());
}

#[tokio::test]
async fn the_digest_of_a_day_of_2000_failures_posts_at_most_3_messages_counting_each_once() {
    let (_h, p, fake) = storm(100, 20).await;
    let day = at(9, 0).date_naive();
    let next_morning = at(8, 0) + Duration::days(1);
    restorewatch::digest::queue_digest(
        p.store(),
        day,
        restorewatch::tz::Tz::UTC,
        vec![],
        next_morning,
    )
    .unwrap();
    drain(p.store(), &sink(&fake, &p)).await.unwrap();
    let messages = fake.messages(DIGEST);
    assert!(
        (1..=3).contains(&messages.len()),
        "{} messages",
        messages.len()
    );
    let cards = embeds(&fake, DIGEST);
    assert_eq!(
        cards[0]["title"], "Restore digest for 2024-06-26 (UTC)",
        "{cards:?}"
    );
    let lines: Vec<String> = (cards.iter())
        .filter(|c| c["title"].as_str().unwrap().starts_with("Failures (2000)"))
        .flat_map(|c| {
            let text = c["description"].as_str().unwrap();
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    let (rest, listed) = lines.split_last().expect("failure cards");
    assert!(listed.iter().all(|l| l.starts_with("• ")), "{listed:?}");
    let distinct: std::collections::BTreeSet<&String> = listed.iter().collect();
    assert_eq!(distinct.len(), listed.len(), "no failure listed twice");
    assert!(
        listed[0].contains("u000 / set 00"),
        "in order: {}",
        listed[0]
    );
    let more: usize = (rest.strip_prefix("… and "))
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the rest is counted: {rest}"));
    assert_eq!(listed.len() + more, 2000, "{rest}");
    assert!(
        rest.contains("more: `/failures days:2` lists every one. By owner: (no owner) "),
        "{rest}"
    );
    assert!(fake.unexpected().is_empty());
}

#[tokio::test]
async fn up_to_group_after_failures_stay_individual_one_more_groups() {
    let (_h, _p, fake) = storm(1, 5).await;
    assert_eq!(titles(&fake, "Restore failed:").len(), 5);
    assert!(titles(&fake, "5 restores failed").is_empty());
    let (_h, _p, fake) = storm(1, 6).await;
    assert_eq!(titles(&fake, "6 restores failed").len(), 1);
    assert_eq!(titles(&fake, "Restore failed:").len(), 3);
}

/// Set 1 of `obm` ends once per cycle with `statuses`, in order; each cycle is delivered.
/// Returns per cycle the alert's description and whether its message pinged the role.
async fn row(statuses: &[&str], alerts: AlertSettings) -> Vec<Option<(String, bool)>> {
    let h = Harness::start(&["obm"], at(9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p).with_alerts(alerts);
    drain(p.store(), &sink).await.unwrap();
    let mut out = Vec::new();
    for (i, status) in statuses.iter().enumerate() {
        let start = at(10, 0) + Duration::hours(i as i64);
        h.sim.add_job(job(
            "obm",
            "1",
            start,
            Some(start + Duration::minutes(5)),
            status,
        ));
        h.clock.set(start + Duration::minutes(30));
        let before = fake.messages(ALERTS).len();
        p.cycle().await.unwrap();
        drain(p.store(), &sink).await.unwrap();
        let new: Vec<Value> = fake.messages(ALERTS).split_off(before);
        let alert = new.iter().find_map(|m| {
            let embeds = m["embeds"].as_array()?;
            let e = embeds
                .iter()
                .find(|e| e["title"] == "Restore failed: obm / set 1")?;
            let pinged = m["content"]
                .as_str()
                .is_some_and(|c| c.contains(&format!("<@&{ROLE}>")));
            Some((e["description"].as_str().unwrap_or("").to_owned(), pinged))
        });
        out.push(alert);
    }
    out
}

#[tokio::test]
async fn repeats_escalate_and_ping_only_at_the_first_and_the_threshold() {
    let got = row(
        &[FAILED, FAILED, FAILED, FAILED, SUCCESS, FAILED],
        AlertSettings::default(),
    )
    .await;
    let pings: Vec<Option<bool>> = got.iter().map(|a| a.as_ref().map(|a| a.1)).collect();
    assert_eq!(
        pings,
        [
            Some(true),
            Some(false),
            Some(true),
            Some(false),
            None,
            Some(true)
        ]
    );
    let text = |i: usize| got[i].as_ref().unwrap().0.clone();
    assert_eq!(text(0), "", "a first failure is not a repeat");
    assert_eq!(text(1), "**2nd failure in a row** since 2024-06-26.");
    assert_eq!(text(2), "**3rd failure in a row** since 2024-06-26.");
    assert_eq!(text(3), "**4th failure in a row** since 2024-06-26.");
    assert_eq!(text(5), "", "the success reset the count");
}

/// Jobs of one set that end in one cycle count in the order they ended, not in the
/// reply's (the simulator lists by start, as CBS replies are not ordered by end): a failure
/// that ended before a success in the same reply extends the row, the success resets it,
/// and the next failure is the first of a new row (and pings).
#[tokio::test]
async fn a_row_counts_the_jobs_in_the_order_they_ended() {
    let h = Harness::start(&["obm"], at(9, 0)).await;
    let p = h.poller();
    p.cycle().await.unwrap();
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p).with_alerts(AlertSettings::default());
    drain(p.store(), &sink).await.unwrap();
    let cycle = |jobs: Vec<restorewatch::simulator::SimJob>, now| {
        jobs.into_iter().for_each(|j| h.sim.add_job(j));
        h.clock.set(now);
        async {
            p.cycle().await.unwrap();
            drain(p.store(), &sink).await.unwrap();
        }
    };
    cycle(
        vec![job("obm", "1", at(9, 10), Some(at(9, 15)), FAILED)],
        at(9, 30),
    )
    .await;
    // A long restore started first and succeeded last; a short one failed in between.
    let both = vec![
        job("obm", "1", at(10, 0), Some(at(11, 20)), SUCCESS),
        job("obm", "1", at(10, 10), Some(at(10, 20)), FAILED),
    ];
    cycle(both, at(11, 30)).await;
    cycle(
        vec![job("obm", "1", at(12, 0), Some(at(12, 5)), FAILED)],
        at(12, 30),
    )
    .await;

    let alerts: Vec<(String, bool)> = fake
        .messages(ALERTS)
        .iter()
        .flat_map(|m| {
            let pinged = m["content"]
                .as_str()
                .is_some_and(|c| c.contains(&format!("<@&{ROLE}>")));
            let embeds = m["embeds"].as_array().cloned().unwrap_or_default();
            embeds
                .into_iter()
                .filter(|e| e["title"] == "Restore failed: obm / set 1")
                .map(move |e| (e["description"].as_str().unwrap_or("").to_owned(), pinged))
        })
        .collect();
    assert_eq!(
        alerts,
        [
            (String::new(), true),
            (
                "**2nd failure in a row** since 2024-06-26.".to_owned(),
                false
            ),
            (String::new(), true),
        ]
    );
}

#[tokio::test]
async fn alerts_ping_every_pings_each_repeat_and_never_pings_none() {
    let every = AlertSettings {
        ping: PingWhen::Every,
        ..AlertSettings::default()
    };
    let got = row(&[FAILED, FAILED, FAILED, FAILED], every).await;
    assert!(got.iter().all(|a| a.as_ref().unwrap().1));
    let never = AlertSettings {
        ping: PingWhen::Never,
        ..AlertSettings::default()
    };
    let got = row(&[FAILED, FAILED], never).await;
    assert!(got.iter().all(|a| !a.as_ref().unwrap().1));
}

#[tokio::test]
async fn a_baseline_of_1000_users_is_counts_per_owner_and_the_jobs_that_would_have_alerted() {
    let mut h = Harness::start(&[], at(9, 0)).await;
    for u in 0..1000 {
        let login = format!("u{u:04}");
        h.add_user(&login, "");
        let status = if u % 250 == 7 { FAILED } else { SUCCESS };
        h.sim
            .add_job(job(&login, "1", at(8, 0), Some(at(8, 30)), status));
    }
    let p = h.poller();
    assert_eq!(p.cycle().await.unwrap().baselined, 1000);
    let fake = FakeDiscord::start().await;
    drain(p.store(), &sink(&fake, &p)).await.unwrap();
    let cards = titles(&fake, "Now watching");
    assert_eq!(cards.len(), 1, "one card for the owner");
    assert_eq!(cards[0]["title"], "Now watching 1000 users");
    let text = cards[0]["description"].as_str().unwrap();
    assert!(
        text.starts_with(
            "1000 users with earlier jobs; 1000 earlier jobs recorded: 996 success, 4 failure."
        ),
        "{text}"
    );
    assert!(text.contains("would have alerted (4;"), "{text}");
    for u in [7, 257, 507, 757] {
        assert!(text.contains(&format!("u{u:04} · set 1")), "{text}");
    }
    // No line per user.
    assert!(!text.contains("u0000"), "{text}");
    assert!(
        titles(&fake, "Restore failed").is_empty(),
        "recorded, not alerted"
    );
}

#[tokio::test]
async fn a_baseline_counts_every_job_that_would_have_alerted_beyond_the_500_kept() {
    let mut h = Harness::start(&[], at(9, 0)).await;
    for u in 0..600 {
        let login = format!("u{u:04}");
        h.add_user(&login, "");
        h.sim
            .add_job(job(&login, "1", at(8, 0), Some(at(8, 30)), FAILED));
    }
    let p = h.poller();
    assert_eq!(p.cycle().await.unwrap().baselined, 600);
    let fake = FakeDiscord::start().await;
    drain(p.store(), &sink(&fake, &p)).await.unwrap();
    let cards = titles(&fake, "Now watching");
    let text = cards[0]["description"].as_str().unwrap();
    assert!(
        text.contains("would have alerted (600; `/failures days:1` lists them):"),
        "{text}"
    );
    let listed = text.lines().filter(|l| l.contains(" · set 1 · ")).count();
    let counted: usize = (text.split("… and ").nth(1))
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the rest is counted");
    assert!(listed > 0);
    assert_eq!(listed + counted, 600, "{text}");
}

/// `GetRestoreJobReport.do` refused (a Read-Only API user): every failure alert still goes
/// out, without the report's details, and the logs say so once, not once per job or cycle.
#[tokio::test]
async fn refused_reports_are_logged_once_and_every_alert_still_goes_out() {
    let mut h = Harness::start(&[], at(9, 0)).await;
    h.baseline_first_cycle = false;
    for u in 0..3 {
        h.add_user(&format!("u{u}"), "");
    }
    h.sim.set_report_fault(Some(ReportFault::ReadOnlyRole));
    let p = h.poller();
    p.cycle().await.unwrap();
    let fake = FakeDiscord::start().await;
    let sink = sink(&fake, &p);
    let logs = LogCapture::default();
    let _guard = logs.install();
    for (cycle, minute) in [(0, 10), (1, 20)] {
        for u in 0..3 {
            h.sim.add_job(job(
                &format!("u{u}"),
                &format!("{cycle}"),
                at(9, minute - 5),
                Some(at(9, minute - 1)),
                FAILED,
            ));
        }
        h.clock.set(at(9, minute));
        let r = p.cycle().await.unwrap();
        assert_eq!(r.summary.alerts, 3);
        assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
    }
    assert_eq!(
        h.sim.report_requests(),
        6,
        "each failure's report was asked for"
    );
    let alerts = titles(&fake, "Restore failed:");
    assert_eq!(alerts.len(), 6, "every alert went out");
    for alert in &alerts {
        let fields = alert["fields"].as_array().unwrap();
        let named = |name: &str| fields.iter().any(|f| f["name"] == name);
        assert!(
            named("Status") && !named("Last log lines") && !named("Files"),
            "{alert}"
        );
    }
    let text = logs.text();
    assert_eq!(
        text.matches("restore job reports unavailable").count(),
        1,
        "{text}"
    );
    assert!(text.contains("Admin or API role"), "{text}");
    assert!(fake.unexpected().is_empty());
}
