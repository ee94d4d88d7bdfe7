//! The request/response plumbing under every call: POSTing the JSON body (paced),
//! reading a bounded reply, mapping transport trouble to [`CbsError`], and redacting the
//! system password from whatever the server sends back.

use super::super::model::{self, SNIPPET_MAX_CHARS};
use super::{CbsClient, CbsError};
use secrecy::{ExposeSecret, SecretString};

/// Replies larger than this are refused (bytes); a day of restores for one user is far less.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

impl CbsClient {
    /// POSTs `body` to `url`, paced by `cbs.max_requests_per_second`, and answers the
    /// reply's text. A status other than 2xx is [`CbsError::Http`] with a short, redacted
    /// snippet of what came back; a redirect is not followed, and its snippet names where
    /// it pointed.
    pub(super) async fn post_json<B: serde::Serialize>(
        &self,
        url: reqwest::Url,
        body: &B,
    ) -> Result<String, CbsError> {
        let response = self.send_json(url, body).await?;
        self.read_body(response).await
    }

    /// [`CbsClient::post_json`] up to the reply's body: answers a 2xx response, its body
    /// unread, for a caller that reads it as it comes (see `stream.rs`).
    pub(super) async fn send_json<B: serde::Serialize>(
        &self,
        url: reqwest::Url,
        body: &B,
    ) -> Result<reqwest::Response, CbsError> {
        let i = &self.inner;
        self.paced().await;
        let response = i
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status.is_redirection() {
            // Not followed: a 307 or 308 would send the body, password and all, wherever
            // the Location points, and a 301 or 302 would turn the POST into a GET.
            let to = (response.headers().get(reqwest::header::LOCATION))
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_else(|| "nowhere (no Location)".to_owned());
            return Err(CbsError::Http {
                server: i.server_name.clone(),
                status,
                snippet: model::snippet(
                    &self.redact(format!(
                        "redirects to {to}, not followed: set `cbs.url` to the address it gives"
                    )),
                    SNIPPET_MAX_CHARS,
                ),
            });
        }
        if !status.is_success() {
            let text = self.read_body(response).await?;
            return Err(CbsError::Http {
                server: i.server_name.clone(),
                status,
                snippet: model::snippet(self.redact(text).trim(), SNIPPET_MAX_CHARS),
            });
        }
        Ok(response)
    }

