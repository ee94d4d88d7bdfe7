//! Smoke tests of the fake Discord against the real serenity and poise: if these pass, the
//! fake speaks enough Discord for the bot's own integration tests to trust it.

mod support;

use std::time::Duration;

use poise::serenity_prelude as serenity;
use serde_json::{json, Value};
use serenity::http::{Http, HttpBuilder, HttpError};
use serenity::{ChannelId, CreateMessage, GatewayIntents, GuildId, Nonce};
use support::fake_discord::{
    FakeDiscord, RecordedRequest, Scripted, SlashCommand, CHANNEL_ID, GUILD_ID,
};
use tokio::time::timeout;

/// Upper bound on any wait; the real waits are milliseconds.
const WAIT: Duration = Duration::from_secs(10);
/// A channel the REST tests post to.
const ALERTS: u64 = 4_000_000_000_000_000_001;

fn http_for(fake: &FakeDiscord) -> Http {
    // The proxy is ignored while serenity's own rate limiter is on: disable it.
    HttpBuilder::new("fake-token")
        .proxy(fake.api_base())
        .ratelimiter_disabled(true)
        .build()
}

fn is_message_post(request: &RecordedRequest) -> bool {
    request.method == "POST" && request.path.ends_with("/messages")
}

/// The status and Discord error of a failed serenity call.
fn unsuccessful(error: serenity::Error) -> serenity::ErrorResponse {
    match error {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) => response,
        other => panic!("expected an unsuccessful request, got {other:?}"),
    }
}

#[tokio::test]
async fn a_message_is_recorded_with_its_path_body_and_token() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);

    let sent = ChannelId::new(ALERTS)
        .send_message(&http, CreateMessage::new().content("restore failed"))
        .await
        .expect("send");

    assert_eq!(sent.content, "restore failed");
    assert_eq!(sent.channel_id.get(), ALERTS);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].path,
        format!("/api/v10/channels/{ALERTS}/messages")
    );
    assert_eq!(requests[0].body["content"], "restore failed");
    assert_eq!(requests[0].header("authorization"), Some("Bot fake-token"));
    let messages = fake.wait_for_messages(ALERTS, 1).await;
    assert_eq!(messages[0]["id"], sent.id.to_string());
    assert!(fake.unexpected().is_empty());
}

#[tokio::test]
async fn enforce_nonce_twice_creates_one_message() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);
    let message = || {
        CreateMessage::new()
            .content("restore failed")
            .nonce(Nonce::String("job-42".into()))
            .enforce_nonce(true)
    };

    let first = ChannelId::new(ALERTS).send_message(&http, message()).await;
    let second = ChannelId::new(ALERTS).send_message(&http, message()).await;

    assert_eq!(first.expect("first").id, second.expect("second").id);
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.messages(ALERTS).len(), 1);
    assert_eq!(fake.messages(ALERTS)[0]["nonce"], "job-42");
}

/// How delivery code learns a 429's `retry_after`: NOT from serenity. serenity 0.12.5 keeps
/// only the status, url and a decoded `{code, message, errors}`; Discord's 429 body has no
/// `code`, so even the message is replaced by a decode error, and the headers are dropped.
/// Match the status (`HttpError::status_code() == Some(429)`) and back off on your own, or
/// send with reqwest yourself to read the `retry_after` JSON field / `Retry-After` header.
#[tokio::test]
async fn a_scripted_429_is_an_unsuccessful_request_with_status_429() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);
    let rate_limited = Scripted::TooManyRequests {
        retry_after_secs: 1.5,
        global: false,
    };
    fake.script(ALERTS, [rate_limited.clone(), rate_limited]);

    let error = ChannelId::new(ALERTS)
        .send_message(&http, CreateMessage::new().content("x"))
        .await
        .expect_err("429");

    let response = unsuccessful(error);
    assert_eq!(response.status_code.as_u16(), 429);
    assert_eq!(
        response.error.code, -1,
        "serenity could not decode the body"
    );
    assert!(fake.messages(ALERTS).is_empty());

    // The same request made with reqwest keeps what serenity drops.
    let raw = reqwest::Client::new()
        .post(format!(
            "{}/api/v10/channels/{ALERTS}/messages",
            fake.api_base()
        ))
        .header("authorization", "Bot fake-token")
        .json(&json!({"content": "x"}))
        .send()
        .await
        .expect("raw send");
    assert_eq!(raw.status().as_u16(), 429);
    assert_eq!(raw.headers()["retry-after"], "2");
    assert_eq!(raw.headers()["x-ratelimit-scope"], "user");
    let body: Value = raw.json().await.expect("429 body");
    assert_eq!(body["retry_after"], 1.5);
    assert_eq!(body["global"], false);
}

