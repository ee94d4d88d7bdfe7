//! Packing: the embeds of consecutive events go into as few messages as Discord allows,
//! a message that carries an alert pings the on-call role, and an alert with buttons gets
//! its action row (at most five per message); plus the plain-text form of
//! a message for the console sink.

use super::buttons::{AlertButtons, ButtonRow, ACK_FIELD_RESERVE_CHARS, MESSAGE_ROWS_MAX};
use super::embed::{Embed, OutMessage, MESSAGE_EMBED_TOTAL_MAX_CHARS};
use super::text::{cut, plural, unescape_markdown};
use super::times::plain_times;
use super::RenderOptions;
use crate::tz::Tz;
use std::ops::Range;

/// Embeds per message.
pub const MESSAGE_EMBEDS_MAX: usize = 10;
/// Characters of a message's `content`.
pub const MESSAGE_CONTENT_MAX_CHARS: usize = 2000;

/// One message and the input items (events) it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    pub message: OutMessage,
    /// Indexes into the `items` given to [`pack`]. An item too big for one message is
    /// split over consecutive messages, and each of them lists it: retire an item only once
    /// the last message listing it was accepted.
    pub items: Range<usize>,
}

/// Groups the items' embeds, in order, into messages of at most [`MESSAGE_EMBEDS_MAX`]
/// embeds and [`MESSAGE_EMBED_TOTAL_MAX_CHARS`] characters. An item's embeds stay in one
/// message whenever they fit in one. Each item is `(wants_ping, embeds)`; a message holding
/// an item that wants a ping gets the role mention in its content when a role is set.
/// Every embed is fitted ([`Embed::fit`]) on the way, so the limits hold for any input.
/// No buttons: see [`pack_items`].
pub fn pack(items: Vec<(bool, Vec<Embed>)>, opts: &RenderOptions) -> Vec<Packed> {
    let items = items.into_iter().map(|(ping, embeds)| PackItem {
        ping,
        embeds,
        buttons: None,
    });
    pack_items(items.collect(), opts)
}

/// One item to pack: its embeds, whether it wants the role ping, and its alert buttons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackItem {
    pub ping: bool,
    pub embeds: Vec<Embed>,
    pub buttons: Option<AlertButtons>,
}

/// [`pack`], with the items' buttons: an item with buttons gets an action row under its
/// first embed. A message holds at most [`MESSAGE_ROWS_MAX`] rows, and keeps
/// [`ACK_FIELD_RESERVE_CHARS`] free per row for the acknowledgement added later.
pub fn pack_items(items: Vec<PackItem>, opts: &RenderOptions) -> Vec<Packed> {
    let pings: Vec<bool> = items.iter().map(|item| item.ping).collect();
    let mut packer = Packer::default();
    for (index, item) in items.into_iter().enumerate() {
        // An alert's first embed (the one its row acknowledges) keeps room for the
        // acknowledgement even when it fills a message on its own.
        let room = |i: usize| match &item.buttons {
            Some(_) if i == 0 => MESSAGE_EMBED_TOTAL_MAX_CHARS - ACK_FIELD_RESERVE_CHARS,
            _ => MESSAGE_EMBED_TOTAL_MAX_CHARS,
        };
        let embeds = (item.embeds.into_iter().enumerate())
            .map(|(i, embed)| embed.fit_within(room(i)))
            .collect();
        packer.add_item(index, embeds, item.buttons);
    }
    packer
        .finish(pings.len())
        .into_iter()
        .map(|(embeds, buttons, range)| {
            let alerts = pings[range.clone()].iter().filter(|p| **p).count();
            let content = match opts.mention_role {
                Some(role) if alerts > 0 => cut(
                    &format!("<@&{role}> {}", plural(alerts as u64, "alert", "alerts")),
                    MESSAGE_CONTENT_MAX_CHARS,
                ),
                _ => String::new(),
            };
            let several = buttons.len() > 1;
            let rows = buttons
                .into_iter()
                .map(|(embed, b)| ButtonRow {
                    // At most MESSAGE_EMBEDS_MAX (10) embeds: the index fits.
                    embed: embed as u8,
                    job: b.job,
                    label: several.then_some(b.label),
                })
                .collect();
            Packed {
                message: OutMessage {
                    mention_role: !content.is_empty(),
                    content,
                    embeds,
                    rows,
                },
                items: range,
            }
        })
        .collect()
}

/// A message's embeds, its button rows (embed index, buttons) and the items it carries.
type Filled = (Vec<Embed>, Vec<(usize, AlertButtons)>, Range<usize>);

/// The message being filled, and the ones already full.
#[derive(Default)]
struct Packer {
    done: Vec<Filled>,
    embeds: Vec<Embed>,
    rows: Vec<(usize, AlertButtons)>,
    chars: usize,
    /// The first item in the open message; `None` while it has none.
    first_item: Option<usize>,
}

