//! Errors as they may be logged: an interaction's token is a credential for answering it
//! (for 15 minutes), and serenity's HTTP errors name the URL they failed on, which carries
//! it: `/interactions/{id}/{token}/callback`, `/webhooks/{application}/{token}/…`. The
//! token segment is replaced before an error reaches the log.

use std::fmt::Display;

/// What replaces a token in a logged URL.
const REDACTED: &str = "[redacted]";

/// The path segments after which, one segment further, a token follows.
const TOKEN_AFTER: [&str; 2] = ["/interactions/", "/webhooks/"];

/// `error` with its whole chain (`{:#}`), interaction tokens redacted.
pub(super) fn loggable(error: &impl Display) -> String {
    redact_tokens(&format!("{error:#}"))
}

/// `text` with the token segment of every interaction or webhook URL path replaced.
pub(super) fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = TOKEN_AFTER
            .iter()
            .filter_map(|marker| rest.find(marker).map(|at| (at, marker.len())))
            .min();
        let Some((at, len)) = next else {
            out.push_str(rest);
            return out;
        };
        let (head, tail) = rest.split_at(at + len);
        out.push_str(head);
        // The id (or application id), then the token up to the next delimiter.
        let id_end = segment_end(tail);
        let (id, after_id) = tail.split_at(id_end);
        out.push_str(id);
        rest = match after_id.strip_prefix('/') {
            Some(token_and_more) => {
                out.push('/');
                let token_end = segment_end(token_and_more);
                if token_end > 0 {
                    out.push_str(REDACTED);
                }
                &token_and_more[token_end..]
            }
            None => after_id,
        };
    }
}

/// Where a URL path segment starting `text` ends.
fn segment_end(text: &str) -> usize {
    text.find(|c: char| matches!(c, '/' | '?' | '#' | ')' | '"' | '\'') || c.is_whitespace())
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interaction_and_webhook_tokens_are_redacted() {
        let callback = "error sending request for url \
            (https://discord.com/api/v10/interactions/1234/aW50ZXJhY3Rpb24.t0k-en_x/callback): \
            connection reset";
        assert_eq!(
            redact_tokens(callback),
            "error sending request for url \
             (https://discord.com/api/v10/interactions/1234/[redacted]/callback): \
             connection reset"
        );
        let followup = "HTTP 404 at https://discord.com/api/v10/webhooks/99/tok3n?wait=true \
            and /webhooks/99/other/messages/@original";
        assert_eq!(
            redact_tokens(followup),
            "HTTP 404 at https://discord.com/api/v10/webhooks/99/[redacted]?wait=true \
             and /webhooks/99/[redacted]/messages/@original"
        );
    }

    #[test]
    fn other_text_is_left_alone() {
        for text in [
            "",
            "timed out",
            "https://discord.com/api/v10/channels/1/messages",
            "/webhooks/",
            "/interactions/5",
            "ends with /webhooks/5/",
        ] {
            assert_eq!(redact_tokens(text), text);
        }
        let error = anyhow::anyhow!("GET /webhooks/1/secret failed").context("answering");
        assert_eq!(
            loggable(&error),
            "answering: GET /webhooks/1/[redacted] failed"
        );
    }
}