/// The fake stamps requests on tokio's clock, so a paused-time test can measure the waits of
/// the code under test (`discord_delivery.rs` does, for 429s and backoff). Here the wait is
/// the test's own `advance`, and the point is the stamp: on the wall clock it would be ~0.
#[tokio::test(start_paused = true)]
async fn requests_are_stamped_on_the_paused_clock_and_a_429_is_used_up() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);
    fake.script(
        ALERTS,
        [Scripted::TooManyRequests {
            retry_after_secs: 1.5,
            global: false,
        }],
    );

    let message = || CreateMessage::new().content("restore failed");
    let channel = ChannelId::new(ALERTS);
    let first = timeout(WAIT, channel.send_message(&http, message())).await;
    assert_eq!(
        unsuccessful(first.expect("answered").unwrap_err()).status_code,
        429
    );
    let gap = Duration::from_secs(90);
    tokio::time::advance(gap).await;
    let second = timeout(WAIT, channel.send_message(&http, message())).await;
    second
        .expect("answered in time")
        .expect("the script is used up");

    let posts = fake.wait_for_requests(2, is_message_post).await;
    let measured = posts[1].at.duration_since(posts[0].at);
    // Only the advance passed on the paused clock (plus nothing: no real waits count).
    assert_eq!(measured, gap);
    assert_eq!(fake.messages(ALERTS).len(), 1);
}

#[tokio::test]
async fn a_scripted_403_and_a_forbidden_channel_fail_with_missing_access() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);
    let channel = ChannelId::new(ALERTS);
    let message = || CreateMessage::new().content("x");
    fake.script(ALERTS, [Scripted::Status(403)]);

    let scripted = unsuccessful(
        channel
            .send_message(&http, message())
            .await
            .expect_err("403"),
    );
    assert_eq!(scripted.status_code.as_u16(), 403);
    assert_eq!(scripted.error.code, 50001);
    assert_eq!(scripted.error.message, "Missing Access");
    channel
        .send_message(&http, message())
        .await
        .expect("script used up");

    fake.set_channel_forbidden(ALERTS, true);
    let forbidden = unsuccessful(
        channel
            .send_message(&http, message())
            .await
            .expect_err("403"),
    );
    assert_eq!(forbidden.status_code.as_u16(), 403);
    fake.set_channel_forbidden(ALERTS, false);
    channel
        .send_message(&http, message())
        .await
        .expect("allowed again");
    assert_eq!(fake.messages(ALERTS).len(), 2);
}

#[tokio::test]
async fn a_server_error_and_discords_length_limits_are_reported() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);
    let channel = ChannelId::new(ALERTS);
    fake.script(ALERTS, [Scripted::ServerError(502)]);

    let error = channel
        .send_message(&http, CreateMessage::new().content("x"))
        .await;
    assert_eq!(
        unsuccessful(error.expect_err("502")).status_code.as_u16(),
        502
    );

    // serenity checks content length itself, so go around it to see the fake's 400.
    let too_long = "é".repeat(2001);
    let raw = reqwest::Client::new()
        .post(format!(
            "{}/api/v10/channels/{ALERTS}/messages",
            fake.api_base()
        ))
        .header("authorization", "Bot fake-token")
        .json(&json!({"content": too_long}))
        .send()
        .await
        .expect("raw send");
    assert_eq!(raw.status().as_u16(), 400);
    let body: Value = raw.json().await.expect("400 body");
    assert_eq!(body["code"], 50035);

    let field = serenity::CreateEmbed::new().field("job", "x".repeat(1025), false);
    let error = channel
        .send_message(&http, CreateMessage::new().embed(field))
        .await
        .expect_err("field value too long");
    let response = unsuccessful(error);
    assert_eq!(response.status_code.as_u16(), 400);
    assert_eq!(response.error.errors[0].path, "embeds.0.fields.0.value");
    assert!(fake.messages(ALERTS).is_empty());
}