    /// Reads the body chunk by chunk, refusing one larger than [`MAX_REPLY_BYTES`].
    async fn read_body(&self, mut response: reqwest::Response) -> Result<String, CbsError> {
        let expected = response.content_length().unwrap_or(0) as usize;
        let mut bytes = Vec::with_capacity(expected.min(MAX_REPLY_BYTES));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                // The server answered: too much, not an outage.
                return Err(CbsError::TooLarge {
                    server: self.inner.server_name.clone(),
                    what: "the reply",
                    limit_bytes: MAX_REPLY_BYTES,
                    advice: "",
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        // The CBS sends UTF-8; a stray bad byte should not hide the rest of the reply.
        // Valid UTF-8 (the usual case) is taken as it is, without a copy.
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok(self.redact(text))
    }

    /// Removes the system password from text the server sent, should a server (or a proxy
    /// in front of it) ever echo the request: snippets of replies reach logs and the chat.
    pub(super) fn redact(&self, text: String) -> String {
        self.inner.redactions.redact(text)
    }

    pub(super) fn transport_error(&self, e: reqwest::Error) -> CbsError {
        let server = self.inner.server_name.clone();
        if e.is_timeout() {
            CbsError::Timeout {
                server,
                after: self.inner.request_timeout,
            }
        } else {
            CbsError::Connect {
                server,
                detail: chain(&e.without_url()),
            }
        }
    }
}

/// Finds every form of the password ([`redaction_forms`]) in one pass over a reply, the
/// longest where forms overlap, and blanks it.
pub(super) struct Redactor(Option<aho_corasick::AhoCorasick>);

impl Redactor {
    pub(super) fn new(pwd: &str) -> Redactor {
        let forms = redaction_forms(pwd);
        let finder = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(forms.iter().map(|f| f.expose_secret()));
        // A handful of short patterns is far below any of the automaton's limits.
        Redactor(finder.ok().filter(|_| !forms.is_empty()))
    }

    pub(super) fn redact(&self, text: String) -> String {
        match &self.0 {
            Some(finder) if finder.is_match(&text) => {
                finder.replace_all(&text, &vec!["[REDACTED]"; finder.patterns_len()])
            }
            _ => text,
        }
    }
}

/// The forms `pwd` takes in text a server may send back, longest first: as written
/// plainly and as a JSON string writes it (an echoed request body escapes `"`, `\\` and
/// control characters, and may escape `/` as `\\/` and any non-ASCII character as
/// `\\uXXXX`), URL-encoded as a form or query writes it (`+` or `%20` for a space, upper-
/// or lower-case hex), and in base64. None for an empty password.
pub(super) fn redaction_forms(pwd: &str) -> Vec<SecretString> {
    if pwd.is_empty() {
        return Vec::new();
    }
    let quoted = serde_json::to_string(pwd).unwrap_or_default();
    let json = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted);
    // Non-ASCII characters as `\uXXXX`, in lower- or upper-case hex.
    let escape_non_ascii = |upper: bool| -> String {
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0u16; 2]) {
                    out.push_str(&if upper {
                        format!("\\u{unit:04X}")
                    } else {
                        format!("\\u{unit:04x}")
                    });
                }
            }
        }
        out
    };
    let mut forms = vec![pwd.to_owned(), json.to_owned()];
    forms.push(escape_non_ascii(false));
    forms.push(escape_non_ascii(true));
    let with_slashes: Vec<String> = forms[1..].iter().map(|f| f.replace('/', "\\/")).collect();
    forms.extend(with_slashes);
    // An echoed form body or query string (a proxy's error page showing the request).
    let form: String = form_urlencoded::byte_serialize(pwd.as_bytes()).collect();
    let spaces = form.replace('+', "%20");
    let lower_hex = |s: &str| -> String {
        let mut hex_left = 0;
        (s.chars())
            .map(|c| match c {
                '%' => {
                    hex_left = 2;
                    c
                }
                _ if hex_left > 0 => {
                    hex_left -= 1;
                    c.to_ascii_lowercase()
                }
                _ => c,
            })
            .collect()
    };
    forms.extend([lower_hex(&form), lower_hex(&spaces), form, spaces]);
    {
        use base64::Engine as _;
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        forms.extend(engines.iter().map(|e| e.encode(pwd)));
    }
    forms.sort();
    forms.dedup();
    // Longer forms first: a shorter form inside a longer one must not leave it half-redacted.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.into_iter().map(SecretString::from).collect()
}

/// The error and its causes, `: `-joined (reqwest's own message alone says little).
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: String, pwd: &str) -> String {
        Redactor::new(pwd).redact(text)
    }

    #[test]
    fn redaction_covers_the_json_escaped_password() {
        let pwd = r#"pa"ss\wörd/1"#;
        let plain = format!("SysPwd={pwd}");
        assert_eq!(redact(plain, pwd), "SysPwd=[REDACTED]");
        let echoed = serde_json::json!({ "SysPwd": pwd }).to_string();
        assert_eq!(redact(echoed, pwd), r#"{"SysPwd":"[REDACTED]"}"#);
        for escaped in [
            r#"pa\"ss\\w\u00f6rd\/1"#,
            r#"pa\"ss\\w\u00F6rd/1"#,
            r#"pa\"ss\\wörd\/1"#,
        ] {
            let shown = redact(format!(r#"{{"SysPwd":"{escaped}"}}"#), pwd);
            assert_eq!(shown, r#"{"SysPwd":"[REDACTED]"}"#, "{escaped}");
        }
        assert_eq!(redact("nothing here".into(), pwd), "nothing here");
        assert_eq!(redact("x".into(), ""), "x");
    }

    #[test]
    fn redaction_covers_the_url_encoded_and_base64_password() {
        let pwd = r#"Pa"55\w0rd/x y"#;
        for echoed in [
            "SysUser=api&SysPwd=Pa%2255%5Cw0rd%2Fx+y",
            "SysUser=api&SysPwd=Pa%2255%5Cw0rd%2Fx%20y",
            "SysUser=api&SysPwd=Pa%2255%5cw0rd%2fx+y",
        ] {
            assert_eq!(
                redact(echoed.into(), pwd),
                "SysUser=api&SysPwd=[REDACTED]",
                "{echoed}"
            );
        }
        let pwd = "Pa55-w0rd-XYZ";
        assert_eq!(
            redact("Authorization: UGE1NS13MHJkLVhZWg==".into(), pwd),
            "Authorization: [REDACTED]"
        );
    }
}
