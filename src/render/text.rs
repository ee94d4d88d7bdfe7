//! Text helpers for chat output: making backup-server strings inert in Discord markdown,
//! cutting text to Discord's limits (counted in characters, as Discord counts them), and
//! the human forms of durations, sizes and times.
//!
//! Everything the backup server sends is untrusted: a backup-set name may hold `**`, a masked
//! link or `@everyone`. Embeds never ping, but they do render markdown and mentions, so such
//! text goes through [`escape_markdown`] (or [`code_span`]) before it reaches an embed.

use chrono::{DateTime, TimeZone};
use std::fmt::Display;

/// Marks text that was cut short.
pub const ELLIPSIS: char = '…';

/// Shown where a value is missing (Discord rejects empty field values).
pub const DASH: &str = "—";

/// Characters Discord markdown gives a meaning to, escaped with a backslash. Brackets and
/// parentheses are here so a masked link `[a](http://evil)` stays plain text; `<` so
/// `<@&1>`, `<#1>` and `<t:1>` tags never form.
const MARKDOWN_SPECIALS: [char; 13] = [
    '\\', '*', '_', '~', '`', '|', '>', '#', '[', ']', '(', ')', '<',
];

/// Written after every `@` so `@everyone`/`@here` and mentions can't form; invisible.
const ZERO_WIDTH_SPACE: char = '\u{200B}';

/// How many characters of a code shown in backticks are kept (a status code is ~35).
const CODE_SPAN_MAX_CHARS: usize = 200;

/// Makes `text` from the backup server show literally in Discord markdown: specials get a
/// backslash, `@` is followed by a zero-width space, and control characters (newlines
/// included, which could forge extra lines) become spaces.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for c in text.chars() {
        if MARKDOWN_SPECIALS.contains(&c) {
            out.push('\\');
            out.push(c);
        } else if c == '@' {
            out.push('@');
            out.push(ZERO_WIDTH_SPACE);
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Undoes [`escape_markdown`] (and the `@` guard of [`code_span`]) for plain-text output.
pub fn unescape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next)) if MARKDOWN_SPECIALS.contains(&next) => {
                out.push(next);
                chars.next();
            }
            ('@', Some(&ZERO_WIDTH_SPACE)) => {
                out.push('@');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Shows a code (a raw status code) in backticks. Markdown does not render inside a code
/// span and backslashes would show there, so instead of escaping, backticks in the code
/// become `'` (they would close the span), `@` is guarded as in [`escape_markdown`], and the
/// code is cut before it is wrapped so a later cut never leaves the span open.
/// An empty code gives `DASH` (an em dash): an empty span renders as two stray backticks.
pub fn code_span(code: &str) -> String {
    let code = code.trim();
    if code.is_empty() {
        return DASH.to_owned();
    }
    let mut inner = String::with_capacity(code.len());
    for c in cut(code, CODE_SPAN_MAX_CHARS).chars() {
        match c {
            '`' => inner.push('\''),
            '@' => {
                inner.push('@');
                inner.push(ZERO_WIDTH_SPACE);
            }
            c if c.is_control() => inner.push(' '),
            c => inner.push(c),
        }
    }
    format!("`{inner}`")
}

/// Cuts `text` to at most `max_chars` characters (not bytes), ending a cut with `…`.
/// A cut never leaves a lone escaping backslash at its end, which would escape the `…`
/// and, worse, show as a stray backslash.
pub fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    if max_chars == 0 {
        return String::new();
    }
    let mut kept: String = text.chars().take(max_chars - 1).collect();
    let trailing_backslashes = kept.chars().rev().take_while(|&c| c == '\\').count();
    if trailing_backslashes % 2 == 1 {
        kept.pop();
    }
    kept.push(ELLIPSIS);
    kept
}

/// An escaped value, or [`DASH`] when the server sent nothing.
pub fn escaped_or_dash(text: Option<&str>) -> String {
    match text.map(str::trim) {
        Some(t) if !t.is_empty() => escape_markdown(t),
        _ => DASH.to_owned(),
    }
}

/// A duration for people: `7s`, `5m 03s`, `1h 02m`, `13h`, `2d 04h`. Two units at most;
/// a zero second unit is left out. Negative durations count as zero.
pub fn format_duration(secs: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let secs = secs.max(0);
    let (major, major_unit, minor, minor_unit) = if secs < MINUTE {
        return format!("{secs}s");
    } else if secs < HOUR {
        (secs / MINUTE, "m", secs % MINUTE, "s")
    } else if secs < DAY {
        (secs / HOUR, "h", secs % HOUR / MINUTE, "m")
    } else {
        (secs / DAY, "d", secs % DAY / HOUR, "h")
    };
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit} {minor:02}{minor_unit}")
    }
}

