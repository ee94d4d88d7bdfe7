//! A fake Discord on loopback, so tests drive the real serenity and poise without the internet.
//!
//! [`FakeDiscord::start`] binds two servers on `127.0.0.1:0`: a REST API (axum) that answers
//! the handful of routes the bot uses the way Discord does, and a websocket gateway
//! (tokio-tungstenite) that says HELLO, answers IDENTIFY with READY, acknowledges heartbeats
//! and lets a test inject dispatch events such as `INTERACTION_CREATE`: slash commands, and
//! presses on a message's buttons ([`FakeDiscord::press`]), whose `UPDATE_MESSAGE` answer
//! edits that message as Discord does. Point serenity at it
//! with `HttpBuilder::new(token).proxy(fake.api_base()).ratelimiter_disabled(true)`; the
//! client then learns the gateway address from `GET /api/v10/gateway`.
//!
//! Everything is recorded (requests, created messages, registered commands, interaction
//! callbacks) and every request the fake has no route for is answered 404 and kept in
//! [`FakeDiscord::unexpected`], so a test can assert that the bot asked nothing odd. Tests wait
//! for things with the `wait_for_*` methods, which wake on a change notification rather than
//! polling; wrap them in `tokio::time::timeout`. Failures are scripted per channel with
//! [`FakeDiscord::script`], including the crash window "Discord created the message, the
//! bot never heard" ([`Scripted::AcceptThenHang`]). Like Discord, a message `nonce` sent
//! with `enforce_nonce` returns the earlier message instead of a second one; how long the
//! fake remembers it is [`FakeDiscord::set_nonce_memory`] (forever by default; real
//! Discord: minutes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

/// The application id READY announces unless [`FakeDiscord::start_with_application_id`] says
/// otherwise; serenity uses it for command registration and interaction follow-ups.
pub const DEFAULT_APPLICATION_ID: u64 = 2_000_000_000_000_000_001;
/// The bot's own user id (message author, READY `user`).
pub const BOT_USER_ID: u64 = 2_000_000_000_000_000_002;
/// The owner reported by `GET /oauth2/applications/@me`.
pub const OWNER_USER_ID: u64 = 2_000_000_000_000_000_003;
/// The guild interactions come from unless the builder says otherwise.
pub const GUILD_ID: u64 = 3_000_000_000_000_000_001;
/// The channel interactions come from unless the builder says otherwise.
pub const CHANNEL_ID: u64 = 3_000_000_000_000_000_002;
/// The member who invokes commands unless the builder says otherwise.
pub const MEMBER_USER_ID: u64 = 3_000_000_000_000_000_003;
/// A role of [`GUILD_ID`] that may be mentioned (`GET /guilds/{id}/roles`).
pub const MENTIONABLE_ROLE_ID: u64 = 3_000_000_000_000_000_004;
/// A role of [`GUILD_ID`] that may not be mentioned.
pub const QUIET_ROLE_ID: u64 = 3_000_000_000_000_000_005;
/// What `@everyone` may do in [`GUILD_ID`]: view channels, send messages, embed links,
/// read message history.
const EVERYONE_PERMISSIONS: u64 = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 16);

/// The heartbeat interval HELLO announces; long, so no heartbeat falls inside a test.
const HEARTBEAT_INTERVAL_MS: u64 = 45_000;
/// The command id of an injected slash command.
const FIRST_SNOWFLAKE: u64 = 1_300_000_000_000_000_000;
/// Discord's epoch: a snowflake's top 42 bits count milliseconds since
/// 2015-01-01T00:00:00Z, so ids sort by creation and tell when their object was created.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// Channel types where no message can be posted: category, directory, forum, media.
const NO_MESSAGE_CHANNEL_TYPES: [u64; 4] = [4, 14, 15, 16];
/// How long Discord remembers a message nonce for `enforce_nonce` ("the past few
/// minutes" in its docs).
const NONCE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Discord's limits on a message (characters, not bytes).
const MAX_CONTENT_CHARS: usize = 2000;
const MAX_EMBEDS: usize = 10;
const MAX_EMBED_TOTAL_CHARS: usize = 6000;
const MAX_EMBED_TITLE_CHARS: usize = 256;
const MAX_EMBED_DESCRIPTION_CHARS: usize = 4096;
const MAX_EMBED_FIELDS: usize = 25;
const MAX_FIELD_NAME_CHARS: usize = 256;
const MAX_FIELD_VALUE_CHARS: usize = 1024;
const MAX_FOOTER_CHARS: usize = 2048;
const MAX_AUTHOR_NAME_CHARS: usize = 256;
/// Discord's limits on a message's components.
const MAX_ACTION_ROWS: usize = 5;
const MAX_ROW_BUTTONS: usize = 5;
const MAX_CUSTOM_ID_CHARS: usize = 100;
const MAX_BUTTON_LABEL_CHARS: usize = 80;

/// A canned answer to the next `POST /channels/{id}/messages` of one channel, given instead
/// of the normal handling (queue them with [`FakeDiscord::script`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Scripted {
    /// 429 with Discord's body `{"message":"You are being rate limited.","retry_after":X,
    /// "global":G}` and the `Retry-After`, `X-RateLimit-Scope` (and, if global,
    /// `X-RateLimit-Global`) headers.
    TooManyRequests {
        /// Seconds the client must wait, as Discord's `retry_after`.
        retry_after_secs: f64,
        /// Whether this is the global limit rather than the route's.
        global: bool,
    },
    /// A 5xx with `{"message":"500: Internal Server Error","code":0}`.
    ServerError(u16),
    /// Any other status with the error body Discord sends for it (403 Missing Access,
    /// 404 Unknown Channel, 401 Unauthorized, ...).
    Status(u16),
    /// Handled as if nothing were scripted (to script a later request of the channel).
    Accept,
    /// This status with exactly this JSON body (say, an error that quotes the request).
    Body(u16, Value),
    /// Never answers until [`FakeDiscord::release_hangs`] (then the request is handled
    /// normally) or the fake is dropped (then it gets a 503).
    Hang,
    /// Creates the message as usual, then never answers (until [`FakeDiscord::release_hangs`]
    /// sends the 200, or the fake is dropped): Discord accepted, the bot never heard. The
    /// window in which a crash tests exactly-once delivery.
    AcceptThenHang,
    /// Creates the message as usual, then cuts the connection before the answer: the
    /// client cannot tell whether Discord took it.
    AcceptThenDrop,
}

/// How long the fake remembers a message `nonce` sent with `enforce_nonce`: a second post
/// with the same nonce in the same channel inside that memory returns the first message
/// instead of creating another. Real Discord remembers for a few minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceMemory {
    /// Every nonce, for the fake's lifetime.
    Forever,
    /// No deduplication at all: every post creates a message.
    Off,
    /// Nonces of messages created within this long, on tokio's clock (the default:
    /// [`NONCE_WINDOW`], as real Discord).
    Window(std::time::Duration),
}

/// One HTTP request the REST fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, e.g. `/api/v10/channels/1/messages`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The JSON body; `Value::Null` when there was none or it was not JSON.
    pub body: Value,
    /// All request headers.
    pub headers: HeaderMap,
    /// When the request arrived, on tokio's clock (so paused-time tests can compare).
    pub at: Instant,
}

impl RecordedRequest {
    /// A header's value as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An interaction injected through the gateway: what a test needs to find its answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectedInteraction {
    /// The interaction id (the `{id}` of its callback URL).
    pub id: u64,
    /// The interaction token (the `{token}` of its callback and webhook URLs).
    pub token: String,
}

/// A running fake Discord. Dropping it stops both servers.
pub struct FakeDiscord {
    shared: Arc<Shared>,
    rest_addr: SocketAddr,
    ws_addr: SocketAddr,
    shutdown: CancellationToken,
}

/// State shared between the handle, the REST handlers and the gateway sessions.
struct Shared {
    inner: Mutex<Inner>,
    /// Bumped after every change to `inner`; waiters subscribe and re-check.
    changed: watch::Sender<u64>,
    application_id: u64,
    gateway_url: String,
    /// Cancelled by [`FakeDiscord::release_hangs`].
    release: Mutex<CancellationToken>,
    /// Cancelled by [`FakeDiscord::set_gateway_down`]: every open gateway session drops.
    kick: Mutex<CancellationToken>,
    shutdown: CancellationToken,
}

