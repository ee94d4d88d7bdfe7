//! The envelope every reply shares (`Status` OK or Error), and reading a field tolerantly:
//! by any of its spellings, case-insensitively, as text, a size or a list, and cut short
//! for logs.

use super::job::RAW_FIELD_MAX_CHARS;
use serde_json::{Map, Value};

/// How long a raw snippet of a bad reply or item may be in logs and errors (characters).
pub const SNIPPET_MAX_CHARS: usize = 200;

/// Why a reply body could not be used at all.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyError {
    /// `Status: Error` with the server's Message and ExptType.
    Api {
        message: String,
        expt_type: Option<String>,
    },
    /// Not the documented envelope; `snippet` is the start of the body.
    Malformed { reason: String, snippet: String },
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`, with its control
/// characters escaped (see `printable`).
pub fn snippet(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{}…", printable(&cut))
    } else {
        printable(&cut)
    }
}

/// `text` with its control characters written as escapes (`\n`, `\u{1b}`): what a server
/// sends is logged as one line, and cannot forge log lines or drive a terminal.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The UTF-8 byte order mark some servers (and the proxies in front of them) put before a
/// reply: RFC 8259 lets a parser ignore it, serde_json does not.
pub(super) const BYTE_ORDER_MARK: char = '\u{feff}';

/// `body` without a leading [`BYTE_ORDER_MARK`].
pub(super) fn without_byte_order_mark(body: &str) -> &str {
    body.strip_prefix(BYTE_ORDER_MARK).unwrap_or(body)
}

/// The reply's envelope, every call's: a JSON object whose `Status` is `OK`. `Status:
/// Error` is the API's own refusal ([`ReplyError::Api`], its `Message` and `ExptType`);
/// anything else is malformed.
pub(super) fn open_envelope(body: &str) -> Result<serde_json::Map<String, Value>, ReplyError> {
    let malformed = |reason: String| ReplyError::Malformed {
        reason,
        snippet: snippet(body, SNIPPET_MAX_CHARS),
    };
    let root: Value = serde_json::from_str(without_byte_order_mark(body))
        .map_err(|e| malformed(format!("not JSON: {e}")))?;
    let Value::Object(envelope) = root else {
        return Err(malformed("the reply is not a JSON object".into()));
    };
    let status = get(&envelope, &["Status"])
        .and_then(as_text)
        .unwrap_or_default();
    if status.eq_ignore_ascii_case("error") {
        return Err(ReplyError::Api {
            message: get(&envelope, &["Message"])
                .and_then(as_text)
                .map_or_else(|| "(no message)".into(), |m| printable(&m)),
            expt_type: (get(&envelope, &["ExptType"]).and_then(as_text)).map(|t| printable(&t)),
        });
    }
    if !status.eq_ignore_ascii_case("ok") {
        return Err(malformed(format!(
            "envelope Status is {status:?}, not OK or Error"
        )));
    }
    Ok(envelope)
}

/// A field's value as the server sent it, for showing: strings without their quotes.
pub(super) fn raw_text(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    snippet(&text, RAW_FIELD_MAX_CHARS)
}

/// Looks a field up by any of its spellings, ignoring ASCII case; earlier spellings win.
pub(super) fn get<'v>(map: &'v Map<String, Value>, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().find_map(|want| {
        map.get(*want).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(want))
                .map(|(_, v)| v)
        })
    })
}

/// A scalar as text: strings as they are, numbers and booleans written out.
pub(super) fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The largest integer a JSON number read as a float still holds exactly (2^53).
const EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// An identity field (job ID, backup set ID) as text: strings as they are, a number as
/// the integer it is, so `1687755057644`, `1687755057644.0` and `"1687755057644"` are one
/// backup set. A number read only approximately (beyond 2^53, or with a fraction) is no
/// identity: two different ones could read alike.
pub(super) fn as_id(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Ok(Some(u.to_string())),
            (None, Some(i), _) => Ok(Some(i.to_string())),
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() <= EXACT_FLOAT_INT => {
                Ok(Some(format!("{f:.0}")))
            }
            _ => Err(format!("the number {n} cannot be read exactly")),
        },
        other => Ok(as_text(other)),
    }
}

/// A byte count: a non-negative integer, as a number or a string. Anything else (`-1`,
/// `"n/a"`, `1.5`) is unknown.
pub(super) fn as_size(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// A database/VM/folder list: a JSON list, or one string (empty means none).
pub(super) fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(as_text)
            .filter(|s| !s.is_empty())
            .collect(),
        other => as_text(other)
            .filter(|s| !s.is_empty())
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode_reply;
    use super::super::test_support::cx;
    use super::*;

    /// A server's text goes to the log as one line: its newlines and terminal escapes are
    /// written as escapes, in a malformed reply's snippet and in an API error's message.
    #[test]
    fn control_characters_from_the_server_are_escaped() {
        let forged = "<html>Bad gateway\n2026-11-29T00:00:00Z INFO poll cycle done\u{1b}[2J";
        let Err(ReplyError::Malformed { snippet, .. }) = decode_reply(forged, &cx()) else {
            panic!("malformed");
        };
        assert!(!snippet.chars().any(char::is_control), "{snippet:?}");
        assert!(
            snippet.ends_with(r"Bad gateway\n2026-11-29T00:00:00Z INFO poll cycle done\u{1b}[2J"),
            "{snippet}"
        );
        let body = r#"{"Status":"Error","Message":"No such user\nINFO forged","ExptType":"x\r"}"#;
        assert_eq!(
            decode_reply(body, &cx()),
            Err(ReplyError::Api {
                message: r"No such user\nINFO forged".into(),
                expt_type: Some(r"x\r".into()),
            })
        );
    }

    #[test]
    fn error_envelope_is_an_api_error() {
        let body = r#"{"Status":"Error","Message":"Incorrect system username/password","ExptType":"com.ahsay.obs.core.dbs.c"}"#;
        assert_eq!(
            decode_reply(body, &cx()),
            Err(ReplyError::Api {
                message: "Incorrect system username/password".into(),
                expt_type: Some("com.ahsay.obs.core.dbs.c".into()),
            })
        );
    }

    #[test]
    fn non_json_is_malformed_with_a_snippet() {
        let Err(ReplyError::Malformed { snippet, .. }) = decode_reply("<html>oops</html>", &cx())
        else {
            panic!("expected malformed");
        };
        assert_eq!(snippet, "<html>oops</html>");
    }
}
