//! The dead-man's switch (`[heartbeat] url`): after every poll cycle restorewatch calls a
//! URL at an outside monitor (healthchecks.io, Uptime Kuma push monitors, ...), which alerts
//! the team when the calls stop. That is how a bot that died, hangs or lost its network is
//! noticed: by something that does not depend on the bot.
//!
//! The push convention: a plain `GET <url>` after a cycle that got through to the backup
//! server, `GET <url>/fail` after one in which no CBS request succeeded (or the cycle
//! itself failed). The call runs on its own task with a short timeout, so it never delays
//! a cycle; a failed call is logged and counted, nothing else.

use crate::poller::CycleReport;
use anyhow::Context as _;
use std::time::Duration;

/// How long one heartbeat call may take.
pub const HEARTBEAT_TIMEOUT_SECS: u64 = 10;

/// A configured heartbeat; cheap to clone.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl Heartbeat {
    pub fn new(url: reqwest::Url) -> anyhow::Result<Heartbeat> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
            .build()
            .context("building the heartbeat HTTP client")?;
        Ok(Heartbeat { client, url })
    }

    /// The URL to call: the configured one, or `<url>/fail`.
    pub fn url_for(&self, alive: bool) -> reqwest::Url {
        let mut url = self.url.clone();
        if !alive {
            let path = format!("{}/fail", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        url
    }

    /// Calls the monitor; returns whether it answered 2xx. Failures are logged with the
    /// monitor's host only: the path of a push URL is its secret.
    pub async fn send(&self, alive: bool) -> bool {
        let kind = if alive { "ok" } else { "fail" };
        let host = self.url.host_str().unwrap_or_default().to_owned();
        let result = self.client.get(self.url_for(alive)).send().await;
        let delivered = match result {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::warn!(%host, status = %r.status(), kind, "heartbeat refused");
                false
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    "request failed".to_owned()
                };
                tracing::warn!(%host, kind, error = %why, "heartbeat failed");
                false
            }
        };
        crate::metrics::heartbeat(kind, delivered);
        delivered
    }

    /// Sends the heartbeat for a cycle on a task of its own and returns at once.
    pub fn spawn_after<E>(&self, cycle: Result<&CycleReport, E>) -> tokio::task::JoinHandle<bool> {
        let alive = cycle.is_ok_and(reached_cbs);
        let heartbeat = self.clone();
        tokio::spawn(async move { heartbeat.send(alive).await })
    }
}

/// Whether a cycle got through to the backup server: at least one request succeeded, or
/// there was nothing to ask (no watched users).
pub fn reached_cbs(report: &CycleReport) -> bool {
    let s = &report.summary;
    s.requests == 0 || (s.errors.len() as u64) < u64::from(s.requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(requests: u32, errors: usize) -> CycleReport {
        CycleReport::with_errors(requests, errors)
    }

    #[test]
    fn fail_only_when_no_request_got_through() {
        assert!(reached_cbs(&report(3, 2)), "one of three succeeded");
        assert!(!reached_cbs(&report(3, 3)));
        assert!(
            reached_cbs(&report(0, 0)),
            "nothing to ask is not a failure"
        );
    }

    #[test]
    fn fail_goes_below_the_url() {
        let hb = |u: &str| Heartbeat::new(u.parse().unwrap()).unwrap();
        let h = hb("https://hc.example.com/ping/abc");
        assert_eq!(h.url_for(true).as_str(), "https://hc.example.com/ping/abc");
        assert_eq!(
            h.url_for(false).as_str(),
            "https://hc.example.com/ping/abc/fail"
        );
        let slash = hb("https://hc.example.com/ping/abc/?x=1");
        assert_eq!(
            slash.url_for(false).as_str(),
            "https://hc.example.com/ping/abc/fail?x=1"
        );
    }
}
