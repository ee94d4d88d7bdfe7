//! The slash commands end to end: the real serenity client and poise framework talk to the
//! fake Discord (REST + gateway) on loopback, the commands ask the CBS simulator, and the
//! store is sled in a temporary directory. The bot, the pollers and the simulator share the
//! harness's manual clock (tests/support/bot.rs); serenity's gateway timers run on the real
//! clock, and the tests wait on the fake's notifications, never on sleeps.

mod support;

use chrono::Duration;
use restorewatch::cbs::model::StatusClass;
use restorewatch::digest::Digest;
use restorewatch::event::EventKind;
use restorewatch::mutes::Mutes;
use restorewatch::store::Policy;
use restorewatch::store::Store;
use serde_json::{json, Value};
use support::bot::*;
use support::fake_discord::{SlashCommand, GUILD_ID};
use tokio::time::timeout;

#[tokio::test]
async fn commands_are_registered_in_the_guild_only_with_their_options() {
    let h = Harness::start().await;
    let running = h.start_bot().await;

    let commands = h.fake.registered_commands(Some(GUILD_ID));
    let by_name = |name: &str| {
        commands
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("/{name} registered"))
            .clone()
    };
    let names: Vec<&str> = commands.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        names,
        ["restores", "failures", "watch", "mute", "unmute", "digest", "status"]
    );
    let restores = by_name("restores");
    assert!(restores["description"]
        .as_str()
        .unwrap()
        .starts_with("Restore jobs"));
    assert_eq!(restores["options"][0]["name"], "user");
    assert_eq!(restores["options"][0]["required"], true);
    assert_eq!(restores["options"][0]["autocomplete"], true);
    assert_eq!(restores["options"][1]["name"], "date");
    assert_eq!(restores["options"][1]["required"], false);
    assert!(restores["default_member_permissions"].is_null());
    let failures = by_name("failures");
    assert_eq!(failures["options"][0]["min_value"].as_f64(), Some(1.0));
    assert_eq!(failures["options"][0]["max_value"].as_f64(), Some(30.0));
    for command in &commands {
        // No default permissions: Discord would refuse a member holding only the admin
        // role before the bot sees the command. The bot checks at call time.
        assert!(command["default_member_permissions"].is_null(), "{command}");
        // Guild-only: usable in a server, installed to a server; no DMs, no user installs.
        assert_eq!(command["contexts"], json!([0]), "{command}");
        assert_eq!(command["integration_types"], json!([0]), "{command}");
    }
    let watch = by_name("watch");
    let subcommands: Vec<&str> = watch["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(subcommands, ["add", "remove", "list"]);

    running.stop().await;
    h.assert_nothing_unexpected();
}

/// A list line's times for an hour-long job started at `hour`:00 UTC on `day`: Discord's
/// tags, the start with its date, the end as a time of day.
fn tags(day: &str, hour: u32) -> String {
    let start = date(day)
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    format!("<t:{start}:f>–<t:{}:t>", start + 3600)
}

