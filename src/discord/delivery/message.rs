//! Message building: the packing items of a channel's events, the create-message request
//! and its JSON body (content, embeds, buttons, nonce, allowed mentions), and the check
//! that a message read back from Discord is one we posted.

use super::DiscordSink;
use crate::escalation::pings;
use crate::event::Event;
use crate::render::{alert_buttons, render_event, Embed, OutMessage, PackItem, ACK_FIELD_NAME};
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
    fn without_a_ping_nothing_is_allowed() {
        let b = body(&message(false), Some(42));
        assert!(b.get("content").is_none());
        assert_eq!(
            b["allowed_mentions"],
            json!({"parse": [], "users": [], "roles": []})
        );
    }
}
