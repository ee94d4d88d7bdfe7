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
//! read from the outbox, so the resend is the same message under the same nonce. Because
//! Discord forgets a nonce after minutes, a batch resumed after a restart, and a post retried
//! after a 5xx or a lost answer, is first looked for in the channel (a read-back). Only a
//! message newer than the batch's bounds can be it: later in Discord's order than the last
//! message Discord accepted from us in the channel (kept per channel in a tree of its own),
//! and created no earlier than the batch was recorded, less a clock allowance; so an
//! identical earlier message (two summaries with the same counts) is never taken for the
//! interrupted post.
//!
//! Failures: a 429 waits `retry_after` and retries; 5xx and transport errors back off
//! exponentially, each failed attempt logged; either, when it persists, ends the drain with
//! the events queued and rests the sink for a while. A request Discord does not answer
//! within `REQUEST_TIMEOUT_SECS` (a post, or the read-back before a retry) ends the drain
//! at once, and so does any failure after [`DeliveryTiming::drain_limit`]: the poll round
//! waits for its drain, so a hanging Discord costs it at most about a minute, not the
//! minutes a full retry sequence of timeouts would. 403/404, and a 400 whose JSON code is about the channel (a forum
//! or category where no message can be posted, an archived or locked thread), mean the
//! channel refuses us: its events stay queued,
//! the reason is logged once and kept for `/status` ([`DiscordSink::refused_channels`]),
//! and the channel is tried again only after [`DeliveryTiming::refused_retry`]; other
//! channels carry on. So does a message Discord accepts but returns without its embeds:
//! the bot lacks Embed Links there ("missing Embed Links permission").
//!
//! A 401 is about the token, not the channel: Discord rejected it (reset, revoked, mistyped)
//! and would reject every request, and a storm of invalid requests earns a ban. So posting
//! stops for every channel, the error is logged once, `/status` shows it, and one post is
//! tried every [`DeliveryTiming::token_retry`] until the token works; nothing is dropped.
//! Any other 400 means Discord rejects the message itself, and resending it
//! would fail the same way: a batch of several events is retried one event per message, and
//! an event rejected on its own is logged at error level with its id and Discord's reason,
//! counted ([`DiscordSink::rejected_events`]) and reported to the drain as dropped (not
//! delivered), so it cannot block its channel forever and nobody mistakes it for sent.
//!
//! # Layout
//! This module holds the sink, its timing and the drain's path through the channels;
//! `batch.rs` records batches and derives their nonces, `message.rs` builds the requests
//! and recognises our messages read back, `post.rs` sends one message and classifies
//! Discord's answer (retrying 429s, 5xx and transport errors), and `refusal.rs` keeps
//! the refusing channels and the rejected token.

mod batch;
mod message;
mod post;
mod refusal;

pub use refusal::{MISSING_EMBED_LINKS, TOKEN_REJECTED};

use super::routing::Routes;
use crate::config::{AlertSettings, DiscordSettings};
use crate::event::Event;
use crate::render::{pack_items, RenderOptions};
use crate::sink::{Delivered, Sink, SinkError};
use crate::store::Store;
use anyhow::Context as _;
use message::message_request;
use post::{Posted, ReadBack};
use secrecy::ExposeSecret;
use serenity::all::{ChannelId, RoleId};
use serenity::http::{Http, HttpBuilder};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// A request that has not been answered after this long is given up: it ends the drain
/// (see [`DiscordSink::post_message`]).
const REQUEST_TIMEOUT_SECS: u64 = 30;

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
    /// Once a drain has run this long, a failed or rate-limited post ends it (events stay
    /// queued, the sink rests) instead of waiting to retry: the poll round waits for the
    /// drain, so a struggling Discord must not hold up polling for long.
    pub drain_limit: Duration,
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
            drain_limit: Duration::from_secs(60),
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
}

impl DiscordSink {
    /// Posts the channel's events in order, batch by batch; the ids Discord accepted, and
    /// those it rejects for good, go to `taken`.
    async fn deliver_channel(
        &self,
        channel: ChannelId,
        events: &[&Event],
        taken: &mut Delivered,
        deadline: Instant,
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
                    let found = if resumed && part == batch.parts_sent {
                        match self
                            .already_posted(channel, &packed.message, batch.newer)
                            .await
                        {
                            ReadBack::Found(id) => Some(id),
                            ReadBack::NotFound => None,
                            ReadBack::NoAnswer(reason) => {
                                let rest_for = self.timing.backoff_max;
                                return Ok(ChannelEnd::Unavailable(reason, rest_for));
                            }
                        }
                    } else {
                        None
                    };
                    let posted = if let Some(id) = found {
                        tracing::info!(
                            channel = channel.get(),
                            events = ?batch.ids,
                            "found the message of an interrupted post in the channel; not posting it again"
                        );
                        Posted::Accepted(Some(id))
                    } else {
                        self.post_message(
                            channel,
                            &packed.message,
                            batch.nonce(&self.install, part),
                            batch.newer,
                            deadline,
                        )
                        .await
                    };
                    match posted {
                        Posted::Accepted(id) => {
                            batch.parts_sent = part + 1;
                            if let Some(id) = id {
                                batch.newer.than_id = batch.newer.than_id.max(id);
                                self.note_posted(channel, id)?;
                            }
                        }
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
                    for event in &batch.ids {
                        tracing::error!(
                            channel = channel.get(),
                            event,
                            %reason,
                            "Discord rejects this event's message (HTTP 400); dropping the \
                             event undelivered, a resend would fail the same way"
                        );
                    }
                    self.state().rejected += batch.ids.len() as u64;
                    batch.dropped = true;
                }
                batch.done = true;
                self.save(&batch)?;
            }
            // The ids past the window are taken too: the drain acknowledges them.
            if batch.dropped {
                taken.dropped.extend_from_slice(&batch.ids);
            } else {
                taken.accepted.extend_from_slice(&batch.ids);
            }
            rest = &rest[count..];
        }
        Ok(ChannelEnd::Done)
    }
}

impl Sink for DiscordSink {
    async fn deliver(&self, events: &[Event]) -> Result<Delivered, SinkError> {
        let result = self.deliver_channels(events).await;
        self.publish_refusals();
        result
    }
}

impl DiscordSink {
    async fn deliver_channels(&self, events: &[Event]) -> Result<Delivered, SinkError> {
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
        let deadline = Instant::now() + self.timing.drain_limit;
        let mut taken = Delivered::default();
        for (channel, list) in self.routes.split(events) {
            let resting = self.state().refused.get(&channel).map(|r| r.retry_at);
            if resting.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            let end = (self.deliver_channel(channel, &list, &mut taken, deadline)).await?;
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
                    if taken == Delivered::default() {
                        return Err(SinkError(TOKEN_REJECTED.to_owned()));
                    }
                    break;
                }
                ChannelEnd::Unavailable(reason, rest_for) => {
                    tracing::warn!(%reason, ?rest_for, "Discord unavailable; events stay queued");
                    self.state().resting_until = Some((Instant::now() + rest_for, reason.clone()));
                    if taken == Delivered::default() {
                        return Err(SinkError(format!("Discord unavailable: {reason}")));
                    }
                    break;
                }
            }
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t = DeliveryTiming::default();
        let waits: Vec<u64> = (1..=7).map(|n| t.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }
}