impl Packer {
    fn add_item(&mut self, index: usize, embeds: Vec<Embed>, mut buttons: Option<AlertButtons>) {
        let reserve = if buttons.is_some() {
            ACK_FIELD_RESERVE_CHARS
        } else {
            0
        };
        let chars: usize = embeds.iter().map(Embed::char_count).sum::<usize>() + reserve;
        let rows = usize::from(buttons.is_some());
        let fits_open = self.embeds.len() + embeds.len() <= MESSAGE_EMBEDS_MAX
            && self.chars + chars <= MESSAGE_EMBED_TOTAL_MAX_CHARS
            && self.rows.len() + rows <= MESSAGE_ROWS_MAX;
        let fits_alone =
            embeds.len() <= MESSAGE_EMBEDS_MAX && chars <= MESSAGE_EMBED_TOTAL_MAX_CHARS;
        if !fits_open && fits_alone {
            // Start a fresh message rather than split the item.
            self.close(index);
        }
        self.first_item.get_or_insert(index);
        let mut started_here = false;
        for embed in embeds {
            // The first embed carries the item's row, and the room kept for it.
            let n = embed.char_count() + if buttons.is_some() { reserve } else { 0 };
            if self.embeds.len() == MESSAGE_EMBEDS_MAX
                || self.chars + n > MESSAGE_EMBED_TOTAL_MAX_CHARS
                || (buttons.is_some() && self.rows.len() == MESSAGE_ROWS_MAX)
            {
                // The item does not fit any one message: split it. The closed message
                // carries part of it when it already holds some of its embeds.
                self.close(if started_here { index + 1 } else { index });
                self.first_item = Some(index);
            }
            if let Some(buttons) = buttons.take() {
                self.rows.push((self.embeds.len(), buttons));
            }
            self.chars += n;
            self.embeds.push(embed);
            started_here = true;
        }
    }

    /// Closes the open message (if it has embeds) with items up to `end` (exclusive).
    fn close(&mut self, end: usize) {
        if self.embeds.is_empty() {
            return;
        }
        let start = self.first_item.take().unwrap_or(end);
        self.done.push((
            std::mem::take(&mut self.embeds),
            std::mem::take(&mut self.rows),
            start..end,
        ));
        self.chars = 0;
    }

    fn finish(mut self, item_count: usize) -> Vec<Filled> {
        if self.embeds.is_empty() {
            // Trailing items without embeds ride with the last message, so the delivery
            // retires them with it.
            if let (Some(_), Some((_, _, last))) = (self.first_item, self.done.last_mut()) {
                last.end = item_count;
            }
        } else {
            self.close(item_count);
        }
        self.done
    }
}

/// A message as a person would read it in Discord, in plain text: the ping line, then per
/// embed its title, description, `name: value` lines and footer. Markdown escapes are
/// removed, so names show as the backup server sent them; Discord's time tags show as
/// times in `tz` ([`plain_times`]).
pub fn to_text(message: &OutMessage, tz: Tz) -> String {
    let plain = |text: &str| unescape_markdown(&plain_times(text, tz));
    let mut blocks = Vec::new();
    if !message.content.is_empty() {
        blocks.push(readable_mentions(&message.content));
    }
    for embed in &message.embeds {
        let mut lines = Vec::new();
        if !embed.title.is_empty() {
            lines.push(format!("== {} ==", plain(&embed.title)));
        }
        if !embed.description.is_empty() {
            lines.push(plain(&embed.description));
        }
        for field in &embed.fields {
            let value = plain(&field.value);
            let name = plain(&field.name);
            if value.contains('\n') {
                lines.push(format!("{name}:"));
                lines.extend(value.lines().map(|l| format!("  {l}")));
            } else {
                lines.push(format!("{name}: {value}"));
            }
        }
        if let Some(footer) = &embed.footer {
            lines.push(format!("-- {footer}"));
        }
        blocks.push(lines.join("\n"));
    }
    blocks.join("\n\n")
}

