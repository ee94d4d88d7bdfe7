//! The HTTP client for the AhsayCBS JSON API: `ListRestoreJobStatus.do`, and
//! `2/ListUsers.do` for discovery.
//!
//! It turns transport trouble, HTTP errors and `Status: Error` replies into one
//! [`CbsError`] whose [`CbsError::outage_reason`] tells the poller whether the whole server
//! is in trouble or only one user's request failed. Decoding itself is
//! [`model::decode_reply`]'s job. The system password lives in a [`SecretString`] and is
//! exposed only to build the request body; no error or `Debug` output carries it.

use super::model::{
    self, DecodeContext, JobList, JobReport, ListedUser, ReplyError, SNIPPET_MAX_CHARS,
};
use crate::event::OutageReason;
use chrono::NaiveDate;
use chrono_tz::Tz;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The call's path below the base URL.
const LIST_RESTORE_JOB_STATUS: &str = "obs/api/json/ListRestoreJobStatus.do";
/// The report call, relative to the list call's URL (same folder).
const GET_RESTORE_JOB_REPORT: &str = "GetRestoreJobReport.do";

/// The user-listing call (CBS 9.7+), below the base URL.
const LIST_USERS: &str = "obs/api/json/2/ListUsers.do";

/// Replies larger than this are refused (bytes); a day of restores for one user is far less.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of a refused reply its snippet is made from (a UTF-8 char is at most 4 bytes).
const SNIPPET_MAX_BYTES: usize = 4 * SNIPPET_MAX_CHARS;

/// What the client needs to know about one backup server.
#[derive(Clone, Debug)]
pub struct CbsClientConfig {
    /// Base URL; `/obs/api/json/...` is appended (a path prefix is kept).
    pub url: reqwest::Url,
    /// Name of the server in job identities and messages.
    pub server_name: String,
    pub sys_user: String,
    pub sys_pwd: SecretString,
    /// The server's zone: `RestoreDate` and job times are in it.
    pub timezone: Tz,
    /// Bound on one whole request, connecting to reading the last byte.
    pub request_timeout: Duration,
    /// Extra CA certificate(s) to trust (PEM), for servers with a self-signed certificate.
    pub ca_cert: Option<PathBuf>,
}

/// Why a request to the backup server failed.
#[derive(Debug, thiserror::Error)]
pub enum CbsError {
    /// No connection, or it broke before a reply arrived.
    #[error("cannot reach {server}: {detail}")]
    Connect { server: String, detail: String },
    /// No complete reply within the configured bound.
    #[error("{server} did not answer within {}s", .after.as_secs_f64())]
    Timeout { server: String, after: Duration },
    /// A reply that is not HTTP 2xx.
    #[error("{server} answered HTTP {status}: {snippet}")]
    Http {
        server: String,
        status: StatusCode,
        snippet: String,
    },
    /// The API answered `Status: Error`.
    #[error("{server} refused the request: {message}{}", expt_suffix(.expt_type))]
    Api {
        server: String,
        message: String,
        expt_type: Option<String>,
    },
    /// The system user's password has expired; every call fails until it is changed.
    #[error("the API password of {server} has expired: {message}")]
    PasswordExpired { server: String, message: String },
    /// A reply that is not the documented envelope.
    #[error("{server} sent an unreadable reply ({reason}): {snippet}")]
    Decode {
        server: String,
        reason: String,
        snippet: String,
    },
    /// The client could not be built (CA file, URL).
    #[error("cannot set up the CBS client: {0}")]
    Setup(String),
}

fn expt_suffix(expt_type: &Option<String>) -> String {
    expt_type
        .as_deref()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default()
}

impl CbsError {
    /// Whether this failure means the server as a whole is in trouble, and why. `None`: a
    /// problem of this one request (e.g. an unknown user), not an outage.
    pub fn outage_reason(&self) -> Option<OutageReason> {
        match self {
            CbsError::Connect { .. } | CbsError::Timeout { .. } | CbsError::Decode { .. } => {
                Some(OutageReason::Unreachable)
            }
            // 5xx, and what a proxy in front of the server answers for every request
            // (401/403: it wants its own login; 429: it throttles us).
            CbsError::Http { status, .. }
                if status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 429) =>
            {
                Some(OutageReason::Unreachable)
            }
            CbsError::Http { .. } => None,
            CbsError::Api { message, .. } if is_credentials_refusal(message) => {
                Some(OutageReason::AuthFailed)
            }
            CbsError::Api { .. } => None,
            CbsError::PasswordExpired { .. } => Some(OutageReason::PasswordExpired),
            CbsError::Setup(_) => None,
        }
    }
}

