//! Acting from the alert, end to end: the CBS simulator → the poller → the store →
//! `DiscordSink` posts failure alerts with buttons to the fake Discord, and presses on
//! them come back through the fake gateway to the running bot (serenity + poise), which
//! answers through the fake REST API. Restarts reopen the store from disk.

mod support;

use chrono::Duration;
use restorewatch::audit::AuditLog;
use restorewatch::commands::OUTSIDE_GUILD_REFUSAL;
use restorewatch::discord::DiscordSink;
use restorewatch::event::EventKind;
use restorewatch::mutes::Mutes;
use restorewatch::render::RenderOptions;
use restorewatch::simulator::{SimJob, SimUser};
use restorewatch::sink::{drain, ConsoleSink, Sink};
use restorewatch::store::Store;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use support::bot::*;
use support::fake_discord::{Scripted, SlashCommand, MEMBER_USER_ID};
use tokio::time::timeout;

/// The configured alert channel of the harness.
const ALERTS: u64 = 1;
const FAILED: &str = "RESTORE_STOP_BY_ERROR";
/// A server the bot was added to but does not serve.
const OTHER_GUILD: u64 = 9_000_000_000_000_000_001;
const OTHER_CHANNEL: u64 = 9_000_000_000_000_000_002;
/// Another member of our server.
const SECOND_MEMBER: u64 = 3_000_000_000_000_000_099;

/// `obm` polled once (an empty baseline), then sets 1 and 2 fail today; a second cycle
/// queues their alerts.
async fn failing_world(h: &Harness) -> Store {
    let jobs = ["1", "2"].map(|set| sim_job("obm", set, "2024-06-27", 9, FAILED));
    failing_world_of(h, jobs).await
}

/// The watched users polled once (an empty baseline), then `jobs` added; a second cycle
/// queues their alerts.
async fn failing_world_of(h: &Harness, jobs: impl IntoIterator<Item = SimJob>) -> Store {
    let store = h.open_store();
    let poller = h.poller(&store);
    poller.cycle().await.unwrap();
    for job in jobs {
        h.sim.add_job(job);
    }
    poller.cycle().await.unwrap();
    store
}

fn sink(h: &Harness, store: &Store) -> DiscordSink {
    let render = RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: false,
    };
    DiscordSink::new(h.settings.discord.as_ref().unwrap(), store, render).unwrap()
}

/// Delivers the queued alerts; returns the one message carrying both, with its buttons.
async fn posted_alert(h: &Harness, store: &Store) -> Value {
    let report = drain(store, &sink(h, store)).await.unwrap();
    assert_eq!(report.pending, 0, "{report:?}");
    let messages = h.fake.messages(ALERTS);
    let with_buttons: Vec<&Value> = messages
        .iter()
        .filter(|m| m["components"].as_array().is_some_and(|c| !c.is_empty()))
        .collect();
    assert_eq!(with_buttons.len(), 1, "{messages:?}");
    with_buttons[0].clone()
}

/// The `custom_id`s of a message's buttons, row by row.
fn button_ids(message: &Value) -> Vec<Vec<String>> {
    let rows = message["components"].as_array().unwrap();
    rows.iter()
        .map(|row| {
            let buttons = row["components"].as_array().unwrap();
            let ids = buttons.iter().map(|b| b["custom_id"].as_str().unwrap());
            ids.map(str::to_owned).collect()
        })
        .collect()
}

fn labels(message: &Value) -> Vec<Vec<String>> {
    let rows = message["components"].as_array().unwrap();
    rows.iter()
        .map(|row| {
            let buttons = row["components"].as_array().unwrap();
            let labels = buttons.iter().map(|b| b["label"].as_str().unwrap());
            labels.map(str::to_owned).collect()
        })
        .collect()
}

/// The embed a button's row belongs to (the last part of its `custom_id`).
fn embed_of(custom_id: &str) -> usize {
    custom_id.rsplit(':').next().unwrap().parse().unwrap()
}