/// `<@&123>` as `@role:123`: the console has no role names, and the raw tag reads badly.
fn readable_mentions(content: &str) -> String {
    match content
        .strip_prefix("<@&")
        .and_then(|rest| rest.split_once('>'))
    {
        Some((id, rest)) => format!("@role:{id}{rest}"),
        None => content.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::embed::EmbedField;

    fn opts(role: Option<u64>) -> RenderOptions {
        RenderOptions {
            mention_role: role,
            timezone: crate::tz::Tz::UTC,
            servers_named: false,
        }
    }

    /// An embed of exactly `chars` characters, tagged with `tag` in its title.
    fn embed(tag: &str, chars: usize) -> Embed {
        let body = chars.saturating_sub(tag.chars().count());
        Embed {
            title: tag.to_owned(),
            description: "d".repeat(body),
            ..Embed::default()
        }
    }

    fn titles(packed: &[Packed]) -> Vec<String> {
        packed
            .iter()
            .flat_map(|p| p.message.embeds.iter().map(|e| e.title.clone()))
            .collect()
    }

    fn within_message_limits(p: &Packed) {
        let m = &p.message;
        assert!(!m.embeds.is_empty());
        assert!(m.embeds.len() <= MESSAGE_EMBEDS_MAX);
        let chars: usize = m.embeds.iter().map(Embed::char_count).sum();
        assert!(chars <= MESSAGE_EMBED_TOTAL_MAX_CHARS, "{chars}");
        assert!(m.content.chars().count() <= MESSAGE_CONTENT_MAX_CHARS);
    }

    #[test]
    fn a_burst_of_40_failures_fits_and_keeps_its_order() {
        // Realistic alert sizes, some small, some near 1500 characters.
        let items: Vec<(bool, Vec<Embed>)> = (0..40)
            .map(|i| {
                (
                    true,
                    vec![embed(&format!("#{i:02}"), 300 + (i * 97) % 1200)],
                )
            })
            .collect();
        let packed = pack(items, &opts(Some(42)));
        assert!(packed.len() >= 4, "40 embeds need at least 4 messages");
        for p in &packed {
            within_message_limits(p);
            assert_eq!(p.items.len(), p.message.embeds.len());
            assert_eq!(
                p.message.content,
                format!("<@&42> {}", plural(p.items.len() as u64, "alert", "alerts"))
            );
            assert!(p.message.mention_role);
        }
        let expected: Vec<String> = (0..40).map(|i| format!("#{i:02}")).collect();
        assert_eq!(titles(&packed), expected);
        // The ranges cover 0..40 in order, without gaps or overlaps.
        let mut next = 0;
        for p in &packed {
            assert_eq!(p.items.start, next);
            next = p.items.end;
        }
        assert_eq!(next, 40);
    }

    #[test]
    fn ten_embeds_at_most() {
        let items = (0..25).map(|i| (false, vec![embed(&i.to_string(), 10)]));
        let packed = pack(items.collect(), &opts(None));
        let sizes: Vec<usize> = packed.iter().map(|p| p.message.embeds.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(packed[2].items, 20..25);
    }

    #[test]
    fn an_event_is_not_split_when_it_fits_a_message() {
        let items = vec![
            (false, vec![embed("a", 4000)]),
            (false, vec![embed("b1", 1500), embed("b2", 1500)]),
        ];
        let packed = pack(items, &opts(None));
        assert_eq!(packed.len(), 2);
        assert_eq!(packed[0].items, 0..1);
        assert_eq!(packed[1].items, 1..2);
        assert_eq!(titles(&packed[1..]), ["b1", "b2"]);
    }

    #[test]
    fn an_event_too_big_for_one_message_is_split_and_listed_in_each() {
        let big: Vec<Embed> = (0..12).map(|i| embed(&format!("big{i}"), 100)).collect();
        let items = vec![
            (false, vec![embed("first", 100)]),
            (true, big),
            (false, vec![embed("last", 100)]),
        ];
        let packed = pack(items, &opts(Some(7)));
        for p in &packed {
            within_message_limits(p);
        }
        let ranges: Vec<Range<usize>> = packed.iter().map(|p| p.items.clone()).collect();
        assert_eq!(ranges, [0..2, 1..3]);
        assert_eq!(packed[0].message.embeds.len(), 10);
        assert_eq!(titles(&packed).len(), 14);
        assert!(packed.iter().all(|p| p.message.mention_role));
    }

    #[test]
    fn oversized_embeds_are_fitted_on_the_way() {
        let monster = Embed {
            title: "t".repeat(999),
            fields: (0..30)
                .map(|_| EmbedField::new("n", "v".repeat(2000), false))
                .collect(),
            ..Embed::default()
        };
        let packed = pack(vec![(false, vec![monster.clone(), monster])], &opts(None));
        assert_eq!(packed.len(), 2);
        packed.iter().for_each(within_message_limits);
    }

    #[test]
    fn ping_only_with_a_role_and_only_where_an_alert_is() {
        let items = || {
            vec![
                (false, vec![embed("summary", 5000)]),
                (true, vec![embed("failure", 2000)]),
                (false, vec![embed("baseline", 100)]),
            ]
        };
        let with_role = pack(items(), &opts(Some(123)));
        assert_eq!(with_role.len(), 2);
        assert_eq!(with_role[0].message.content, "");
        assert!(!with_role[0].message.mention_role);
        assert_eq!(with_role[1].message.content, "<@&123> 1 alert");
        assert!(with_role[1].message.mention_role);

        let without_role = pack(items(), &opts(None));
        assert!(without_role
            .iter()
            .all(|p| p.message.content.is_empty() && !p.message.mention_role));
    }

    #[test]
    fn items_without_embeds_ride_along() {
        let items = vec![
            (false, vec![]),
            (false, vec![embed("a", 10)]),
            (false, vec![]),
        ];
        let packed = pack(items, &opts(None));
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0].items, 0..3);
        assert!(pack(vec![(true, vec![])], &opts(Some(1))).is_empty());
        assert!(pack(Vec::new(), &opts(None)).is_empty());
    }

    #[test]
    fn alert_buttons_get_one_row_each_and_at_most_five_per_message() {
        use crate::actions::JobRef;
        let alert = |i: u64| PackItem {
            ping: true,
            embeds: vec![embed(&format!("alert{i}"), 100)],
            buttons: Some(AlertButtons {
                job: JobRef {
                    date: None,
                    hash: i,
                },
                label: format!("user{i} / Files"),
            }),
        };
        let plain = PackItem {
            ping: false,
            embeds: vec![embed("summary", 100)],
            buttons: None,
        };
        let mut items = vec![plain.clone()];
        items.extend((0..7).map(alert));
        items.push(plain);
        let packed = pack_items(items, &opts(None));
        let rows: Vec<usize> = packed.iter().map(|p| p.message.rows.len()).collect();
        assert_eq!(
            rows,
            [5, 2],
            "8 embeds would fit one message, 7 rows do not"
        );
        for p in &packed {
            within_message_limits(p);
            for row in &p.message.rows {
                let title = &p.message.embeds[usize::from(row.embed)].title;
                assert_eq!(
                    title,
                    &format!("alert{}", row.job.hash),
                    "row under its embed"
                );
                assert!(row
                    .ack_label()
                    .ends_with(&format!("user{} / Files", row.job.hash)));
            }
        }
        assert_eq!(titles(&packed).len(), 9);
        // Alone in its message, the button says just "Acknowledge".
        let single = pack_items(vec![alert(1)], &opts(None));
        assert_eq!(single[0].message.rows[0].ack_label(), "Acknowledge");
        // The console's packing has no buttons.
        assert!(pack(vec![(true, vec![embed("a", 10)])], &opts(None))[0]
            .message
            .rows
            .is_empty());
    }

    #[test]
    fn room_is_kept_for_each_acknowledgement() {
        use crate::actions::JobRef;
        let alert = |i: u64| PackItem {
            ping: true,
            embeds: vec![embed(&format!("a{i}"), 2000)],
            buttons: Some(AlertButtons {
                job: JobRef {
                    date: None,
                    hash: i,
                },
                label: String::new(),
            }),
        };
        // Three 2,000-character embeds fill 6,000 exactly; with room for their
        // acknowledgements only two fit a message.
        let packed = pack_items((0..3).map(alert).collect(), &opts(None));
        assert_eq!(packed.len(), 2);
        for p in &packed {
            let chars: usize = p.message.embeds.iter().map(Embed::char_count).sum();
            assert!(chars + p.message.rows.len() * ACK_FIELD_RESERVE_CHARS <= 6000);
        }
        // One alert bigger than a whole message keeps the room too.
        let mut huge = alert(9);
        huge.embeds = vec![Embed {
            fields: (0..8)
                .map(|i| {
                    super::super::EmbedField::new(format!("list {i}"), "x".repeat(1024), false)
                })
                .collect(),
            ..embed("huge", 4000)
        }];
        let packed = pack_items(vec![huge], &opts(None));
        let chars = packed[0].message.embeds[0].char_count();
        assert_eq!(chars + ACK_FIELD_RESERVE_CHARS, 6000);
    }

    #[test]
    fn text_card_reads_without_escapes() {
        let message = OutMessage {
            content: "<@&42> 1 alert".into(),
            embeds: vec![Embed {
                title: "Restore failed: obm / \\*\\*x\\*\\* @\u{200B}everyone".into(),
                description: String::new(),
                colour: 0,
                fields: vec![
                    EmbedField::new("Status", "failure (`RESTORE_STOP_BY_ERROR`)", true),
                    EmbedField::new("Missed databases (2)", "• hr\\_db\n• payroll", false),
                ],
                footer: Some("cbs-main".into()),
                timestamp: None,
            }],
            mention_role: true,
            rows: Vec::new(),
        };
        assert_eq!(
            to_text(&message, crate::tz::Tz::UTC),
            "@role:42 1 alert\n\n\
             == Restore failed: obm / **x** @everyone ==\n\
             Status: failure (`RESTORE_STOP_BY_ERROR`)\n\
             Missed databases (2):\n  • hr_db\n  • payroll\n\
             -- cbs-main"
        );
    }
}