/// Whether an API message refuses the system user's credentials (the vendor's
/// "Incorrect system username/password" and close variants).
fn is_credentials_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("username/password")
        || ((m.contains("incorrect") || m.contains("invalid")) && m.contains("password"))
}

/// Whether an API message says the system password has expired (CBS 8.3.4+).
fn is_password_expired(message: &str) -> bool {
    message
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("your password has expired")
}

/// A client for one backup server. Cheap to clone; clones share connections, so a poller
/// can run many requests at once.
#[derive(Clone)]
pub struct CbsClient {
    inner: Arc<Inner>,
    /// `cbs.max_requests_per_second`, shared by every clone.
    pace: Option<Arc<Pace>>,
}

/// Tokio's clock for governor, so that the rate limit follows tokio time (and a test's
/// paused time) like every other wait in the program.
#[derive(Clone, Debug)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A ceiling on the request rate: requests evenly spaced, no bursts, so that no window of
/// one second ever holds more than the configured number.
struct Pace {
    limiter: governor::RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        TokioClock,
        governor::middleware::NoOpMiddleware<Duration>,
    >,
}

impl Pace {
    fn new(per_second: NonZeroU32) -> Pace {
        // Rounded up: a period a nanosecond short would fit one request too many into a
        // second.
        let period_ns = 1_000_000_000u64.div_ceil(u64::from(per_second.get()));
        let quota = governor::Quota::with_period(Duration::from_nanos(period_ns))
            .expect("the period is at least 100 µs");
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        Pace {
            limiter: governor::RateLimiter::direct_with_clock(quota, clock),
        }
    }

    /// Returns once the next request may go.
    async fn wait(&self) {
        use governor::clock::Clock;
        while let Err(not_until) = self.limiter.check() {
            let now = self.limiter.clock().now();
            tokio::time::sleep(not_until.wait_time_from(now)).await;
        }
    }
}

struct Inner {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    users_endpoint: reqwest::Url,
    server_name: String,
    sys_user: String,
    sys_pwd: SecretString,
    /// The forms the password may take in a reply ([`redaction_forms`]), worked out once
    /// rather than for every reply.
    redactions: Vec<SecretString>,
    timezone: Tz,
    request_timeout: Duration,
}

impl fmt::Debug for CbsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("CbsClient")
            .field("server_name", &i.server_name)
            .field("endpoint", &i.endpoint.as_str())
            .field("sys_user", &i.sys_user)
            .field("sys_pwd", &"[REDACTED]")
            .field("timezone", &i.timezone)
            .field("request_timeout", &i.request_timeout)
            .finish()
    }
}

/// The request body, as the vendor documents it.
#[derive(serde::Serialize)]
struct ListRequest<'a> {
    #[serde(rename = "SysUser")]
    sys_user: &'a str,
    #[serde(rename = "SysPwd")]
    sys_pwd: &'a str,
    #[serde(rename = "Owner")]
    owner: &'a str,
    #[serde(rename = "LoginName")]
    login_name: &'a str,
    #[serde(rename = "RestoreDate")]
    restore_date: String,
}

/// The `GetRestoreJobReport.do` request body.
#[derive(serde::Serialize)]
struct ReportRequest<'a> {
    #[serde(rename = "SysUser")]
    sys_user: &'a str,
    #[serde(rename = "SysPwd")]
    sys_pwd: &'a str,
    #[serde(rename = "LoginName")]
    login_name: &'a str,
    #[serde(rename = "Owner")]
    owner: &'a str,
    #[serde(rename = "BackupSetID")]
    backup_set_id: &'a str,
    #[serde(rename = "JobID")]
    job_id: &'a str,
}