/// The value of field `name` of embed `i`, if it has one.
fn field(message: &Value, i: usize, name: &str) -> Option<String> {
    let fields = message["embeds"][i]["fields"].as_array()?;
    let found = fields.iter().find(|f| f["name"] == name)?;
    found["value"].as_str().map(str::to_owned)
}

fn content(callback: &Value) -> &str {
    callback["data"]["content"].as_str().unwrap_or_default()
}

/// Presses `custom_id` on `message` as `by`; waits for the bot's answer.
async fn press(h: &Harness, message: &Value, custom_id: &str, by: SlashCommand) -> (Value, String) {
    let id = message["id"].as_str().unwrap();
    let interaction = h.fake.press(id, custom_id, by);
    let callback = timeout(WAIT, h.fake.wait_for_callback(interaction.id))
        .await
        .expect("the bot answered the press");
    (callback, interaction.token)
}

/// [`press`], or with `stale` a press on a `custom_id` the message no longer carries
/// (a button as an earlier version posted it).
async fn press_as(
    h: &Harness,
    message: &Value,
    custom_id: &str,
    by: SlashCommand,
    stale: bool,
) -> (Value, String) {
    if !stale {
        return press(h, message, custom_id, by).await;
    }
    let id = message["id"].as_str().unwrap();
    let interaction = h.fake.press_stale(id, custom_id, by);
    let callback = timeout(WAIT, h.fake.wait_for_callback(interaction.id))
        .await
        .expect("the bot answered the press");
    (callback, interaction.token)
}

fn member() -> SlashCommand {
    SlashCommand::new("")
}

