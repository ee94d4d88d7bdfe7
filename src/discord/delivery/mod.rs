//! Delivery to Discord: [`DiscordSink`] posts outbox events to their channels, in order,
//! and tells the drain which ones Discord accepted.
//!
//! Requests are built with serenity's own routing (`Request::build`, so the path, the
//! `Authorization` header and `api_base` are serenity's) and sent with a reqwest client we
//! keep, because serenity's error for a 429 drops `retry_after`: here every status, header
//! and error body is seen.
//!
//! Per channel, events go in batches: the events one packed message carries. A batch (its
//! event ids; the nonce is derived from them) is written to a sled tree of its own BEFORE
//! its message is posted and reused on every later attempt, so a resend after a crash is the
//! same message with the same nonce, which `enforce_nonce` turns into a no-op at Discord. A
//! batch stays recorded after Discord accepted it, until its events have left the outbox:
//! a crash between Discord's answer and the drain's acknowledgement then re-offers events
//! the sink knows were posted, and it accepts them without posting again. Should the
//! restarted drain's window end inside a recorded batch, the batch's remaining events are
//! read from the outbox, so the resend is the same message under the same nonce.
//!
//! Failures: a 429 waits `retry_after` and retries; 5xx and transport errors back off
//! exponentially; either, when it persists, ends the drain with the events queued and rests
//! the sink for a while. 403/404 mean the channel refuses us: its events stay queued,
//! the reason is logged once and kept for `/status` ([`DiscordSink::refused_channels`]),
//! and the channel is tried again only after [`DeliveryTiming::refused_retry`]; other
//! channels carry on. So does a message Discord accepts but returns without its embeds:
//! the bot lacks Embed Links there ("missing Embed Links permission").
//!
//! A 401 is about the token, not the channel: Discord rejected it (reset, revoked, mistyped)
//! and would reject every request, and a storm of invalid requests earns a ban. So posting
//! stops for every channel, the error is logged once, `/status` shows it, and one post is
//! tried every [`DeliveryTiming::token_retry`] until the token works; nothing is dropped. A 400 means Discord rejects the message itself, and resending it
//! would fail the same way: a batch of several events is retried one event per message, and
//! an event rejected on its own is logged with Discord's reason, counted
//! ([`DiscordSink::rejected_events`]) and dropped, so it cannot block its channel forever.

use super::routing::Routes;
use crate::config::{AlertSettings, DiscordSettings};
use crate::escalation::pings;
use crate::event::Event;
use crate::render::{
    alert_buttons, pack_items, render_event, Embed, OutMessage, PackItem, RenderOptions,
    ACK_FIELD_NAME,
};
use crate::sink::{Sink, SinkError};
use crate::store::Store;
use anyhow::Context as _;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serenity::all::{ChannelId, CreateAllowedMentions, CreateMessage, Nonce, RoleId};
use serenity::http::{Http, HttpBuilder, LightMethod, Request, Route};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// How many of a channel's latest messages are read back to find the message of an
/// interrupted post (one drain window's batches fit well inside).
const RECENT_MESSAGES_CHECKED: usize = 50;

/// The sled tree holding batches (see the module docs).
const BATCH_TREE: &str = "discord_batches";
/// A request that has not been answered after this long counts as a transport error.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// A 429 without a `retry_after` or `Retry-After` waits this long.
const DEFAULT_RETRY_AFTER_MS: u64 = 1000;
/// The longest wait a 429 can ask for; a longer, negative or unreadable (NaN) one counts as
/// this, so a bad value can neither panic nor stall delivery for ever.
const MAX_RETRY_AFTER_SECS: u64 = 3600;
/// The refusal reason of a channel where messages arrive without their embeds.
pub const MISSING_EMBED_LINKS: &str = "missing Embed Links permission";

/// What delivery says while Discord rejects the bot token: the log line, the drain's error
/// (which `once` prints before exiting 1) and `/status`.
pub const TOKEN_REJECTED: &str = "Discord rejected the bot token (401 Unauthorized), so nothing \
    is posted to any channel. Set a valid token in RESTOREWATCH_DISCORD_TOKEN (or \
    discord.token_file / discord.token); if it was reset, copy the new one from the Developer \
    Portal (Bot → Reset Token). Events stay queued and are posted once the token works";

/// How much of Discord's error body a logged reason keeps (characters).
const REASON_MAX_CHARS: usize = 300;