#[tokio::test]
async fn buttons_are_checked_against_discords_limits() {
    let fake = FakeDiscord::start().await;
    let post = |components: Value| {
        let url = format!("{}/api/v10/channels/{ALERTS}/messages", fake.api_base());
        async move {
            let raw = reqwest::Client::new()
                .post(url)
                .header("authorization", "Bot fake-token")
                .json(&json!({"content": "x", "components": components}))
                .send()
                .await
                .expect("raw send");
            raw.status().as_u16()
        }
    };
    let button = |id: &str| json!({"type": 2, "style": 1, "label": "Go", "custom_id": id});
    let row = |ids: &[&str]| json!({"type": 1, "components": ids.iter().map(|i| button(i)).collect::<Vec<_>>()});
    assert_eq!(post(json!([row(&["a", "b"]), row(&["c"])])).await, 200);
    let six: Vec<Value> = (0..6).map(|i| row(&[&i.to_string()])).collect();
    assert_eq!(post(json!(six)).await, 400, "at most 5 rows");
    assert_eq!(
        post(json!([row(&["1", "2", "3", "4", "5", "6"])])).await,
        400
    );
    assert_eq!(
        post(json!([row(&["a"]), row(&["a"])])).await,
        400,
        "ids unique"
    );
    assert_eq!(post(json!([row(&[&"x".repeat(101)])])).await, 400);
    assert_eq!(post(json!([row(&[""])])).await, 400);
    let long_label = json!({"type": 2, "style": 1, "label": "l".repeat(81), "custom_id": "a"});
    let long = json!([{"type": 1, "components": [long_label]}]);
    assert_eq!(post(long).await, 400);
    assert_eq!(post(json!([{"type": 1, "components": []}])).await, 400);
    assert_eq!(fake.messages(ALERTS).len(), 1);
}

#[tokio::test]
async fn a_hung_request_waits_for_release() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);
    fake.script(ALERTS, [Scripted::Hang]);

    let sending = tokio::spawn(async move {
        let message = CreateMessage::new().content("x");
        ChannelId::new(ALERTS).send_message(&http, message).await
    });
    timeout(WAIT, fake.wait_for_request(is_message_post))
        .await
        .expect("request arrives");
    assert!(fake.messages(ALERTS).is_empty());
    fake.release_hangs();

    let sent = timeout(WAIT, sending).await.expect("answered");
    sent.expect("task").expect("released request succeeds");
    assert_eq!(fake.messages(ALERTS).len(), 1);
}

#[tokio::test]
async fn an_unknown_route_is_404_and_recorded_as_unexpected() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake);

    // The fake serves one server: any other is a route it does not know.
    let error = http.get_guild(GuildId::new(999)).await.expect_err("404");

    assert_eq!(unsuccessful(error).status_code.as_u16(), 404);
    let unexpected = fake.unexpected();
    assert_eq!(unexpected.len(), 1);
    assert_eq!(unexpected[0].path, "/api/v10/guilds/999");
}

// Gateway tests run on the real clock: under `start_paused` the shard runner's 500 ms read
// timeout lets tokio jump the paused clock at every idle moment, and an injected event was
// never read before a 10 s `timeout` expired. They need no sleeps, so real time costs nothing.

// ----- gateway + poise -----------------------------------------------------------------

struct Data;
type Error = Box<dyn std::error::Error + Send + Sync>;
type Context<'a> = poise::Context<'a, Data, Error>;

/// Answers "pong", visible only to the caller.
#[poise::command(slash_command)]
async fn ping(ctx: Context<'_>) -> Result<(), Error> {
    let reply = poise::CreateReply::default()
        .content("pong")
        .ephemeral(true);
    ctx.send(reply).await?;
    Ok(())
}