#[tokio::test]
async fn failure_alerts_carry_one_row_of_buttons_per_alert() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    let ids = button_ids(&message);
    assert_eq!(ids.len(), 2, "one row per alert, none for the other embeds");
    for (row, ids) in ids.iter().enumerate() {
        let actions: Vec<&str> = ids.iter().map(|i| i.split(':').nth(1).unwrap()).collect();
        assert_eq!(actions, ["ack", "mute", "jobs"]);
        let embed = &message["embeds"][embed_of(&ids[0])];
        let set = row + 1;
        assert_eq!(embed["title"], format!("Restore failed: obm / Set {set}"));
        for id in ids {
            assert!(id.starts_with("alert:"), "{id}");
            assert!(id.contains(":2024-06-27:"), "{id}");
            assert_eq!(embed_of(id), embed_of(&ids[0]));
            assert!(id.len() <= 100);
        }
    }
    assert_eq!(
        labels(&message),
        [
            ["Acknowledge · obm / Set 1", "Mute set 24h", "Show jobs"],
            ["Acknowledge · obm / Set 2", "Mute set 24h", "Show jobs"]
        ]
    );
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn acknowledge_edits_the_message_and_still_shows_after_a_restart() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    let running = h.start_bot_with(store.clone()).await;
    let ids = button_ids(&message);
    let ack_second = ids[1][0].clone();
    let (first, second) = (embed_of(&ids[0][0]), embed_of(&ack_second));

    let (callback, _) = press(&h, &message, &ack_second, member()).await;
    assert_eq!(callback["type"], 7, "UPDATE_MESSAGE: {callback}");
    let id = message["id"].as_str().unwrap();
    let edited = h.fake.message(ALERTS, id).unwrap();
    let when = now().timestamp();
    assert_eq!(
        field(&edited, second, "Acknowledged").as_deref(),
        Some(format!("by <@{MEMBER_USER_ID}> · <t:{when}:f>").as_str()),
        "{edited}"
    );
    assert_eq!(
        field(&edited, first, "Acknowledged"),
        None,
        "only that alert"
    );
    for (i, embed) in message["embeds"].as_array().unwrap().iter().enumerate() {
        if i != second {
            assert_eq!(&edited["embeds"][i], embed, "embed {i} unchanged");
        }
    }
    assert_eq!(
        labels(&edited)[1],
        ["Acknowledged · obm / Set 2", "Mute set 24h", "Show jobs"]
    );
    assert_eq!(labels(&edited)[0], labels(&message)[0]);
    assert_eq!(button_ids(&edited), ids, "the buttons still work");

    // Restart: a new bot over the store reopened from disk, an hour later.
    drop(running.stop().await);
    drop(store);
    h.manual.set(now() + Duration::hours(1));
    let store = h.open_store();
    let running = h.start_bot_with(store.clone()).await;
    let again = member().user(SECOND_MEMBER);
    let (callback, _) = press(&h, &edited, &ack_second, again).await;
    assert_eq!(callback["type"], 4, "{callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert_eq!(
        content(&callback),
        format!("Already acknowledged by <@{MEMBER_USER_ID}> · <t:{when}:f>.")
    );
    assert!(is_locked_down(&callback["data"]["allowed_mentions"]));
    assert_eq!(
        h.fake.message(ALERTS, id).unwrap(),
        edited,
        "nothing changed"
    );

    // The first alert is still open; acknowledging it after the restart works too.
    let (callback, _) = press(&h, &edited, &ids[0][0], member().user(SECOND_MEMBER)).await;
    assert_eq!(callback["type"], 7, "{callback}");
    let both = h.fake.message(ALERTS, id).unwrap();
    let later = (now() + Duration::hours(1)).timestamp();
    assert_eq!(
        field(&both, first, "Acknowledged"),
        Some(format!("by <@{SECOND_MEMBER}> · <t:{later}:f>"))
    );
    assert_eq!(
        field(&both, second, "Acknowledged"),
        field(&edited, second, "Acknowledged")
    );

    // The day's digest lists them as acknowledged, not open.
    let (_, digest) = h.invoke_deferred(SlashCommand::new("digest")).await;
    let embeds = digest["embeds"].as_array().unwrap();
    let titles: Vec<&str> = embeds
        .iter()
        .map(|e| e["title"].as_str().unwrap())
        .collect();
    assert!(titles.contains(&"Acknowledged failures (2)"), "{titles:?}");
    assert!(
        !titles.iter().any(|t| t.contains("Open failures")),
        "{titles:?}"
    );
    let listed = embeds
        .iter()
        .find(|e| e["title"] == "Acknowledged failures (2)");
    let listed = listed.unwrap()["description"].as_str().unwrap();
    assert!(
        listed.contains("acknowledged by operator at 12:00"),
        "{listed}"
    );
    assert!(
        listed.contains("acknowledged by operator at 13:00"),
        "{listed}"
    );

    // Each acknowledgement is in the audit trail.
    let audit = AuditLog::open(&store).unwrap().recent(10).unwrap();
    let acks = audit
        .iter()
        .filter(|e| e.action.starts_with("acknowledge `obm`"));
    assert_eq!(acks.count(), 2, "{audit:?}");
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

/// An e-mail login, as many MSPs use.
const LONG_LOGIN: &str = "first.middle.lastname@a-customer-with-a-long-domain-name.example.com";

