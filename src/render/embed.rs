//! Our own embed and message types: plain data that tests can compare, converted to
//! serenity's builders only at the edge ([`Embed::to_serenity`]).
//!
//! [`Embed::fit`] is where Discord's size limits are enforced; everything that leaves this
//! module for a sink has gone through it, so a long set name or a huge database list can
//! never earn a 400.

use super::text::{cut, plain_text, DASH};
use chrono::{DateTime, Utc};
use serenity::all::{CreateEmbed, CreateEmbedFooter};

/// Discord's limits for one embed, in characters (Unicode scalar values, not bytes).
pub const EMBED_TITLE_MAX_CHARS: usize = 256;
pub const EMBED_DESCRIPTION_MAX_CHARS: usize = 4096;
pub const EMBED_FIELD_NAME_MAX_CHARS: usize = 256;
pub const EMBED_FIELD_VALUE_MAX_CHARS: usize = 1024;
pub const EMBED_FOOTER_MAX_CHARS: usize = 2048;
/// Fields per embed.
pub const EMBED_FIELDS_MAX: usize = 25;
/// Characters across all embeds of one message; one embed must fit it on its own too.
pub const MESSAGE_EMBED_TOTAL_MAX_CHARS: usize = 6000;

/// When an embed is over [`MESSAGE_EMBED_TOTAL_MAX_CHARS`], long texts are cut, but not
/// below this many characters: below it, dropping trailing fields loses less.
const SHRINK_FLOOR_CHARS: usize = 32;

// Without fields, an embed cut to its part limits and the floor fits the total, so `fit`
// always brings an embed within it.
const _: () = assert!(
    EMBED_TITLE_MAX_CHARS + SHRINK_FLOOR_CHARS + EMBED_FOOTER_MAX_CHARS
        <= MESSAGE_EMBED_TOTAL_MAX_CHARS
);

/// One embed, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Embed {
    /// Empty means no title.
    pub title: String,
    /// Empty means no description.
    pub description: String,
    /// `0xRRGGBB`.
    pub colour: u32,
    pub fields: Vec<EmbedField>,
    pub footer: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
}

/// One name/value pair of an embed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedField {
    pub name: String,
    pub value: String,
    pub inline: bool,
}

impl EmbedField {
    pub fn new(name: impl Into<String>, value: impl Into<String>, inline: bool) -> Self {
        EmbedField {
            name: name.into(),
            value: value.into(),
            inline,
        }
    }
}

/// One message to post: the text above the embeds (where a role mention pings), the
/// embeds, and the alerts' button rows (Discord sink only). `mention_role` says the content
/// mentions the configured role, so the sender must allow exactly that role to be pinged
/// (and nothing else).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutMessage {
    pub content: String,
    pub embeds: Vec<Embed>,
    pub mention_role: bool,
    /// At most [`super::MESSAGE_ROWS_MAX`], one per alert embed that has buttons.
    pub rows: Vec<super::ButtonRow>,
}

impl Embed {
    /// Characters as Discord counts them against the 6000 per message: title, description,
    /// field names and values, footer (we never set an author, the last counted part).
    pub fn char_count(&self) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .map(|f| f.name.chars().count() + f.value.chars().count())
            .sum();
        self.title.chars().count()
            + self.description.chars().count()
            + fields
            + self.footer.as_deref().map_or(0, |f| f.chars().count())
    }

    /// Brings the embed within every Discord limit: each part cut to its own limit, at
    /// most [`EMBED_FIELDS_MAX`] fields, no empty field name or value (Discord rejects
    /// them), and the whole within [`MESSAGE_EMBED_TOTAL_MAX_CHARS`]. For the total, the
    /// longest text gives way first (a long list, not the status or the times); only when
    /// every text is short are trailing fields dropped.
    pub fn fit(self) -> Embed {
        self.fit_within(MESSAGE_EMBED_TOTAL_MAX_CHARS)
    }

    /// [`Embed::fit`] with a smaller total: `total_max` characters instead of
    /// [`MESSAGE_EMBED_TOTAL_MAX_CHARS`] (never more), so that something added later (an
    /// alert's acknowledgement) or the message's other embeds still fit Discord's total.
    /// Gives up only when no field is left and the title and footer alone are longer.
    pub fn fit_within(mut self, total_max: usize) -> Embed {
        let total_max = total_max.min(MESSAGE_EMBED_TOTAL_MAX_CHARS);
        self.title = cut(&self.title, EMBED_TITLE_MAX_CHARS);
        self.description = cut(&self.description, EMBED_DESCRIPTION_MAX_CHARS);
        // Discord shows footers as plain text: escapes would show, so they are cleaned
        // (format and control characters) but not escaped.
        self.footer = self
            .footer
            .map(|f| cut(&plain_text(&f), EMBED_FOOTER_MAX_CHARS));
        self.fields.truncate(EMBED_FIELDS_MAX);
        for field in &mut self.fields {
            field.name = non_empty(cut(&field.name, EMBED_FIELD_NAME_MAX_CHARS));
            field.value = non_empty(cut(&field.value, EMBED_FIELD_VALUE_MAX_CHARS));
        }
        loop {
            let total = self.char_count();
            if total <= total_max {
                return self;
            }
            let excess = total - total_max;
            let longest = std::iter::once(&mut self.description)
                .chain(self.fields.iter_mut().map(|f| &mut f.value))
                .max_by_key(|text| text.chars().count())
                .filter(|text| text.chars().count() > SHRINK_FLOOR_CHARS);
            if let Some(text) = longest {
                let keep = text
                    .chars()
                    .count()
                    .saturating_sub(excess)
                    .max(SHRINK_FLOOR_CHARS);
                *text = cut(text, keep);
            } else if self.fields.pop().is_none() {
                // Every text is short, so field names make the bulk: trailing fields are
                // dropped. With none left, only the title and footer can be over, and only
                // over a total below Discord's own (asserted above).
                return self;
            }
        }
    }

    /// An embed as Discord sent it back (a posted message's, say), as plain data: the parts
    /// this type has (we never post the others: url, images, author).
    pub fn from_serenity(embed: &serenity::all::Embed) -> Embed {
        Embed {
            title: embed.title.clone().unwrap_or_default(),
            description: embed.description.clone().unwrap_or_default(),
            colour: embed.colour.map_or(0, |c| c.0),
            fields: (embed.fields.iter())
                .map(|f| EmbedField::new(f.name.clone(), f.value.clone(), f.inline))
                .collect(),
            footer: embed.footer.as_ref().map(|f| f.text.clone()),
            timestamp: embed.timestamp.map(|t| *t),
        }
    }

    /// serenity's builder for this embed (empty title/description left out).
    pub fn to_serenity(&self) -> CreateEmbed {
        let mut embed = CreateEmbed::new().colour(self.colour);
        if !self.title.is_empty() {
            embed = embed.title(&self.title);
        }
        if !self.description.is_empty() {
            embed = embed.description(&self.description);
        }
        embed = embed.fields(
            self.fields
                .iter()
                .map(|f| (f.name.as_str(), f.value.as_str(), f.inline)),
        );
        if let Some(footer) = &self.footer {
            embed = embed.footer(CreateEmbedFooter::new(footer));
        }
        if let Some(at) = self.timestamp {
            embed = embed.timestamp(at);
        }
        embed
    }
}

