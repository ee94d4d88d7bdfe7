//! Bounded lists for the cards: whole lines while they fit, then `… and N more` saying how
//! many were left out and where to see them.

use crate::event::PollError;
use crate::render::text::{cut, escape_markdown};

/// One database/VM/folder name in a list (characters); the rest of a long name is cut.
const LIST_ITEM_MAX_CHARS: usize = 200;
/// One poll error's message in the summary (characters).
const POLL_ERROR_MESSAGE_MAX_CHARS: usize = 300;
/// `• name` lines within `max_chars`; what does not fit is counted, with where to see it.
pub(super) fn bullet_list(items: &[String], max_chars: usize) -> String {
    let lines: Vec<String> = items
        .iter()
        .map(|item| format!("• {}", cut(&escape_markdown(item), LIST_ITEM_MAX_CHARS)))
        .collect();
    lines_within(&lines, max_chars, MORE_IN_CBS)
}

/// `• obm, 2024-06-26: message` lines within `max_chars`; the log has every one.
pub(super) fn error_list(errors: &[PollError], max_chars: usize) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "• {}, {}: {}",
                cut(&escape_markdown(&e.login_name), LIST_ITEM_MAX_CHARS),
                e.date.format("%Y-%m-%d"),
                cut(&escape_markdown(&e.message), POLL_ERROR_MESSAGE_MAX_CHARS),
            )
        })
        .collect();
    lines_within(&lines, max_chars, MORE_IN_LOG)
}

/// Where the rest of a job's list can be seen, after `… and N more`.
const MORE_IN_CBS: &str = " (the job in CBS lists all)";
/// Where the rest of a cycle's errors can be read: each is logged with its user and date.
const MORE_IN_LOG: &str = " (each is in restorewatch's log)";

/// One line takes at most this share of a list's room (`1/4`): a longer one is cut.
const LINE_SHARE_DIVISOR: usize = 4;
/// Lines are not cut shorter than this (characters): a list too small for that shows
/// whole lines while they fit, else only the `… and N more` line.
const LINE_CUT_MIN_CHARS: usize = 40;

/// Joins whole lines while they fit in `max_chars`, keeping room for the closing
/// `… and N more{where_}` line that says how many were left out and where they are. A
/// line longer than a quarter of `max_chars` is cut to that.
pub(super) fn lines_within(lines: &[String], max_chars: usize, where_: &str) -> String {
    lines_of_within(lines, lines.len(), max_chars, where_)
}

/// [`lines_within`] for the first `lines` of `total` items: the count of those left out
/// includes the items beyond `lines`.
pub(super) fn lines_of_within(
    lines: &[String],
    total: usize,
    max_chars: usize,
    where_: &str,
) -> String {
    let beyond = total.saturating_sub(lines.len());
    let more = |left: usize| format!("… and {} more{where_}", left + beyond);
    let mut out = String::new();
    let mut used = 0;
    let line_max = match max_chars / LINE_SHARE_DIVISOR {
        share if share >= LINE_CUT_MIN_CHARS => share,
        _ => usize::MAX,
    };
    for (i, line) in lines.iter().enumerate() {
        let sep = usize::from(i > 0);
        let left_after = lines.len() - i - 1;
        let tail = if left_after + beyond > 0 {
            1 + more(left_after).chars().count()
        } else {
            0
        };
        // An over-long line is cut (with `…`) rather than leaving the list with no line
        // at all, or the rest of it out; the rest is listed as usual.
        let line = &cut(line, line_max);
        let len = line.chars().count();
        if used + sep + len + tail > max_chars {
            let tail = more(lines.len() - i);
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&tail);
            // Only when even the first line did not fit can this be over: cut it then.
            return cut(&out, max_chars);
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line);
        used += sep + len;
    }
    if beyond > 0 {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&more(0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::embed::EMBED_FIELD_VALUE_MAX_CHARS;

    #[test]
    fn a_long_list_alone_ends_with_how_many_were_left_out() {
        let items: Vec<String> = (0..2000).map(|i| format!("db{i:04}")).collect();
        let list = bullet_list(&items, EMBED_FIELD_VALUE_MAX_CHARS);
        assert!(list.chars().count() <= EMBED_FIELD_VALUE_MAX_CHARS);
        let shown = list.lines().filter(|l| l.starts_with("• ")).count();
        assert_eq!(
            list.lines().last().unwrap(),
            format!("… and {} more (the job in CBS lists all)", 2000 - shown)
        );
        assert_eq!(bullet_list(&items[..2], 1024), "• db0000\n• db0001");
    }

    /// A line too long is cut, and the rest listed as usual (a first line too long to fit
    /// used to leave only `… and N more`).
    #[test]
    fn a_first_line_too_long_is_cut_and_the_rest_listed() {
        let mut lines = vec!["x".repeat(5000)];
        lines.extend((1..7).map(|i| format!("line {i}")));
        lines[3] = "y".repeat(1000);
        let list = lines_of_within(&lines, 9, 1500, "");
        assert!(list.chars().count() <= 1500);
        let shown: Vec<&str> = list.lines().collect();
        assert_eq!(shown[0], format!("{}…", "x".repeat(374)));
        assert_eq!(shown[3], format!("{}…", "y".repeat(374)));
        for i in [1, 2, 4, 5, 6] {
            assert_eq!(shown[i], lines[i]);
        }
        assert_eq!(shown[7], "… and 2 more");
        // Too little room to be worth a cut: the count alone, as before.
        assert_eq!(lines_within(&lines[..1], 20, ""), "… and 1 more");
    }
}