#[tokio::test]
async fn a_long_login_and_set_name_keep_the_acknowledged_label_within_the_limit() {
    let watch = format!("[[watch]]\nlogin = \"{LONG_LOGIN}\"");
    let h = Harness::start_with("", &watch).await;
    h.sim.add_user(SimUser {
        login: LONG_LOGIN.into(),
        owner: String::new(),
        user_id: "u1".into(),
    });
    let jobs = ["1", "2"].map(|set| SimJob {
        backup_set_name: format!("Exchange mailboxes of the accounting department {set}"),
        ..sim_job(LONG_LOGIN, set, "2024-06-27", 9, FAILED)
    });
    let store = failing_world_of(&h, jobs).await;
    let message = posted_alert(&h, &store).await;
    let posted = labels(&message)[0][0].clone();
    assert_eq!(
        posted.chars().count(),
        80,
        "cut to Discord's limit: {posted}"
    );
    let running = h.start_bot_with(store.clone()).await;
    let ack = button_ids(&message)[0][0].clone();

    let (callback, _) = press(&h, &message, &ack, member()).await;
    assert_eq!(callback["type"], 7, "UPDATE_MESSAGE: {callback}");
    let edited = h
        .fake
        .message(ALERTS, message["id"].as_str().unwrap())
        .unwrap();
    let label = &labels(&edited)[0][0];
    assert!(label.starts_with("Acknowledged · first.middle"), "{label}");
    assert!(label.ends_with('…'), "{label}");
    assert_eq!(label.chars().count(), 80, "{label}");
    assert_eq!(labels(&edited)[1], labels(&message)[1]);
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn a_huge_alert_keeps_room_for_its_acknowledgement() {
    let h = Harness::start().await;
    let names = |what: &str| -> Vec<String> {
        (0..80)
            .map(|i| format!("{what}-{i:03}-with-a-long-descriptive-name"))
            .collect()
    };
    let job = SimJob {
        backup_set_name: format!("Hyper-V cluster {}", "x".repeat(150)),
        missed_databases: names("missed-db"),
        success_databases: names("db"),
        missed_virtual_machines: names("missed-vm"),
        success_virtual_machines: names("vm"),
        missed_public_folders: names("missed-folder"),
        success_public_folders: names("folder"),
        ..sim_job("obm", "1", "2024-06-27", 9, FAILED)
    };
    let store = failing_world_of(&h, [job]).await;
    let message = posted_alert(&h, &store).await;
    let embed = &message["embeds"][0];
    let field_names: Vec<&str> = (embed["fields"].as_array().unwrap().iter())
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(field_names.contains(&"Last log lines"), "{field_names:?}");
    assert!(
        field_names.contains(&"Missed databases (80)"),
        "{field_names:?}"
    );
    let running = h.start_bot_with(store.clone()).await;

    // The fake refuses an edit over 6,000 characters, as Discord does.
    let (callback, _) = press(&h, &message, &button_ids(&message)[0][0], member()).await;
    assert_eq!(callback["type"], 7, "UPDATE_MESSAGE: {callback}");
    let edited = h
        .fake
        .message(ALERTS, message["id"].as_str().unwrap())
        .unwrap();
    let when = now().timestamp();
    assert_eq!(
        field(&edited, 0, "Acknowledged"),
        Some(format!("by <@{MEMBER_USER_ID}> · <t:{when}:f>"))
    );
    assert_eq!(labels(&edited)[0][0], "Acknowledged");
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn an_acknowledgement_whose_edit_was_not_taken_is_shown_by_the_next_press() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    let running = h.start_bot_with(store.clone()).await;
    let ids = button_ids(&message);
    let (ack, embed) = (ids[0][0].clone(), embed_of(&ids[0][0]));
    let id = message["id"].as_str().unwrap();

    // Discord fails the first press's edit: the acknowledgement is recorded, not shown.
    h.fake.script_callbacks([Scripted::ServerError(500)]);
    let first = h.fake.press(id, &ack, member());
    let path = format!("/interactions/{}/", first.id);
    timeout(WAIT, h.fake.wait_for_request(|r| r.path.contains(&path)))
        .await
        .expect("the bot answered the first press");
    assert_eq!(h.fake.message(ALERTS, id).unwrap(), message, "not edited");

    // The next press, by someone else, makes the edit from the first acknowledgement and
    // tells them privately who was first.
    let (callback, token) = press(&h, &message, &ack, member().user(SECOND_MEMBER)).await;
    assert_eq!(callback["type"], 7, "UPDATE_MESSAGE: {callback}");
    let edited = h.fake.message(ALERTS, id).unwrap();
    let first_ack = format!("by <@{MEMBER_USER_ID}> · <t:{}:f>", now().timestamp());
    assert_eq!(
        field(&edited, embed, "Acknowledged"),
        Some(first_ack.clone())
    );
    assert_eq!(labels(&edited)[0][0], "Acknowledged · obm / Set 1");
    let told = timeout(WAIT, h.fake.wait_for_followups(&token, 1))
        .await
        .expect("the presser is told");
    assert_eq!(flags(&told[0]), EPHEMERAL);
    assert_eq!(
        told[0]["content"],
        format!("Already acknowledged {first_ack}.")
    );
    let sent = h
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(&token));
    assert!(is_locked_down(&sent.unwrap().body["allowed_mentions"]));

    // Once shown, a press only says who was first.
    let (callback, _) = press(&h, &edited, &ack, member().user(SECOND_MEMBER)).await;
    assert_eq!(callback["type"], 4, "{callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert_eq!(h.fake.message(ALERTS, id).unwrap(), edited);
    let audit = AuditLog::open(&store).unwrap().recent(10).unwrap();
    assert_eq!(audit.len(), 1, "one acknowledgement: {audit:?}");
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn the_digest_lists_open_failures_apart_from_acknowledged_ones() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    let running = h.start_bot_with(store.clone()).await;
    press(&h, &message, &button_ids(&message)[0][0], member()).await;
    let (_, digest) = h.invoke_deferred(SlashCommand::new("digest")).await;
    let embeds = digest["embeds"].as_array().unwrap();
    let card = |title: &str| -> String {
        let found = embeds.iter().find(|e| e["title"] == title);
        let found = found.unwrap_or_else(|| panic!("no card {title}: {embeds:?}"));
        found["description"].as_str().unwrap().to_owned()
    };
    assert!(card("Open failures (1)").contains("obm / Set 2"));
    assert!(card("Acknowledged failures (1)").contains("obm / Set 1"));
    drop(running.stop().await);
}

#[tokio::test]
async fn mute_set_24h_from_a_non_admin_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    let running = h.start_bot_with(store.clone()).await;
    let mute = button_ids(&message)[0][1].clone();

    let (callback, _) = press(&h, &message, &mute, member()).await;
    assert_eq!(callback["type"], 4, "{callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert_eq!(
        content(&callback),
        "This changes what the bot does and needs the Manage Server permission or the bot's \
         admin role; nothing was changed."
    );
    let mutes = Mutes::open(&store).unwrap();
    assert!(mutes.active(now()).unwrap().is_empty());
    assert!(!mutes.is_muted("obm", "1", now()));
    assert!(AuditLog::open(&store)
        .unwrap()
        .recent(10)
        .unwrap()
        .is_empty());
    let id = message["id"].as_str().unwrap();
    assert_eq!(h.fake.message(ALERTS, id).unwrap(), message);
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn an_admins_mute_set_24h_mutes_that_set_as_mute_does() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    let running = h.start_bot_with(store.clone()).await;
    let mute = button_ids(&message)[0][1].clone();

    // Holding only the admin role is enough, as for /mute.
    let (callback, _) = press(&h, &message, &mute, member().roles(&[ADMIN_ROLE])).await;
    assert_eq!(callback["type"], 4, "{callback}");
    assert_eq!(
        flags(&callback["data"]),
        0,
        "told to the channel, as /mute is"
    );
    let until = (now() + Duration::hours(24)).timestamp();
    assert!(
        content(&callback).starts_with(&format!(
            "Muted alerts of `obm` (backup set `1`) until <t:{until}:f>"
        )),
        "{callback}"
    );
    let mutes = Mutes::open(&store).unwrap();
    assert!(mutes.is_muted("obm", "1", now() + Duration::hours(23)));
    assert!(!mutes.is_muted("obm", "1", now() + Duration::hours(24)));
    assert!(!mutes.is_muted("obm", "2", now()), "only that set");
    let audit = AuditLog::open(&store).unwrap().recent(10).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "mute `obm` (backup set `1`) for `24h`");
    assert_eq!(audit[0].user_id, MEMBER_USER_ID);
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn show_jobs_answers_with_that_users_restores_of_that_day_ephemerally() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    h.sim
        .add_job(sim_job("obm", "3", "2024-06-27", 7, "RESTORE_STOP_SUCCESS"));
    let message = posted_alert(&h, &store).await;
    let running = h.start_bot_with(store.clone()).await;
    let jobs = button_ids(&message)[1][2].clone();

    let (callback, token) = press(&h, &message, &jobs, member()).await;
    assert_eq!(callback["type"], 5, "deferred first: {callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    let followups = timeout(WAIT, h.fake.wait_for_followups(&token, 1))
        .await
        .expect("the jobs follow");
    let answer = &followups[0];
    assert_eq!(flags(answer), EPHEMERAL);
    let embed = &answer["embeds"][0];
    assert_eq!(embed["title"], "Restores of obm on 2024-06-27");
    let lines: Vec<&str> = embed["description"].as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("· failure ·")).count(),
        2
    );
    assert!(lines.iter().any(|l| l.contains("· success ·")), "{lines:?}");
    assert!(embed["footer"]["text"]
        .as_str()
        .unwrap()
        .starts_with("live from"));
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn a_press_from_another_server_is_refused_and_counted() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    let running = h.start_bot_with(store.clone()).await;
    let before = h.sim.requests_for("obm", date("2024-06-27"));
    let outsider = || admin(member()).in_channel(OTHER_GUILD, OTHER_CHANNEL);
    for (row, column) in [(0, 0), (0, 1), (1, 2)] {
        let id = button_ids(&message)[row][column].clone();
        let (callback, _) = press(&h, &message, &id, outsider()).await;
        assert_eq!(callback["type"], 4, "{callback}");
        assert_eq!(flags(&callback["data"]), EPHEMERAL);
        assert_eq!(content(&callback), OUTSIDE_GUILD_REFUSAL);
    }
    assert_eq!(running.bot.refused_interactions(), 3);
    let id = message["id"].as_str().unwrap();
    assert_eq!(
        h.fake.message(ALERTS, id).unwrap(),
        message,
        "not acknowledged"
    );
    assert!(Mutes::open(&store)
        .unwrap()
        .active(now())
        .unwrap()
        .is_empty());
    let after = h.sim.requests_for("obm", date("2024-06-27"));
    assert_eq!(after, before, "nothing looked up");
    // `/status` counts them with refused commands.
    let (status, _) = h.invoke(SlashCommand::new("status")).await;
    assert!(
        status
            .to_string()
            .contains("3 from outside this server since start"),
        "{status}"
    );
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn a_button_whose_job_is_past_the_retention_period_says_so_and_changes_nothing() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    // Every record pruned, as after `state.retention_days`.
    store.prune_before(date("2024-07-31")).unwrap();
    let running = h.start_bot_with(store.clone()).await;
    let ack = button_ids(&message)[0][0].clone();
    let (callback, _) = press(&h, &message, &ack, member()).await;
    assert_eq!(callback["type"], 4, "{callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert!(
        content(&callback).starts_with("This alert's job is no longer in the bot's store"),
        "{callback}"
    );
    let id = message["id"].as_str().unwrap();
    assert_eq!(h.fake.message(ALERTS, id).unwrap(), message);
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn a_button_the_bot_does_not_know_gets_a_short_private_answer() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let message = posted_alert(&h, &store).await;
    let running = h.start_bot_with(store.clone()).await;
    let id = message["id"].as_str().unwrap();
    for custom_id in ["ack:v0:obm:1", "alert:ack:not-a-job"] {
        let pressed = h.fake.press_stale(id, custom_id, member());
        let callback = timeout(WAIT, h.fake.wait_for_callback(pressed.id))
            .await
            .expect("the bot answered the press");
        assert_eq!(callback["type"], 4, "{callback}");
        assert_eq!(flags(&callback["data"]), EPHEMERAL);
        assert!(
            content(&callback).starts_with("The bot does not know this button"),
            "{callback}"
        );
    }
    assert_eq!(
        h.fake.message(ALERTS, id).unwrap(),
        message,
        "nothing changed"
    );
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}