/// Everything recorded, behind one lock that is never held across an await.
#[derive(Default)]
struct Inner {
    /// The increment of the snowflakes handed out.
    next_snowflake: u64,
    /// The last snowflake handed out for "now": later ones are always above it.
    last_snowflake: u64,
    /// Ids count 1001, 1002, ... instead of being snowflakes ([`FakeDiscord::set_plain_ids`]).
    plain_ids: bool,
    requests: Vec<RecordedRequest>,
    unexpected: Vec<RecordedRequest>,
    /// Messages in creation order, with their channel.
    messages: Vec<(u64, Value)>,
    scripts: HashMap<u64, VecDeque<Scripted>>,
    /// Canned answers for the next interaction callbacks ([`FakeDiscord::script_callbacks`]).
    callback_scripts: VecDeque<Scripted>,
    forbidden: HashSet<u64>,
    /// Channels of another type than text (0), by id ([`FakeDiscord::set_channel_type`]).
    channel_types: HashMap<u64, u64>,
    /// `None`: a window of [`NONCE_WINDOW`], as real Discord.
    nonce_memory: Option<NonceMemory>,
    /// When each message of `messages` was created (same index).
    created_at: Vec<Instant>,
    /// Channels whose messages the bot may not read back (no Read Message History).
    history_hidden: HashSet<u64>,
    /// Channels where the bot lacks Embed Links: messages are created without embeds.
    strip_embeds: HashSet<u64>,
    /// Every request that needs the bot token gets 401, as after a token reset.
    token_rejected: bool,
    /// The gateway is gone: new websocket connections are dropped unanswered.
    gateway_down: bool,
    /// Every IDENTIFY is answered by closing with this code ([`FakeDiscord::set_identify_close`]).
    identify_close: Option<u16>,
    /// Waited before a message POST is handled (see [`FakeDiscord::set_post_delay`]).
    post_delay: std::time::Duration,
    /// Every message POST and history GET hangs ([`FakeDiscord::set_messages_hanging`]).
    messages_hanging: bool,
    /// Registered commands by guild (`None`: global).
    commands: HashMap<Option<u64>, Vec<Value>>,
    interactions: Vec<InteractionRecord>,
    /// Senders to identified gateway sessions, newest last.
    shards: Vec<mpsc::UnboundedSender<Dispatch>>,
    identified: usize,
    gateway_received: Vec<Value>,
}

/// What became of one injected interaction.
struct InteractionRecord {
    id: u64,
    token: String,
    channel_id: u64,
    /// For a button press: the id of the message the button is on.
    message_id: Option<u64>,
    callback: Option<Value>,
    original: Option<Value>,
    followups: Vec<Value>,
}

/// A dispatch event to be sent on a gateway session (which numbers it).
struct Dispatch {
    event: String,
    data: Value,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the state from the other tests' asserts.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a change and wakes every waiter.
    fn update<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.send_modify(|v| *v += 1);
        out
    }

    fn bot_user(&self) -> Value {
        json!({
            "id": BOT_USER_ID.to_string(),
            "username": "restorewatch-test",
            "discriminator": "0000",
            "global_name": null,
            "avatar": null,
            "bot": true,
        })
    }
}

impl Inner {
    /// A new id, as Discord makes them: the wall-clock time now, and above every id
    /// handed out before.
    fn snowflake(&mut self) -> u64 {
        if self.plain_ids {
            self.next_snowflake += 1;
            return 1000 + self.next_snowflake;
        }
        let id = self
            .snowflake_at(std::time::SystemTime::now())
            .max(self.last_snowflake + 1);
        self.last_snowflake = id;
        id
    }

    /// A new id whose time part says `at`.
    fn snowflake_at(&mut self, at: std::time::SystemTime) -> u64 {
        let unix_ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let increment = self.next_snowflake & 0xfff;
        self.next_snowflake += 1;
        (unix_ms.saturating_sub(DISCORD_EPOCH_MS) << 22) | increment
    }
}

impl FakeDiscord {
    /// Starts the REST and gateway servers with [`DEFAULT_APPLICATION_ID`].
    pub async fn start() -> FakeDiscord {
        Self::start_with_application_id(DEFAULT_APPLICATION_ID).await
    }

    /// Starts the REST and gateway servers; READY announces `application_id`.
    pub async fn start_with_application_id(application_id: u64) -> FakeDiscord {
        Self::start_inner(application_id, None).await
    }

    /// A fake whose `GET /gateway` hands out a loopback port nobody listens on: the bot's
    /// gateway connection is refused every time, while REST works.
    pub async fn start_with_dead_gateway() -> FakeDiscord {
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port to close");
        let dead = format!("ws://{}", closed.local_addr().expect("closed port"));
        drop(closed);
        Self::start_inner(DEFAULT_APPLICATION_ID, Some(dead)).await
    }

