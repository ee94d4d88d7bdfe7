//! Message building: the packing items of a channel's events, the create-message request
//! and its JSON body (content, embeds, buttons, nonce, allowed mentions), and the check
//! that a message read back from Discord is one we posted, and created since the post
//! began ([`Newer`]).

use super::DiscordSink;
use crate::escalation::pings;
use crate::event::Event;
use crate::render::{alert_buttons, render_event, Embed, OutMessage, PackItem, ACK_FIELD_NAME};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serenity::all::{ChannelId, CreateAllowedMentions, CreateMessage, Nonce, RoleId};
use serenity::http::{LightMethod, Request, Route};

impl DiscordSink {
    /// The events as packing items: embeds, ping, and a failure alert's buttons.
    pub(super) fn items(&self, events: &[&Event]) -> Vec<PackItem> {
        events
            .iter()
            .map(|e| PackItem {
                ping: pings(e, &self.alerts),
                embeds: render_event(e, &self.render),
                buttons: alert_buttons(e),
            })
            .collect()
    }
}

/// serenity's route for posting a message, with `body` as JSON.
pub(super) fn message_request(channel: ChannelId, body: Vec<u8>) -> Request<'static> {
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
pub(super) fn message_body(
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

/// How far our clock may run ahead of Discord's before a read-back misses the message of
/// an interrupted post. Too small, and such a clock makes the read-back miss the message:
/// it is posted again under its nonce, which Discord deduplicates for a few minutes, so at
/// worst a duplicate after that. Too large, and an identical message the store never saw
/// (from before a wiped state directory, another install) posted just before the post
/// began passes for it: a loss. Our own earlier messages are excluded exactly, by
/// Discord's order ([`Newer::than_id`]), whatever this says. A minute covers a clock left
/// without NTP for a long while and keeps that window short.
const READBACK_CLOCK_SKEW_MS: u64 = 60_000;
/// Discord's epoch: a snowflake's top 42 bits count milliseconds since
/// 2015-01-01T00:00:00Z.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// How far a message's `timestamp` may be from its id's time for the two to agree.
const TIMESTAMP_AGREES_MS: u64 = 1000;

/// What a message read back must be newer than to be taken for the message of an
/// interrupted post: recorded with its batch before the first attempt, so an identical
/// earlier message (two cycle summaries with the same counts) never passes for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Newer {
    /// Discord's order: the id of the last message Discord accepted from us in the
    /// channel, then of the batch's last accepted part (0: none known).
    pub(super) than_id: u64,
    /// Our clock: when the batch was recorded, in Unix milliseconds (0: not known, in
    /// batches recorded by earlier versions).
    pub(super) than_unix_ms: u64,
}

impl Newer {
    /// The bounds for a post beginning now in a channel whose last message accepted
    /// from us is `last_posted`.
    pub(super) fn now(last_posted: u64) -> Newer {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        Newer {
            than_id: last_posted,
            than_unix_ms: since_epoch.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
        }
    }

    /// Whether `found` (a message read back) may be the one posted since: its id comes
    /// after [`than_id`](Self::than_id), and it was created no earlier than
    /// [`than_unix_ms`](Self::than_unix_ms) less [`READBACK_CLOCK_SKEW_MS`]. Its creation
    /// time counts only when its id (a snowflake) and its `timestamp` agree, as they do on
    /// Discord: a server whose ids are not snowflakes (a test double counting 1, 2, 3)
    /// tells nothing by them, and then Discord's order alone decides.
    pub(super) fn admits(&self, found: &Value) -> bool {
        let Some(id) = found["id"].as_str().and_then(|id| id.parse::<u64>().ok()) else {
            return false;
        };
        if id <= self.than_id {
            return false;
        }
        match created_unix_ms(id, found) {
            Some(created) => created + READBACK_CLOCK_SKEW_MS >= self.than_unix_ms,
            None => true,
        }
    }
}

/// When the message with this id was created (Unix milliseconds), if its id and its
/// `timestamp` agree on it.
fn created_unix_ms(id: u64, found: &Value) -> Option<u64> {
    let from_id = (id >> 22) + DISCORD_EPOCH_MS;
    let stamp = chrono::DateTime::parse_from_rfc3339(found["timestamp"].as_str()?).ok()?;
    let stamp = u64::try_from(stamp.timestamp_millis()).ok()?;
    (from_id.abs_diff(stamp) <= TIMESTAMP_AGREES_MS).then_some(from_id)
}

/// Whether `found` (a message read back from Discord) is ours and says what `wanted` (our
/// create-message body) says: the same content and the same embed titles, descriptions
/// and field values, in order. Discord adds to an embed (its type, say) but keeps these.
/// Buttons are not compared, and neither is the field an acknowledgement adds to an
/// alert (its name is [`ACK_FIELD_NAME`]): a message someone acknowledged before the
/// read-back is still ours.
pub(super) fn same_message(found: &Value, wanted: &Value) -> bool {
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
    fn a_read_back_admits_only_messages_newer_than_the_post() {
        // 2024-07-03T09:46:40.123Z, as a snowflake (increment 5) and as a timestamp.
        let ms: u64 = 1_720_000_000_123;
        let id = ((ms - DISCORD_EPOCH_MS) << 22) | 5;
        let created = serenity::all::MessageId::new(id).created_at();
        assert_eq!(
            created.unix_timestamp(),
            1_720_000_000,
            "what serenity reads"
        );
        let found = |id: u64, stamp: &str| json!({"id": id.to_string(), "timestamp": stamp});
        let at = |ms: u64| {
            let t = chrono::DateTime::from_timestamp_millis(ms as i64).unwrap();
            t.to_rfc3339()
        };
        let newer = |than_id, than_unix_ms| Newer {
            than_id,
            than_unix_ms,
        };
        let m = found(id, &at(ms));
        assert!(newer(id - 1, ms).admits(&m));
        assert!(
            !newer(id, ms).admits(&m),
            "our last accepted message itself"
        );
        // A minute of skew is allowed; more is an earlier message.
        assert!(newer(0, ms + READBACK_CLOCK_SKEW_MS).admits(&m));
        assert!(!newer(0, ms + READBACK_CLOCK_SKEW_MS + 1).admits(&m));
        // Ids that are not snowflakes (a counter) say nothing about the time: only the
        // order counts.
        let counted = found(1001, &at(ms));
        assert!(newer(1000, ms + 3_600_000).admits(&counted));
        assert!(!newer(1001, 0).admits(&counted));
        // No id, or one that is not a number: not ours to take.
        assert!(!newer(0, 0).admits(&json!({"timestamp": at(ms)})));
        assert!(!newer(0, 0).admits(&json!({"id": "x"})));
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
}