fn non_empty(text: String) -> String {
    if text.trim().is_empty() {
        DASH.to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn within_limits(e: &Embed) {
        assert!(e.title.chars().count() <= EMBED_TITLE_MAX_CHARS);
        assert!(e.description.chars().count() <= EMBED_DESCRIPTION_MAX_CHARS);
        assert!(e.fields.len() <= EMBED_FIELDS_MAX);
        for f in &e.fields {
            assert!(f.name.chars().count() <= EMBED_FIELD_NAME_MAX_CHARS);
            assert!(f.value.chars().count() <= EMBED_FIELD_VALUE_MAX_CHARS);
            assert!(!f.name.is_empty() && !f.value.is_empty());
        }
        assert!(e.footer.as_ref().unwrap().chars().count() <= EMBED_FOOTER_MAX_CHARS);
        assert!(e.char_count() <= MESSAGE_EMBED_TOTAL_MAX_CHARS);
    }

    #[test]
    fn char_count_adds_every_counted_part() {
        let e = Embed {
            title: "ä".repeat(3),
            description: "12345".into(),
            fields: vec![EmbedField::new("ab", "cde", true)],
            footer: Some("f".into()),
            ..Embed::default()
        };
        assert_eq!(e.char_count(), 3 + 5 + 2 + 3 + 1);
    }

    #[test]
    fn fit_cuts_every_part_and_the_total() {
        let huge = Embed {
            title: "t".repeat(1000),
            description: "d".repeat(10_000),
            colour: 1,
            fields: (0..40)
                .map(|i| EmbedField::new(format!("n{i}").repeat(300), "v".repeat(5000), false))
                .collect(),
            footer: Some("f".repeat(5000)),
            timestamp: None,
        };
        let fitted = huge.fit();
        within_limits(&fitted);
        assert!(fitted.title.ends_with('…'));
    }

    #[test]
    fn fit_shrinks_the_longest_text_first() {
        let e = Embed {
            title: "Restore failed".into(),
            fields: (0..7)
                .map(|i| EmbedField::new(format!("list {i}"), "x".repeat(1024), false))
                .chain([EmbedField::new("Status", "failure", true)])
                .collect(),
            footer: Some("cbs1".into()),
            ..Embed::default()
        }
        .fit();
        within_limits(&e);
        assert_eq!(e.fields.len(), 8, "no field dropped");
        assert_eq!(e.fields[7].value, "failure");
    }

    #[test]
    fn footers_are_cut_and_cleaned_but_not_escaped() {
        let e = Embed {
            footer: Some(format!("cbs_main\u{202E} *eu*\n{}", "x".repeat(3000))),
            ..Embed::default()
        }
        .fit();
        let footer = e.footer.unwrap();
        assert!(footer.starts_with("cbs_main *eu* x"), "{footer}");
        assert!(!footer.contains('\\'));
        assert_eq!(footer.chars().count(), EMBED_FOOTER_MAX_CHARS);
    }

    #[test]
    fn fit_replaces_empty_field_texts() {
        let e = Embed {
            fields: vec![EmbedField::new("", " ", true)],
            footer: Some(String::new()),
            ..Embed::default()
        }
        .fit();
        assert_eq!(e.fields[0], EmbedField::new(DASH, DASH, true));
    }

    #[test]
    fn to_serenity_serializes_every_part() {
        let e = Embed {
            title: "Restore failed: obm / Files".into(),
            description: String::new(),
            colour: 0xED4245,
            fields: vec![EmbedField::new("Owner", "—", true)],
            footer: Some("cbs1".into()),
            timestamp: Some(Utc.with_ymd_and_hms(2024, 6, 26, 11, 25, 21).unwrap()),
        };
        assert_eq!(
            serde_json::to_value(e.to_serenity()).unwrap(),
            json!({
                "type": "rich",
                "title": "Restore failed: obm / Files",
                "color": 0xED4245,
                "fields": [{"name": "Owner", "value": "—", "inline": true}],
                "footer": {"text": "cbs1"},
                "timestamp": "2024-06-26T11:25:21Z",
            })
        );
    }
}
