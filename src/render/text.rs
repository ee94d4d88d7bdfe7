//! Text helpers for chat output: making backup-server strings inert in Discord markdown,
//! cutting text to Discord's limits (counted in characters, as Discord counts them), and
//! the human forms of durations, sizes and times.
//!
//! Everything the backup server sends is untrusted: a backup-set name may hold `**`, a masked
//! link or `@everyone`. Embeds never ping, but they do render markdown and mentions, so such
//! text goes through [`escape_markdown`] (or [`code_span`]) before it reaches an embed;
//! footers, which Discord shows as plain text, go through [`plain_text`]. All three drop
//! Unicode format characters (bidi overrides such as U+202E could make a name read
//! backwards), and escaped text never forms a clickable link or a list, heading or quote.

use chrono::{DateTime, TimeZone};
use std::fmt::Display;

/// Marks text that was cut short.
pub const ELLIPSIS: char = '…';

/// Shown where a value is missing (Discord rejects empty field values).
pub const DASH: &str = "—";
/// What a job whose end the server gives before its start says instead of a duration.
pub const ENDED_BEFORE_START: &str = "ended before it started";

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

/// A login, owner or backup-set name in a list line, after escaping (characters): one
/// absurdly long name must not push the rest of the list out of a card.
const LIST_NAME_MAX_CHARS: usize = 80;

pub use crate::cbs::model::is_format_char;

