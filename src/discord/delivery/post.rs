//! The send path: one message posted with its retries (a 429 waits `retry_after`, 5xx and
//! transport errors back off, a timeout gives up at once), Discord's answer classified by status, the read-back that
//! finds the message of an interrupted post, and the reason text logged and shown for a
//! failure, with the token blanked out.

use super::message::{message_body, message_request, same_message, Newer};
use super::refusal::MISSING_EMBED_LINKS;
use super::{DiscordSink, REQUEST_TIMEOUT_SECS};
use crate::render::OutMessage;
use serde_json::Value;
use serenity::all::ChannelId;
use serenity::http::{LightMethod, Request, Route};
use std::time::Duration;
use tokio::time::Instant;

/// How many of a channel's latest messages are read back to find the message of an
/// interrupted post (one drain window's batches fit well inside).
const RECENT_MESSAGES_CHECKED: usize = 50;
/// What [`timed_out`] says a read-back was doing.
const READING_BACK: &str = "reading the channel back";
/// A 429 without a `retry_after` or `Retry-After` waits this long.
const DEFAULT_RETRY_AFTER_MS: u64 = 1000;
/// The longest wait a 429 can ask for; a longer, negative or unreadable (NaN) one counts as
/// this, so a bad value can neither panic nor stall delivery for ever.
const MAX_RETRY_AFTER_SECS: u64 = 3600;
/// How much of Discord's error body a logged reason keeps (characters).
const REASON_MAX_CHARS: usize = 300;
/// Discord's JSON error codes that are about the channel, not the message: a 400 (or any
/// status) carrying one means the channel refuses us, like a 403, and a resend of the same
/// message succeeds once someone fixes the channel. Unknown Channel (10003), Missing
/// Access (50001), Missing Permissions (50013), channel verification level too high
/// (50009), Cannot send messages in a non-text channel (50008: a category, forum, media or
/// directory channel), Cannot execute action on this channel type (50024), Cannot send
/// messages in a forum channel (40058), Operation on an archived thread (50083), Thread
/// is locked (160005).
const CHANNEL_ERROR_CODES: [u64; 9] = [
    10003, 50001, 50013, 50009, 50008, 50024, 40058, 50083, 160005,
];

/// One answer to one post.
enum Reply {
    /// With the created message's id, when the answer shows it.
    Accepted(Option<u64>),
    RateLimited(Duration),
    /// 400/413: this message will never be accepted.
    Rejected(String),
    /// 403/404, a 400 whose code is about the channel ([`CHANNEL_ERROR_CODES`]), or
    /// accepted without its embeds: the channel does not let us post.
    Refused(String),
    /// 401: Discord rejected the token.
    Unauthorized(String),
    /// 5xx or another status.
    Failed(String),
    /// No answer in time: the request timed out.
    NoAnswer(String),
}

/// What reading a channel back found.
pub(super) enum ReadBack {
    /// The message of the interrupted post, by id.
    Found(u64),
    /// Not there (or the channel cannot be read): post it again, under the same nonce.
    NotFound,
    /// Discord did not answer the read in time.
    NoAnswer(String),
}

/// How posting one message (with its retries) ended.
pub(super) enum Posted {
    /// With the message's id, when known.
    Accepted(Option<u64>),
    Rejected(String),
    Refused(String),
    Unauthorized(String),
    /// Given up for this drain; rest this long.
    Unavailable(String, Duration),
}