/// How long delivery waits, and how often it tries, when Discord does not accept a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryTiming {
    /// Posts of one message answered 429 before the drain gives up (events stay queued).
    pub rate_limit_attempts: u32,
    /// The longest `retry_after` waited inside one drain; a longer one ends the drain and
    /// rests the sink for that long instead.
    pub max_retry_after: Duration,
    /// Posts of one message failing with 5xx or a transport error before the drain gives up.
    pub server_error_attempts: u32,
    /// The wait after the first such failure; it doubles with each further one.
    pub backoff_initial: Duration,
    /// The cap on that wait, and how long the sink rests after giving up.
    pub backoff_max: Duration,
    /// How long a channel that refused us (403/404, no Embed Links) rests before the next
    /// try.
    pub refused_retry: Duration,
    /// After Discord rejected the token (401): how long until the next post tries it again.
    pub token_retry: Duration,
}

impl Default for DeliveryTiming {
    fn default() -> Self {
        DeliveryTiming {
            rate_limit_attempts: 5,
            max_retry_after: Duration::from_secs(60),
            server_error_attempts: 6,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            refused_retry: Duration::from_secs(10 * 60),
            token_retry: Duration::from_secs(10 * 60),
        }
    }
}

impl DeliveryTiming {
    /// The wait after the `failures`-th failure in a row (1, 2, 4 … seconds, capped).
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// Posts events to Discord; see the module docs.
pub struct DiscordSink {
    /// Holds the token and the api base; its rate limiter is off when an api base is set.
    http: Http,
    client: reqwest::Client,
    routes: Routes,
    render: RenderOptions,
    /// `[alerts]`: which alerts ping the role.
    alerts: AlertSettings,
    mention_role: Option<RoleId>,
    store: Store,
    batches: sled::Tree,
    timing: DeliveryTiming,
    state: Mutex<State>,
    /// This store's random id, part of every nonce.
    install: String,
}

/// What the sink remembers between drains (not across restarts: a restart retries at once).
#[derive(Default)]
struct State {
    refused: BTreeMap<ChannelId, Refusal>,
    /// After giving up on a 429 or 5xx: no posts before this instant.
    resting_until: Option<(Instant, String)>,
    /// Discord rejected the token (401): no posts before this instant.
    token_rejected: Option<Instant>,
    rejected: u64,
}

struct Refusal {
    reason: String,
    retry_at: Instant,
}

/// A batch: the events one packed message carries (more than one message only when a single
/// event is too big for one, which today's rendering never makes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Batch {
    channel: u64,
    ids: Vec<u64>,
    /// Messages of the batch Discord accepted so far.
    parts_sent: usize,
    /// Every message accepted (or the batch dropped after a 400).
    done: bool,
}

impl Batch {
    /// Derived from the store's install id and the event ids only, so the same batch
    /// always gets the same nonce: `{install}{hash of all ids}`, plus `.{part}` after the
    /// first message. Every id counts, so two batches that share their first event and
    /// their size (a batch split after a 400) never share a nonce. The install id keeps two
    /// bots sharing a token (or a wiped state directory) from reusing each other's nonces;
    /// it is shortened only as far as Discord's 25-character limit needs.
    fn nonce(&self, install: &str, part: usize) -> String {
        use std::hash::Hasher as _;
        // SipHash-1-3 with fixed keys: the same ids give the same hash in every release.
        let mut hasher = siphasher::sip::SipHasher13::new();
        for id in &self.ids {
            hasher.write_u64(*id);
        }
        let hash = hasher.finish() >> (64 - NONCE_HASH_BITS);
        let mut tail = format!("{hash:0width$x}", width = NONCE_HASH_BITS as usize / 4);
        if part > 0 {
            tail.push_str(&format!(".{part}"));
        }
        let room = NONCE_MAX_CHARS.saturating_sub(tail.len());
        let prefix: String = install.chars().take(room).collect();
        format!("{prefix}{tail}")
    }

    fn key(&self) -> [u8; 16] {
        batch_key(
            ChannelId::new(self.channel),
            self.ids.first().copied().unwrap_or_default(),
        )
    }
}

/// Discord's limit on a message nonce (characters).
const NONCE_MAX_CHARS: usize = 25;
/// Bits of the id hash in a nonce: 13 hex digits, leaving room for the install id and a
/// part number.
const NONCE_HASH_BITS: u32 = 52;

/// Batches are keyed by channel and first event id.
fn batch_key(channel: ChannelId, first_id: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&channel.get().to_be_bytes());
    key[8..].copy_from_slice(&first_id.to_be_bytes());
    key
}

/// One answer to one post.
enum Reply {
    Accepted,
    RateLimited(Duration),
    /// 400/413: this message will never be accepted.
    Rejected(String),
    /// 403/404, or accepted without its embeds: the channel does not let us post.
    Refused(String),
    /// 401: Discord rejected the token.
    Unauthorized(String),
    /// 5xx, another status, or no answer at all.
    Failed(String),
}