    async fn start_inner(application_id: u64, gateway_url: Option<String>) -> FakeDiscord {
        let rest = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind REST listener");
        let ws = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway listener");
        let rest_addr = rest.local_addr().expect("REST address");
        let ws_addr = ws.local_addr().expect("gateway address");
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
            application_id,
            gateway_url: gateway_url.unwrap_or_else(|| format!("ws://{ws_addr}")),
            release: Mutex::new(CancellationToken::new()),
            kick: Mutex::new(CancellationToken::new()),
            shutdown: shutdown.clone(),
        });

        let router = Router::new()
            .fallback(handle_rest)
            .with_state(Arc::clone(&shared));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(rest, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        tokio::spawn(serve_gateway(ws, Arc::clone(&shared)));

        FakeDiscord {
            shared,
            rest_addr,
            ws_addr,
            shutdown,
        }
    }

    /// `http://127.0.0.1:PORT`: what serenity's `HttpBuilder::proxy` and our config's
    /// `discord.api_base` take.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.rest_addr)
    }

    /// `ws://127.0.0.1:PORT`, the gateway `GET /api/v10/gateway` hands out.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// The application id READY announces.
    pub fn application_id(&self) -> u64 {
        self.shared.application_id
    }

    // ----- scripting -------------------------------------------------------------------

    /// Queues canned answers for the next message POSTs to `channel_id`, one per request.
    pub fn script(&self, channel_id: u64, replies: impl IntoIterator<Item = Scripted>) {
        self.shared.update(|inner| {
            inner.scripts.entry(channel_id).or_default().extend(replies);
        });
    }

    /// Queues canned answers for the next interaction callbacks (`POST
    /// /interactions/{id}/{token}/callback`), one per request, of any interaction. A
    /// callback answered so is not recorded (Discord did not take it). Only the answers
    /// that need no connection games: statuses, bodies, [`Scripted::Accept`].
    pub fn script_callbacks(&self, replies: impl IntoIterator<Item = Scripted>) {
        self.shared
            .update(|inner| inner.callback_scripts.extend(replies));
    }

    /// While `forbidden`, every message POST to `channel_id` gets 403 Missing Access, and so
    /// does `GET /channels/{channel_id}` (the bot cannot see it).
    pub fn set_channel_forbidden(&self, channel_id: u64, forbidden: bool) {
        self.shared.update(|inner| {
            if forbidden {
                inner.forbidden.insert(channel_id);
            } else {
                inner.forbidden.remove(&channel_id);
            }
        });
    }

    /// Makes `channel_id` a channel of Discord type `kind` (0 text, 4 category, 15 forum,
    /// ...), as `GET /channels/{id}` shows. In a category, directory, forum or media channel
    /// every message POST gets Discord's 400 `Cannot send messages in a non-text channel`
    /// (code 50008).
    pub fn set_channel_type(&self, channel_id: u64, kind: u64) {
        self.shared.update(|inner| {
            inner.channel_types.insert(channel_id, kind);
        });
    }

    /// Hands out ids that count up from 1001 instead of time-based snowflakes, as some
    /// other Discord implementations (test doubles) do: ids still sort by creation, but
    /// say nothing about when. Call before anything is created.
    pub fn set_plain_ids(&self) {
        self.shared.update(|inner| inner.plain_ids = true);
    }

    /// Puts a message in `channel_id` as if the bot had posted `body` (a create-message
    /// body) `age` ago, say before its state directory was wiped: its snowflake and its
    /// `timestamp` say so.
    /// No request is recorded. Seed before the channel's other messages: read-backs list
    /// messages in the order they were added.
    pub fn seed_message(&self, channel_id: u64, body: &Value, age: std::time::Duration) {
        let shared = &self.shared;
        shared.update(|inner| {
            let at = std::time::SystemTime::now() - age;
            let id = inner.snowflake_at(at);
            let mut message = message_object(shared, id, channel_id, body);
            message["timestamp"] = json!(chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339());
            inner.messages.push((channel_id, message));
            inner.created_at.push(Instant::now());
        });
    }

    /// While `missing`, the bot lacks Embed Links in `channel_id`: Discord still creates
    /// its messages (200) but silently without their embeds.
    pub fn set_embed_links_missing(&self, channel_id: u64, missing: bool) {
        self.shared.update(|inner| {
            if missing {
                inner.strip_embeds.insert(channel_id);
            } else {
                inner.strip_embeds.remove(&channel_id);
            }
        });
    }

    /// While `rejected`, every request that needs the bot token is answered
    /// `401 Unauthorized`, as Discord does after the token was reset.
    pub fn set_token_rejected(&self, rejected: bool) {
        self.shared.update(|inner| inner.token_rejected = rejected);
    }

    /// While not `readable`, reading `channel_id`'s messages back gets 403 Missing Access,
    /// as without the Read Message History permission (posting still works).
    pub fn set_history_readable(&self, channel_id: u64, readable: bool) {
        self.shared.update(|inner| {
            if readable {
                inner.history_hidden.remove(&channel_id);
            } else {
                inner.history_hidden.insert(channel_id);
            }
        });
    }

    /// Registers `commands` globally, as an earlier version of the bot might have.
    pub fn seed_global_commands(&self, commands: Vec<Value>) {
        self.shared.update(|inner| {
            inner.commands.insert(None, commands);
        });
    }

    /// Makes every message POST wait `delay` before it is handled (nothing is created
    /// until then), so a test can interrupt the bot while a post is in flight.
    pub fn set_post_delay(&self, delay: std::time::Duration) {
        self.shared.update(|inner| inner.post_delay = delay);
    }

    /// While `hanging`, every message POST and every read of a channel's messages gets no
    /// answer until [`FakeDiscord::release_hangs`] (then it is handled normally) or the
    /// fake is dropped: Discord's REST API browning out, so the client times out.
    pub fn set_messages_hanging(&self, hanging: bool) {
        self.shared.update(|inner| inner.messages_hanging = hanging);
    }

    /// How long `enforce_nonce` deduplicates (see [`NonceMemory`]).
    pub fn set_nonce_memory(&self, memory: NonceMemory) {
        self.shared
            .update(|inner| inner.nonce_memory = Some(memory));
    }

    /// Lets every request held by [`Scripted::Hang`] or [`Scripted::AcceptThenHang`]
    /// proceed.
    pub fn release_hangs(&self) {
        let mut release = self
            .shared
            .release
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        release.cancel();
        *release = CancellationToken::new();
    }

    /// Closes every session at its IDENTIFY with `code` (Discord's fatal 4004 for a reset
    /// token, 4014 for an intent not enabled for the bot), as Discord does; `None` answers
    /// READY again.
    pub fn set_identify_close(&self, code: Option<u16>) {
        self.shared.update(|inner| inner.identify_close = code);
    }

    /// How many IDENTIFYs the gateway has received (answered or closed).
    pub fn identify_attempts(&self) -> usize {
        let inner = self.shared.lock();
        let identify = |p: &&Value| p.get("op").and_then(Value::as_u64) == Some(2);
        inner.gateway_received.iter().filter(identify).count()
    }

    /// Takes the gateway away (`true`), as when Discord's gateway or the network between
    /// fails: every open session's connection is dropped without a close frame, and new
    /// connections are dropped before the websocket handshake. `false` lets them in again.
    /// REST keeps working either way.
    pub fn set_gateway_down(&self, down: bool) {
        self.shared.update(|inner| inner.gateway_down = down);
        if down {
            let mut kick = self.shared.kick.lock().unwrap_or_else(|e| e.into_inner());
            kick.cancel();
            *kick = CancellationToken::new();
        }
    }

    // ----- what was recorded -----------------------------------------------------------

    /// Every REST request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// REST requests the fake has no route for (answered 404); tests assert this is empty.
    pub fn unexpected(&self) -> Vec<RecordedRequest> {
        self.shared.lock().unexpected.clone()
    }

    /// Messages created in `channel_id`, oldest first, as the message objects returned.
    pub fn messages(&self, channel_id: u64) -> Vec<Value> {
        messages_in(&self.shared.lock(), channel_id)
    }

    /// Messages created in any channel, oldest first.
    pub fn all_messages(&self) -> Vec<Value> {
        let inner = self.shared.lock();
        inner.messages.iter().map(|(_, m)| m.clone()).collect()
    }

    /// Commands registered for `guild` (`None`: global), as echoed back with their ids.
    pub fn registered_commands(&self, guild: Option<u64>) -> Vec<Value> {
        let inner = self.shared.lock();
        inner.commands.get(&guild).cloned().unwrap_or_default()
    }

    /// The callback body of an interaction, if it was answered.
    pub fn callback(&self, interaction_id: u64) -> Option<Value> {
        let inner = self.shared.lock();
        let record = inner.interactions.iter().find(|i| i.id == interaction_id);
        record.and_then(|i| i.callback.clone())
    }

    /// The follow-up messages sent for an interaction token, oldest first.
    pub fn followups(&self, token: &str) -> Vec<Value> {
        let inner = self.shared.lock();
        let record = inner.interactions.iter().find(|i| i.token == token);
        record.map(|i| i.followups.clone()).unwrap_or_default()
    }

    /// The original response message of an interaction (after any edits), if there is one.
    pub fn original_response(&self, token: &str) -> Option<Value> {
        let inner = self.shared.lock();
        let record = inner.interactions.iter().find(|i| i.token == token);
        record.and_then(|i| i.original.clone())
    }

    /// Every JSON payload the gateway received from clients (IDENTIFY, heartbeats, ...).
    pub fn gateway_received(&self) -> Vec<Value> {
        self.shared.lock().gateway_received.clone()
    }

    // ----- waiting ---------------------------------------------------------------------

    /// Waits until `check` returns `Some`, re-checking after every change. Never sleeps;
    /// bound it with `tokio::time::timeout`.
    async fn wait_until<T>(&self, mut check: impl FnMut(&Inner) -> Option<T>) -> T {
        // Subscribing before the first check means no change can slip between the two.
        let mut changes = self.shared.changed.subscribe();
        loop {
            if let Some(found) = check(&self.shared.lock()) {
                return found;
            }
            // The sender lives in `shared`, which `self` keeps alive: this cannot fail.
            let _ = changes.changed().await;
        }
    }

    /// Waits until `channel_id` holds at least `n` messages; returns them all.
    pub async fn wait_for_messages(&self, channel_id: u64, n: usize) -> Vec<Value> {
        self.wait_until(|inner| {
            let messages = messages_in(inner, channel_id);
            (messages.len() >= n).then_some(messages)
        })
        .await
    }

    /// Waits for the first request matching `pred` (including ones already received).
    pub async fn wait_for_request(
        &self,
        pred: impl Fn(&RecordedRequest) -> bool,
    ) -> RecordedRequest {
        self.wait_until(|inner| inner.requests.iter().find(|r| pred(r)).cloned())
            .await
    }

    /// Waits until at least `n` requests match `pred`; returns all that match.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        pred: impl Fn(&RecordedRequest) -> bool,
    ) -> Vec<RecordedRequest> {
        self.wait_until(|inner| {
            let found: Vec<_> = inner.requests.iter().filter(|r| pred(r)).cloned().collect();
            (found.len() >= n).then_some(found)
        })
        .await
    }

    /// Waits until a gateway session has been sent READY (or RESUMED).
    pub async fn identified(&self) {
        self.wait_until(|inner| (inner.identified > 0).then_some(()))
            .await
    }

    /// Waits until commands are registered for `guild` (`None`: global); returns them.
    pub async fn wait_for_commands(&self, guild: Option<u64>) -> Vec<Value> {
        self.wait_until(|inner| inner.commands.get(&guild).cloned())
            .await
    }

    /// Waits for the callback (`POST /interactions/{id}/{token}/callback`) body.
    pub async fn wait_for_callback(&self, interaction_id: u64) -> Value {
        self.wait_until(|inner| {
            let record = inner.interactions.iter().find(|i| i.id == interaction_id);
            record.and_then(|i| i.callback.clone())
        })
        .await
    }

    /// Waits until the interaction with `token` has at least `n` follow-up messages.
    pub async fn wait_for_followups(&self, token: &str, n: usize) -> Vec<Value> {
        self.wait_until(|inner| {
            let record = inner.interactions.iter().find(|i| i.token == token)?;
            (record.followups.len() >= n).then(|| record.followups.clone())
        })
        .await
    }

    // ----- gateway ---------------------------------------------------------------------

    /// Sends a dispatch event (`op` 0, next sequence number) on the newest identified
    /// gateway session.
    ///
    /// # Panics
    /// If no session is identified yet: `await` [`FakeDiscord::identified`] first.
    pub fn dispatch(&self, event: &str, data: Value) {
        let inner = self.shared.lock();
        let shard = inner
            .shards
            .iter()
            .rev()
            .find(|s| !s.is_closed())
            .expect("no identified gateway session: await identified() first");
        shard
            .send(Dispatch {
                event: event.to_owned(),
                data,
            })
            .expect("gateway session closed");
    }

    /// Sends `INTERACTION_CREATE` with `payload` (from [`SlashCommand::build`] or hand-made),
    /// filling in `id`, `token` and `application_id` when absent.
    pub fn inject_interaction(&self, mut payload: Value) -> InjectedInteraction {
        let interaction = self.shared.update(|inner| {
            let id = match payload.get("id").and_then(Value::as_str) {
                Some(id) => id.parse().expect("interaction id is a snowflake"),
                None => inner.snowflake(),
            };
            let token = match payload.get("token").and_then(Value::as_str) {
                Some(token) => token.to_owned(),
                None => format!("interaction-token-{id}"),
            };
            let channel_id = payload
                .get("channel_id")
                .and_then(Value::as_str)
                .and_then(|c| c.parse().ok())
                .unwrap_or(CHANNEL_ID);
            let message_id = payload
                .pointer("/message/id")
                .and_then(Value::as_str)
                .and_then(|m| m.parse().ok());
            inner.interactions.push(InteractionRecord {
                id,
                token: token.clone(),
                channel_id,
                message_id,
                callback: None,
                original: None,
                followups: Vec::new(),
            });
            InjectedInteraction { id, token }
        });
        let object = payload
            .as_object_mut()
            .expect("interaction is a JSON object");
        object.insert("id".into(), json!(interaction.id.to_string()));
        object.insert("token".into(), json!(interaction.token));
        object
            .entry("application_id")
            .or_insert_with(|| json!(self.shared.application_id.to_string()));
        self.dispatch("INTERACTION_CREATE", payload);
        interaction
    }

    /// Presses the button `custom_id` on the message `message_id` (as it is now, after any
    /// edits): `INTERACTION_CREATE` of a component interaction (type 3) with the message,
    /// from the member and guild `by` says (its name and options are not used).
    ///
    /// # Panics
    /// If there is no such message, or no such button on it.
    pub fn press(
        &self,
        message_id: &str,
        custom_id: &str,
        by: SlashCommand,
    ) -> InjectedInteraction {
        let message = self.message_by_id(message_id);
        let has_button = message["components"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .any(|b| b["custom_id"] == custom_id);
        assert!(has_button, "press: no button {custom_id} on {message}");
        self.press_stale(message_id, custom_id, by)
    }

    /// Like [`FakeDiscord::press`], for a `custom_id` the message need not carry: a button
    /// of an earlier version of the message, or a forged press.
    ///
    /// # Panics
    /// If there is no such message.
    pub fn press_stale(
        &self,
        message_id: &str,
        custom_id: &str,
        by: SlashCommand,
    ) -> InjectedInteraction {
        let message = self.message_by_id(message_id);
        let channel_id: u64 = message["channel_id"].as_str().unwrap().parse().unwrap();
        let mut payload = by.build();
        payload["type"] = json!(3);
        payload["channel_id"] = json!(channel_id.to_string());
        payload["channel"]["id"] = json!(channel_id.to_string());
        payload["data"] = json!({"custom_id": custom_id, "component_type": 2});
        payload["message"] = message;
        self.inject_interaction(payload)
    }

    fn message_by_id(&self, message_id: &str) -> Value {
        let inner = self.shared.lock();
        let found = inner.messages.iter().find(|(_, m)| m["id"] == message_id);
        found
            .map(|(_, m)| m.clone())
            .expect("press: no message with that id")
    }

    /// The message `message_id` of `channel_id` as it is now.
    pub fn message(&self, channel_id: u64, message_id: &str) -> Option<Value> {
        let messages = self.messages(channel_id);
        messages.into_iter().find(|m| m["id"] == message_id)
    }

    /// A slash-command interaction payload from the default member in the default guild and
    /// channel; `options` is Discord's `data.options` array, `member_permissions` the
    /// member's permission bits, `roles` their role ids.
    pub fn slash_command(
        name: &str,
        options: Value,
        member_permissions: u64,
        roles: &[u64],
    ) -> Value {
        SlashCommand::new(name)
            .raw_options(options)
            .permissions(member_permissions)
            .roles(roles)
            .build()
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds the `d` of an `INTERACTION_CREATE` for a slash command (type 2) or its
/// autocomplete (type 4), with every field serenity and poise need.
#[derive(Clone, Debug)]
pub struct SlashCommand {
    name: String,
    options: Vec<Value>,
    kind: u8,
    member_permissions: u64,
    roles: Vec<u64>,
    /// `None`: a DM with the bot (no guild, no member).
    guild_id: Option<u64>,
    channel_id: u64,
    /// The parent channel, when the command is run in a thread.
    parent_id: Option<u64>,
    user_id: u64,
}

impl SlashCommand {
    /// `/name` with no options, from [`MEMBER_USER_ID`] in [`GUILD_ID`]/[`CHANNEL_ID`], who has
    /// no roles and only VIEW_CHANNEL | SEND_MESSAGES.
    pub fn new(name: &str) -> Self {
        SlashCommand {
            name: name.to_owned(),
            options: Vec::new(),
            kind: 2,
            member_permissions: (1 << 10) | (1 << 11),
            roles: Vec::new(),
            guild_id: Some(GUILD_ID),
            channel_id: CHANNEL_ID,
            parent_id: None,
            user_id: MEMBER_USER_ID,
        }
    }

    /// Adds an option; its type follows the JSON value (string 3, integer 4, boolean 5,
    /// number 10).
    pub fn option(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.options.push(option_value(name, value.into(), false));
        self
    }

    /// Makes this an autocomplete interaction (type 4) with `name` the focused option,
    /// typed so far as `partial`.
    pub fn autocomplete(mut self, name: &str, partial: &str) -> Self {
        self.kind = 4;
        self.options.push(option_value(name, json!(partial), true));
        self
    }

    /// Wraps the options given so far into subcommand `name` (type 1); call it after the
    /// subcommand's own options.
    pub fn subcommand(mut self, name: &str) -> Self {
        let options = std::mem::take(&mut self.options);
        self.options = vec![json!({"name": name, "type": 1, "options": options})];
        self
    }

    /// Wraps the options given so far (a subcommand) into subcommand group `name` (type 2).
    pub fn subcommand_group(mut self, name: &str) -> Self {
        let options = std::mem::take(&mut self.options);
        self.options = vec![json!({"name": name, "type": 2, "options": options})];
        self
    }

    /// Replaces the options with Discord's raw `data.options` array.
    pub fn raw_options(mut self, options: Value) -> Self {
        self.options = match options {
            Value::Array(options) => options,
            Value::Null => Vec::new(),
            other => panic!("options must be a JSON array, got {other}"),
        };
        self
    }

    /// The invoking member's permission bits (what poise checks `required_permissions`
    /// against).
    pub fn permissions(mut self, bits: u64) -> Self {
        self.member_permissions = bits;
        self
    }

    /// The invoking member's role ids.
    pub fn roles(mut self, roles: &[u64]) -> Self {
        self.roles = roles.to_vec();
        self
    }

    /// The invoking user's id.
    pub fn user(mut self, user_id: u64) -> Self {
        self.user_id = user_id;
        self
    }

    /// Where the command is invoked.
    pub fn in_channel(mut self, guild_id: u64, channel_id: u64) -> Self {
        self.guild_id = Some(guild_id);
        self.channel_id = channel_id;
        self
    }

    /// In a thread `thread_id` of channel `parent_id` of the default guild.
    pub fn in_thread(mut self, parent_id: u64, thread_id: u64) -> Self {
        self.channel_id = thread_id;
        self.parent_id = Some(parent_id);
        self
    }

    /// In a DM with the bot (`channel_id` the DM channel): no guild and no member, the
    /// invoking user in `user` instead, as Discord sends it.
    pub fn in_dm(mut self, channel_id: u64) -> Self {
        self.guild_id = None;
        self.channel_id = channel_id;
        self
    }

    /// The payload; `id`, `token` and `application_id` are filled by
    /// [`FakeDiscord::inject_interaction`].
    pub fn build(self) -> Value {
        let user = json!({
            "id": self.user_id.to_string(),
            "username": "operator",
            "discriminator": "0",
            "global_name": "Operator",
            "avatar": null,
        });
        let mut channel = json!({"id": self.channel_id.to_string(), "type": 0, "name": "restores"});
        if let Some(parent) = self.parent_id {
            channel["type"] = json!(11);
            channel["parent_id"] = json!(parent.to_string());
        }
        let mut payload = json!({
            "type": self.kind,
            "version": 1,
            "channel_id": self.channel_id.to_string(),
            "channel": channel,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 8_388_608,
            // All permissions: the bot itself is never what a test is checking.
            "app_permissions": "2251799813685247",
            "data": {
                "id": FIRST_SNOWFLAKE.to_string(),
                "name": self.name,
                "type": 1,
                "options": self.options,
            },
        });
        match self.guild_id {
            Some(guild_id) => {
                payload["guild_id"] = json!(guild_id.to_string());
                payload["guild_locale"] = json!("en-US");
                payload["data"]["guild_id"] = json!(guild_id.to_string());
                payload["authorizing_integration_owners"] = json!({"0": guild_id.to_string()});
                payload["context"] = json!(0);
                payload["member"] = json!({
                    "user": user,
                    "roles": self.roles.iter().map(u64::to_string).collect::<Vec<_>>(),
                    "joined_at": "2024-01-01T00:00:00.000000+00:00",
                    "deaf": false,
                    "mute": false,
                    "flags": 0,
                    "pending": false,
                    "nick": null,
                    "avatar": null,
                    "premium_since": null,
                    "communication_disabled_until": null,
                    "permissions": self.member_permissions.to_string(),
                });
            }
            None => {
                payload["channel"] = json!({"id": self.channel_id.to_string(), "type": 1});
                payload["authorizing_integration_owners"] = json!({"1": self.user_id.to_string()});
                payload["context"] = json!(1);
                payload["user"] = user;
            }
        }
        payload
    }
}

fn option_value(name: &str, value: Value, focused: bool) -> Value {
    let kind = match &value {
        Value::String(_) => 3,
        Value::Bool(_) => 5,
        Value::Number(n) if n.is_i64() || n.is_u64() => 4,
        Value::Number(_) => 10,
        other => panic!("option {name}: unsupported value {other}"),
    };
    let mut option = json!({"name": name, "type": kind, "value": value});
    if focused {
        option["focused"] = json!(true);
    }
    option
}

fn messages_in(inner: &Inner, channel_id: u64) -> Vec<Value> {
    let in_channel = inner.messages.iter().filter(|(c, _)| *c == channel_id);
    in_channel.map(|(_, m)| m.clone()).collect()
}

// ----- REST --------------------------------------------------------------------------------

/// Discord's error body for a status, with its usual code.
fn error_body(status: u16) -> Value {
    match status {
        401 => json!({"message": "401: Unauthorized", "code": 0}),
        403 => json!({"message": "Missing Access", "code": 50001}),
        404 => json!({"message": "Unknown Channel", "code": 10003}),
        500..=599 => json!({"message": format!("{status}: Internal Server Error"), "code": 0}),
        _ => json!({"message": format!("{status}: Error"), "code": 0}),
    }
}

/// An error answer (status and Discord's JSON body), small enough to pass around in `Result`.
struct Rejection {
    status: u16,
    body: Value,
}

impl Rejection {
    fn new(status: u16, message: &str, code: u32) -> Self {
        let body = json!({"message": message, "code": code});
        Rejection { status, body }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        json_response(self.status, self.body)
    }
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).expect("valid status");
    (status, axum::Json(body)).into_response()
}

fn error_response(status: u16, message: &str, code: u32) -> Response {
    json_response(status, json!({"message": message, "code": code}))
}

fn too_many_requests(retry_after_secs: f64, global: bool) -> Response {
    let body = json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after_secs,
        "global": global,
    });
    let mut response = json_response(429, body);
    let headers = response.headers_mut();
    let retry_after_whole = retry_after_secs.ceil() as u64;
    headers.insert("retry-after", HeaderValue::from(retry_after_whole));
    let scope = if global { "global" } else { "user" };
    headers.insert("x-ratelimit-scope", HeaderValue::from_static(scope));
    if global {
        headers.insert("x-ratelimit-global", HeaderValue::from_static("true"));
    } else {
        headers.insert("x-ratelimit-limit", HeaderValue::from_static("5"));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let reset_after = format!("{retry_after_secs:.3}");
        let reset_after = HeaderValue::from_str(&reset_after).expect("ascii number");
        headers.insert("x-ratelimit-reset-after", reset_after);
    }
    response
}