impl CbsClient {
    pub fn new(cfg: CbsClientConfig) -> Result<CbsClient, CbsError> {
        let endpoint = endpoint(&cfg.url)?;
        let users_endpoint = endpoint
            .join(LIST_USERS.trim_start_matches("obs/api/json/"))
            .map_err(|e| CbsError::Setup(format!("bad CBS URL: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout)
            .user_agent(concat!("restorewatch/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                CbsError::Setup(format!(
                    "cannot read CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                CbsError::Setup(format!("bad CA certificate {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(CbsError::Setup(format!(
                    "no PEM certificate in CA file {}",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| CbsError::Setup(format!("cannot build the HTTP client: {}", chain(&e))))?;
        Ok(CbsClient {
            pace: None,
            inner: Arc::new(Inner {
                http,
                endpoint,
                users_endpoint,
                server_name: cfg.server_name,
                sys_user: cfg.sys_user,
                redactions: redaction_forms(cfg.sys_pwd.expose_secret()),
                sys_pwd: cfg.sys_pwd,
                timezone: cfg.timezone,
                request_timeout: cfg.request_timeout,
            }),
        })
    }

    /// At most `per_second` requests per second from this client and its clones (`None`:
    /// no ceiling beyond the caller's concurrency bound).
    pub fn with_max_requests_per_second(mut self, per_second: Option<NonZeroU32>) -> Self {
        self.pace = per_second.map(|n| Arc::new(Pace::new(n)));
        self
    }

    /// Waits for the rate limit, if there is one.
    async fn paced(&self) {
        if let Some(pace) = &self.pace {
            pace.wait().await;
        }
    }

    pub fn server_name(&self) -> &str {
        &self.inner.server_name
    }

    pub fn timezone(&self) -> Tz {
        self.inner.timezone
    }

    /// `cbs.request_timeout`: the bound on one call.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// The restore jobs of `login` (owned by `owner`, `""` for none) that started on `date`
    /// in the server zone.
    pub async fn list_restore_jobs(
        &self,
        login: &str,
        owner: &str,
        date: NaiveDate,
    ) -> Result<JobList, CbsError> {
        let i = &self.inner;
        let body = ListRequest {
            sys_user: &i.sys_user,
            sys_pwd: i.sys_pwd.expose_secret(),
            owner,
            login_name: login,
            // `NaiveDate`'s display is `%Y-%m-%d`, without parsing a format string per request.
            restore_date: date.to_string(),
        };
        let text = self.post_json(i.endpoint.clone(), &body).await?;
        let cx = DecodeContext {
            server: &i.server_name,
            tz: i.timezone,
            login_name: login,
            owner,
        };
        model::decode_reply(&text, &cx).map_err(|e| match e {
            // Decoding can turn an escape the body's redaction missed (`\u0022`) into the
            // password: redact the decoded message too.
            ReplyError::Api { message, expt_type } => {
                self.api_error(self.redact(message), expt_type)
            }
            ReplyError::Malformed { reason, snippet } => CbsError::Decode {
                server: i.server_name.clone(),
                reason,
                snippet,
            },
        })
    }

    /// Every backup user the system user may see (`2/ListUsers.do`), of one reseller when
    /// `reseller` is not empty. The call needs the Admin or API role: a refusal other than
    /// bad credentials or an expired password says so.
    pub async fn list_users(&self, reseller: &str) -> Result<Vec<ListedUser>, CbsError> {
        #[derive(serde::Serialize)]
        struct Request<'a> {
            #[serde(rename = "SysUser")]
            sys_user: &'a str,
            #[serde(rename = "SysPwd")]
            sys_pwd: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            reseller: &'a str,
        }
        let i = &self.inner;
        let body = Request {
            sys_user: &i.sys_user,
            sys_pwd: i.sys_pwd.expose_secret(),
            reseller,
        };
        let text = self.post_json(i.users_endpoint.clone(), &body).await?;
        model::decode_users(&text).map_err(|e| match e {
            ReplyError::Api { message, expt_type } => {
                match self.api_error(self.redact(message), expt_type) {
                    CbsError::Api {
                        server,
                        message,
                        expt_type,
                    } if !is_credentials_refusal(&message) => CbsError::Api {
                        server,
                        message: format!(
                            "{message} (listing users with 2/ListUsers.do needs a system \
                             user with the Admin or API role)"
                        ),
                        expt_type,
                    },
                    other => other,
                }
            }
            ReplyError::Malformed { reason, snippet } => CbsError::Decode {
                server: i.server_name.clone(),
                reason,
                snippet,
            },
        })
    }

    /// The error for a `Status: Error` reply (an expired password is its own).
    fn api_error(&self, message: String, expt_type: Option<String>) -> CbsError {
        let server = self.inner.server_name.clone();
        if is_password_expired(&message) {
            CbsError::PasswordExpired { server, message }
        } else {
            CbsError::Api {
                server,
                message,
                expt_type,
            }
        }
    }

    /// The report of one restore job (`GetRestoreJobReport.do`): file count, size and its
    /// last error/warning log lines. Needs the Admin or API role: a Read-Only API user gets
    /// [`CbsError::Api`].
    pub async fn restore_job_report(
        &self,
        login: &str,
        owner: &str,
        backup_set_id: &str,
        job_id: &str,
    ) -> Result<JobReport, CbsError> {
        let i = &self.inner;
        let body = ReportRequest {
            sys_user: &i.sys_user,
            sys_pwd: i.sys_pwd.expose_secret(),
            login_name: login,
            owner,
            backup_set_id,
            job_id,
        };
        let url = i
            .endpoint
            .join(GET_RESTORE_JOB_REPORT)
            .map_err(|e| CbsError::Setup(e.to_string()))?;
        let text = self.post_json(url, &body).await?;
        model::decode_report(&text).map_err(|e| match e {
            ReplyError::Api { message, expt_type } => {
                self.api_error(self.redact(message), expt_type)
            }
            ReplyError::Malformed { reason, snippet } => CbsError::Decode {
                server: i.server_name.clone(),
                reason,
                snippet: self.redact(snippet),
            },
        })
    }

    /// POSTs `body` to `url`, paced by `cbs.max_requests_per_second`, and answers the
    /// reply's text. A status other than 2xx is [`CbsError::Http`] with a short, redacted
    /// snippet of what came back.
    async fn post_json<B: serde::Serialize>(
        &self,
        url: reqwest::Url,
        body: &B,
    ) -> Result<String, CbsError> {
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
        let text = self.read_body(response).await?;
        if !status.is_success() {
            return Err(CbsError::Http {
                server: i.server_name.clone(),
                status,
                snippet: model::snippet(self.redact(text).trim(), SNIPPET_MAX_CHARS),
            });
        }
        Ok(text)
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
                return Err(CbsError::Decode {
                    server: self.inner.server_name.clone(),
                    reason: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                    // Only the head: copying the whole refused reply would double the
                    // memory the bound is there to limit.
                    snippet: model::snippet(
                        &self.redact(
                            String::from_utf8_lossy(&bytes[..bytes.len().min(SNIPPET_MAX_BYTES)])
                                .into_owned(),
                        ),
                        SNIPPET_MAX_CHARS,
                    ),
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
    fn redact(&self, mut text: String) -> String {
        for form in &self.inner.redactions {
            let form = form.expose_secret();
            if text.contains(form) {
                text = text.replace(form, "[REDACTED]");
            }
        }
        text
    }

    fn transport_error(&self, e: reqwest::Error) -> CbsError {
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

/// The forms `pwd` takes in text a server may send back, longest first: as written
/// plainly and as a JSON string writes it (an echoed request body escapes `"`, `\\` and
/// control characters, and may escape `/` as `\\/` and any non-ASCII character as
/// `\\uXXXX`). None for an empty password.
fn redaction_forms(pwd: &str) -> Vec<SecretString> {
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
    forms.sort();
    forms.dedup();
    // Longer forms first: a shorter form inside a longer one must not leave it half-redacted.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.into_iter().map(SecretString::from).collect()
}

/// The error and its causes, `: `-joined (reqwest's own message alone says little).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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

/// `{base}/obs/api/json/ListRestoreJobStatus.do`, keeping a path prefix, tolerating a
/// trailing slash and a base that already ends in `/obs/api/json`.
fn endpoint(base: &reqwest::Url) -> Result<reqwest::Url, CbsError> {
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err(CbsError::Setup(format!(
            "the CBS URL must be http(s)://host[:port][/prefix], not {:?}",
            base.scheme()
        )));
    }
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    let prefix = url.path().trim_end_matches('/').to_owned();
    let prefix = prefix.strip_suffix("/obs/api/json").unwrap_or(&prefix);
    url.set_path(&format!("{prefix}/{LIST_RESTORE_JOB_STATUS}"));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint_of(base: &str) -> String {
        endpoint(&reqwest::Url::parse(base).unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn endpoint_from_any_base() {
        let want = "https://cbs.example.com/obs/api/json/ListRestoreJobStatus.do";
        for base in [
            "https://cbs.example.com",
            "https://cbs.example.com/",
            "https://cbs.example.com/obs/api/json",
            "https://cbs.example.com/obs/api/json/",
            "https://cbs.example.com/?x=1#y",
        ] {
            assert_eq!(endpoint_of(base), want, "{base}");
        }
        assert_eq!(
            endpoint_of("http://10.0.0.5:8080/backup/"),
            "http://10.0.0.5:8080/backup/obs/api/json/ListRestoreJobStatus.do"
        );
        assert!(matches!(
            endpoint(&reqwest::Url::parse("ftp://cbs.example.com").unwrap()),
            Err(CbsError::Setup(_))
        ));
        assert!(matches!(
            endpoint(&reqwest::Url::parse("mailto:ops@example.com").unwrap()),
            Err(CbsError::Setup(_))
        ));
    }

    fn redact(mut text: String, pwd: &str) -> String {
        for form in redaction_forms(pwd) {
            text = text.replace(form.expose_secret(), "[REDACTED]");
        }
        text
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
    fn credential_and_expiry_messages() {
        assert!(is_credentials_refusal("Incorrect system username/password"));
        assert!(is_credentials_refusal("Invalid password for system user"));
        assert!(!is_credentials_refusal("User \"bob\" not found"));
        assert!(!is_credentials_refusal(
            "Your password has expired. Please change your password."
        ));
        assert!(is_password_expired(
            "Your password has expired. Please change your password."
        ));
        assert!(!is_password_expired("Incorrect system username/password"));
    }

    #[test]
    fn outage_reasons() {
        let s = || "cbs1".to_owned();
        let api = |m: &str| CbsError::Api {
            server: s(),
            message: m.into(),
            expt_type: None,
        };
        let http = |code: u16| CbsError::Http {
            server: s(),
            status: StatusCode::from_u16(code).unwrap(),
            snippet: String::new(),
        };
        use OutageReason::*;
        for (err, want) in [
            (
                CbsError::Connect {
                    server: s(),
                    detail: "refused".into(),
                },
                Some(Unreachable),
            ),
            (
                CbsError::Timeout {
                    server: s(),
                    after: Duration::from_secs(1),
                },
                Some(Unreachable),
            ),
            (http(500), Some(Unreachable)),
            (http(503), Some(Unreachable)),
            (http(404), None),
            (http(401), Some(Unreachable)),
            (http(403), Some(Unreachable)),
            (http(429), Some(Unreachable)),
            (http(400), None),
            (
                CbsError::Decode {
                    server: s(),
                    reason: "x".into(),
                    snippet: "y".into(),
                },
                Some(Unreachable),
            ),
            (api("Incorrect system username/password"), Some(AuthFailed)),
            (api("User \"bob\" not found"), None),
            (
                CbsError::PasswordExpired {
                    server: s(),
                    message: "Your password has expired".into(),
                },
                Some(PasswordExpired),
            ),
            (CbsError::Setup("x".into()), None),
        ] {
            assert_eq!(err.outage_reason(), want, "{err}");
        }
    }

    #[test]
    fn messages_are_short_and_name_the_server() {
        let e = CbsError::Api {
            server: "cbs1".into(),
            message: "Incorrect system username/password".into(),
            expt_type: Some("com.ahsay.obs.core.dbs.c".into()),
        };
        assert_eq!(
            e.to_string(),
            "cbs1 refused the request: Incorrect system username/password (com.ahsay.obs.core.dbs.c)"
        );
        let t = CbsError::Timeout {
            server: "cbs1".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(t.to_string(), "cbs1 did not answer within 1.5s");
    }
}
