//! Packing: the embeds of consecutive events go into as few messages as Discord allows,
//! and a message that carries an alert pings the on-call role; plus the plain-text form of
//! a message for the console sink.

use super::embed::{Embed, OutMessage, MESSAGE_EMBED_TOTAL_MAX_CHARS};
use super::text::{cut, plural, unescape_markdown};
use super::RenderOptions;
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
pub fn pack(items: Vec<(bool, Vec<Embed>)>, opts: &RenderOptions) -> Vec<Packed> {
    let pings: Vec<bool> = items.iter().map(|(ping, _)| *ping).collect();
    let mut packer = Packer::default();
    for (index, (_, embeds)) in items.into_iter().enumerate() {
        packer.add_item(index, embeds.into_iter().map(Embed::fit).collect());
    }
    packer
        .finish(pings.len())
        .into_iter()
        .map(|(embeds, range)| {
            let alerts = pings[range.clone()].iter().filter(|p| **p).count();
            let content = match opts.mention_role {
                Some(role) if alerts > 0 => cut(
                    &format!("<@&{role}> {}", plural(alerts as u64, "alert", "alerts")),
                    MESSAGE_CONTENT_MAX_CHARS,
                ),
                _ => String::new(),
            };
            Packed {
                message: OutMessage {
                    mention_role: !content.is_empty(),
                    content,
                    embeds,
                },
                items: range,
            }
        })
        .collect()
}

/// The message being filled, and the ones already full.
#[derive(Default)]
struct Packer {
    done: Vec<(Vec<Embed>, Range<usize>)>,
    embeds: Vec<Embed>,
    chars: usize,
    /// The first item in the open message; `None` while it has none.
    first_item: Option<usize>,
}

impl Packer {
    fn add_item(&mut self, index: usize, embeds: Vec<Embed>) {
        let chars: usize = embeds.iter().map(Embed::char_count).sum();
        let fits_open = self.embeds.len() + embeds.len() <= MESSAGE_EMBEDS_MAX
            && self.chars + chars <= MESSAGE_EMBED_TOTAL_MAX_CHARS;
        let fits_alone =
            embeds.len() <= MESSAGE_EMBEDS_MAX && chars <= MESSAGE_EMBED_TOTAL_MAX_CHARS;
        if !fits_open && fits_alone {
            // Start a fresh message rather than split the item.
            self.close(index);
        }
        self.first_item.get_or_insert(index);
        let mut started_here = false;
        for embed in embeds {
            let n = embed.char_count();
            if self.embeds.len() == MESSAGE_EMBEDS_MAX
                || self.chars + n > MESSAGE_EMBED_TOTAL_MAX_CHARS
            {
                // The item does not fit any one message: split it. The closed message
                // carries part of it when it already holds some of its embeds.
                self.close(if started_here { index + 1 } else { index });
                self.first_item = Some(index);
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
        self.done
            .push((std::mem::take(&mut self.embeds), start..end));
        self.chars = 0;
    }

    fn finish(mut self, item_count: usize) -> Vec<(Vec<Embed>, Range<usize>)> {
        if self.embeds.is_empty() {
            // Trailing items without embeds ride with the last message, so the delivery
            // retires them with it.
            if let (Some(_), Some((_, last))) = (self.first_item, self.done.last_mut()) {
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
/// removed, so names show as the backup server sent them.
pub fn to_text(message: &OutMessage) -> String {
    let mut blocks = Vec::new();
    if !message.content.is_empty() {
        blocks.push(readable_mentions(&message.content));
    }
    for embed in &message.embeds {
        let mut lines = Vec::new();
        if !embed.title.is_empty() {
            lines.push(format!("== {} ==", unescape_markdown(&embed.title)));
        }
        if !embed.description.is_empty() {
            lines.push(unescape_markdown(&embed.description));
        }
        for field in &embed.fields {
            let value = unescape_markdown(&field.value);
            let name = unescape_markdown(&field.name);
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