fn scripted_response(reply: &Scripted) -> Response {
    match reply {
        Scripted::TooManyRequests {
            retry_after_secs,
            global,
        } => too_many_requests(*retry_after_secs, *global),
        Scripted::ServerError(status) | Scripted::Status(status) => {
            json_response(*status, error_body(*status))
        }
        Scripted::Body(status, body) => json_response(*status, body.clone()),
        Scripted::Hang | Scripted::AcceptThenHang | Scripted::AcceptThenDrop | Scripted::Accept => {
            unreachable!("{reply:?} is handled by the caller")
        }
    }
}

/// The one REST handler: records the request, then routes on method and path segments.
async fn handle_rest(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        headers,
        at: Instant::now(),
    };
    shared.update(|inner| inner.requests.push(request.clone()));

    let Some(rest) = request.path.strip_prefix("/api/v10/") else {
        return unexpected(&shared, request);
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let needs_bot_token = !matches!(segments[0], "gateway" | "interactions" | "webhooks");
    let has_bot_token = request
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bot "));
    let token_rejected = shared.lock().token_rejected;
    if needs_bot_token && (!has_bot_token || token_rejected) {
        return json_response(401, error_body(401));
    }

    let about_messages = matches!(segments.as_slice(), ["channels", _, "messages"]);
    if about_messages && shared.lock().messages_hanging {
        if let Err(gone) = hang(&shared).await {
            return gone;
        }
    }

    let app = shared.application_id.to_string();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["gateway"]) => json_response(200, json!({"url": shared.gateway_url})),
        ("GET", ["gateway", "bot"]) => json_response(
            200,
            json!({
                "url": shared.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1
                },
            }),
        ),
        ("GET", ["oauth2", "applications", "@me"]) => {
            json_response(200, application_object(shared.application_id))
        }
        ("GET", ["users", "@me"]) => json_response(200, shared.bot_user()),
        // Every channel is a text channel of GUILD_ID without overwrites, unless forbidden.
        ("GET", ["channels", channel]) => match channel.parse::<u64>() {
            Ok(id) if shared.lock().forbidden.contains(&id) => json_response(403, error_body(403)),
            Ok(id) => {
                let kind = shared.lock().channel_types.get(&id).copied();
                json_response(200, guild_channel(id, kind.unwrap_or(0)))
            }
            Err(_) => json_response(404, error_body(404)),
        },
        // A channel's latest messages, newest first (`?limit=`, 50 by default, as Discord).
        ("GET", ["channels", channel, "messages"]) => match channel.parse::<u64>() {
            Ok(id) if shared.lock().forbidden.contains(&id) => json_response(403, error_body(403)),
            Ok(id) if shared.lock().history_hidden.contains(&id) => {
                json_response(403, error_body(403))
            }
            Ok(id) => {
                let limit = (request.query.as_deref().unwrap_or_default().split('&'))
                    .find_map(|p| p.strip_prefix("limit="))
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(50)
                    .clamp(1, 100);
                let inner = shared.lock();
                let latest: Vec<Value> = (inner.messages.iter().rev())
                    .filter(|(c, _)| *c == id)
                    .take(limit)
                    .map(|(_, m)| {
                        // Discord does not show a message's nonce when it is read back.
                        let mut m = m.clone();
                        m.as_object_mut().map(|o| o.remove("nonce"));
                        m
                    })
                    .collect();
                json_response(200, json!(latest))
            }
            Err(_) => json_response(404, error_body(404)),
        },
        ("GET", ["guilds", guild]) if *guild == GUILD_ID.to_string() => {
            json_response(200, guild_object())
        }
        ("GET", ["guilds", guild, "roles"]) if *guild == GUILD_ID.to_string() => {
            json_response(200, json!(guild_roles()))
        }
        ("GET", ["guilds", guild, "members", user])
            if *guild == GUILD_ID.to_string() && *user == BOT_USER_ID.to_string() =>
        {
            json_response(
                200,
                json!({
                    "user": shared.bot_user(),
                    "nick": null,
                    "avatar": null,
                    "roles": [],
                    "joined_at": "2024-01-01T00:00:00.000000+00:00",
                    "deaf": false,
                    "mute": false,
                    "flags": 0,
                    "pending": false,
                }),
            )
        }
        ("POST", ["channels", channel, "messages"]) => match channel.parse::<u64>() {
            Ok(channel_id) => post_message(&shared, channel_id, &request.body).await,
            Err(_) => json_response(404, error_body(404)),
        },
        ("PUT", ["applications", a, "commands"]) if *a == app => {
            put_commands(&shared, None, &request.body)
        }
        ("PUT", ["applications", a, "guilds", guild, "commands"]) if *a == app => {
            match guild.parse::<u64>() {
                Ok(guild_id) => put_commands(&shared, Some(guild_id), &request.body),
                Err(_) => error_response(404, "Unknown Guild", 10004),
            }
        }
        ("GET", ["applications", a, "commands"]) if *a == app => {
            let global = shared.lock().commands.get(&None).cloned();
            json_response(200, json!(global.unwrap_or_default()))
        }
        ("GET", ["applications", a, "guilds", guild, "commands"]) if *a == app => {
            let guild_id = guild.parse::<u64>().ok();
            let commands = shared.lock().commands.get(&guild_id).cloned();
            json_response(200, json!(commands.unwrap_or_default()))
        }
        ("POST", ["interactions", id, token, "callback"]) => {
            interaction_callback(&shared, id, token, &request.body)
        }
        ("POST", ["webhooks", a, token]) if *a == app => followup(&shared, token, &request.body),
        ("PATCH", ["webhooks", a, token, "messages", "@original"]) if *a == app => {
            edit_original(&shared, token, &request.body)
        }
        ("DELETE", ["webhooks", a, token, "messages", "@original"]) if *a == app => {
            let deleted = shared.update(|inner| {
                let record = inner.interactions.iter_mut().find(|i| i.token == *token)?;
                record.original.take()
            });
            match deleted {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => error_response(404, "Unknown Message", 10008),
            }
        }
        ("GET", ["webhooks", a, token, "messages", "@original"]) if *a == app => {
            let inner = shared.lock();
            let record = inner.interactions.iter().find(|i| i.token == *token);
            match record.and_then(|i| i.original.clone()) {
                Some(original) => json_response(200, original),
                None => error_response(404, "Unknown Message", 10008),
            }
        }
        _ => unexpected(&shared, request),
    }
}

