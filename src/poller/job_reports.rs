//! Restore job reports: after a cycle, `GetRestoreJobReport.do` details for its failure
//! alerts (`cbs.fetch_reports`), fetched concurrently within one request timeout and
//! written into the alerts still queued.

use super::Poller;
use crate::cbs::model::RestoreJob;
use crate::event::EventKind;
use crate::store::StoreError;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

impl Poller {
    /// Fetches `GetRestoreJobReport.do` for this cycle's failure alerts, at most
    /// `max_concurrency` at once and all within one `cbs.request_timeout`, and writes the
    /// details into the queued alerts. A call that fails or is cut leaves its alert as it
    /// is; the failure is logged once, not per job.
    pub(super) async fn attach_reports(&self, alerted: &[RestoreJob]) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let limit = Arc::new(Semaphore::new(self.config.max_concurrency.max(1)));
        let mut calls = JoinSet::new();
        for job in alerted {
            let client = self.client.clone();
            let limit = limit.clone();
            let job = job.clone();
            calls.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = client
                    .restore_job_report(
                        &job.login_name,
                        &job.owner,
                        &job.backup_set_id,
                        &job.job_id,
                    )
                    .await;
                (job.key(), result)
            });
        }
        let deadline = tokio::time::Instant::now() + self.client.request_timeout();
        let mut reports = BTreeMap::new();
        let mut failed = 0usize;
        let mut first_error: Option<String> = None;
        loop {
            match tokio::time::timeout_at(deadline, calls.join_next()).await {
                Ok(None) => break,
                Ok(Some(Ok((key, Ok(report))))) => {
                    reports.insert(key, report);
                }
                Ok(Some(Ok((_, Err(e))))) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
                Ok(Some(Err(_))) => failed += 1,
                Err(_) => {
                    failed += calls.len();
                    calls.abort_all();
                    first_error.get_or_insert_with(|| {
                        format!(
                            "no answer within {}s",
                            self.client.request_timeout().as_secs_f64()
                        )
                    });
                    break;
                }
            }
        }
        if let Some(error) = first_error {
            if !self.reports_failing.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    failed,
                    %error,
                    "restore job reports unavailable (GetRestoreJobReport.do needs the Admin \
                     or API role): alerts go out without their details"
                );
            }
        } else {
            self.reports_failing.store(false, Ordering::Relaxed);
        }
        if reports.is_empty() {
            return Ok(());
        }
        // The outbox a page at a time: a backlog (Discord down for hours) is never read
        // whole.
        self.store.each_pending(|mut event| {
            if let EventKind::JobFinished {
                job,
                report: report @ None,
                ..
            } = &mut event.kind
            {
                if let Some(found) = reports.remove(&job.key()) {
                    *report = Some(found);
                    self.store.update_event(&event)?;
                }
            }
            Ok(!reports.is_empty())
        })
    }
}
