//! The request/response plumbing under every call: POSTing the JSON body (paced),
//! reading a bounded reply, mapping transport trouble to [`CbsError`], and redacting the
//! system password from whatever the server sends back.

use super::super::model::{self, SNIPPET_MAX_CHARS};
use super::{CbsClient, CbsError};
use secrecy::{ExposeSecret, SecretString};

/// Replies larger than this are refused (bytes); a day of restores for one user is far less.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

impl CbsClient {
    /// POSTs `body` to `url`, within `cbs.max_concurrency` and paced by
    /// `cbs.max_requests_per_second`, and answers the
    /// reply's text. A status other than 2xx is [`CbsError::Http`] with a short, redacted
    /// snippet of what came back; a redirect is not followed, and its snippet names where
    /// it pointed.
    pub(super) async fn post_json<B: serde::Serialize>(
        &self,
        url: reqwest::Url,
        body: &B,
    ) -> Result<String, CbsError> {
        let (response, _slot) = self.send_json(url, body).await?;
        self.read_body(response).await
    }

    /// [`CbsClient::post_json`] up to the reply's body: answers a 2xx response, its body
    /// unread, for a caller that reads it as it comes (see `stream.rs`), and the request's
    /// slot under `cbs.max_concurrency`, to hold until the body is read.
    pub(super) async fn send_json<B: serde::Serialize>(
        &self,
        url: reqwest::Url,
        body: &B,
    ) -> Result<(reqwest::Response, Option<tokio::sync::SemaphorePermit<'_>>), CbsError> {
        let i = &self.inner;
        let slot = self.paced().await;
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
        Ok((response, slot))
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

/// Finds the password in a reply in every form a server or proxy may echo it
/// ([`password_pattern`]) in one pass, and blanks it.
pub(super) struct Redactor(Option<regex::Regex>);

impl Redactor {
    pub(super) fn new(pwd: &str) -> Redactor {
        // The pattern of any password is far below the regex size limit.
        Redactor(password_pattern(pwd).and_then(|p| regex::Regex::new(p.expose_secret()).ok()))
    }

    pub(super) fn redact(&self, text: String) -> String {
        match &self.0 {
            Some(finder) if finder.is_match(&text) => {
                finder.replace_all(&text, "[REDACTED]").into_owned()
            }
            _ => text,
        }
    }
}

/// A pattern matching `pwd` as a server may send it back: in base64, or with each
/// character as written or encoded the way an echoed request shows it, in any mix: a
/// JSON string (`\"`, `\\`, `\/`, `\uXXXX` in either hex case), a form or query (`%XX` of
/// each UTF-8 byte in either hex case, `+` for a space) and an HTML page (`&quot;`, `&amp;`,
/// `&lt;`, `&gt;`, `&#39;`, `&#NNN;`, `&#xHH;`). None for an empty password.
pub(super) fn password_pattern(pwd: &str) -> Option<SecretString> {
    if pwd.is_empty() {
        return None;
    }
    let mut alternatives: Vec<String> = {
        use base64::Engine as _;
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines
            .iter()
            .map(|e| regex::escape(&e.encode(pwd)))
            .collect()
    };
    // Longer base64 forms first: the padded one must win over its unpadded prefix.
    alternatives.sort_by_key(|a| std::cmp::Reverse(a.len()));
    alternatives.dedup();
    alternatives.push(pwd.chars().map(char_pattern).collect());
    Some(SecretString::from(alternatives.join("|")))
}

/// The ways one character of the password may be written in an echoed reply.
fn char_pattern(c: char) -> String {
    let code = u32::from(c);
    let mut forms = Vec::new();
    // URL-encoded: each UTF-8 byte as %XX.
    forms.push(
        (c.encode_utf8(&mut [0; 4]).bytes())
            .map(|b| format!("%(?i:{b:02x})"))
            .collect(),
    );
    // JSON: \uXXXX (a surrogate pair beyond the BMP), and the short escapes.
    forms.push(
        (c.encode_utf16(&mut [0; 2]).iter())
            .map(|unit| format!(r"\\u(?i:{unit:04x})"))
            .collect(),
    );
    let short = match c {
        '"' => Some(r#"\\""#),
        '\\' => Some(r"\\\\"),
        '/' => Some(r"\\/"),
        '\n' => Some(r"\\n"),
        '\r' => Some(r"\\r"),
        '\t' => Some(r"\\t"),
        _ => None,
    };
    forms.extend(short.map(str::to_owned));
    // HTML: numeric references, and the named ones an escaping page uses.
    forms.push(format!("&#0*{code};"));
    forms.push(format!("&#(?i:x)0*(?i:{code:x});"));
    let named = match c {
        '"' => Some("&quot;"),
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '\'' => Some("&apos;"),
        _ => None,
    };
    forms.extend(named.map(str::to_owned));
    if c == ' ' {
        forms.push(r"\+".to_owned());
    }
    // As written, last: the regex takes the first alternative that matches, and the
    // password's last character written `\u005c` must be taken whole, not as its `\`.
    forms.push(regex::escape(c.encode_utf8(&mut [0; 4])));
    format!("(?:{})", forms.join("|"))
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

    /// A proxy's error page shows the request it failed on: HTML-escaped, or %-encoded by
    /// an encoder that leaves other characters as they are, in either hex case.
    #[test]
    fn redaction_covers_the_html_escaped_and_mixed_encoded_password() {
        let pwd = r#"Pä/ss"w<rd&1 x'"#;
        for echoed in [
            "Pä/ss&quot;w&lt;rd&amp;1 x&#39;",
            "Pä/ss&#34;w&#x3C;rd&#038;1+x&apos;",
            "Pä%2fss%22w%3crd%261%20x%27",
            "P%C3%A4%2Fss%22w%3Crd%261+x'",
            r#"P\u00e4\/ss\"w<rd&1 x'"#,
        ] {
            let page = format!("<pre>SysPwd={echoed}</pre>");
            assert_eq!(
                redact(page, pwd),
                "<pre>SysPwd=[REDACTED]</pre>",
                "{echoed}"
            );
        }
        // Only the password: its characters elsewhere stay.
        assert_eq!(redact("a &amp; b".into(), pwd), "a &amp; b");
    }

    /// One character written in one of the ways an echo may write it.
    fn encoded(c: char, way: u8) -> String {
        let bytes = c.encode_utf8(&mut [0; 4]).bytes().collect::<Vec<u8>>();
        match way % 6 {
            0 => c.to_string(),
            1 => bytes.iter().map(|b| format!("%{b:02x}")).collect(),
            2 => bytes.iter().map(|b| format!("%{b:02X}")).collect(),
            3 => (c.encode_utf16(&mut [0; 2]).iter())
                .map(|u| format!("\\u{u:04x}"))
                .collect(),
            4 => format!("&#{};", u32::from(c)),
            _ => format!("&#x{:X};", u32::from(c)),
        }
    }

    proptest::proptest! {
        /// Whatever the password and however each of its characters is echoed, the echo
        /// is blanked whole and the text around it kept.
        #[test]
        fn any_mix_of_encodings_is_redacted(
            pwd in "\\PC{1,24}",
            ways in proptest::collection::vec(0u8..6, 24),
        ) {
            let echo: String = pwd.chars().zip(&ways).map(|(c, w)| encoded(c, *w)).collect();
            // Around it, characters no password (no control character) and no encoding has.
            let shown = redact(format!("\u{1}{echo}\u{2}"), &pwd);
            proptest::prop_assert_eq!(shown, "\u{1}[REDACTED]\u{2}");
        }
    }
}