#[tokio::test]
async fn restores_lists_the_simulators_jobs_of_that_date() {
    let h = Harness::start().await;
    h.sim.add_job(sim_job(
        "obm",
        "1",
        "2024-06-20",
        9,
        "RESTORE_STOP_BY_ERROR",
    ));
    h.sim.add_job(sim_job(
        "obm",
        "2",
        "2024-06-20",
        11,
        "RESTORE_STOP_SUCCESS",
    ));
    h.sim
        .add_job(sim_job("obm", "3", "2024-06-21", 9, "RESTORE_STOP_SUCCESS"));
    let running = h.start_bot().await;

    let (callback, answer) = h
        .invoke_deferred(
            SlashCommand::new("restores")
                .option("user", "obm")
                .option("date", "2024-06-20"),
        )
        .await;
    assert_eq!(
        flags(&callback["data"]),
        EPHEMERAL,
        "lookups are private by default"
    );
    let embed = &answer["embeds"][0];
    assert_eq!(embed["title"], "Restores of obm on 2024-06-20");
    assert_eq!(embed["footer"]["text"], format!("live from {SERVER}"));
    let lines: Vec<&str> = embed["description"].as_str().unwrap().lines().collect();
    let expected = h.sim.expected(SERVER, "obm", date("2024-06-20"));
    assert_eq!(lines.len(), expected.len());
    assert!(
        lines[0].starts_with(&format!("**Set 2** · success · {}", tags("2024-06-20", 11))),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!("**Set 1** · failure · {}", tags("2024-06-20", 9))),
        "{lines:?}"
    );
    let followup_post = h
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.contains("/webhooks/"))
        .expect("follow-up posted");
    assert!(is_locked_down(&followup_post.body["allowed_mentions"]));

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn restores_answers_from_the_store_when_the_cbs_is_down_and_says_so() {
    let h = Harness::start().await;
    let day = date("2024-06-20");
    h.sim.add_job(sim_job(
        "obm",
        "1",
        "2024-06-20",
        9,
        "RESTORE_STOP_BY_ERROR",
    ));
    let store = h.open_store();
    let classes = [StatusClass::Failure].into();
    let policy = Policy {
        now: h.clock.now(),
        alert_classes: &classes,
        stuck_after: Duration::hours(12),
        baseline: true,
        muted: &|_| false,
        repeat: &|_| None,
    };
    for job in h.sim.expected(SERVER, "obm", day) {
        store.observe(&job, day, &policy).unwrap();
    }
    h.sim.set_down(true).await.unwrap();
    let running = h.start_bot_with(store).await;

    let (_, answer) = h
        .invoke_deferred(
            SlashCommand::new("restores")
                .option("user", "obm")
                .option("date", "2024-06-20"),
        )
        .await;
    let embed = &answer["embeds"][0];
    let footer = embed["footer"]["text"].as_str().unwrap();
    assert!(
        footer.starts_with(&format!("{SERVER} is unreachable")),
        "{footer}"
    );
    assert!(footer.ends_with("from the bot's store, which may be out of date"));
    let description = embed["description"].as_str().unwrap();
    assert!(
        description.starts_with("**Set 1** · failure"),
        "{description}"
    );

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn watch_add_persists_across_a_restart_and_reaches_the_poller() {
    let h = Harness::start().await;
    let running = h.start_bot().await;

    let (callback, _) = h
        .invoke(admin(
            SlashCommand::new("watch")
                .option("user", "newbie")
                .subcommand("add"),
        ))
        .await;
    let content = callback["data"]["content"].as_str().unwrap();
    assert!(content.starts_with("Now watching `newbie`."), "{content}");
    assert_eq!(flags(&callback["data"]), 0, "the team sees changes");
    assert!(is_locked_down(&callback["data"]["allowed_mentions"]));
    drop(running.stop().await);

    // Restart: a fresh store handle on the same directory.
    let store = h.open_store();
    let watched: Vec<String> = h
        .poller(&store)
        .watch_list()
        .unwrap()
        .into_iter()
        .map(|w| w.login)
        .collect();
    assert_eq!(watched, ["newbie", "obm"]);
    // The next cycle polls the new user, as a baseline like any first cycle.
    // (`/watch add` itself asked the CBS once whether the user exists.)
    let today = now().date_naive();
    let asked = h.sim.requests_for("newbie", today);
    let report = h.poller(&store).cycle().await.unwrap();
    assert!(report.ok(), "{:?}", report.summary.errors);
    assert_eq!(h.sim.requests_for("newbie", today), asked + 1);
    assert!(store.user_state("newbie").unwrap().baselined);
    let added = store.dynamic_watches().unwrap();
    assert_eq!(
        added[0].added_by,
        format!("operator ({})", support::fake_discord::MEMBER_USER_ID)
    );

    // The config's entry cannot be removed from chat.
    let running = h.start_bot_with(store).await;
    let (callback, _) = h
        .invoke(admin(
            SlashCommand::new("watch")
                .option("user", "obm")
                .subcommand("remove"),
        ))
        .await;
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert!(callback["data"]["content"]
        .as_str()
        .unwrap()
        .contains("config file"));
    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn changes_by_a_member_without_permission_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    let running = h.start_bot().await;

    let (callback, _) = h
        .invoke(
            SlashCommand::new("watch")
                .option("user", "newbie")
                .subcommand("add"),
        )
        .await;
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    let content = callback["data"]["content"].as_str().unwrap();
    assert!(content.contains("nothing was changed"), "{content}");
    assert!(running.store.dynamic_watches().unwrap().is_empty());

    let (callback, _) = h
        .invoke(
            SlashCommand::new("mute")
                .option("user", "obm")
                .option("duration", "2h"),
        )
        .await;
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    let mutes = Mutes::open(&running.store).unwrap();
    assert!(mutes.active(h.clock.now()).unwrap().is_empty());

    // The configured admin role is enough without Manage Server.
    let (callback, _) = h
        .invoke(
            SlashCommand::new("watch")
                .option("user", "newbie")
                .subcommand("add")
                .roles(&[ADMIN_ROLE]),
        )
        .await;
    assert_eq!(flags(&callback["data"]), 0, "{callback}");
    assert_eq!(running.store.dynamic_watches().unwrap().len(), 1);

    running.stop().await;
    h.assert_nothing_unexpected();
}

/// README: a muted failure is recorded, not posted, and not kept for later; once the mute
/// ends, new failures alert again. Driven by poll cycles on the manual clock.
#[tokio::test]
async fn a_mute_records_without_posting_until_it_ends_and_does_not_hold_alerts() {
    let h = Harness::start().await;
    let running = h.start_bot().await;
    let poller = h.poller(&running.store);
    poller.cycle().await.unwrap();

    let (callback, _) = h
        .invoke(admin(
            SlashCommand::new("mute")
                .option("user", "obm")
                .option("duration", "2h"),
        ))
        .await;
    let content = callback["data"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("Muted alerts of `obm` (every backup set) until"),
        "{content}"
    );

    // A failure while muted is recorded (the digest lists it) but queues no alert.
    let finished_alerts = |store: &Store, skip: usize| -> Vec<String> {
        let events = store
            .pending_events(usize::MAX)
            .unwrap()
            .into_iter()
            .skip(skip);
        events
            .filter_map(|e| match e.kind {
                EventKind::JobFinished { job, .. } => Some(job.backup_set_id),
                _ => None,
            })
            .collect()
    };
    let mut failed = sim_job("obm", "7", "2024-06-27", 0, "RESTORE_STOP_BY_ERROR");
    (failed.start, failed.end) = (now(), Some(now() + Duration::minutes(1)));
    h.sim.add_job(failed);
    h.manual.set(now() + Duration::minutes(5));
    let queued = running.store.outbox_len().unwrap();
    let report = poller.cycle().await.unwrap();
    assert_eq!((report.summary.alerts, report.summary.muted), (0, 1));
    assert!(finished_alerts(&running.store, queued).is_empty(), "muted");
    let digest = Digest::from_store(
        &running.store,
        now().date_naive(),
        restorewatch::tz::Tz::UTC,
        vec![],
    );
    assert!(digest
        .unwrap()
        .failures
        .iter()
        .any(|f| f.login_name == "obm"));

    // Still muted a minute before the end: a new failure stays quiet.
    let mut second = sim_job("obm", "8", "2024-06-27", 0, "RESTORE_STOP_BY_ERROR");
    let t = now() + Duration::minutes(110);
    (second.start, second.end) = (t, Some(t + Duration::minutes(1)));
    h.sim.add_job(second);
    h.manual.set(now() + Duration::minutes(119));
    let report = poller.cycle().await.unwrap();
    assert_eq!((report.summary.alerts, report.summary.muted), (0, 1));

    // After the mute: a new failure alerts, and the muted ones are not replayed.
    let mut third = sim_job("obm", "9", "2024-06-27", 0, "RESTORE_STOP_BY_ERROR");
    let t = now() + Duration::minutes(121);
    (third.start, third.end) = (t, Some(t + Duration::minutes(1)));
    h.sim.add_job(third);
    h.manual.set(now() + Duration::minutes(125));
    let report = poller.cycle().await.unwrap();
    assert_eq!((report.summary.alerts, report.summary.muted), (1, 0));
    assert_eq!(finished_alerts(&running.store, queued), ["9"]);

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn unmute_ends_a_mute_at_once() {
    let h = Harness::start().await;
    let running = h.start_bot().await;
    let poller = h.poller(&running.store);
    poller.cycle().await.unwrap();
    h.invoke(admin(
        SlashCommand::new("mute")
            .option("user", "obm")
            .option("duration", "2h"),
    ))
    .await;
    let (callback, _) = h
        .invoke(admin(SlashCommand::new("unmute").option("user", "obm")))
        .await;
    assert_eq!(
        callback["data"]["content"],
        "Alerts of `obm` (every backup set) are posted again."
    );
    let mut failed = sim_job("obm", "7", "2024-06-27", 0, "RESTORE_STOP_BY_ERROR");
    (failed.start, failed.end) = (now(), Some(now() + Duration::minutes(1)));
    h.sim.add_job(failed);
    h.manual.set(now() + Duration::minutes(5));
    let report = poller.cycle().await.unwrap();
    assert_eq!((report.summary.alerts, report.summary.muted), (1, 0));

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn status_reports_the_last_real_cycle() {
    let h = Harness::start().await;
    let store = h.open_store();
    let report = h.poller(&store).cycle().await.expect("a cycle");
    assert!(report.ok());
    let running = h.start_bot_with(store).await;

    let (callback, _) = h.invoke(SlashCommand::new("status")).await;
    assert_eq!(callback["type"], 4);
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    let embed = &callback["data"]["embeds"][0];
    let field = |name: &str| {
        let fields = embed["fields"].as_array().unwrap();
        let f = fields.iter().find(|f| f["name"] == name).unwrap();
        f["value"].as_str().unwrap().to_owned()
    };
    assert!(
        field("Last cycle").contains("1 users, 1 requests, 0 errors"),
        "{}",
        field("Last cycle")
    );
    assert!(field("Next cycle").starts_with("<t:"));
    assert_eq!(field("Backup server"), "answering");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn bad_arguments_get_ephemeral_messages_saying_what_is_expected() {
    let h = Harness::start().await;
    let running = h.start_bot().await;

    let cases = [
        (
            SlashCommand::new("restores")
                .option("user", "obm")
                .option("date", "20.06.2024"),
            "date: expected YYYY-MM-DD",
        ),
        (
            SlashCommand::new("failures").option("days", 0),
            "days: expected a whole number from 1 to 30.",
        ),
        (
            SlashCommand::new("failures").option("user", "ghost"),
            "user: `ghost` is neither watched nor seen lately",
        ),
        (
            admin(
                SlashCommand::new("mute")
                    .option("user", "obm")
                    .option("duration", "a while"),
            ),
            "duration: expected a time span",
        ),
        (
            admin(
                SlashCommand::new("watch")
                    .option("user", "ghost")
                    .subcommand("remove"),
            ),
            "user: `ghost` is not on the watch list",
        ),
    ];
    for (command, expected) in cases {
        let (callback, _) = h.invoke(command).await;
        assert_eq!(callback["type"], 4, "answered at once: {callback}");
        assert_eq!(flags(&callback["data"]), EPHEMERAL, "{callback}");
        let content = callback["data"]["content"].as_str().unwrap();
        assert!(content.starts_with(expected), "{content}");
    }
    // A login nobody watches is refused at once, the way `/failures` refuses it, and the
    // backup server is never asked.
    let (callback, _) = h
        .invoke(SlashCommand::new("restores").option("user", "ghost"))
        .await;
    assert_eq!(callback["type"], 4, "refused before deferring: {callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert_eq!(
        callback["data"]["content"],
        "user: `ghost` is neither watched nor seen lately; expected a user from the list."
    );
    assert_eq!(h.sim.requests_served(), 0, "no backup-server call");
    assert!(Mutes::open(&running.store)
        .unwrap()
        .active(h.clock.now())
        .unwrap()
        .is_empty());

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn autocomplete_offers_matching_watched_and_recent_users() {
    let h = Harness::start().await;
    let running = h.start_bot().await;
    running
        .store
        .add_watch(&restorewatch::store::DynamicWatch {
            login: "office".into(),
            owner: String::new(),
            added_by: "test".into(),
            added_at: h.clock.now(),
        })
        .unwrap();

    let typing = SlashCommand::new("restores").autocomplete("user", "O");
    let interaction = h.fake.inject_interaction(typing.build());
    let choices = timeout(WAIT, h.fake.wait_for_callback(interaction.id))
        .await
        .expect("autocomplete answered");
    assert_eq!(choices["type"], 8);
    let values: Vec<&str> = choices["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["obm", "office"]);

    let typing = SlashCommand::new("watch")
        .autocomplete("user", "fic")
        .subcommand("remove");
    let interaction = h.fake.inject_interaction(admin_build(typing));
    let choices = timeout(WAIT, h.fake.wait_for_callback(interaction.id))
        .await
        .expect("autocomplete answered");
    assert_eq!(choices["data"]["choices"][0]["value"], "office");

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn server_autocomplete_offers_the_servers_of_the_user_already_given() {
    let h = Harness::start_two_servers().await;
    let running = h.start_bot().await;
    let fake = &h.fake;
    let offered = |command: SlashCommand| {
        let interaction = fake.inject_interaction(command.build());
        async move {
            let choices = timeout(WAIT, fake.wait_for_callback(interaction.id))
                .await
                .expect("autocomplete answered");
            (choices["data"]["choices"].as_array().unwrap().iter())
                .map(|c| c["value"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };

    let only_second = SlashCommand::new("restores")
        .option("user", "SOLO")
        .autocomplete("server", "");
    assert_eq!(offered(only_second).await, [SECOND]);
    let both = SlashCommand::new("restores")
        .option("user", "obm")
        .autocomplete("server", "");
    assert_eq!(offered(both).await, [SERVER, SECOND]);
    // No user yet, or one still being typed: every server.
    let none = SlashCommand::new("restores").autocomplete("server", "cbs");
    assert_eq!(offered(none).await, [SERVER, SECOND]);
    let typing = SlashCommand::new("restores")
        .option("user", "so")
        .autocomplete("server", "");
    assert_eq!(offered(typing).await, [SERVER, SECOND]);

    running.stop().await;
    h.assert_nothing_unexpected();
}

fn admin_build(command: SlashCommand) -> Value {
    admin(command).build()
}

#[tokio::test]
async fn restores_asks_the_server_named_by_server_and_asks_for_it_when_ambiguous() {
    let h = Harness::start_two_servers().await;
    let second = h.second.as_ref().unwrap();
    h.sim
        .add_job(sim_job("obm", "1", "2024-06-20", 9, "RESTORE_STOP_SUCCESS"));
    second.add_job(sim_job(
        "obm",
        "2",
        "2024-06-20",
        11,
        "RESTORE_STOP_BY_ERROR",
    ));
    second.add_job(sim_job(
        "solo",
        "5",
        "2024-06-20",
        8,
        "RESTORE_STOP_SUCCESS",
    ));
    let running = h.start_bot().await;
    let restores = |user: &str| {
        SlashCommand::new("restores")
            .option("user", user)
            .option("date", "2024-06-20")
    };

    // obm is watched on both servers: asked to say which, at once, and nobody is asked.
    let (callback, _) = h.invoke(restores("obm")).await;
    assert_eq!(callback["type"], 4, "answered at once: {callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    let content = callback["data"]["content"].as_str().unwrap();
    assert!(
        content.contains("several backup servers")
            && content.contains(SERVER)
            && content.contains(SECOND)
            && content.contains("server:"),
        "{content}"
    );
    assert_eq!(h.sim.requests_served() + second.requests_served(), 0);

    // server: picks the one asked, live.
    let description = |answer: &Value| {
        answer["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (_, answer) = h
        .invoke_deferred(restores("obm").option("server", SECOND))
        .await;
    assert_eq!(
        answer["embeds"][0]["footer"]["text"],
        format!("live from {SECOND}")
    );
    assert!(
        description(&answer).contains("**Set 2** · failure"),
        "{answer}"
    );
    assert!(!description(&answer).contains("Set 1"), "{answer}");
    let (_, answer) = h
        .invoke_deferred(restores("obm").option("server", SERVER))
        .await;
    assert_eq!(
        answer["embeds"][0]["footer"]["text"],
        format!("live from {SERVER}")
    );
    assert!(
        description(&answer).contains("**Set 1** · success"),
        "{answer}"
    );
    assert!(!description(&answer).contains("Set 2"), "{answer}");

    // solo is on the second server only: no server: needed.
    let (_, answer) = h.invoke_deferred(restores("solo")).await;
    assert_eq!(
        answer["embeds"][0]["footer"]["text"],
        format!("live from {SECOND}")
    );
    assert!(description(&answer).contains("**Set 5**"), "{answer}");

    // A server that is not configured gets a short answer naming the ones that are.
    let (callback, _) = h.invoke(restores("obm").option("server", "nope")).await;
    assert_eq!(callback["type"], 4);
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    let content = callback["data"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("server: `nope` is not a backup server") && content.contains(SECOND),
        "{content}"
    );
    // solo is not on the first server: asking it there is refused like an unwatched user.
    let (callback, _) = h.invoke(restores("solo").option("server", SERVER)).await;
    assert_eq!(callback["type"], 4);
    assert!(callback["data"]["content"]
        .as_str()
        .unwrap()
        .contains("neither watched nor seen"));

    running.stop().await;
    h.assert_nothing_unexpected();
}

/// Checks one message of a list reply against Discord's limits and counts its job lines
/// (`**Set 1xxx**`) into `seen`; returns the total message count from the title's `(k/N)`.
fn tally(message: &Value, seen: &mut std::collections::BTreeMap<String, usize>) -> usize {
    assert_eq!(flags(message), EPHEMERAL, "{message}");
    let embeds = message["embeds"].as_array().expect("embeds");
    assert!(!embeds.is_empty() && embeds.len() <= 10, "{message}");
    let mut chars = 0;
    for embed in embeds {
        let text = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        let description = embed["description"].as_str().unwrap_or_default();
        assert!(text(&embed["title"]) <= 256);
        assert!(text(&embed["description"]) <= 4096);
        assert!(text(&embed["footer"]["text"]) <= 2048);
        chars +=
            text(&embed["title"]) + text(&embed["description"]) + text(&embed["footer"]["text"]);
        assert!(
            !description.contains("more"),
            "nothing cut off: {description}"
        );
        for line in description.lines() {
            if let Some(rest) = line.split("**Set ").nth(1) {
                let set = rest.split("**").next().unwrap().to_owned();
                *seen.entry(set).or_default() += 1;
            }
        }
    }
    assert!(chars <= 6000, "{chars} characters in one message");
    let title = embeds[0]["title"].as_str().unwrap();
    let (_, count) = title
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("numbered: {title}"));
    count.trim_end_matches(')').parse().unwrap()
}

/// Every message of every page of a list command: page 1 as `command` asks, then
/// `page:2`, ... while a page ends by naming the next. Each message is checked and tallied
/// ([`tally`]); every page but the last has exactly ten messages. Returns the pages' sizes.
async fn every_page(
    h: &Harness,
    command: impl Fn() -> SlashCommand,
    deferred: bool,
    seen: &mut std::collections::BTreeMap<String, usize>,
) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut page = 1;
    loop {
        let invoked = if page == 1 {
            command()
        } else {
            command().option("page", page)
        };
        let (callback, token) = h.invoke(invoked).await;
        let first = if deferred {
            assert_eq!(callback["type"], 5, "deferred first: {callback}");
            let first = timeout(WAIT, h.fake.wait_for_followups(&token, 1)).await;
            first.expect("the answer follows")[0].clone()
        } else {
            callback["data"].clone()
        };
        let total = tally(&first, &mut std::collections::BTreeMap::new());
        let on_page = (total - (page - 1) * 10).min(10);
        let needed = if deferred { on_page } else { on_page - 1 };
        let followups = timeout(WAIT, h.fake.wait_for_followups(&token, needed))
            .await
            .expect("the page follows");
        let messages: Vec<Value> = if deferred {
            followups
        } else {
            std::iter::once(first).chain(followups).collect()
        };
        for message in &messages {
            assert_eq!(tally(message, seen), total);
        }
        sizes.push(messages.len());
        let last = messages.last().unwrap()["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .to_owned();
        if page * 10 >= total {
            assert!(!last.contains("The next lines"), "{last}");
            return sizes;
        }
        assert_eq!(messages.len(), 10, "a full page");
        assert!(
            last.ends_with(&format!(" page:{}`", page + 1)),
            "the page names the next: {last}"
        );
        page += 1;
    }
}

/// Long `/failures` and `/restores` answers continue in follow-ups, at most ten messages
/// per reply, and `page:` shows the rest: every job line appears exactly once.
#[tokio::test]
async fn paging_reaches_every_line() {
    const JOBS: usize = 700;
    let h = Harness::start().await;
    let day = date("2024-06-27").and_hms_opt(0, 0, 0).unwrap().and_utc();
    for i in 0..JOBS {
        let start = day + Duration::minutes(i as i64);
        h.sim.add_job(restorewatch::simulator::SimJob {
            size_bytes: 4096,
            ..restorewatch::simulator::SimJob::new(
                "obm",
                &(1000 + i).to_string(),
                start,
                Some(start + Duration::seconds(30)),
                "RESTORE_STOP_BY_ERROR",
            )
        });
    }
    let running = h.start_bot().await;
    h.poller(&running.store).cycle().await.unwrap();
    let every: Vec<String> = (1000..1000 + JOBS).map(|s| s.to_string()).collect();

    let mut seen = std::collections::BTreeMap::new();
    let pages = every_page(&h, || SlashCommand::new("failures"), true, &mut seen).await;
    assert!(
        pages.len() > 1,
        "{JOBS} failures need several pages: {pages:?}"
    );
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), every);
    assert!(
        seen.values().all(|n| *n == 1),
        "each failure once: {seen:?}"
    );

    let mut seen = std::collections::BTreeMap::new();
    let restores = || {
        SlashCommand::new("restores")
            .option("user", "obm")
            .option("date", "2024-06-27")
    };
    let pages = every_page(&h, restores, true, &mut seen).await;
    assert!(pages.iter().sum::<usize>() > 1, "{pages:?}");
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), every);
    assert!(seen.values().all(|n| *n == 1), "each job once: {seen:?}");

    running.stop().await;
    h.assert_nothing_unexpected();
}

/// `/failures` and `/digest` read the store after acknowledging the interaction, deferred
/// the way the answer is shown (here public, with `discord.public_lookups`); a bad argument
/// is still answered privately at once, and an error found after a public deferral is told
/// privately too.
#[tokio::test]
async fn failures_and_digest_defer_as_they_answer_and_keep_errors_private() {
    let h = Harness::start_with("public_lookups = true", "").await;
    h.sim.add_job(sim_job(
        "obm",
        "1",
        "2024-06-27",
        9,
        "RESTORE_STOP_BY_ERROR",
    ));
    let running = h.start_bot().await;
    h.poller(&running.store).cycle().await.unwrap();

    let (callback, _) = h
        .invoke(SlashCommand::new("digest").option("date", "26/06/2024"))
        .await;
    assert_eq!(callback["type"], 4, "answered at once: {callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    // A day whose records the retention (35 days) has pruned: said so, not "no jobs".
    let (callback, _) = h
        .invoke(SlashCommand::new("digest").option("date", "2024-05-01"))
        .await;
    assert_eq!(callback["type"], 4, "answered at once: {callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert!(
        callback["data"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("2024-05-01 is past the store's retention")),
        "{callback}"
    );

    for command in ["failures", "digest"] {
        let (callback, answer) = h.invoke_deferred(SlashCommand::new(command)).await;
        assert_eq!(flags(&callback["data"]), 0, "{command}: deferred publicly");
        assert_eq!(flags(&answer), 0, "{command}");
        assert!(answer["embeds"].to_string().contains("obm"), "{answer}");
    }

    // One page of failures: page 2 is past the end, found only after reading the store.
    let (callback, token) = h
        .invoke(SlashCommand::new("failures").option("page", 2))
        .await;
    assert_eq!(callback["type"], 5, "deferred first: {callback}");
    let told = timeout(WAIT, h.fake.wait_for_followups(&token, 1))
        .await
        .expect("the error follows");
    assert_eq!(flags(&told[0]), EPHEMERAL, "{}", told[0]);
    let content = told[0]["content"].as_str().unwrap();
    assert!(
        content.starts_with("page: expected a whole number from 1 to 1"),
        "{content}"
    );
    assert_eq!(
        h.fake.original_response(&token),
        None,
        "the public \"thinking…\" message is gone"
    );
    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn watch_takes_server_for_the_list_it_changes_and_shows() {
    let h = Harness::start_two_servers().await;
    let second = h.second.as_ref().unwrap();
    second.add_user(restorewatch::simulator::SimUser {
        login: "newguy".into(),
        owner: String::new(),
        user_id: "newguy".into(),
    });
    let running = h.start_bot().await;
    let watch = |sub: &str| SlashCommand::new("watch").subcommand(sub);
    let add = |user: &str| SlashCommand::new("watch").option("user", user);

    let (callback, _) = h
        .invoke(admin(
            add("newguy").option("server", SECOND).subcommand("add"),
        ))
        .await;
    let content = callback["data"]["content"].as_str().unwrap();
    assert!(content.starts_with("Now watching `newguy`."), "{content}");
    let second_view = running.store.server_view(SECOND).unwrap();
    let logins = |store: &Store| -> Vec<String> {
        let list = store.dynamic_watches().unwrap();
        list.into_iter().map(|w| w.login).collect()
    };
    assert_eq!(logins(&second_view), ["newguy"]);
    assert!(logins(&running.store.server_view(SERVER).unwrap()).is_empty());

    // The list of the second server shows its users; the default, the first's, does not.
    let shown = |callback: &Value| callback["data"].to_string();
    let (callback, _) = h
        .invoke(
            SlashCommand::new("watch")
                .option("server", SECOND)
                .subcommand("list"),
        )
        .await;
    assert!(shown(&callback).contains("newguy"), "{callback}");
    assert!(shown(&callback).contains("solo"), "{callback}");
    let (callback, _) = h.invoke(watch("list")).await;
    assert!(!shown(&callback).contains("newguy"), "{callback}");

    // A server that is not configured changes nothing.
    let (callback, _) = h
        .invoke(admin(
            add("newguy").option("server", "nope").subcommand("remove"),
        ))
        .await;
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert!(callback["data"]["content"]
        .as_str()
        .unwrap()
        .starts_with("server: `nope` is not a backup server"));
    let (callback, _) = h
        .invoke(admin(
            add("newguy").option("server", SECOND).subcommand("remove"),
        ))
        .await;
    assert_eq!(flags(&callback["data"]), 0, "{callback}");
    assert!(logins(&second_view).is_empty());

    running.stop().await;
    h.assert_nothing_unexpected();
}

/// With several backup servers a mute holds on one server: `/mute` and `/unmute` take
/// `server:` (the one server watching the user when left out, else a question), the mute
/// holds back that server's alerts only, and `/watch list` names its server.
#[tokio::test]
async fn mute_takes_server_and_holds_on_that_server_only() {
    let h = Harness::start_two_servers().await;
    let running = h.start_bot().await;
    let mutes = Mutes::open(&running.store).unwrap();
    let mute = |user: &str| {
        admin(
            SlashCommand::new("mute")
                .option("user", user)
                .option("duration", "2h"),
        )
    };
    let text = |callback: &Value| callback["data"]["content"].as_str().unwrap().to_owned();

    // obm is watched on both servers: asked which.
    let (callback, _) = h.invoke(mute("obm")).await;
    assert!(
        text(&callback).contains("several backup servers"),
        "{callback}"
    );
    assert!(mutes.active(h.clock.now()).unwrap().is_empty());

    let (callback, _) = h.invoke(mute("obm").option("server", SECOND)).await;
    assert!(
        text(&callback).contains(&format!("on server `{SECOND}`")),
        "{callback}"
    );
    let now = h.clock.now();
    assert!(mutes.is_muted_on(Some(SECOND), "obm", "1", now));
    assert!(
        !mutes.is_muted_on(Some(SERVER), "obm", "1", now),
        "only there"
    );
    let active = mutes.active(now).unwrap();
    assert!(active[0].covers(SECOND, "obm", "1") && !active[0].covers(SERVER, "obm", "1"));

    // solo is watched on the second server only: no need to say it.
    h.invoke(mute("solo")).await;
    assert!(mutes.is_muted_on(Some(SECOND), "solo", "9", now));

    // /watch list names the mute's server, on that server's list only.
    let list = |server: &str| {
        SlashCommand::new("watch")
            .option("server", server)
            .subcommand("list")
    };
    let (callback, _) = h.invoke(list(SECOND)).await;
    assert!(
        callback["data"]
            .to_string()
            .contains(&format!("on server `{SECOND}`")),
        "{callback}"
    );
    let (callback, _) = h.invoke(list(SERVER)).await;
    assert!(
        !callback["data"].to_string().contains("muted"),
        "{callback}"
    );

    // /unmute of the other server finds nothing; of this one lifts it.
    let unmute = |server: &str| {
        admin(
            SlashCommand::new("unmute")
                .option("user", "obm")
                .option("server", server),
        )
    };
    let (callback, _) = h.invoke(unmute(SERVER)).await;
    assert!(
        text(&callback).starts_with("There is no mute"),
        "{callback}"
    );
    let (callback, _) = h.invoke(unmute(SECOND)).await;
    assert!(text(&callback).contains("posted again"), "{callback}");
    assert!(!mutes.is_muted_on(Some(SECOND), "obm", "1", now));

    running.stop().await;
    h.assert_nothing_unexpected();
}

/// The gateway may deliver an interaction again (a replay after a resume): the same id
/// runs once, so a `/mute` changes the state once and is answered once.
#[tokio::test]
async fn a_replayed_interaction_runs_once() {
    let h = Harness::start().await;
    let running = h.start_bot().await;
    let mute = admin(
        SlashCommand::new("mute")
            .option("user", "obm")
            .option("duration", "2h"),
    )
    .build();
    let first = h.fake.inject_interaction(mute.clone());
    let mut replay = mute;
    replay["id"] = json!(first.id.to_string());
    replay["token"] = json!(first.token);
    h.fake.inject_interaction(replay);
    let callback = timeout(WAIT, h.fake.wait_for_callback(first.id))
        .await
        .expect("the bot answered");
    assert!(
        callback["data"]["content"]
            .as_str()
            .unwrap()
            .contains("obm"),
        "{callback}"
    );
    // An interaction delivered after both: answered once the replay has been seen.
    h.invoke(SlashCommand::new("status")).await;

    let callback_path = format!(
        "/api/v10/interactions/{}/{}/callback",
        first.id, first.token
    );
    let answers = (h.fake.requests().into_iter())
        .filter(|r| r.method == "POST" && r.path == callback_path)
        .count();
    assert_eq!(answers, 1, "one answer");
    let audit = restorewatch::audit::AuditLog::open(&running.store)
        .unwrap()
        .recent(10)
        .unwrap();
    let mutes = audit
        .iter()
        .filter(|e| e.action.starts_with("mute"))
        .count();
    assert_eq!(mutes, 1, "one change: {audit:?}");
    running.stop().await;
    h.assert_nothing_unexpected();
}