/// Server text as plain text, for places Discord shows without markdown (footers): format
/// characters dropped, control characters (newlines included) made spaces. No escapes,
/// which would show there as stray backslashes.
pub fn plain_text(text: &str) -> String {
    text.chars()
        .filter(|c| !is_format_char(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Makes `text` from the backup server show literally in Discord markdown: specials get a
/// backslash, `@` is followed by a zero-width space, and control characters (newlines
/// included, which could forge extra lines) become spaces. Format characters are dropped.
/// The `:` of `://` is escaped so a bare URL is not made a link, and a leading `-` (a list
/// item, or `-#` small text) is escaped too; `#` and `>` are escaped everywhere already.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut chars = text.chars().filter(|c| !is_format_char(*c)).peekable();
    let mut line_start = true;
    while let Some(c) = chars.next() {
        let leading = std::mem::replace(&mut line_start, false);
        if MARKDOWN_SPECIALS.contains(&c) || (c == '-' && leading) {
            out.push('\\');
            out.push(c);
        } else if c == ':' && chars.peek() == Some(&'/') {
            out.push('\\');
            out.push(':');
        } else if c == '@' {
            out.push('@');
            out.push(ZERO_WIDTH_SPACE);
        } else if c.is_control() {
            out.push(' ');
        } else if c.is_whitespace() && leading {
            // Markdown lets a list item start after spaces: still at the line's start.
            out.push(c);
            line_start = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// Undoes [`escape_markdown`] (and the `@` guard of [`code_span`]) for plain-text output.
/// Our own bold markers (an unescaped `**`) are dropped: server text never carries one, as
/// escaping makes it `\*\*`.
pub fn unescape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next))
                if MARKDOWN_SPECIALS.contains(&next) || matches!(next, '-' | ':') =>
            {
                out.push(next);
                chars.next();
            }
            ('@' | ':', Some(&ZERO_WIDTH_SPACE)) => {
                out.push(c);
                chars.next();
            }
            ('*', Some('*')) => {
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
/// code is cut before it is wrapped so a later cut never leaves the span open. Format
/// characters are dropped. Used for logins and codes: `john_doe` shows as is, where an
/// escaped `john\_doe` would show its backslash inside the span.
/// An empty code gives `DASH` (an em dash): an empty span renders as two stray backticks.
pub fn code_span(code: &str) -> String {
    let code = code.trim();
    if code.is_empty() {
        return DASH.to_owned();
    }
    let mut inner = String::with_capacity(code.len());
    for c in cut(code, CODE_SPAN_MAX_CHARS).chars() {
        match c {
            c if is_format_char(c) => {}
            '`' => inner.push('\''),
            '@' => {
                inner.push('@');
                inner.push(ZERO_WIDTH_SPACE);
            }
            c if c.is_control() => inner.push(' '),
            c => inner.push(c),
        }
    }
    if inner.trim().is_empty() {
        return DASH.to_owned();
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

/// A name from the backup server in a list line: escaped and kept short (cut with `…`).
pub fn list_name(text: &str) -> String {
    cut(&escape_markdown(text), LIST_NAME_MAX_CHARS)
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

/// `1st`, `2nd`, `3rd`, `11th`, `22nd`.
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tz::Tz;

    const HOSTILE: &str = "@everyone **x** <@&1> [a](http://evil)";

    #[test]
    fn escape_defuses_mentions_bold_and_masked_links() {
        let e = escape_markdown(HOSTILE);
        assert_eq!(
            e,
            "@\u{200B}everyone \\*\\*x\\*\\* \\<@\u{200B}&1\\> \\[a\\]\\(http\\://evil\\)"
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
    fn our_bold_markers_are_dropped_in_plain_text_and_server_stars_stay() {
        let line = format!("**2nd failure in a row** on {}", escape_markdown("**x**"));
        assert_eq!(unescape_markdown(&line), "2nd failure in a row on **x**");
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
    fn code_spans_show_logins_without_backslashes() {
        assert_eq!(code_span("john_doe"), "`john_doe`");
        assert_eq!(code_span("a*b|c"), "`a*b|c`");
        assert_eq!(code_span("\u{202E}"), DASH, "nothing visible is left");
    }

    #[test]
    fn format_characters_are_stripped_everywhere() {
        let hostile = "invoice\u{202E}fdp.exe\u{200F}\u{2066}x\u{FEFF}";
        assert_eq!(escape_markdown(hostile), "invoicefdp.exex");
        assert_eq!(code_span(hostile), "`invoicefdp.exex`");
        assert_eq!(plain_text(hostile), "invoicefdp.exex");
        assert!(is_format_char('\u{E0041}') && is_format_char('\u{00AD}'));
        assert!(!is_format_char('a') && !is_format_char('ä') && !is_format_char(' '));
        // Our own guard after `@` is added after stripping, so it survives.
        assert_eq!(escape_markdown("@\u{200B}here"), "@\u{200B}here");
    }

    #[test]
    fn bare_urls_are_not_links() {
        let e = escape_markdown("see https://evil.example/x and ftp://y");
        assert_eq!(e, "see https\\://evil.example/x and ftp\\://y");
        assert!(!e.contains("https://") && !e.contains("ftp://"));
        assert_eq!(
            unescape_markdown(&e),
            "see https://evil.example/x and ftp://y"
        );
        assert_eq!(
            escape_markdown("10:30 a:b"),
            "10:30 a:b",
            "other colons stay"
        );
    }

    #[test]
    fn line_leading_list_heading_and_quote_markers_are_escaped() {
        assert_eq!(escape_markdown("- item"), "\\- item");
        assert_eq!(escape_markdown("-# small"), "\\-\\# small");
        assert_eq!(escape_markdown("  - item"), "  \\- item");
        assert_eq!(escape_markdown("# Big"), "\\# Big");
        assert_eq!(escape_markdown("> quote"), "\\> quote");
        assert_eq!(escape_markdown("a-b - c"), "a-b - c", "only at the start");
        assert_eq!(unescape_markdown(&escape_markdown("-# x")), "-# x");
    }

    /// Every string of up to four characters over a hostile alphabet: the escaped text
    /// keeps no format character but our own guard, forms no link, mention or unescaped
    /// special, and unescapes to the input as shown (format characters gone, controls
    /// as spaces).
    #[test]
    fn escaping_holds_for_every_short_hostile_string() {
        let alphabet = [
            '*', '_', '`', '\\', '<', '>', '#', '-', '@', ':', '/', 'h', ' ', '\n', '\u{202E}',
            '\u{200B}', '[', '(',
        ];
        let n = alphabet.len();
        let mut checked = 0;
        for len in 1..=4u32 {
            for mut index in 0..n.pow(len) {
                let mut input = String::new();
                for _ in 0..len {
                    input.push(alphabet[index % n]);
                    index /= n;
                }
                let e = escape_markdown(&input);
                let chars: Vec<char> = e.chars().collect();
                for (i, &c) in chars.iter().enumerate() {
                    let escaped = i > 0
                        && chars[..i].iter().rev().take_while(|&&b| b == '\\').count() % 2 == 1;
                    if c == ZERO_WIDTH_SPACE {
                        assert_eq!(
                            chars.get(i.wrapping_sub(1)),
                            Some(&'@'),
                            "{input:?} → {e:?}"
                        );
                    } else {
                        assert!(!is_format_char(c) && !c.is_control(), "{input:?} → {e:?}");
                    }
                    if c == '@' {
                        assert_eq!(chars.get(i + 1), Some(&ZERO_WIDTH_SPACE), "{input:?}");
                    }
                    if MARKDOWN_SPECIALS.contains(&c) && c != '\\' {
                        assert!(escaped, "unescaped {c:?}: {input:?} → {e:?}");
                    }
                    if c == ':' && chars.get(i + 1) == Some(&'/') {
                        assert!(escaped, "a link could form: {input:?} → {e:?}");
                    }
                }
                let shown = plain_text(&input);
                assert_eq!(unescape_markdown(&e), shown, "{input:?} → {e:?}");
                checked += 1;
            }
        }
        assert!(checked > 100_000);
    }

    #[test]
    fn plain_text_has_no_escapes_and_one_line() {
        assert_eq!(plain_text("cbs_main *x*\nnext"), "cbs_main *x* next");
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
        let berlin: Tz = crate::test_data::berlin();
        let t = berlin.with_ymd_and_hms(2024, 6, 26, 13, 25, 14).unwrap();
        assert_eq!(format_time(&t), "2024-06-26 13:25:14 (CEST)");
        let utc = chrono::Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(format_time(&utc), "2024-01-02 03:04:05 (UTC)");
    }
}