impl DiscordSink {
    /// Posts one message, retrying 429s, 5xx and transport errors as
    /// [`DeliveryTiming`](super::DeliveryTiming) says. Discord may have created the
    /// message despite a 5xx or a lost answer, so before each retry after one the channel
    /// is read back for it (messages `newer` than the post's start); the nonce alone
    /// would be enough only where Discord deduplicates it.
    ///
    /// A request Discord does not answer in time (the post or that read-back timing out)
    /// ends the attempts at once: a Discord that hangs would otherwise hold the drain, and
    /// the poll round waiting on it, for minutes. So does a failure once the drain has run
    /// past `deadline`. The batch stays recorded, so the next drain reads the channel back
    /// before it posts again. Every failed attempt is logged at warn level.
    pub(super) async fn post_message(
        &self,
        channel: ChannelId,
        message: &OutMessage,
        nonce: String,
        newer: Newer,
        deadline: Instant,
    ) -> Posted {
        // A channel that dropped our embeds got the message's text, its ping included: the
        // retries (one every `refused_retry` until Embed Links is granted) do not ping again.
        let role = if self.refused_for(channel, MISSING_EMBED_LINKS) {
            None
        } else {
            self.mention_role
        };
        let body = match message_body(message, role, nonce) {
            Ok(body) => body,
            Err(e) => return Posted::Rejected(format!("cannot encode the message: {e}")),
        };
        let (mut limited, mut failed) = (0, 0);
        let with_embeds = !message.embeds.is_empty();
        let attempts = self.timing.server_error_attempts;
        loop {
            let (reason, answered) = match self.post(channel, body.clone(), with_embeds).await {
                Reply::Accepted(id) => return Posted::Accepted(id),
                Reply::Rejected(reason) => return Posted::Rejected(reason),
                Reply::Refused(reason) => return Posted::Refused(reason),
                Reply::Unauthorized(reason) => return Posted::Unauthorized(reason),
                Reply::RateLimited(wait) => {
                    limited += 1;
                    let reason = format!("rate limited, retry after {wait:?}");
                    if wait > self.timing.max_retry_after
                        || limited >= self.timing.rate_limit_attempts
                        || Instant::now() + wait > deadline
                    {
                        return Posted::Unavailable(reason, wait);
                    }
                    tracing::debug!(channel = channel.get(), "{reason}");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Reply::Failed(reason) => (reason, true),
                Reply::NoAnswer(reason) => (reason, false),
            };
            failed += 1;
            let wait = self.timing.backoff(failed);
            let give_up = !answered || failed >= attempts || Instant::now() + wait > deadline;
            tracing::warn!(
                channel = channel.get(),
                attempt = failed,
                %reason,
                "Discord did not take the message{}",
                if give_up { "; giving up for now" } else { "; retrying" }
            );
            if give_up {
                return Posted::Unavailable(reason, self.timing.backoff_max);
            }
            tokio::time::sleep(wait).await;
            match self.already_posted(channel, message, newer).await {
                ReadBack::Found(id) => {
                    tracing::info!(
                        channel = channel.get(),
                        %reason,
                        "Discord created the message despite the failed post; not posting it again"
                    );
                    return Posted::Accepted(Some(id));
                }
                ReadBack::NotFound => {}
                ReadBack::NoAnswer(reason) => {
                    tracing::warn!(
                        channel = channel.get(),
                        %reason,
                        "cannot read the channel back before a retry; giving up for now"
                    );
                    return Posted::Unavailable(reason, self.timing.backoff_max);
                }
            }
        }
    }

    /// Looks for a message of ours with exactly this text among the channel's latest
    /// messages, created since the post began (see [`Newer`]): the message of a post that
    /// was cut short after Discord created it. An identical message from before the post
    /// began does not count. A channel that cannot be read (no Read Message History, say)
    /// answers [`ReadBack::NotFound`], and the post goes out again under the same nonce;
    /// a read that times out is [`ReadBack::NoAnswer`]: Discord is not answering, and a
    /// post would hang as long.
    pub(super) async fn already_posted(
        &self,
        channel: ChannelId,
        message: &OutMessage,
        newer: Newer,
    ) -> ReadBack {
        let body = message_body(message, None, String::new());
        let Some(wanted) = body
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            return ReadBack::NotFound;
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
                Err(_) => return ReadBack::NotFound,
            };
        let recent: Value = match request.send().await {
            Ok(response) if response.status().is_success() => match response.bytes().await {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                Err(e) if e.is_timeout() => return ReadBack::NoAnswer(timed_out(READING_BACK)),
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
            Err(e) if e.is_timeout() => return ReadBack::NoAnswer(timed_out(READING_BACK)),
            Err(_) => Value::Null,
        };
        let found = (recent.as_array().into_iter().flatten())
            .find(|m| newer.admits(m) && same_message(m, &wanted))
            .and_then(|m| m["id"].as_str()?.parse().ok());
        found.map_or(ReadBack::NotFound, ReadBack::Found)
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
            Err(e) if e.is_timeout() => return Reply::NoAnswer(timed_out("posting")),
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
            return Reply::Accepted(created["id"].as_str().and_then(|id| id.parse().ok()));
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
        let about_channel = body["code"]
            .as_u64()
            .is_some_and(|code| CHANNEL_ERROR_CODES.contains(&code));
        match status.as_u16() {
            429 => {
                let secs = body["retry_after"].as_f64().or(header_wait);
                Reply::RateLimited(retry_wait(secs))
            }
            400 | 413 if about_channel => Reply::Refused(reason),
            400 | 413 => Reply::Rejected(reason),
            401 => Reply::Unauthorized(reason),
            403 | 404 => Reply::Refused(reason),
            _ => Reply::Failed(reason),
        }
    }
}

/// The reason logged for a request Discord did not answer in time.
fn timed_out(doing: &str) -> String {
    format!("Discord did not answer within {REQUEST_TIMEOUT_SECS} s while {doing} (timed out)")
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