fn unexpected(shared: &Shared, request: RecordedRequest) -> Response {
    shared.update(|inner| inner.unexpected.push(request));
    json_response(404, json!({"message": "404: Not Found", "code": 0}))
}

fn guild_channel(id: u64, kind: u64) -> Value {
    json!({
        "id": id.to_string(),
        "type": kind,
        "guild_id": GUILD_ID.to_string(),
        "position": 0,
        "permission_overwrites": [],
        "name": format!("channel-{id}"),
        "topic": null,
        "nsfw": false,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "parent_id": null,
    })
}

fn role(id: u64, name: &str, permissions: u64, mentionable: bool) -> Value {
    json!({
        "id": id.to_string(),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": 0,
        "permissions": permissions.to_string(),
        "managed": false,
        "mentionable": mentionable,
        "flags": 0,
    })
}

fn guild_roles() -> Vec<Value> {
    vec![
        role(GUILD_ID, "@everyone", EVERYONE_PERMISSIONS, false),
        role(MENTIONABLE_ROLE_ID, "backup-team", 0, true),
        role(QUIET_ROLE_ID, "quiet", 0, false),
    ]
}

fn guild_object() -> Value {
    json!({
        "id": GUILD_ID.to_string(),
        "name": "test server",
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": OWNER_USER_ID.to_string(),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": guild_roles(),
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 250000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
    })
}

