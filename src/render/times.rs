//! Times in the chat: Discord's timestamp tags (`<t:unix:f>`, `<t:unix:R>`), which each
//! reader's client shows in their own zone, and the same tags read back as plain text in
//! one zone for the console, which has no Discord markup ([`plain_times`]).
//!
//! A tag is only ever written here: server text is escaped before it reaches an embed
//! (`\<t:…` never forms a tag), and [`plain_times`] leaves such escaped text alone.

use super::text::format_time;
use crate::tz::Tz;
use chrono::{DateTime, Utc};

/// `<t:1719401114:f>`: the date and time, in each reader's zone.
pub fn discord_time(at: DateTime<Utc>) -> String {
    format!("<t:{}:f>", at.timestamp())
}

/// `<t:1719401114:f> (<t:1719401114:R>)`: the date and time and how long ago (or how
/// soon), in each reader's zone.
pub fn discord_time_ago(at: DateTime<Utc>) -> String {
    format!("{} (<t:{}:R>)", discord_time(at), at.timestamp())
}

/// Discord's time tags in `text` as plain times in `tz`: `t`/`T` as the time of day, `d`
/// as the date, any other style as `format_time`. A relative tag in parentheses after
/// another one, as [`discord_time_ago`] writes it, is dropped: the console has no "now" to
/// be relative to, and the absolute time is already there. An escaped `\<t:` (server
/// text) and anything not a whole tag stay as they are.
pub fn plain_times(text: &str, tz: Tz) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("<t:") {
        let (before, from_tag) = rest.split_at(at);
        out.push_str(before);
        let escaped = out.ends_with('\\');
        match parse_tag(from_tag).filter(|_| !escaped) {
            Some((when, style, len)) => {
                let after = &from_tag[len..];
                if style == 'R' && out.ends_with(" (") && after.starts_with(')') {
                    out.truncate(out.len() - 2);
                    rest = &after[1..];
                    continue;
                }
                let local = when.with_timezone(&tz);
                out.push_str(&match style {
                    't' => local.format("%H:%M").to_string(),
                    'T' => local.format("%H:%M:%S").to_string(),
                    'd' => local.format("%Y-%m-%d").to_string(),
                    _ => format_time(&local),
                });
                rest = after;
            }
            None => {
                out.push_str("<t:");
                rest = &from_tag[3..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `<t:SECONDS>` or `<t:SECONDS:STYLE>` at the start of `text`: the moment, the style
/// (`f` when absent) and the tag's length in bytes.
fn parse_tag(text: &str) -> Option<(DateTime<Utc>, char, usize)> {
    let body = text.strip_prefix("<t:")?;
    let end = body.find('>')?;
    let inner = &body[..end];
    let (secs, style) = match inner.split_once(':') {
        Some((secs, style)) => {
            let mut chars = style.chars();
            let style = chars.next()?;
            if chars.next().is_some() || !style.is_ascii_alphabetic() {
                return None;
            }
            (secs, style)
        }
        None => (inner, 'f'),
    };
    if secs.is_empty()
        || !secs
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let when = DateTime::from_timestamp(secs.parse().ok()?, 0)?;
    Some((when, style, 3 + end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    use crate::test_data::berlin;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 26, 11, 25, 14).unwrap()
    }

    #[test]
    fn tags_carry_the_unix_time() {
        assert_eq!(discord_time(at()), "<t:1719401114:f>");
        assert_eq!(
            discord_time_ago(at()),
            "<t:1719401114:f> (<t:1719401114:R>)"
        );
    }

    #[test]
    fn the_console_reads_tags_in_its_zone() {
        let text = format!(
            "Since {}. Ended {}",
            discord_time_ago(at()),
            discord_time(at())
        );
        assert_eq!(
            plain_times(&text, berlin()),
            "Since 2024-06-26 13:25:14 (CEST). Ended 2024-06-26 13:25:14 (CEST)"
        );
        assert_eq!(
            plain_times(
                "<t:1719401114:t>–<t:1719401114:d> <t:1719401114:R> <t:1719401114>",
                crate::tz::Tz::UTC
            ),
            "11:25–2024-06-26 2024-06-26 11:25:14 (UTC) 2024-06-26 11:25:14 (UTC)"
        );
    }

    #[test]
    fn escaped_and_broken_tags_stay_as_they_are() {
        for text in [
            "\\<t:1719401114:f>",
            "<t:abc:f>",
            "<t:1719401114:ff>",
            "<t:1719401114",
            "<t::f>",
            "<t:99999999999999999999:f>",
            "a <t: b",
        ] {
            assert_eq!(plain_times(text, berlin()), text);
        }
    }
}