/// A byte count for people, in binary units (`0 B`, `1.50 KiB`, `3.20 GiB`): the unit
/// names say 1024, which is what backup consoles mean.
pub fn format_size(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// A time as `yyyy-MM-dd HH:mm:ss (TZ)` in the zone it carries.
pub fn format_time<Tz>(at: &DateTime<Tz>) -> String
where
    Tz: TimeZone,
    Tz::Offset: Display,
{
    at.format("%Y-%m-%d %H:%M:%S (%Z)").to_string()
}

/// A field the backup server sent but restorewatch could not read, shown as sent:
/// `` `n/a` (unreadable) ``.
pub fn unreadable_value(raw: &str) -> String {
    format!("{} (unreadable)", code_span(raw))
}

/// A job's field for people: the value formatted, else the text the server sent for it,
/// else `missing`.
pub fn value_or_raw<T>(
    value: Option<T>,
    raw: Option<&str>,
    format: impl FnOnce(T) -> String,
    missing: &str,
) -> String {
    match (value, raw) {
        (Some(v), _) => format(v),
        (None, Some(raw)) => unreadable_value(raw),
        (None, None) => missing.to_owned(),
    }
}

/// `1 job` / `2 jobs`: counts read better with the right noun form.
pub fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    const HOSTILE: &str = "@everyone **x** <@&1> [a](http://evil)";

    #[test]
    fn escape_defuses_mentions_bold_and_masked_links() {
        let e = escape_markdown(HOSTILE);
        assert_eq!(
            e,
            "@\u{200B}everyone \\*\\*x\\*\\* \\<@\u{200B}&1\\> \\[a\\]\\(http://evil\\)"
        );
        assert!(!e.contains("@everyone"));
        assert!(!e.contains("**"));
        assert!(!e.contains("[a]("));
        assert!(!e.contains("<@&"));
    }

    #[test]
    fn escape_covers_every_special_and_flattens_lines() {
        assert_eq!(
            escape_markdown("a\\b_c~d`e|f>g#h\ni"),
            "a\\\\b\\_c\\~d\\`e\\|f\\>g\\#h i"
        );
        assert_eq!(escape_markdown("plain-name 1.0"), "plain-name 1.0");
    }

    #[test]
    fn unescape_restores_the_original() {
        for s in [HOSTILE, "a\\b_c~d`e|f>g#h", "plain", "\\\\x"] {
            assert_eq!(unescape_markdown(&escape_markdown(s)), s, "{s}");
        }
    }

    #[test]
    fn code_span_keeps_backticks_from_closing_it() {
        assert_eq!(
            code_span("RESTORE_STOP_BY_ERROR"),
            "`RESTORE_STOP_BY_ERROR`"
        );
        assert_eq!(code_span("a`b @here"), "`a'b @\u{200B}here`");
        assert_eq!(code_span("  "), DASH);
        let long = code_span(&"X".repeat(1000));
        assert!(long.starts_with('`') && long.ends_with("…`"));
        assert_eq!(long.chars().count(), CODE_SPAN_MAX_CHARS + 2);
    }

    #[test]
    fn cut_counts_characters_not_bytes() {
        assert_eq!(cut("ääää", 4), "ääää");
        assert_eq!(cut("äääää", 4), "äää…");
        assert_eq!(cut("abc", 0), "");
        assert_eq!(cut("", 3), "");
    }

    #[test]
    fn cut_never_leaves_a_dangling_backslash() {
        // "ab\*cd" cut to 4 keeps "ab\" + "…": the lone backslash must go.
        assert_eq!(cut("ab\\*cd", 4), "ab…");
        // An escaped backslash "\\" is a whole pair and stays.
        assert_eq!(cut("a\\\\bcd", 4), "a\\\\…");
        let escaped = escape_markdown(&"*".repeat(100));
        for max in 1..60 {
            let c = cut(&escaped, max);
            assert!(c.chars().count() <= max);
            let body = c.trim_end_matches(ELLIPSIS);
            let trailing = body.chars().rev().take_while(|&ch| ch == '\\').count();
            assert_eq!(trailing % 2, 0, "{c:?}");
        }
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(format_duration(7), "7s");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(-5), "0s");
        assert_eq!(format_duration(60), "1m");
        assert_eq!(format_duration(303), "5m 03s");
        assert_eq!(format_duration(3720), "1h 02m");
        assert_eq!(format_duration(13 * 3600), "13h");
        assert_eq!(format_duration(2 * 86400 + 4 * 3600 + 59), "2d 04h");
    }

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.50 KiB");
        assert_eq!(format_size(1_048_576), "1 MiB");
        assert_eq!(format_size(3_435_973_837), "3.20 GiB");
    }

    #[test]
    fn times_show_their_zone() {
        let berlin: Tz = chrono_tz::Europe::Berlin;
        let t = berlin.with_ymd_and_hms(2024, 6, 26, 13, 25, 14).unwrap();
        assert_eq!(format_time(&t), "2024-06-26 13:25:14 (CEST)");
        let utc = chrono::Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(format_time(&utc), "2024-01-02 03:04:05 (UTC)");
    }
}