fn application_object(application_id: u64) -> Value {
    json!({
        "id": application_id.to_string(),
        "name": "restorewatch-test",
        "icon": null,
        "description": "",
        "bot_public": false,
        "bot_require_code_grant": false,
        "verify_key": "0000",
        "flags": 0,
        "team": null,
        "owner": {
            "id": OWNER_USER_ID.to_string(),
            "username": "owner",
            "discriminator": "0",
            "global_name": null,
            "avatar": null,
        },
    })
}

async fn post_message(shared: &Shared, channel_id: u64, body: &Value) -> Response {
    let delay = shared.lock().post_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (scripted, forbidden, kind) = {
        let mut inner = shared.lock();
        let scripted = inner
            .scripts
            .get_mut(&channel_id)
            .and_then(VecDeque::pop_front);
        let kind = inner.channel_types.get(&channel_id).copied();
        (scripted, inner.forbidden.contains(&channel_id), kind)
    };
    let hang_after = scripted == Some(Scripted::AcceptThenHang);
    match &scripted {
        Some(Scripted::Hang) => {
            if let Err(gone) = hang(shared).await {
                return gone;
            }
        }
        Some(Scripted::AcceptThenHang | Scripted::AcceptThenDrop | Scripted::Accept) | None => {}
        Some(reply) => return scripted_response(reply),
    }
    if forbidden {
        return json_response(403, error_body(403));
    }
    if kind.is_some_and(|k| NO_MESSAGE_CHANNEL_TYPES.contains(&k)) {
        return error_response(400, "Cannot send messages in a non-text channel", 50008);
    }
    if let Err(error) = validate_message(body) {
        return error.into_response();
    }

    let nonce = body.get("nonce").filter(|n| !n.is_null()).cloned();
    let enforce_nonce = body.get("enforce_nonce") == Some(&Value::Bool(true));
    let message = shared.update(|inner| {
        let now = Instant::now();
        let remembered = |at: &Instant| match inner
            .nonce_memory
            .unwrap_or(NonceMemory::Window(NONCE_WINDOW))
        {
            NonceMemory::Forever => true,
            NonceMemory::Off => false,
            NonceMemory::Window(window) => now.duration_since(*at) < window,
        };
        if let (true, Some(nonce)) = (enforce_nonce, &nonce) {
            let earlier = inner
                .messages
                .iter()
                .zip(&inner.created_at)
                .find(|((c, m), at)| {
                    *c == channel_id && m.get("nonce") == Some(nonce) && remembered(at)
                });
            if let Some(((_, earlier), _)) = earlier {
                return earlier.clone();
            }
        }
        let id = inner.snowflake();
        let mut message = message_object(shared, id, channel_id, body);
        if inner.strip_embeds.contains(&channel_id) {
            message["embeds"] = json!([]);
        }
        if let Some(nonce) = nonce {
            message["nonce"] = nonce;
        }
        inner.messages.push((channel_id, message.clone()));
        inner.created_at.push(now);
        message
    });
    if hang_after {
        if let Err(gone) = hang(shared).await {
            return gone;
        }
    }
    if scripted == Some(Scripted::AcceptThenDrop) {
        // Ends the connection's task without an answer (and without a panic message):
        // hyper drops the socket.
        std::panic::resume_unwind(Box::new("connection dropped after accept"));
    }
    json_response(200, message)
}

