//! Rendering: turns events into chat messages, as plain data.
//!
//! Pure functions only (no network, no clock): [`render_event`] makes the embeds of one
//! event, [`pack`] groups the embeds of consecutive events into messages within Discord's
//! limits and adds the role ping (and, for Discord, [`pack_items`] the alerts' button rows,
//! [`alert_buttons`]), [`to_text`] shows a message as plain text for the console sink.
//! Times in embeds are Discord's timestamp tags ([`discord_time`]), which each reader sees
//! in their own zone; the server-zone time stays in the footer, and the console reads the
//! tags in the configured zone ([`plain_times`]). The delivery step converts with
//! [`Embed::to_serenity`] at the edge.
//!
//! Safety rules kept here: every string from the backup server is escaped
//! ([`escape_markdown`]) so it cannot format, link or mention; every part of an embed is
//! cut to Discord's limits in characters ([`Embed::fit`]); the role mention only ever goes
//! into `content`, the one place where a mention pings.

mod buttons;
mod digest;
mod embed;
mod events;
mod pack;
mod pointers;
mod storm;
mod text;
mod times;

pub use buttons::{
    alert_buttons, AlertButtons, ButtonRow, ACK_FIELD_NAME, ACK_FIELD_RESERVE_CHARS,
    BUTTON_LABEL_MAX_CHARS, MESSAGE_ROWS_MAX,
};
pub use digest::{digest_text, render_digest, DIGEST_MESSAGES_MAX, NO_OWNER_LABEL};
pub use embed::{
    Embed, EmbedField, OutMessage, EMBED_DESCRIPTION_MAX_CHARS, EMBED_FIELDS_MAX,
    EMBED_FIELD_NAME_MAX_CHARS, EMBED_FIELD_VALUE_MAX_CHARS, EMBED_FOOTER_MAX_CHARS,
    EMBED_TITLE_MAX_CHARS, MESSAGE_EMBED_TOTAL_MAX_CHARS,
};
pub use events::{class_colour, counts_line, render_event, wants_ping, COLOUR_INFO, COLOUR_STUCK};
pub use pack::{
    pack, pack_items, to_text, PackItem, Packed, MESSAGE_CONTENT_MAX_CHARS, MESSAGE_EMBEDS_MAX,
};
pub use pointers::{failures_command, FAILURES_MAX_DAYS};
pub use text::{
    code_span, cut, escape_markdown, format_duration, format_size, is_format_char, list_name,
    ordinal, plain_text, plural, unescape_markdown, unreadable_value, value_or_raw,
    ENDED_BEFORE_START,
};
pub use times::{discord_time, discord_time_ago, plain_times};

use crate::tz::Tz;

/// What rendering needs to know from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    /// The role to ping for alerts; `None` posts without pinging.
    pub mention_role: Option<u64>,
    /// The zone for times the bot itself measured (outages, cycles). Job times keep the
    /// backup server's zone they were reported in.
    pub timezone: Tz,
    /// Several backup servers are watched: alerts, outage notices and summaries say which.
    pub servers_named: bool,
}