/// How posting one message (with its retries) ended.
enum Posted {
    Accepted,
    Rejected(String),
    Refused(String),
    Unauthorized(String),
    /// Given up for this drain; rest this long.
    Unavailable(String, Duration),
}

/// How a channel's part of a drain ended.
enum ChannelEnd {
    Done,
    Refused(String),
    Unauthorized(String),
    Unavailable(String, Duration),
}

impl DiscordSink {
    /// Builds the sink from the `[discord]` settings: serenity's `Http` (pointed at
    /// `api_base`, with serenity's rate limiter off, when one is set; we honour 429s
    /// ourselves) and the batch tree in `store`. The role ping of `render` is replaced by
    /// the configured role, so the ping in a message and the role it allows always agree.
    pub fn new(
        settings: &DiscordSettings,
        store: &Store,
        mut render: RenderOptions,
    ) -> anyhow::Result<DiscordSink> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .build()
            .context("building the Discord HTTP client")?;
        let mut builder = HttpBuilder::new(settings.token.expose_secret()).client(client.clone());
        if let Some(base) = &settings.api_base {
            builder = builder.proxy(base.as_str()).ratelimiter_disabled(true);
        }
        let http = builder.build();
        // Catch an unusable token (say, a newline in it) or api base now, not per message;
        // the error names neither, so the token cannot leak through it.
        let _unsent = message_request(settings.alert_channel, Vec::new())
            .build(&client, http.token(), http.proxy.as_deref())
            .context("the discord token or api_base cannot make a request")?;
        render.mention_role = settings.mention_role.map(RoleId::get);
        Ok(DiscordSink {
            http,
            client,
            routes: Routes::from_settings(settings),
            render,
            alerts: AlertSettings::default(),
            mention_role: settings.mention_role,
            store: store.clone(),
            batches: store
                .tree(BATCH_TREE)
                .context("opening the delivery tree")?,
            timing: DeliveryTiming::default(),
            state: Mutex::new(State::default()),
            install: store.install_id().context("reading the install id")?,
        })
    }

    /// Pings the role as `alerts.ping` says.
    pub fn with_alerts(mut self, alerts: AlertSettings) -> Self {
        self.alerts = alerts;
        self
    }

    /// Posts cycle summaries and roll-ups to `channel` (`summary.channel`).
    pub fn with_summary_channel(mut self, channel: ChannelId) -> Self {
        self.routes.summary = channel;
        self
    }

    /// Replaces the default waits and attempt counts.
    pub fn with_timing(mut self, timing: DeliveryTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Channels that refused our messages (401/403/404) and Discord's reason, for `/status`
    /// and the digest. Their events stay queued; a channel leaves this list once it accepts
    /// a message again.
    pub fn refused_channels(&self) -> Vec<(ChannelId, String)> {
        let state = self.state();
        let refused = state.refused.iter();
        refused.map(|(c, r)| (*c, r.reason.clone())).collect()
    }

    /// Events dropped since start because Discord rejected them (400) even on their own.
    pub fn rejected_events(&self) -> u64 {
        self.state().rejected
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain bookkeeping; a panic elsewhere must not stop delivery.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, batch: &Batch) -> Result<(), SinkError> {
        let bytes = serde_json::to_vec(batch).map_err(|e| SinkError(e.to_string()))?;
        self.batches
            .insert(batch.key(), bytes)
            .map_err(|e| SinkError(format!("saving a delivery batch: {e}")))?;
        // On disk before the post: a crash after it must find the same batch (and nonce).
        // Synchronous on purpose: sled's async flush waits outside tokio.
        self.batches
            .flush()
            .map_err(|e| SinkError(format!("saving a delivery batch: {e}")))?;
        Ok(())
    }

    /// A recorded batch; one that does not decode is quarantined (`None`).
    fn read_batch(&self, key: &[u8], value: &[u8]) -> Result<Option<Batch>, SinkError> {
        match serde_json::from_slice::<Batch>(value) {
            Ok(batch) => Ok(Some(batch)),
            Err(e) => {
                self.store
                    .quarantine(&self.batches, key, value, &e.to_string())
                    .map_err(|e| SinkError(e.to_string()))?;
                Ok(None)
            }
        }
    }

    /// Forgets batches whose events have left the outbox. The drain offers a contiguous
    /// slice of the outbox, so a batch id inside the offered range but not offered is gone;
    /// and so is any id below the oldest event still queued.
    fn forget_delivered(&self, offered: &[Event]) -> Result<(), SinkError> {
        let oldest = self
            .store
            .pending_events(1)
            .map_err(|e| SinkError(e.to_string()))?
            .first()
            .map(|e| e.id);
        let (Some(low), Some(high)) = (
            offered.iter().map(|e| e.id).min(),
            offered.iter().map(|e| e.id).max(),
        ) else {
            return Ok(());
        };
        for kv in self.batches.iter() {
            let (key, value) = kv.map_err(|e| SinkError(e.to_string()))?;
            let Some(batch) = self.read_batch(&key, &value)? else {
                continue;
            };
            let below_queue = oldest.is_none_or(|o| batch.ids.iter().all(|id| *id < o));
            let gone_from_slice = batch
                .ids
                .iter()
                .all(|id| (low..=high).contains(id) && !offered.iter().any(|e| e.id == *id));
            if below_queue || gone_from_slice {
                self.batches
                    .remove(key)
                    .map_err(|e| SinkError(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The batch starting at `events[0]`: the recorded one, or a new one (saved). A
    /// recorded batch may reach past `events` (the drain's window now ends inside it).
    /// The flag says whether the batch was recorded before: a post of it may have been
    /// cut short (a crash, a lost answer) after Discord created the message.
    fn batch_at(&self, channel: ChannelId, events: &[&Event]) -> Result<(Batch, bool), SinkError> {
        let key = batch_key(channel, events[0].id);
        let recorded = match self
            .batches
            .get(key)
            .map_err(|e| SinkError(e.to_string()))?
        {
            Some(v) => self.read_batch(&key, &v)?,
            None => None,
        };
        if let Some(batch) = recorded {
            // Offered in order as far as the window goes: the same batch.
            let offered = events.iter().map(|e| e.id);
            if batch.ids.iter().copied().zip(offered).all(|(a, b)| a == b) {
                return Ok((batch, true));
            }
            // A different set under the same first event cannot have been posted whole;
            // start afresh.
        }
        let first = pack_items(self.items(events), &self.render)
            .into_iter()
            .next()
            .map_or(events.len(), |p| p.items.end);
        let batch = Batch {
            channel: channel.get(),
            ids: events[..first].iter().map(|e| e.id).collect(),
            parts_sent: 0,
            done: false,
        };
        self.save(&batch)?;
        Ok((batch, false))
    }

    /// The events as packing items: embeds, ping, and a failure alert's buttons.
    fn items(&self, events: &[&Event]) -> Vec<PackItem> {
        events
            .iter()
            .map(|e| PackItem {
                ping: pings(e, &self.alerts),
                embeds: render_event(e, &self.render),
                buttons: alert_buttons(e),
            })
            .collect()
    }

    /// Posts the channel's events in order, batch by batch; accepted ids go to `accepted`.
    async fn deliver_channel(
        &self,
        channel: ChannelId,
        events: &[&Event],
        accepted: &mut Vec<u64>,
    ) -> Result<ChannelEnd, SinkError> {
        let mut rest = events;
        while !rest.is_empty() {
            let (mut batch, resumed) = self.batch_at(channel, rest)?;
            // A batch recorded before a restart may reach past this drain's window (the
            // window now ends inside it). Its message must be the same as before, so its
            // missing events are read from the outbox rather than the batch being cut.
            let count = batch.ids.len().min(rest.len());
            let beyond = if batch.ids.len() > rest.len() {
                self.store
                    .events_by_id(&batch.ids[rest.len()..])
                    .map_err(|e| SinkError(e.to_string()))?
            } else {
                Vec::new()
            };
            if !batch.done {
                let whole: Vec<&Event> = rest[..count].iter().copied().chain(&beyond).collect();
                let messages = pack_items(self.items(&whole), &self.render);
                let mut rejected = None;
                for (part, packed) in messages.iter().enumerate().skip(batch.parts_sent) {
                    // The first part of a resumed batch may already be in the channel:
                    // Discord's nonce check covers only a few minutes, so look first.
                    let posted = if resumed
                        && part == batch.parts_sent
                        && self.already_posted(channel, &packed.message).await
                    {
                        tracing::info!(
                            channel = channel.get(),
                            events = ?batch.ids,
                            "found the message of an interrupted post in the channel; not posting it again"
                        );
                        Posted::Accepted
                    } else {
                        self.post_message(
                            channel,
                            &packed.message,
                            batch.nonce(&self.install, part),
                        )
                        .await
                    };
                    match posted {
                        Posted::Accepted => batch.parts_sent = part + 1,
                        Posted::Rejected(reason) => {
                            rejected = Some(reason);
                            break;
                        }
                        Posted::Refused(reason) => return Ok(ChannelEnd::Refused(reason)),
                        Posted::Unauthorized(reason) => {
                            return Ok(ChannelEnd::Unauthorized(reason))
                        }
                        Posted::Unavailable(reason, rest_for) => {
                            return Ok(ChannelEnd::Unavailable(reason, rest_for))
                        }
                    }
                    self.save(&batch)?;
                }
                if let Some(reason) = rejected {
                    if batch.ids.len() > 1 && batch.parts_sent == 0 {
                        // Discord created nothing, so a smaller set is safe: find the event
                        // it rejects by sending one at a time.
                        batch.ids.truncate(1);
                        self.save(&batch)?;
                        continue;
                    }
                    tracing::error!(
                        channel = channel.get(),
                        events = ?batch.ids,
                        %reason,
                        "Discord rejects this message; dropping it, a resend would fail the same way"
                    );
                    self.state().rejected += batch.ids.len() as u64;
                }
                batch.done = true;
                self.save(&batch)?;
            }
            // The ids past the window are accepted too: the drain acknowledges them.
            accepted.extend_from_slice(&batch.ids);
            rest = &rest[count..];
        }
        Ok(ChannelEnd::Done)
    }

    /// Posts one message, retrying 429s, 5xx and transport errors as [`DeliveryTiming`]
    /// says.
    async fn post_message(
        &self,
        channel: ChannelId,
        message: &OutMessage,
        nonce: String,
    ) -> Posted {
        let body = match message_body(message, self.mention_role, nonce) {
            Ok(body) => body,
            Err(e) => return Posted::Rejected(format!("cannot encode the message: {e}")),
        };
        let (mut limited, mut failed) = (0, 0);
        let with_embeds = !message.embeds.is_empty();
        loop {
            match self.post(channel, body.clone(), with_embeds).await {
                Reply::Accepted => return Posted::Accepted,
                Reply::Rejected(reason) => return Posted::Rejected(reason),
                Reply::Refused(reason) => return Posted::Refused(reason),
                Reply::Unauthorized(reason) => return Posted::Unauthorized(reason),
                Reply::RateLimited(wait) => {
                    limited += 1;
                    let reason = format!("rate limited, retry after {wait:?}");
                    if wait > self.timing.max_retry_after
                        || limited >= self.timing.rate_limit_attempts
                    {
                        return Posted::Unavailable(reason, wait);
                    }
                    tracing::debug!(channel = channel.get(), "{reason}");
                    tokio::time::sleep(wait).await;
                }
                Reply::Failed(reason) => {
                    failed += 1;
                    if failed >= self.timing.server_error_attempts {
                        return Posted::Unavailable(reason, self.timing.backoff_max);
                    }
                    let wait = self.timing.backoff(failed);
                    tracing::debug!(channel = channel.get(), %reason, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Whether the channel's latest messages hold one of ours with exactly this text:
    /// the message of a post that was cut short after Discord created it. Any failure to
    /// read the channel (no Read Message History, say) answers no, and the post goes out
    /// again under the same nonce.
    async fn already_posted(&self, channel: ChannelId, message: &OutMessage) -> bool {
        let body = message_body(message, None, String::new());
        let Some(wanted) = body
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            return false;
        };
        let request = Request::new(
            Route::ChannelMessages {
                channel_id: channel,
            },
            LightMethod::Get,
        )
        .params(Some(vec![("limit", RECENT_MESSAGES_CHECKED.to_string())]));
        let request =
            match request.build(&self.client, self.http.token(), self.http.proxy.as_deref()) {
                Ok(request) => request,
                Err(_) => return false,
            };
        let recent: Value = match request.send().await {
            Ok(response) if response.status().is_success() => match response.bytes().await {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                Err(_) => Value::Null,
            },
            Ok(response) => {
                tracing::debug!(
                    channel = channel.get(),
                    status = %response.status(),
                    "cannot read the channel back; posting again under the same nonce"
                );
                Value::Null
            }
            Err(_) => Value::Null,
        };
        recent
            .as_array()
            .is_some_and(|messages| messages.iter().any(|m| same_message(m, &wanted)))
    }

    /// One `POST /channels/{id}/messages`; `with_embeds`: the message has embeds, which
    /// Discord's answer must show.
    async fn post(&self, channel: ChannelId, body: Vec<u8>, with_embeds: bool) -> Reply {
        let request = match message_request(channel, body).build(
            &self.client,
            self.http.token(),
            self.http.proxy.as_deref(),
        ) {
            Ok(request) => request,
            Err(e) => return Reply::Failed(format!("building the request: {e}")),
        };
        let response = request.send().await;
        crate::metrics::discord_reply(response.as_ref().ok().map(|r| r.status().as_u16()));
        let response = match response {
            Ok(response) => response,
            Err(e) => return Reply::Failed(format!("no answer from Discord: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            // Without Embed Links, Discord creates the message but drops its embeds: the
            // alert did not arrive. An answer that can't be read counts as accepted.
            let created: Value = match response.bytes().await {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let stripped = created["embeds"].as_array().is_some_and(Vec::is_empty);
            if with_embeds && stripped {
                return Reply::Refused(MISSING_EMBED_LINKS.to_owned());
            }
            return Reply::Accepted;
        }
        let header_wait = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let body: Value = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let reason = describe(status, &body, self.http.token());
        match status.as_u16() {
            429 => {
                let secs = body["retry_after"].as_f64().or(header_wait);
                Reply::RateLimited(retry_wait(secs))
            }
            400 | 413 => Reply::Rejected(reason),
            401 => Reply::Unauthorized(reason),
            403 | 404 => Reply::Refused(reason),
            _ => Reply::Failed(reason),
        }
    }
}

impl Sink for DiscordSink {
    async fn deliver(&self, events: &[Event]) -> Result<Vec<u64>, SinkError> {
        let result = self.deliver_channels(events).await;
        self.publish_refusals();
        result
    }
}

impl DiscordSink {
    /// Writes the channels that refuse us to the store, where `/status` and the digest
    /// read them.
    fn publish_refusals(&self) {
        let token = self
            .token_rejected()
            .then(|| format!("every channel: {TOKEN_REJECTED}"));
        let channels = self.refused_channels().into_iter();
        let channels = channels.map(|(channel, reason)| format!("channel {channel}: {reason}"));
        let refused: Vec<String> = token.into_iter().chain(channels).collect();
        if let Err(e) = self.store.set_refused_destinations(&refused) {
            tracing::warn!(error = %e, "cannot record the refusing channels");
        }
    }

    async fn deliver_channels(&self, events: &[Event]) -> Result<Vec<u64>, SinkError> {
        if self
            .state()
            .token_rejected
            .is_some_and(|retry_at| Instant::now() < retry_at)
        {
            return Err(SinkError(TOKEN_REJECTED.to_owned()));
        }
        if let Some((until, reason)) = &self.state().resting_until {
            if Instant::now() < *until {
                return Err(SinkError(format!("Discord unavailable: {reason}")));
            }
        }
        self.forget_delivered(events)?;
        let mut accepted = Vec::with_capacity(events.len());
        for (channel, list) in self.routes.split(events) {
            let resting = self.state().refused.get(&channel).map(|r| r.retry_at);
            if resting.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            let end = self.deliver_channel(channel, &list, &mut accepted).await?;
            // Only an answer Discord gave to an authenticated post proves the token.
            let token_works = matches!(end, ChannelEnd::Done | ChannelEnd::Refused(_));
            if token_works && self.state().token_rejected.take().is_some() {
                tracing::info!("Discord accepts the bot token again; delivery resumes");
            }
            match end {
                ChannelEnd::Done => {
                    if self.state().refused.remove(&channel).is_some() {
                        tracing::info!(channel = channel.get(), "channel accepts messages again");
                    }
                }
                ChannelEnd::Refused(reason) => self.refuse(channel, reason),
                ChannelEnd::Unauthorized(reason) => {
                    self.reject_token(&reason);
                    if accepted.is_empty() {
                        return Err(SinkError(TOKEN_REJECTED.to_owned()));
                    }
                    break;
                }
                ChannelEnd::Unavailable(reason, rest_for) => {
                    tracing::warn!(%reason, ?rest_for, "Discord unavailable; events stay queued");
                    self.state().resting_until = Some((Instant::now() + rest_for, reason.clone()));
                    if accepted.is_empty() {
                        return Err(SinkError(format!("Discord unavailable: {reason}")));
                    }
                    break;
                }
            }
        }
        Ok(accepted)
    }
}

impl DiscordSink {
    /// Whether Discord rejects the bot token (a 401 not followed by an accepted post yet).
    pub fn token_rejected(&self) -> bool {
        self.state().token_rejected.is_some()
    }

    /// Stops posting until the token retry is due; logs at error only the first time, so a
    /// bad token costs one log line, not one per cycle.
    fn reject_token(&self, reason: &str) {
        let retry_at = Instant::now() + self.timing.token_retry;
        let was = self.state().token_rejected.replace(retry_at);
        if was.is_none() {
            tracing::error!(%reason, retry_in = ?self.timing.token_retry, "{TOKEN_REJECTED}");
        } else {
            tracing::debug!(%reason, "the bot token is still rejected");
        }
    }

    /// Notes a channel's refusal; logs only when it is new or its reason changed.
    fn refuse(&self, channel: ChannelId, reason: String) {
        let retry_at = Instant::now() + self.timing.refused_retry;
        let mut state = self.state();
        let known = state
            .refused
            .get(&channel)
            .is_some_and(|r| r.reason == reason);
        if !known {
            tracing::warn!(
                channel = channel.get(),
                %reason,
                retry_in = ?self.timing.refused_retry,
                "channel refuses our messages; its events stay queued"
            );
        }
        state.refused.insert(channel, Refusal { reason, retry_at });
    }
}

/// serenity's route for posting a message, with `body` as JSON.
fn message_request(channel: ChannelId, body: Vec<u8>) -> Request<'static> {
    Request::new(
        Route::ChannelMessages {
            channel_id: channel,
        },
        LightMethod::Post,
    )
    .body(Some(body))
}

/// The JSON of a create-message request: content, embeds, the alerts' button rows, the
/// nonce with `enforce_nonce`, and `allowed_mentions` on every message: exactly the
/// configured role when the message pings it, nothing at all otherwise.
fn message_body(
    message: &OutMessage,
    role: Option<RoleId>,
    nonce: String,
) -> serde_json::Result<Vec<u8>> {
    let mut allowed = CreateAllowedMentions::new();
    if let (true, Some(role)) = (message.mention_role, role) {
        allowed = allowed.roles([role]);
    }
    let mut create = CreateMessage::new()
        .embeds(message.embeds.iter().map(Embed::to_serenity).collect())
        .allowed_mentions(allowed)
        .nonce(Nonce::String(nonce))
        .enforce_nonce(true);
    if !message.content.is_empty() {
        create = create.content(&message.content);
    }
    if !message.rows.is_empty() {
        create = create.components(message.rows.iter().map(|r| r.to_serenity()).collect());
    }
    serde_json::to_vec(&create)
}

/// Whether `found` (a message read back from Discord) is ours and says what `wanted` (our
/// create-message body) says: the same content and the same embed titles, descriptions
/// and field values, in order. Discord adds to an embed (its type, say) but keeps these.
/// Buttons are not compared, and neither is the field an acknowledgement adds to an
/// alert (its name is [`ACK_FIELD_NAME`]): a message someone acknowledged before the
/// read-back is still ours.
fn same_message(found: &Value, wanted: &Value) -> bool {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let embeds = |m: &Value| -> Vec<(String, String, Vec<String>)> {
        m["embeds"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        let fields = e["fields"]
                            .as_array()
                            .map(|f| {
                                f.iter()
                                    .filter(|f| f["name"] != ACK_FIELD_NAME)
                                    .map(|f| text(&f["value"]))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (text(&e["title"]), text(&e["description"]), fields)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    found["author"]["bot"] == Value::Bool(true)
        && text(&found["content"]) == text(&wanted["content"])
        && embeds(found) == embeds(wanted)
}

/// A 429's wait from `retry_after` seconds: a missing value waits a second; a negative,
/// NaN, infinite or longer one than [`MAX_RETRY_AFTER_SECS`] waits that cap.
fn retry_wait(secs: Option<f64>) -> Duration {
    let cap = Duration::from_secs(MAX_RETRY_AFTER_SECS);
    match secs {
        None => Duration::from_millis(DEFAULT_RETRY_AFTER_MS),
        Some(s) if (0.0..=cap.as_secs_f64()).contains(&s) => Duration::from_secs_f64(s),
        Some(_) => cap,
    }
}

/// `403 Forbidden: Missing Access (code 50001)`, plus the field errors of a 400, cut short.
/// The token (`authorization`, with or without its `Bot ` prefix) is blanked out first,
/// should an error body (or a proxy's) quote the request: reasons are logged and shown.
fn describe(status: reqwest::StatusCode, body: &Value, authorization: &str) -> String {
    let mut reason = status.to_string();
    if let Some(message) = body["message"].as_str() {
        reason.push_str(&format!(": {message}"));
    }
    if let Some(code) = body["code"].as_u64().filter(|c| *c != 0) {
        reason.push_str(&format!(" (code {code})"));
    }
    if let Some(errors) = body.get("errors") {
        reason.push_str(&format!(" {errors}"));
    }
    let bare = authorization
        .strip_prefix("Bot ")
        .or_else(|| authorization.strip_prefix("Bearer "))
        .unwrap_or(authorization)
        .trim();
    if !bare.is_empty() {
        reason = reason.replace(bare, "[REDACTED]");
    }
    reason.chars().take(REASON_MAX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(mention_role: bool) -> OutMessage {
        OutMessage {
            content: if mention_role {
                "<@&42> 1 alert".into()
            } else {
                String::new()
            },
            embeds: vec![Embed {
                title: "Restore failed".into(),
                ..Embed::default()
            }],
            mention_role,
            rows: Vec::new(),
        }
    }

    fn body(message: &OutMessage, role: Option<u64>) -> Value {
        let bytes = message_body(message, role.map(RoleId::new), "rw1-1".into()).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_ping_allows_exactly_the_role_and_nothing_else() {
        let b = body(&message(true), Some(42));
        assert_eq!(b["content"], "<@&42> 1 alert");
        assert_eq!(
            b["allowed_mentions"],
            json!({"parse": [], "users": [], "roles": ["42"]})
        );
        assert_eq!(b["nonce"], "rw1-1");
        assert_eq!(b["enforce_nonce"], true);
    }

    #[test]
    fn alert_rows_are_posted_and_a_read_back_still_recognises_the_message() {
        use crate::actions::JobRef;
        use crate::render::ButtonRow;
        let mut m = message(true);
        m.embeds[0].fields = vec![crate::render::EmbedField::new("Status", "failure", true)];
        m.rows = vec![ButtonRow {
            embed: 0,
            job: JobRef {
                date: chrono::NaiveDate::from_ymd_opt(2024, 6, 26),
                hash: 0xabc,
            },
            label: None,
        }];
        let b = body(&m, Some(42));
        let buttons = b["components"][0]["components"].as_array().unwrap();
        let ids: Vec<&str> = buttons
            .iter()
            .map(|b| b["custom_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "alert:ack:2024-06-26:0000000000000abc:0",
                "alert:mute:2024-06-26:0000000000000abc:0",
                "alert:jobs:2024-06-26:0000000000000abc:0"
            ]
        );
        let labels: Vec<&str> = buttons
            .iter()
            .map(|b| b["label"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["Acknowledge", "Mute set 24h", "Show jobs"]);
        // What Discord returns: the body, its author, and later maybe an acknowledgement.
        let mut found = b.clone();
        found["author"] = json!({"bot": true});
        assert!(same_message(&found, &b));
        found["embeds"][0]["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": ACK_FIELD_NAME, "value": "by <@1> · <t:1:f>"}));
        assert!(same_message(&found, &b), "acknowledged is still ours");
        found["embeds"][0]["fields"][0]["value"] = json!("success");
        assert!(!same_message(&found, &b));
    }

    #[test]
    fn without_a_ping_nothing_is_allowed() {
        let b = body(&message(false), Some(42));
        assert!(b.get("content").is_none());
        assert_eq!(
            b["allowed_mentions"],
            json!({"parse": [], "users": [], "roles": []})
        );
    }

    #[test]
    fn nonces_follow_the_event_ids_and_fit_25_chars() {
        let batch = |ids: Vec<u64>| Batch {
            channel: 1,
            ids,
            parts_sent: 0,
            done: false,
        };
        let first = batch(vec![10, 11, 12]).nonce("1f2e3d4c", 0);
        assert_eq!(first.len(), 21);
        assert!(first.starts_with("1f2e3d4c"), "{first}");
        assert_eq!(
            batch(vec![10, 11, 12]).nonce("1f2e3d4c", 0),
            first,
            "stable"
        );
        assert_eq!(
            batch(vec![10, 11, 12]).nonce("1f2e3d4c", 1),
            format!("{first}.1")
        );
        // Same first id and count, another id in the middle: another nonce.
        assert_ne!(batch(vec![10, 13, 12]).nonce("1f2e3d4c", 0), first);
        assert_ne!(batch(vec![10, 11]).nonce("1f2e3d4c", 0), first);
        assert_ne!(
            batch(vec![10, 11, 12]).nonce("1f2e3d4c", 0),
            batch(vec![10, 11, 12]).nonce("99999999", 0),
            "another install never reuses the nonce"
        );
        let worst = batch((u64::MAX - 255..=u64::MAX).collect()).nonce("1f2e3d4c", 99);
        assert!(worst.chars().count() <= 25, "{worst}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t = DeliveryTiming::default();
        let waits: Vec<u64> = (1..=7).map(|n| t.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn retry_after_is_capped_at_an_hour() {
        let cap = Duration::from_secs(3600);
        assert_eq!(retry_wait(Some(1.5)), Duration::from_millis(1500));
        assert_eq!(retry_wait(Some(3600.0)), cap);
        assert_eq!(retry_wait(None), Duration::from_secs(1));
        for odd in [
            1e20,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            3600.5,
        ] {
            assert_eq!(retry_wait(Some(odd)), cap, "{odd}");
        }
    }

    #[test]
    fn describe_names_status_message_and_code() {
        let body = json!({"message": "Missing Access", "code": 50001});
        assert_eq!(
            describe(reqwest::StatusCode::FORBIDDEN, &body, "Bot t0k"),
            "403 Forbidden: Missing Access (code 50001)"
        );
    }
}