/// Waits for [`FakeDiscord::release_hangs`]; `Err` with a 503 when the fake stops first.
async fn hang(shared: &Shared) -> Result<(), Response> {
    let release = shared
        .release
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    tokio::select! {
        _ = release.cancelled() => Ok(()),
        _ = shared.shutdown.cancelled() => Err(json_response(503, error_body(503))),
    }
}

/// A message object as Discord returns it, built from a create-message style body.
fn message_object(shared: &Shared, id: u64, channel_id: u64, body: &Value) -> Value {
    let field = |name: &str, default: Value| body.get(name).cloned().unwrap_or(default);
    json!({
        "id": id.to_string(),
        "channel_id": channel_id.to_string(),
        "author": shared.bot_user(),
        "content": field("content", json!("")),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "edited_timestamp": null,
        "tts": field("tts", json!(false)),
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": field("embeds", json!([])),
        "components": field("components", json!([])),
        "pinned": false,
        "type": 0,
        "flags": field("flags", json!(0)),
    })
}

/// Discord's 400 `Invalid Form Body` for a field, in its nested `errors` shape.
fn invalid_form_body(path: &[&str], message: &str) -> Rejection {
    let mut errors = json!({"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": message}]});
    for key in path.iter().rev() {
        let mut level = serde_json::Map::new();
        level.insert((*key).to_owned(), errors);
        errors = Value::Object(level);
    }
    let body = json!({"message": "Invalid Form Body", "code": 50035, "errors": errors});
    Rejection { status: 400, body }
}

fn chars(value: Option<&Value>) -> usize {
    value
        .and_then(Value::as_str)
        .map_or(0, |s| s.chars().count())
}

/// Checks Discord's length limits on a message body; the 400 Discord would send otherwise.
fn validate_message(body: &Value) -> Result<(), Rejection> {
    let content = chars(body.get("content"));
    if content > MAX_CONTENT_CHARS {
        return Err(invalid_form_body(
            &["content"],
            "Must be 2000 or fewer in length.",
        ));
    }
    let no_embeds = Vec::new();
    let embeds = body
        .get("embeds")
        .and_then(Value::as_array)
        .unwrap_or(&no_embeds);
    let empty = ["attachments", "components", "sticker_ids", "poll"]
        .iter()
        .all(|k| {
            body.get(*k)
                .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty))
        });
    if content == 0 && embeds.is_empty() && empty {
        return Err(Rejection::new(400, "Cannot send an empty message", 50006));
    }
    if embeds.len() > MAX_EMBEDS {
        return Err(invalid_form_body(
            &["embeds"],
            "Must be 10 or fewer in length.",
        ));
    }
    validate_components(body.get("components"))?;
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        let i = i.to_string();
        let limits = [
            (embed.get("title"), MAX_EMBED_TITLE_CHARS, "title"),
            (
                embed.get("description"),
                MAX_EMBED_DESCRIPTION_CHARS,
                "description",
            ),
            (
                embed.pointer("/footer/text"),
                MAX_FOOTER_CHARS,
                "footer.text",
            ),
            (
                embed.pointer("/author/name"),
                MAX_AUTHOR_NAME_CHARS,
                "author.name",
            ),
        ];
        for (value, max, name) in limits {
            let n = chars(value);
            if n > max {
                let message = format!("Must be {max} or fewer in length.");
                return Err(invalid_form_body(&["embeds", &i, name], &message));
            }
            total += n;
        }
        let fields = embed.get("fields").and_then(Value::as_array);
        let fields = fields.map_or(&[][..], Vec::as_slice);
        if fields.len() > MAX_EMBED_FIELDS {
            let message = "Must be 25 or fewer in length.";
            return Err(invalid_form_body(&["embeds", &i, "fields"], message));
        }
        for (j, field) in fields.iter().enumerate() {
            let j = j.to_string();
            for (key, max) in [
                ("name", MAX_FIELD_NAME_CHARS),
                ("value", MAX_FIELD_VALUE_CHARS),
            ] {
                let n = chars(field.get(key));
                if n > max {
                    let message = format!("Must be {max} or fewer in length.");
                    let path = ["embeds", &i, "fields", &j, key];
                    return Err(invalid_form_body(&path, &message));
                }
                total += n;
            }
        }
    }
    if total > MAX_EMBED_TOTAL_CHARS {
        let message = "Embed size exceeds maximum size of 6000";
        return Err(invalid_form_body(&["embeds"], message));
    }
    Ok(())
}

/// Checks a message's `components` as Discord does for buttons: at most 5 action rows
/// (type 1) of 1 to 5 buttons (type 2), each with a style, a label of at most 80 characters
/// and (but for link buttons, style 5) a `custom_id` of 1 to 100 characters, unique in the
/// message. Anything else (select menus included: the bot posts none) is a 400.
fn validate_components(components: Option<&Value>) -> Result<(), Rejection> {
    let Some(components) = components.filter(|c| !c.is_null()) else {
        return Ok(());
    };
    let Some(rows) = components.as_array() else {
        return Err(invalid_form_body(&["components"], "Must be an array."));
    };
    if rows.len() > MAX_ACTION_ROWS {
        let message = "Must be 5 or fewer in length.";
        return Err(invalid_form_body(&["components"], message));
    }
    let mut ids = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let i = i.to_string();
        let buttons = row.get("components").and_then(Value::as_array);
        let buttons = match (row.get("type").and_then(Value::as_u64), buttons) {
            (Some(1), Some(b)) if !b.is_empty() && b.len() <= MAX_ROW_BUTTONS => b,
            _ => {
                let message = "An action row holds 1 to 5 components.";
                return Err(invalid_form_body(&["components", &i], message));
            }
        };
        for (j, button) in buttons.iter().enumerate() {
            let j = j.to_string();
            let path = ["components", &i, "components", &j];
            let style = button.get("style").and_then(Value::as_u64);
            if button.get("type").and_then(Value::as_u64) != Some(2)
                || !matches!(style, Some(1..=5))
            {
                return Err(invalid_form_body(&path, "Only buttons are expected here."));
            }
            if chars(button.get("label")) > MAX_BUTTON_LABEL_CHARS {
                return Err(invalid_form_body(&path, "Must be 80 or fewer in length."));
            }
            if style == Some(5) {
                continue;
            }
            let id = button.get("custom_id").and_then(Value::as_str);
            match id {
                Some(id) if !id.is_empty() && id.chars().count() <= MAX_CUSTOM_ID_CHARS => {
                    if !ids.insert(id.to_owned()) {
                        let message = "Component custom id cannot be duplicated";
                        return Err(invalid_form_body(&path, message));
                    }
                }
                _ => {
                    let message = "custom_id: must be 1 to 100 characters.";
                    return Err(invalid_form_body(&path, message));
                }
            }
        }
    }
    Ok(())
}

