//! Who the bot serves, end to end through the fake Discord (REST + gateway) and the CBS
//! simulator: only its own server, lookups scoped to what the team watches and, in a
//! `[[route]]` channel, to that owner's users; admins by permission or by `admin_role`
//! alone; every change from chat in the audit trail.

mod support;

use chrono::Duration;
use restorewatch::commands::OUTSIDE_GUILD_REFUSAL;
use restorewatch::mutes::Mutes;
use serde_json::{json, Value};
use support::bot::*;
use support::fake_discord::{SlashCommand, GUILD_ID, MEMBER_USER_ID};
use tokio::time::timeout;

/// A server the bot was added to but does not serve.
const OTHER_GUILD: u64 = 9_000_000_000_000_000_001;
const OTHER_CHANNEL: u64 = 9_000_000_000_000_000_002;
/// The channel a `[[route]]` gives to `reseller-a`.
const RESELLER_CHANNEL: u64 = 7_000_000_000_000_000_001;

fn content(callback: &Value) -> &str {
    callback["data"]["content"].as_str().unwrap_or_default()
}

/// The embed field `name` of the first embed of a callback.
fn field(callback: &Value, name: &str) -> String {
    let fields = callback["data"]["embeds"][0]["fields"].as_array().unwrap();
    let f = fields.iter().find(|f| f["name"] == name).unwrap();
    f["value"].as_str().unwrap().to_owned()
}