/// Silences alerts (a parent: only its subcommands run).
#[poise::command(slash_command, subcommands("silence_add"))]
async fn silence(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Silences one job for some hours.
#[poise::command(slash_command, rename = "add")]
async fn silence_add(
    ctx: Context<'_>,
    #[autocomplete = "complete_job"] job: String,
    hours: u32,
) -> Result<(), Error> {
    ctx.say(format!("silenced {job} for {hours}h")).await?;
    ctx.say("second reply").await?;
    Ok(())
}

async fn complete_job(_ctx: Context<'_>, partial: &str) -> serenity::CreateAutocompleteResponse {
    let job = format!("{partial}-nightly");
    serenity::CreateAutocompleteResponse::new().add_string_choice(job.clone(), job)
}

/// A running bot: the shard manager to stop it and the task running the client.
struct Bot {
    shard_manager: std::sync::Arc<serenity::ShardManager>,
    running: tokio::task::JoinHandle<serenity::Result<()>>,
}

impl Bot {
    /// Starts serenity + poise against `fake`, registering the commands in [`GUILD_ID`].
    async fn start(fake: &FakeDiscord) -> Bot {
        let framework = poise::Framework::builder()
            .options(poise::FrameworkOptions {
                commands: vec![ping(), silence()],
                ..Default::default()
            })
            .setup(|ctx, _ready, framework| {
                Box::pin(async move {
                    let commands = &framework.options().commands;
                    let guild = GuildId::new(GUILD_ID);
                    poise::builtins::register_in_guild(ctx, commands, guild).await?;
                    Ok(Data)
                })
            })
            .build();
        let intents = GatewayIntents::non_privileged();
        let mut client = serenity::ClientBuilder::new_with_http(http_for(fake), intents)
            .framework(framework)
            .await
            .expect("client");
        let shard_manager = client.shard_manager.clone();
        let running = tokio::spawn(async move { client.start().await });
        timeout(WAIT, fake.identified()).await.expect("READY sent");
        timeout(WAIT, fake.wait_for_commands(Some(GUILD_ID)))
            .await
            .expect("commands registered");
        Bot {
            shard_manager,
            running,
        }
    }

    /// Closes the gateway session and waits for the client to return.
    async fn stop(self) {
        self.shard_manager.shutdown_all().await;
        let ended = timeout(WAIT, self.running).await.expect("client stops");
        ended.expect("client task").expect("client ends cleanly");
    }
}

#[tokio::test]
async fn poise_registers_and_answers_a_slash_command_through_the_fake_gateway() {
    let fake = FakeDiscord::start().await;
    let bot = Bot::start(&fake).await;

    let commands = fake.registered_commands(Some(GUILD_ID));
    let names: Vec<_> = commands.iter().map(|c| c["name"].clone()).collect();
    assert_eq!(names, [json!("ping"), json!("silence")]);
    let put = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("PUT recorded");
    let app = fake.application_id();
    assert_eq!(
        put.path,
        format!("/api/v10/applications/{app}/guilds/{GUILD_ID}/commands")
    );
    assert_eq!(put.body[0]["name"], "ping");

    let interaction = fake.inject_interaction(SlashCommand::new("ping").build());
    let callback = timeout(WAIT, fake.wait_for_callback(interaction.id))
        .await
        .expect("poise answered");
    assert_eq!(callback["type"], 4);
    assert_eq!(callback["data"]["content"], "pong");
    assert_eq!(callback["data"]["flags"], 64);
    let original = fake
        .original_response(&interaction.token)
        .expect("original");
    assert_eq!(original["channel_id"], CHANNEL_ID.to_string());

    bot.stop().await;
    assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
}

#[tokio::test]
async fn subcommands_options_autocomplete_and_follow_ups_reach_poise() {
    let fake = FakeDiscord::start().await;
    let bot = Bot::start(&fake).await;

    let typing = SlashCommand::new("silence")
        .autocomplete("job", "db")
        .subcommand("add")
        .build();
    let autocomplete = fake.inject_interaction(typing);
    let choices = timeout(WAIT, fake.wait_for_callback(autocomplete.id))
        .await
        .expect("autocomplete answered");
    assert_eq!(choices["type"], 8);
    assert_eq!(choices["data"]["choices"][0]["value"], "db-nightly");

    let invoke = SlashCommand::new("silence")
        .option("job", "db-nightly")
        .option("hours", 4)
        .subcommand("add")
        .build();
    let interaction = fake.inject_interaction(invoke);
    let callback = timeout(WAIT, fake.wait_for_callback(interaction.id))
        .await
        .expect("poise answered");
    assert_eq!(callback["data"]["content"], "silenced db-nightly for 4h");
    let followups = timeout(WAIT, fake.wait_for_followups(&interaction.token, 1))
        .await
        .expect("follow-up sent");
    assert_eq!(followups[0]["content"], "second reply");

    bot.stop().await;
    assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
}