fn put_commands(shared: &Shared, guild: Option<u64>, body: &Value) -> Response {
    let Some(commands) = body.as_array() else {
        return error_response(400, "Invalid Form Body", 50035);
    };
    let echoed = shared.update(|inner| {
        let previous = inner.commands.get(&guild).cloned().unwrap_or_default();
        let mut echoed = Vec::new();
        for command in commands {
            let mut command = command.clone();
            // A bulk overwrite keeps the id of a command with the same name, as Discord does.
            let same = previous
                .iter()
                .find(|p| p.get("name") == command.get("name"));
            let id = match same.and_then(|p| p.get("id")).cloned() {
                Some(id) => id,
                None => json!(inner.snowflake().to_string()),
            };
            let version = json!(inner.snowflake().to_string());
            let object = command.as_object_mut().expect("command is an object");
            object.insert("id".into(), id);
            object.insert("version".into(), version);
            object.insert(
                "application_id".into(),
                json!(shared.application_id.to_string()),
            );
            object.insert("guild_id".into(), json!(guild.map(|g| g.to_string())));
            object.entry("type").or_insert(json!(1));
            object.entry("description").or_insert(json!(""));
            object
                .entry("default_member_permissions")
                .or_insert(Value::Null);
            object.entry("nsfw").or_insert(json!(false));
            echoed.push(command);
        }
        inner.commands.insert(guild, echoed.clone());
        echoed
    });
    json_response(200, json!(echoed))
}

fn interaction_callback(shared: &Shared, id: &str, token: &str, body: &Value) -> Response {
    let scripted = shared.update(|inner| inner.callback_scripts.pop_front());
    match &scripted {
        None | Some(Scripted::Accept) => {}
        Some(reply) => return scripted_response(reply),
    }
    let kind = body.get("type").and_then(Value::as_u64).unwrap_or(0);
    let data = body.get("data").cloned().unwrap_or(json!({}));
    if kind == 4 {
        if let Err(error) = validate_message(&data) {
            return error.into_response();
        }
    }
    let outcome = shared.update(|inner| {
        let message_id = inner.snowflake();
        let record = inner
            .interactions
            .iter_mut()
            .find(|i| i.id.to_string() == id && i.token == token);
        let Some(record) = record else {
            return Err(Rejection::new(404, "Unknown interaction", 10062));
        };
        if record.callback.is_some() {
            let message = "Interaction has already been acknowledged.";
            return Err(Rejection::new(400, message, 40060));
        }
        // 6 (DEFERRED_UPDATE_MESSAGE) and 7 (UPDATE_MESSAGE) answer a button press only.
        let pressed = record.message_id;
        if matches!(kind, 6 | 7) && pressed.is_none() {
            let message = "Interaction response type is not valid for this interaction.";
            return Err(Rejection::new(400, message, 40004));
        }
        if !matches!(kind, 4..=9) {
            return Err(invalid_form_body(
                &["type"],
                "Value is not a valid enum value.",
            ));
        }
        if kind == 7 {
            // The pressed message, edited in place.
            let pressed = pressed.map(|m| m.to_string());
            let message = inner
                .messages
                .iter_mut()
                .find(|(_, m)| m["id"].as_str() == pressed.as_deref());
            let Some((_, message)) = message else {
                return Err(Rejection::new(404, "Unknown Message", 10008));
            };
            let mut edited = message.clone();
            for key in ["content", "embeds", "components", "flags"] {
                if let Some(value) = data.get(key) {
                    edited[key] = value.clone();
                }
            }
            validate_message(&edited)?;
            edited["edited_timestamp"] = json!(chrono::Utc::now().to_rfc3339());
            *message = edited;
        }
        let record = inner
            .interactions
            .iter_mut()
            .find(|i| i.id.to_string() == id && i.token == token)
            .expect("found above");
        record.callback = Some(body.clone());
        // 4: reply now; 5: "thinking…", edited later. Both leave an original message.
        let content = match kind {
            4 => Some(data),
            5 => Some(json!({"flags": data.get("flags").cloned().unwrap_or(json!(0))})),
            _ => None,
        };
        if let Some(content) = content {
            let mut original = message_object(shared, message_id, record.channel_id, &content);
            original["type"] = json!(20);
            original["webhook_id"] = json!(shared.application_id.to_string());
            original["application_id"] = json!(shared.application_id.to_string());
            record.original = Some(original);
        }
        Ok(())
    });
    match outcome {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

fn followup(shared: &Shared, token: &str, body: &Value) -> Response {
    if let Err(error) = validate_message(body) {
        return error.into_response();
    }
    let outcome = shared.update(|inner| {
        let message_id = inner.snowflake();
        let record = inner.interactions.iter_mut().find(|i| i.token == token)?;
        let mut message = message_object(shared, message_id, record.channel_id, body);
        message["webhook_id"] = json!(shared.application_id.to_string());
        message["application_id"] = json!(shared.application_id.to_string());
        record.followups.push(message.clone());
        Some(message)
    });
    match outcome {
        Some(message) => json_response(200, message),
        None => error_response(404, "Unknown Webhook", 10015),
    }
}

fn edit_original(shared: &Shared, token: &str, body: &Value) -> Response {
    let outcome = shared.update(|inner| {
        let record = inner.interactions.iter_mut().find(|i| i.token == token)?;
        let original = record.original.as_mut()?;
        for key in ["content", "embeds", "components", "flags"] {
            if let Some(value) = body.get(key) {
                original[key] = value.clone();
            }
        }
        original["edited_timestamp"] = json!(chrono::Utc::now().to_rfc3339());
        Some(original.clone())
    });
    match outcome {
        Some(message) => match validate_message(&message) {
            Ok(()) => json_response(200, message),
            Err(error) => error.into_response(),
        },
        None => error_response(404, "Unknown Message", 10008),
    }
}

// ----- gateway -----------------------------------------------------------------------------

async fn serve_gateway(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    if shared.lock().gateway_down {
                        drop(stream);
                        continue;
                    }
                    tokio::spawn(gateway_session(stream, Arc::clone(&shared)));
                }
            }
        }
    }
}

/// One websocket connection: HELLO, then READY on IDENTIFY, RESUMED on RESUME, heartbeat
/// acks, and the dispatch events a test injects.
async fn gateway_session(stream: TcpStream, shared: Arc<Shared>) {
    let kick = shared
        .kick
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Dispatch>();
    let mut seq: u64 = 0;
    let hello = json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}});
    if sink.send(WsMessage::Text(hello.to_string())).await.is_err() {
        return;
    }
    loop {
        let outgoing = tokio::select! {
            _ = shared.shutdown.cancelled() => {
                let _ = sink.send(WsMessage::Close(None)).await;
                return;
            }
            // Gone without a word: the connection just drops.
            _ = kick.cancelled() => return,
            Some(dispatch) = rx.recv() => {
                seq += 1;
                json!({"op": 0, "s": seq, "t": dispatch.event, "d": dispatch.data})
            }
            frame = source.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    let payload: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    shared.update(|inner| inner.gateway_received.push(payload.clone()));
                    match payload.get("op").and_then(Value::as_u64) {
                        Some(1) => json!({"op": 11}),
                        Some(2) => {
                            let close = shared.lock().identify_close;
                            if let Some(code) = close {
                                let frame = CloseFrame {
                                    code: CloseCode::from(code),
                                    reason: "closed by the fake at IDENTIFY".into(),
                                };
                                let _ = sink.send(WsMessage::Close(Some(frame))).await;
                                return;
                            }
                            seq += 1;
                            let ready = ready_payload(&shared, &payload, seq);
                            shared.update(|inner| {
                                inner.shards.push(tx.clone());
                                inner.identified += 1;
                            });
                            ready
                        }
                        Some(6) => {
                            seq = payload.pointer("/d/seq").and_then(Value::as_u64).unwrap_or(seq);
                            seq += 1;
                            shared.update(|inner| {
                                inner.shards.push(tx.clone());
                                inner.identified += 1;
                            });
                            json!({"op": 0, "s": seq, "t": "RESUMED", "d": {}})
                        }
                        _ => continue,
                    }
                }
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        if sink
            .send(WsMessage::Text(outgoing.to_string()))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn ready_payload(shared: &Shared, identify: &Value, seq: u64) -> Value {
    let session_id = format!("fake-session-{seq}");
    json!({
        "op": 0,
        "s": seq,
        "t": "READY",
        "d": {
            "v": 10,
            "user": shared.bot_user(),
            "guilds": [],
            "session_id": session_id,
            "resume_gateway_url": shared.gateway_url,
            "shard": identify.pointer("/d/shard").cloned().unwrap_or(json!([0, 1])),
            "application": {"id": shared.application_id.to_string(), "flags": 0},
        },
    })
}