/// The values of an autocomplete answer.
async fn choices(h: &Harness, typing: SlashCommand) -> Vec<String> {
    let interaction = h.fake.inject_interaction(typing.build());
    let answer = timeout(WAIT, h.fake.wait_for_callback(interaction.id))
        .await
        .expect("autocomplete answered");
    assert_eq!(answer["type"], 8, "{answer}");
    let choices = answer["data"]["choices"].as_array().cloned();
    choices
        .unwrap_or_default()
        .iter()
        .map(|c| c["value"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn another_servers_admin_can_neither_watch_nor_mute_nor_autocomplete() {
    let h = Harness::start().await;
    let running = h.start_bot().await;
    let elsewhere = |c: SlashCommand| admin(c).in_channel(OTHER_GUILD, OTHER_CHANNEL);

    let (callback, _) = h
        .invoke(elsewhere(
            SlashCommand::new("watch")
                .option("user", "newbie")
                .subcommand("add"),
        ))
        .await;
    assert_eq!(callback["type"], 4);
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert_eq!(content(&callback), OUTSIDE_GUILD_REFUSAL);

    let (callback, _) = h
        .invoke(elsewhere(
            SlashCommand::new("mute")
                .option("user", "obm")
                .option("duration", "30d"),
        ))
        .await;
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert_eq!(content(&callback), OUTSIDE_GUILD_REFUSAL);

    let offered = choices(
        &h,
        elsewhere(SlashCommand::new("restores").autocomplete("user", "")),
    )
    .await;
    assert!(offered.is_empty(), "no user names leak: {offered:?}");

    // Nothing changed, nothing was asked of the backup server.
    assert!(running.store.dynamic_watches().unwrap().is_empty());
    let mutes = Mutes::open(&running.store).unwrap();
    assert!(mutes.active(h.clock.now()).unwrap().is_empty());
    assert_eq!(h.sim.requests_served(), 0, "no CBS request");

    // The same commands from our own server work, and /status counts the refusals.
    let offered = choices(&h, SlashCommand::new("restores").autocomplete("user", "")).await;
    assert_eq!(offered, ["obm"]);
    let (status, _) = h.invoke(SlashCommand::new("status")).await;
    assert_eq!(
        field(&status, "Refused interactions"),
        "3 from outside this server since start"
    );
    assert_eq!(running.bot.refused_interactions(), 3);

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn restores_from_a_dm_is_refused_and_shows_no_job() {
    let h = Harness::start().await;
    let today = h.clock.now().date_naive().to_string();
    h.sim
        .add_job(sim_job("obm", "1", &today, 0, "RESTORE_STOP_BY_ERROR"));
    let running = h.start_bot().await;

    let dm = SlashCommand::new("restores")
        .option("user", "obm")
        .in_dm(8_000_000_000_000_000_001);
    let (callback, token) = h.invoke(dm).await;
    assert_eq!(callback["type"], 4, "refused, not deferred: {callback}");
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert_eq!(content(&callback), OUTSIDE_GUILD_REFUSAL);
    assert_eq!(callback["data"]["embeds"], json!([]));
    assert!(h.fake.followups(&token).is_empty());
    assert_eq!(h.sim.requests_served(), 0, "no CBS request");

    running.stop().await;
    h.assert_nothing_unexpected();
}

/// Discord updates command registrations with a delay: a member may still invoke a
/// command this version does not have, or send an option of another type. They get a
/// short private answer, not Discord's "the application did not respond".
#[tokio::test]
async fn a_stale_command_or_option_gets_a_short_private_answer() {
    let h = Harness::start().await;
    let running = h.start_bot().await;
    for stale in [
        SlashCommand::new("nosuch"),
        SlashCommand::new("failures").option("days", "seven"),
    ] {
        let (callback, _) = h.invoke(stale).await;
        assert_eq!(callback["type"], 4, "{callback}");
        assert_eq!(flags(&callback["data"]), EPHEMERAL, "{callback}");
        assert!(
            content(&callback).contains("does not match this version of restorewatch"),
            "{callback}"
        );
    }
    assert_eq!(h.sim.requests_served(), 0, "no CBS request");
    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn a_members_lookup_of_an_unwatched_login_is_refused_without_a_cbs_call() {
    let h = Harness::start().await;
    let running = h.start_bot().await;

    // `newbie` exists on the backup server but is not watched.
    let (callback, _) = h
        .invoke(SlashCommand::new("restores").option("user", "newbie"))
        .await;
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    let refused = content(&callback).to_owned();
    assert_eq!(
        refused,
        "user: `newbie` is neither watched nor seen lately; expected a user from the list."
    );
    assert_eq!(h.sim.requests_served(), 0, "no CBS request");

    // A login the backup server does not know reads exactly the same: nothing to probe.
    let (callback, _) = h
        .invoke(SlashCommand::new("restores").option("user", "ghost"))
        .await;
    assert_eq!(content(&callback), refused.replace("newbie", "ghost"));

    // An admin may look anyone up.
    let (_, answer) = h
        .invoke_deferred(admin(
            SlashCommand::new("restores").option("user", "newbie"),
        ))
        .await;
    assert_eq!(
        answer["embeds"][0]["title"],
        format!("Restores of newbie on {}", h.clock.now().date_naive())
    );
    // And for an admin, a login the backup server refuses still reads like "not watched".
    let (_, answer) = h
        .invoke_deferred(admin(SlashCommand::new("restores").option("user", "ghost")))
        .await;
    assert_eq!(answer["content"], refused.replace("newbie", "ghost"));

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn a_routed_owners_channel_sees_only_its_owners_users() {
    let route = format!(
        "[[route]]\nowner = \"reseller-a\"\nchannel = \"{RESELLER_CHANNEL}\"\n\
         [[watch]]\nlogin = \"ours\"\nowner = \"reseller-a\"\n"
    );
    let h = Harness::start_with("", &route).await;
    h.sim.add_user(restorewatch::simulator::SimUser {
        login: "ours".into(),
        owner: "reseller-a".into(),
        user_id: "ours".into(),
    });
    // A failure of each user today, recorded by a real poll cycle.
    let start = h.clock.now() - Duration::hours(3);
    for login in ["obm", "ours"] {
        let mut job = sim_job(login, "1", "2024-06-20", 0, "RESTORE_STOP_BY_ERROR");
        (job.start, job.end) = (start, Some(start + Duration::minutes(5)));
        h.sim.add_job(job);
    }
    let store = h.open_store();
    let report = h.poller(&store).cycle().await.expect("a cycle");
    assert!(report.ok(), "{:?}", report.summary.errors);
    let running = h.start_bot_with(store).await;
    let there = |c: SlashCommand| c.in_channel(GUILD_ID, RESELLER_CHANNEL);

    // Lookups.
    let (callback, _) = h
        .invoke(there(SlashCommand::new("restores").option("user", "obm")))
        .await;
    assert!(content(&callback).starts_with("user: `obm` is neither watched"));
    let (_, answer) = h
        .invoke_deferred(there(SlashCommand::new("restores").option("user", "ours")))
        .await;
    assert!(answer["embeds"][0]["description"]
        .as_str()
        .unwrap()
        .contains("failure"));

    // Autocomplete, in the channel and in a thread of it; the alert channel sees both.
    let typing = || SlashCommand::new("failures").autocomplete("user", "");
    assert_eq!(choices(&h, there(typing())).await, ["ours"]);
    let thread = typing().in_thread(RESELLER_CHANNEL, 7_000_000_000_000_000_002);
    assert_eq!(choices(&h, thread).await, ["ours"]);
    assert_eq!(choices(&h, typing()).await, ["obm", "ours"]);

    // /failures and /digest.
    let (callback, answer) = h
        .invoke_deferred(there(SlashCommand::new("failures")))
        .await;
    assert_eq!(flags(&callback["data"]), EPHEMERAL, "deferred privately");
    let listed = answer["embeds"][0]["description"].as_str().unwrap();
    assert!(listed.contains("`ours`"), "{listed}");
    assert!(!listed.contains("obm"), "{listed}");
    let (_, answer) = h.invoke_deferred(there(SlashCommand::new("digest"))).await;
    let digest = answer["embeds"].to_string();
    assert!(digest.contains("ours"), "{digest}");
    assert!(!digest.contains("obm"), "{digest}");

    // /status: its recent changes name users of every owner, so an owner's channel
    // shows none to a member; an admin there sees them.
    restorewatch::audit::AuditLog::open(&running.store)
        .unwrap()
        .record(&restorewatch::audit::AuditEntry {
            at: h.clock.now(),
            user_id: 42,
            user_name: "ops_lead".into(),
            action: "mute `obm` (every backup set) for 2h".into(),
        })
        .unwrap();
    let recent = |callback: &serde_json::Value| {
        let fields = callback["data"]["embeds"][0]["fields"].as_array().unwrap();
        let field = fields.iter().find(|f| f["name"] == "Recent changes");
        field.unwrap()["value"].as_str().unwrap().to_owned()
    };
    let (callback, _) = h.invoke(there(SlashCommand::new("status"))).await;
    assert_eq!(
        recent(&callback),
        "shown to admins only in an owner's channel"
    );
    let (callback, _) = h.invoke(admin(there(SlashCommand::new("status")))).await;
    assert!(recent(&callback).contains("mute `obm`"), "{callback}");

    // An admin in the same channel sees everyone.
    let (_, answer) = h
        .invoke_deferred(admin(there(SlashCommand::new("failures"))))
        .await;
    let listed = answer["embeds"][0]["description"].as_str().unwrap();
    assert!(
        listed.contains("`ours`") && listed.contains("`obm`"),
        "{listed}"
    );

    running.stop().await;
    h.assert_nothing_unexpected();
}

/// A login on two backup servers may belong to two owners: a route channel shows the jobs
/// of its owner's user on the server where it is theirs, not the other server's.
#[tokio::test]
async fn a_route_channel_sees_a_shared_login_only_on_its_owners_server() {
    let extra = format!(
        "[[route]]\nowner = \"reseller-a\"\nchannel = \"{RESELLER_CHANNEL}\"\n\
         [[watch]]\nlogin = \"ours\"\nowner = \"reseller-a\"\nserver = \"{SERVER}\"\n\
         [[watch]]\nlogin = \"ours\"\nowner = \"reseller-b\"\nserver = \"{SECOND}\"\n"
    );
    let h = Harness::start_two_servers_with(&extra).await;
    let second = h.second.as_ref().unwrap();
    let start = h.clock.now() - Duration::hours(3);
    for (sim, set, owner) in [(&h.sim, "111", "reseller-a"), (second, "222", "reseller-b")] {
        sim.add_user(restorewatch::simulator::SimUser {
            login: "ours".into(),
            owner: owner.into(),
            user_id: "ours".into(),
        });
        let mut job = sim_job("ours", set, "2024-06-20", 0, "RESTORE_STOP_BY_ERROR");
        (job.start, job.end) = (start, Some(start + Duration::minutes(5)));
        sim.add_job(job);
    }
    let app = restorewatch::app::App::build(h.settings.clone(), h.clock.clone())
        .await
        .unwrap();
    let report = app.cycle().await.expect("a cycle");
    assert!(report.ok(), "{:?}", report.summary.errors);
    let running = h.start_bot_with(app.store.clone()).await;
    let there = |c: SlashCommand| c.in_channel(GUILD_ID, RESELLER_CHANNEL);

    let (_, answer) = h
        .invoke_deferred(there(SlashCommand::new("failures")))
        .await;
    let listed = answer["embeds"][0]["description"].as_str().unwrap();
    assert!(listed.contains("111"), "{listed}");
    assert!(!listed.contains("222"), "the other owner's job: {listed}");
    assert!(
        listed.contains(&format!("`{SERVER}`")),
        "names the server: {listed}"
    );
    let (_, answer) = h.invoke_deferred(there(SlashCommand::new("digest"))).await;
    let digest = answer["embeds"].to_string();
    assert!(digest.contains("111"), "{digest}");
    assert!(!digest.contains("222"), "the other owner's job: {digest}");

    // Outside the route channel both servers' jobs are listed, each with its server.
    let (_, answer) = h.invoke_deferred(SlashCommand::new("failures")).await;
    let listed = answer["embeds"][0]["description"].as_str().unwrap();
    assert!(
        listed.contains(&format!("`{SECOND}`")) && listed.contains("222") && listed.contains("111"),
        "{listed}"
    );

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn a_member_with_only_the_admin_role_can_mute() {
    let h = Harness::start().await;
    let running = h.start_bot().await;
    // Registered without default permissions: Discord lets this member through.
    let commands = h.fake.registered_commands(Some(GUILD_ID));
    let mute = commands.iter().find(|c| c["name"] == "mute").unwrap();
    assert!(mute["default_member_permissions"].is_null(), "{mute}");

    // View Channel and Send Messages only, plus the admin role.
    let (callback, _) = h
        .invoke(
            SlashCommand::new("mute")
                .option("user", "obm")
                .option("duration", "2h")
                .roles(&[ADMIN_ROLE]),
        )
        .await;
    assert_eq!(
        flags(&callback["data"]),
        0,
        "confirmed publicly: {callback}"
    );
    assert!(content(&callback).starts_with("Muted alerts of `obm`"));
    let mutes = Mutes::open(&running.store).unwrap();
    assert!(mutes.is_muted("obm", "1", h.clock.now()));

    // Without the role, the same member is refused.
    let (callback, _) = h
        .invoke(SlashCommand::new("unmute").option("user", "obm"))
        .await;
    assert_eq!(flags(&callback["data"]), EPHEMERAL);
    assert!(mutes.is_muted("obm", "1", h.clock.now()));

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn changes_from_chat_are_audited_and_shown_in_watch_list_and_status() {
    let h = Harness::start().await;
    let running = h.start_bot().await;

    let (callback, _) = h
        .invoke(admin(
            SlashCommand::new("watch")
                .option("user", "newbie")
                .subcommand("add"),
        ))
        .await;
    assert_eq!(flags(&callback["data"]), 0, "{callback}");
    let (callback, _) = h
        .invoke(admin(
            SlashCommand::new("mute")
                .option("user", "obm")
                .option("duration", "2h"),
        ))
        .await;
    assert_eq!(flags(&callback["data"]), 0, "{callback}");
    let (callback, _) = h
        .invoke(admin(SlashCommand::new("unmute").option("user", "obm")))
        .await;
    assert_eq!(flags(&callback["data"]), 0, "{callback}");
    h.invoke(admin(
        SlashCommand::new("mute")
            .option("user", "newbie")
            .option("duration", "1d")
            .option("backup_set", "5"),
    ))
    .await;

    let who = format!("operator \\({MEMBER_USER_ID}\\)");
    let (callback, _) = h
        .invoke(admin(SlashCommand::new("watch").subcommand("list")))
        .await;
    let list = callback["data"]["embeds"][0]["description"]
        .as_str()
        .unwrap();
    let today = h.clock.now().date_naive();
    assert!(list.contains("`obm` · config file\n"), "{list}");
    assert!(
        list.contains(&format!(
            "`newbie` · added by {who} on {today} · muted set `5` until <t:"
        )),
        "{list}"
    );
    assert!(list.ends_with(&format!(":f> by {who}")), "{list}");

    let (callback, _) = h.invoke(SlashCommand::new("status")).await;
    let changes = field(&callback, "Recent changes");
    let actions: Vec<&str> = changes
        .lines()
        .map(|l| {
            l.split_once(&format!("operator ({MEMBER_USER_ID}): "))
                .unwrap()
                .1
        })
        .collect();
    assert_eq!(
        actions,
        [
            "mute `newbie` (backup set `5`) for `1d`",
            "unmute `obm` (every backup set)",
            "mute `obm` (every backup set) for `2h`",
            "watch add `newbie`",
        ]
    );

    running.stop().await;
    h.assert_nothing_unexpected();
}

#[tokio::test]
async fn global_commands_left_by_an_earlier_version_are_removed_at_start() {
    let h = Harness::start().await;
    h.fake.seed_global_commands(vec![json!({
        "id": "1", "name": "restores", "description": "old", "type": 1,
        "application_id": h.fake.application_id().to_string(), "version": "1",
        "default_member_permissions": null, "dm_permission": true, "nsfw": false,
    })]);
    let running = h.start_bot().await;
    assert!(h.fake.registered_commands(None).is_empty());
    assert!(!h.fake.registered_commands(Some(GUILD_ID)).is_empty());
    running.stop().await;
    h.assert_nothing_unexpected();
}

// ----- the token and the channel's permissions ------------------------------------------

mod delivery {
    use super::support::fake_discord::{FakeDiscord, RecordedRequest};
    use super::support::world::{job, Harness as World};
    use chrono::{DateTime, TimeZone, Utc};
    use restorewatch::commands::status::{status, StatusReport};
    use restorewatch::config::{DiscordSettings, Route};
    use restorewatch::discord::DiscordSink;
    use restorewatch::poller::Poller;
    use restorewatch::render::RenderOptions;
    use restorewatch::schedule::CronSchedule;
    use restorewatch::sink::drain;
    use serenity::all::{ChannelId, RoleId};
    use std::time::Duration;

    const ALERTS: u64 = 4_000_000_000_000_000_001;
    const RESELLER_A: u64 = 4_000_000_000_000_000_003;
    const FAILED: &str = "RESTORE_STOP_BY_ERROR";
    const TEN_MINUTES: Duration = Duration::from_secs(10 * 60);

    fn at(h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 26, h, min, 0).unwrap()
    }

    fn sink(fake: &FakeDiscord, poller: &Poller) -> DiscordSink {
        sink_pinging(fake, poller, None)
    }

    fn sink_pinging(fake: &FakeDiscord, poller: &Poller, role: Option<RoleId>) -> DiscordSink {
        let settings = DiscordSettings {
            token: "fake-token".to_owned().into(),
            alert_channel: ChannelId::new(ALERTS),
            digest_channel: ChannelId::new(ALERTS),
            mention_role: role,
            api_base: Some(fake.api_base().parse().unwrap()),
            guilds: Vec::new(),
            admin_role: None,
            public_lookups: false,
            routes: vec![Route {
                owner: "reseller-a".into(),
                channel: ChannelId::new(RESELLER_A),
            }],
        };
        let render = RenderOptions {
            mention_role: role.map(RoleId::get),
            timezone: restorewatch::tz::Tz::UTC,
            servers_named: false,
        };
        DiscordSink::new(&settings, poller.store(), render).unwrap()
    }

    fn posts(fake: &FakeDiscord) -> Vec<RecordedRequest> {
        let all = fake.requests().into_iter();
        all.filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
            .collect()
    }

    fn failures_shown(fake: &FakeDiscord, channel: u64) -> usize {
        let messages = fake.messages(channel).into_iter();
        let embeds = messages.flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default());
        embeds
            .filter(|e| {
                e["title"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Restore failed"))
            })
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_stops_all_posting_is_shown_and_retried_every_ten_minutes_losing_nothing() {
        let (_h, p) = World::with_a_reseller_failing().await;
        let queued = p.store().outbox_len().unwrap();
        let fake = FakeDiscord::start().await;
        fake.set_token_rejected(true);
        let sink = sink(&fake, &p);

        let report = drain(p.store(), &sink).await.unwrap();
        let error = report.error.expect("delivery failed");
        assert!(error.contains("bot token"), "{error}");
        assert!(error.contains("RESTOREWATCH_DISCORD_TOKEN"), "{error}");
        assert_eq!(report.pending, queued, "nothing lost");
        assert_eq!(posts(&fake).len(), 1, "one request, not one per channel");
        assert!(sink.token_rejected());
        // `/status` shows it.
        let schedule = CronSchedule::parse("*/5 * * * *", restorewatch::tz::Tz::UTC).unwrap();
        let report = StatusReport::gather(p.store(), &schedule, at(9, 31), at(9, 0), 0).unwrap();
        let shown = format!("{:?}", status(&report, false).unwrap().embeds[0].fields);
        assert!(shown.contains("rejected the bot token"), "{shown}");

        // Cycles in between post nothing.
        tokio::time::advance(TEN_MINUTES - Duration::from_secs(1)).await;
        assert_eq!(drain(p.store(), &sink).await.unwrap().pending, queued);
        assert_eq!(posts(&fake).len(), 1);
        // Ten minutes on, one try; still rejected.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(drain(p.store(), &sink).await.unwrap().pending, queued);
        assert_eq!(posts(&fake).len(), 2);

        // The token works again: the next try delivers everything, once.
        fake.set_token_rejected(false);
        tokio::time::advance(TEN_MINUTES).await;
        let report = drain(p.store(), &sink).await.unwrap();
        assert_eq!((report.pending, report.error), (0, None));
        assert!(!sink.token_rejected());
        assert_eq!(failures_shown(&fake, ALERTS), 1);
        assert_eq!(failures_shown(&fake, RESELLER_A), 1);
        assert!(p.store().refused_destinations().unwrap().is_empty());
        assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_returned_without_embeds_parks_its_channel_until_embed_links_work() {
        let (_h, p) = World::with_a_reseller_failing().await;
        let fake = FakeDiscord::start().await;
        fake.set_embed_links_missing(RESELLER_A, true);
        let sink = sink(&fake, &p);

        let report = drain(p.store(), &sink).await.unwrap();
        assert_eq!(
            report.pending, 2,
            "the reseller's baseline and failure wait"
        );
        assert_eq!(failures_shown(&fake, ALERTS), 1, "other channels carry on");
        let refused = sink.refused_channels();
        assert_eq!(
            refused,
            [(
                ChannelId::new(RESELLER_A),
                "missing Embed Links permission".to_owned()
            )]
        );
        let shown = p.store().refused_destinations().unwrap();
        assert_eq!(
            shown,
            [format!(
                "channel {RESELLER_A}: missing Embed Links permission"
            )]
        );

        // Fixed in Discord; the channel is tried again after its rest, with its events.
        fake.set_embed_links_missing(RESELLER_A, false);
        tokio::time::advance(TEN_MINUTES).await;
        assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
        assert_eq!(failures_shown(&fake, RESELLER_A), 1);
        assert!(sink.refused_channels().is_empty());
    }

    /// Without Embed Links, Discord still creates the message's text, role mention and all:
    /// the role is pinged by the first try, and the tries after it (every ten minutes
    /// until the permission is granted, the delivering one included) do not ping again.
    #[tokio::test(start_paused = true)]
    async fn a_channel_without_embed_links_pings_the_role_once_not_at_every_retry() {
        let (_h, p) = World::with_a_reseller_failing().await;
        let fake = FakeDiscord::start().await;
        fake.set_embed_links_missing(RESELLER_A, true);
        let role = RoleId::new(555);
        let sink = sink_pinging(&fake, &p, Some(role));
        let pinged = |fake: &FakeDiscord| -> Vec<bool> {
            posts(fake)
                .into_iter()
                .filter(|r| r.path.contains(&RESELLER_A.to_string()))
                .map(|r| {
                    let roles = &r.body["allowed_mentions"]["roles"];
                    roles.as_array().is_some_and(|a| !a.is_empty())
                })
                .collect()
        };
        assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 2);
        assert_eq!(pinged(&fake), [true], "the first try pings");
        tokio::time::advance(TEN_MINUTES).await;
        assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 2);
        fake.set_embed_links_missing(RESELLER_A, false);
        tokio::time::advance(TEN_MINUTES).await;
        assert_eq!(drain(p.store(), &sink).await.unwrap().pending, 0);
        let tries = pinged(&fake);
        assert!(tries[0], "the first try pings");
        assert!(tries.len() >= 3, "{tries:?}");
        assert!(
            tries[1..].iter().all(|p| !p),
            "no ping after the first: {tries:?}"
        );
        assert_eq!(failures_shown(&fake, RESELLER_A), 1);
        assert!(sink.refused_channels().is_empty());
        assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
    }

    #[tokio::test]
    async fn once_exits_1_naming_the_token_and_delivers_after_it_is_fixed() {
        let h = World::start(&["obm"], Utc::now()).await;
        let fake = FakeDiscord::start().await;
        let dir = tempfile::tempdir().unwrap();
        let start = Utc::now() - chrono::Duration::minutes(3);
        h.sim.add_job(job(
            "obm",
            "42",
            start,
            Some(start + chrono::Duration::minutes(1)),
            FAILED,
        ));
        let toml = format!(
            "[cbs]\nurl = \"{url}\"\nsys_user = \"{user}\"\n[[watch]]\nlogin = \"obm\"\n\
             [poll]\nbaseline_first_cycle = false\n[state]\npath = \"{state}\"\n\
             [discord]\nalert_channel = \"{ALERTS}\"\napi_base = \"{api}\"\n",
            url = h.sim.url(),
            user = h.sim.sys_user(),
            state = dir.path().display(),
            api = fake.api_base(),
        );
        let path = dir.path().join("rw.toml");
        std::fs::write(&path, toml).unwrap();
        let once = || {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_restorewatch"))
                .args(["once", "--config", path.to_str().unwrap()])
                .env("RESTOREWATCH_CBS_SYS_PWD", h.sim.sys_pwd())
                .env("RESTOREWATCH_DISCORD_TOKEN", "revoked-token-Qx7")
                .env_remove("RESTOREWATCH_CONFIG")
                .output()
        };

        fake.set_token_rejected(true);
        let out = once().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("error: delivery failed: Discord rejected the bot token"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("revoked-token-Qx7"),
            "the token never shows"
        );
        assert!(fake.messages(ALERTS).is_empty());

        fake.set_token_rejected(false);
        let out = once().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(
            failures_shown(&fake, ALERTS),
            1,
            "queued, then delivered once"
        );
    }
}

#[tokio::test]
async fn run_without_a_guild_id_stops_with_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rw.toml");
    let toml = format!(
        "[cbs]\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\n[state]\npath = \"{}\"\n\
         [discord]\nalert_channel = \"1\"\n",
        dir.path().display()
    );
    std::fs::write(&path, toml).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_restorewatch"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", "pw")
        .env("RESTOREWATCH_DISCORD_TOKEN", "t")
        .env_remove("RESTOREWATCH_DISCORD_GUILD_ID")
        .env_remove("RESTOREWATCH_DISCORD_GUILD_IDS")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("config error: discord.guild_id: is required"),
        "{stderr}"
    );
}

/// A Discord server the bot was added to but does not serve (Public Bot left on) is named
/// in a warning when Discord announces it at the connect; the bot's own server is not.
#[tokio::test]
async fn a_server_the_bot_was_added_to_but_does_not_serve_is_warned_about() {
    let logs = support::logs::LogCapture::default();
    let _guard = logs.install();
    let h = Harness::start().await;
    let running = h.start_bot().await;
    let guild = |id: u64| {
        json!({
            "id": id.to_string(), "name": "a server", "icon": null, "splash": null,
            "discovery_splash": null, "owner_id": "77", "afk_channel_id": null,
            "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "roles": [{
                "id": id.to_string(), "name": "@everyone", "permissions": "0", "position": 0,
                "color": 0, "hoist": false, "managed": false, "mentionable": false, "flags": 0,
                "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null}
            }],
            "emojis": [], "features": [], "mfa_level": 0, "application_id": null,
            "system_channel_id": null, "system_channel_flags": 0, "rules_channel_id": null,
            "vanity_url_code": null, "description": null, "banner": null, "premium_tier": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": null, "nsfw_level": 0,
            "premium_progress_bar_enabled": false, "stickers": [],
            "joined_at": "2024-01-01T00:00:00+00:00", "large": false, "unavailable": false,
            "member_count": 2, "voice_states": [], "members": [], "channels": [],
            "threads": [], "presences": [], "stage_instances": [], "guild_scheduled_events": []
        })
    };
    let warnings = |text: &str, id: u64| {
        text.lines()
            .filter(|l| l.contains("WARN") && l.contains("not configured"))
            .filter(|l| l.contains(&format!("guild={id}")))
            .count()
    };
    h.fake.dispatch("GUILD_CREATE", guild(GUILD_ID));
    h.fake.dispatch("GUILD_CREATE", guild(OTHER_GUILD));
    let warned = timeout(WAIT, async {
        while warnings(&logs.text(), OTHER_GUILD) == 0 {
            tokio::task::yield_now().await;
        }
    });
    assert!(warned.await.is_ok(), "not warned about: {}", logs.text());
    assert_eq!(warnings(&logs.text(), GUILD_ID), 0, "{}", logs.text());
    assert!(h.fake.unexpected().is_empty(), "{:?}", h.fake.unexpected());
    running.stop().await;
}
