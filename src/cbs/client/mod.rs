//! The HTTP client for the AhsayCBS JSON API: `ListRestoreJobStatus.do`, and
//! `2/ListUsers.do` for discovery.
//!
//! It turns transport trouble, HTTP errors and `Status: Error` replies into one
//! [`CbsError`] whose [`CbsError::outage_reason`] tells the poller whether the whole server
//! is in trouble or only one user's request failed. Decoding itself is
//! [`model::decode_reply`]'s job. The system password lives in a [`SecretString`] and is
//! exposed only to build the request body; no error or `Debug` output carries it.

mod error;
mod pace;
mod stream;
mod transport;

pub use error::{CbsError, OutageReason};

use super::model::{self, DecodeContext, JobList, JobReport, ListedUser, ReplyError};
use crate::tz::Tz;
use chrono::NaiveDate;
use error::{is_password_expired, is_role_refusal};
use pace::Pace;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use transport::{chain, Redactor};

/// The call's path below the base URL.
const LIST_RESTORE_JOB_STATUS: &str = "obs/api/json/ListRestoreJobStatus.do";
/// The report call, relative to the list call's URL (same folder).
const GET_RESTORE_JOB_REPORT: &str = "GetRestoreJobReport.do";

/// The user-listing call (CBS 9.7+), below the base URL.
const LIST_USERS: &str = "obs/api/json/2/ListUsers.do";

/// The largest user listing read (bytes): 10,000 users of a real listing (about 2 KB of
/// fields each) make about 22 MB; it is read as it arrives, never held whole.
const LIST_USERS_MAX_BYTES: usize = 64 * 1024 * 1024;
/// What to do about a listing larger than that.
const LIST_USERS_ADVICE: &str =
    "; set `discover.owners` to list the users of each reseller in a call of its own";

/// Kept-alive connections to the CBS idle longer than this are closed. Within a cycle
/// each is taken again at once (unless `max_requests_per_second` spaces requests wider
/// than this: then each opens its own). Between cycles they would only hold their
/// buffers, about 1.2 MB for 32 connections at 10,000 users, closed in time for the
/// memory given back once the store settles ([`crate::memory`]); and a CBS closes its own
/// idle ones after a while (Tomcat: 20 s by default), which a request sent just then
/// would meet.
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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

/// A client for one backup server. Cheap to clone; clones share connections, so a poller
/// can run many requests at once.
#[derive(Clone)]
pub struct CbsClient {
    inner: Arc<Inner>,
    /// `cbs.max_requests_per_second`, shared by every clone.
    pace: Option<Arc<Pace>>,
    /// `cbs.max_concurrency`: requests in flight at once from this client and its clones
    /// (the poller and the slash commands share it).
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    users_endpoint: reqwest::Url,
    server_name: String,
    sys_user: String,
    sys_pwd: SecretString,
    /// The forms the password may take in a reply ([`Redactor`]), worked out once
    /// rather than for every reply.
    redactions: Redactor,
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
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // Every call carries the password in its body: it goes to `cbs.url` and nowhere
            // else (a redirect is reported, see `post_json`).
            .redirect(reqwest::redirect::Policy::none())
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
            in_flight: None,
            inner: Arc::new(Inner {
                http,
                endpoint,
                users_endpoint,
                server_name: cfg.server_name,
                sys_user: cfg.sys_user,
                redactions: Redactor::new(cfg.sys_pwd.expose_secret()),
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

    /// At most `max` requests in flight at once from this client and its clones (`None`:
    /// no bound beyond the callers').
    pub fn with_max_concurrency(mut self, max: Option<usize>) -> Self {
        self.in_flight = max.map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }

    /// Waits for a free slot under the concurrency bound, then for the rate limit; the
    /// slot is held until the returned permit drops (the request has ended).
    async fn paced(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let slot = match &self.in_flight {
            // The semaphore is never closed.
            Some(limit) => limit.acquire().await.ok(),
            None => None,
        };
        if let Some(pace) = &self.pace {
            pace.wait().await;
        }
        slot
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
            date,
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
    /// `reseller` is not empty. The call needs the Admin or API role: a refusal of the
    /// role or permission says so (other refusals, such as an unknown reseller, do not).
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
        // Read as it arrives: a real listing of thousands of users is tens of MiB.
        let reply = self
            .post_json_streamed(
                i.users_endpoint.clone(),
                &body,
                (LIST_USERS_MAX_BYTES, "the user listing", LIST_USERS_ADVICE),
                |reader| model::decode_users_from(reader),
            )
            .await?;
        let list = reply.decoded.map_err(|e| match e {
            ReplyError::Api { message, expt_type } => {
                match self.api_error(self.redact(message), expt_type) {
                    CbsError::Api {
                        server,
                        message,
                        expt_type,
                    } if is_role_refusal(&message) => CbsError::Api {
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
            ReplyError::Malformed { reason, .. } => CbsError::Decode {
                server: i.server_name.clone(),
                reason,
                snippet: reply.head,
            },
        })?;
        if list.skipped > 0 {
            tracing::warn!(
                server = %i.server_name,
                skipped = list.skipped,
                listed = list.users.len(),
                "2/ListUsers.do listed items without a LoginName; they are not watched"
            );
        }
        if let Some(first) = &list.refused_example {
            tracing::warn!(
                server = %i.server_name,
                refused = list.refused,
                %first,
                listed = list.users.len(),
                "2/ListUsers.do listed login names longer than {} characters or with control \
                 or invisible characters; they are not watched",
                model::LOGIN_MAX_CHARS
            );
        }
        Ok(list.users)
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
}