/// A `Write` whose bytes a test can read afterwards.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_console_shows_the_alerts_without_buttons() {
    let h = Harness::start().await;
    let store = failing_world(&h).await;
    let events = store.pending_events(100).unwrap();
    let alerts = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::JobFinished { .. }));
    assert_eq!(alerts.count(), 2);
    let out = Shared::default();
    let options = RenderOptions {
        mention_role: None,
        timezone: restorewatch::tz::Tz::UTC,
        servers_named: false,
    };
    let console = ConsoleSink::new(options, Box::new(out.clone()));
    console.deliver(&events).await.unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("== Restore failed: obm / Set 1 =="), "{text}");
    for button in ["Acknowledge", "Mute set 24h", "Show jobs", "alert:"] {
        assert!(!text.contains(button), "{button} in {text}");
    }
}

#[tokio::test]
async fn the_buttons_of_a_restore_listed_days_after_its_start_find_it() {
    let h = Harness::start().await;
    // Started two days ago, listed under today, when it ended.
    let start = date("2024-06-25").and_hms_opt(23, 0, 0).unwrap().and_utc();
    let end = date("2024-06-27").and_hms_opt(0, 20, 0).unwrap().and_utc();
    let long = SimJob {
        listed_under: Some(date("2024-06-27")),
        ..SimJob::new("obm", "1", start, Some(end), FAILED)
    };
    let store = failing_world_of(&h, [long]).await;
    let message = posted_alert(&h, &store).await;
    let ids = button_ids(&message).remove(0);
    for id in &ids {
        assert!(id.contains(":2024-06-27:"), "the listing date: {id}");
    }
    let running = h.start_bot_with(store.clone()).await;
    let gone = "This alert's job is no longer in the bot's store";

    // A button posted by an earlier version names the start day: it still finds the job.
    let old_jobs = ids[2].replace(":2024-06-27:", ":2024-06-25:");
    for (jobs, stale) in [(&ids[2], false), (&old_jobs, true)] {
        let (callback, token) = press_as(&h, &message, jobs, member(), stale).await;
        assert_eq!(callback["type"], 5, "deferred, not refused: {callback}");
        let followups = timeout(WAIT, h.fake.wait_for_followups(&token, 1))
            .await
            .expect("the jobs follow");
        let embed = &followups[0]["embeds"][0];
        assert_eq!(embed["title"], "Restores of obm on 2024-06-27", "{jobs}");
    }
    let (callback, _) = press(&h, &message, &ids[1], member().roles(&[ADMIN_ROLE])).await;
    assert!(!content(&callback).starts_with(gone), "{callback}");
    assert!(Mutes::open(&store)
        .unwrap()
        .is_muted("obm", "1", now() + Duration::hours(1)));
    let old_ack = ids[0].replace(":2024-06-27:", ":2024-06-25:");
    let (callback, _) = press_as(&h, &message, &old_ack, member(), true).await;
    assert_eq!(callback["type"], 7, "UPDATE_MESSAGE: {callback}");
    let edited = h
        .fake
        .message(ALERTS, message["id"].as_str().unwrap())
        .unwrap();
    assert!(
        field(&edited, embed_of(&ids[0]), "Acknowledged").is_some(),
        "{edited}"
    );
    drop(running.stop().await);
    h.assert_nothing_unexpected();
}
