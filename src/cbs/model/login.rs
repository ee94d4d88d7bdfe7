//! What a backup user's login name may be, wherever it comes from: a slash command's
//! argument or a `2/ListUsers.do` listing. A login is shown in the chat, logged and sent
//! back in every poll request, so an absurd one (200,000 characters, a NUL, a direction
//! override that makes it read as another) is refused before it is watched.

/// The longest login name taken; AhsayCBS names are far shorter.
pub const LOGIN_MAX_CHARS: usize = 128;

/// Unicode's format characters (general category Cf): bidi overrides and isolates, zero
/// width joiners and spaces, soft hyphens, tags. Invisible, and able to make text read
/// other than it is, so server text loses them. (Unicode 15.1; the list is short and
/// stable, which is why no table crate is pulled in for it.)
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// `text` trimmed, when it is a login name the bot takes: not empty, at most
/// [`LOGIN_MAX_CHARS`] characters, no control or format (invisible) characters.
pub fn checked_login(text: &str) -> Option<&str> {
    let login = text.trim();
    let taken = !login.is_empty()
        && login.chars().count() <= LOGIN_MAX_CHARS
        // A format character (a direction override, a zero-width space) would show as
        // another login.
        && !login.chars().any(|c| c.is_control() || is_format_char(c));
    taken.then_some(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_trimmed_bounded_and_visible() {
        assert_eq!(checked_login("  obm "), Some("obm"));
        assert_eq!(
            checked_login(&"a".repeat(LOGIN_MAX_CHARS)).map(str::len),
            Some(128)
        );
        for bad in [
            "",
            "  ",
            "a\u{0}b",
            "a\tb",
            "ab\u{202E}c",
            &"a".repeat(LOGIN_MAX_CHARS + 1),
        ] {
            assert_eq!(checked_login(bad), None, "{bad:?}");
        }
    }
}
