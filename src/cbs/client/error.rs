//! [`CbsError`], the one error every failed request to the backup server becomes, and
//! how the poller reads it: [`CbsError::outage_reason`] tells a whole-server outage
//! (unreachable, refused credentials, expired password) from one request's own failure, as
//! an [`OutageReason`].

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why the backup server counts as down: what a whole-server failure reads as (carried
/// by the outage events, hence plain serde data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageReason {
    /// Connection, timeout, HTTP 5xx or an unreadable reply.
    Unreachable,
    /// The API refuses the system user's password.
    AuthFailed,
    /// The system user's password has expired (since CBS 8.3.4).
    PasswordExpired,
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
    /// A 2xx reply larger than the client reads: the server answered, so this is no
    /// outage; `advice` says what to do about it (may be empty).
    #[error("{server}: {what} is larger than {} MiB, more than restorewatch reads{advice}", .limit_bytes / (1024 * 1024))]
    TooLarge {
        server: String,
        /// "the reply", "the user listing".
        what: &'static str,
        limit_bytes: usize,
        advice: &'static str,
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
            // (401/403: it wants its own login; 429: it throttles us; 3xx: it sends us
            // elsewhere, which is about the address, not one user).
            CbsError::Http { status, .. }
                if status.is_server_error()
                    || status.is_redirection()
                    || matches!(status.as_u16(), 401 | 403 | 429) =>
            {
                Some(OutageReason::Unreachable)
            }
            CbsError::Http { .. } => None,
            CbsError::Api { message, .. } if is_credentials_refusal(message) => {
                Some(OutageReason::AuthFailed)
            }
            CbsError::Api { .. } => None,
            CbsError::PasswordExpired { .. } => Some(OutageReason::PasswordExpired),
            // The server answered: too much, but it is up.
            CbsError::TooLarge { .. } | CbsError::Setup(_) => None,
        }
    }
}

/// Whether an API message refuses the system user's credentials (the vendor's
/// "Incorrect system username/password" and close variants).
pub(super) fn is_credentials_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("username/password")
        || ((m.contains("incorrect") || m.contains("invalid")) && m.contains("password"))
}

/// Whether an API message refuses the call to the system user's role or permissions (a
/// Read-Only API user calling `2/ListUsers.do`), rather than, say, naming an unknown
/// reseller: only such a refusal is told the role the call needs.
pub(super) fn is_role_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "permission",
        "role",
        "not allowed",
        "not authorized",
        "not authorised",
        "unauthorized",
        "access denied",
        "privilege",
        "forbidden",
    ]
    .iter()
    .any(|word| m.contains(word))
}

/// Whether an API message says the system password has expired (CBS 8.3.4+).
pub(super) fn is_password_expired(message: &str) -> bool {
    message
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("your password has expired")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_refusals_are_told_from_other_refusals() {
        for refusal in [
            "Permission denied: this call is not allowed for a Read-Only API user",
            "Access denied for role READ_ONLY_API",
            "User is not authorized to call ListUsers",
        ] {
            assert!(is_role_refusal(refusal), "{refusal}");
        }
        for other in [
            "Reseller 'gone' not found",
            "Incorrect system username/password",
            "Invalid parameter",
        ] {
            assert!(!is_role_refusal(other), "{other}");
        }
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
