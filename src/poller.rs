//! One poll cycle: ask the backup server about every watched user for every date in the
//! window, record what changed, and queue the events that follow.
//!
//! Requests run concurrently (at most `cbs.max_concurrency` in flight); their results are
//! applied to the store one by one in this task, so the store sees a single writer. A user
//! whose requests fail is recorded and skipped; the cycle goes on.

use crate::cbs::model::RestoreJob;
use crate::cbs::{CbsClient, CbsError};
use crate::clock::SharedClock;
use crate::config::{PollSettings, WatchEntry};
use crate::event::{BaselineUser, ClassCounts, CycleSummary, EventKind, OutageReason, PollError};
use crate::mutes::Mutes;
use crate::store::{Change, CycleRecord, Outage, Policy, Store, StoreError, UserState};
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What the poller needs from the settings.
#[derive(Clone, Debug)]
pub struct PollerConfig {
    pub poll: PollSettings,
    /// Watched users from the config file; the store's dynamic list is merged in.
    pub watch: Vec<WatchEntry>,
    pub max_concurrency: usize,
    pub retention_days: u32,
}

/// The result of one cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct CycleReport {
    pub summary: CycleSummary,
    /// Jobs recorded as a baseline (first cycle of a user).
    pub baselined: u32,
    pub pruned: usize,
}

impl CycleReport {
    /// Whether every CBS request of the cycle succeeded.
    pub fn ok(&self) -> bool {
        self.summary.errors.is_empty()
    }
}

pub struct Poller {
    client: CbsClient,
    store: Store,
    config: PollerConfig,
    clock: SharedClock,
    /// `None`: discovery is off (and its last list forgotten).
    discovery: Option<crate::discover::Discovery>,
}

/// The calendar dates to ask about for one user, in the server's zone.
///
/// Today; yesterday while inside the grace window after midnight; every date where the
/// store still knows a running job; and after downtime the dates since the last success,
/// at most `max_catch_up_days` back.
pub fn dates_to_poll(
    now: DateTime<Utc>,
    tz: Tz,
    midnight_grace: Duration,
    max_catch_up_days: u32,
    last_success: Option<DateTime<Utc>>,
    running: &BTreeSet<NaiveDate>,
) -> BTreeSet<NaiveDate> {
    let local = now.with_timezone(&tz);
    let today = local.date_naive();
    let mut dates = BTreeSet::from([today]);
    // Real time since the local midnight: on the days the clocks change, the wall clock
    // shows an hour more or less than has passed. (A midnight the zone skips falls back to
    // the wall clock's reading.)
    let midnight = tz
        .from_local_datetime(&today.and_time(chrono::NaiveTime::MIN))
        .earliest();
    let since_midnight = match midnight {
        Some(midnight) => now.signed_duration_since(midnight),
        None => local.time().signed_duration_since(chrono::NaiveTime::MIN),
    };
    let grace = chrono::Duration::from_std(midnight_grace).unwrap_or(chrono::Duration::MAX);
    if since_midnight < grace {
        dates.extend(today.pred_opt());
    }
    let oldest = today
        .checked_sub_days(Days::new(max_catch_up_days.into()))
        .unwrap_or(today);
    if let Some(last) = last_success {
        let from = last.with_timezone(&tz).date_naive().max(oldest);
        dates.extend(from.iter_days().take_while(|d| *d < today));
    }
    dates.extend(running.iter().copied());
    dates
}

impl Poller {
    pub fn new(client: CbsClient, store: Store, config: PollerConfig, clock: SharedClock) -> Self {
        Poller {
            client,
            store,
            config,
            clock,
            discovery: None,
        }
    }

    /// Watches the users the server lists too (`[discover]`), when enabled.
    pub fn with_discovery(mut self, settings: crate::discover::DiscoverSettings) -> Self {
        self.discovery = crate::discover::Discovery::from_settings(settings);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The config's users merged with those added from chat (the config's owner wins).
    pub fn watch_list(&self) -> Result<Vec<WatchEntry>, StoreError> {
        self.store.watch_list(&self.config.watch)
    }

    /// Runs one cycle. Fails only when the store fails; CBS errors are in the report.
    pub async fn cycle(&self) -> Result<CycleReport, StoreError> {
        let started_at = self.clock.now();
        let tz = self.client.timezone();
        let server = self.client.server_name().to_owned();
        match &self.discovery {
            Some(d) => {
                d.refresh_if_due(&self.client, &self.store, started_at)
                    .await?
            }
            None => crate::discover::forget(&self.store)?,
        }
        let users = self.watch_list()?;

        let limit = Arc::new(Semaphore::new(self.config.max_concurrency.max(1)));
        let mut requests = JoinSet::new();
        let mut user_states = BTreeMap::new();
        let mut request_count = 0u32;
        let watched_before = self.store.watched_logins()?;
        for user in &users {
            // A user who was not watched in the last cycle (new, or removed and added
            // again) starts afresh: baselined again, no catch-up over the unwatched days.
            let state = if watched_before.contains(&user.login) {
                self.store.user_state(&user.login)?
            } else {
                UserState::default()
            };
            let running = self.store.running_dates(&server, &user.login)?;
            let dates = dates_to_poll(
                started_at,
                tz,
                self.config.poll.midnight_grace,
                self.config.poll.max_catch_up_days,
                state.last_success,
                &running,
            );
            for date in dates {
                request_count += 1;
                let client = self.client.clone();
                let limit = Arc::clone(&limit);
                let user = user.clone();
                requests.spawn(async move {
                    // The semaphore is never closed, so acquire only fails if it were.
                    let _permit = limit.acquire_owned().await;
                    let result = client
                        .list_restore_jobs(&user.login, &user.owner, date)
                        .await;
                    (user, date, result)
                });
            }
            user_states.insert(user.login.clone(), (state, ClassCounts::new(), true));
        }

        let mut summary = CycleSummary {
            started_at,
            finished_at: started_at,
            users_polled: users.len() as u32,
            requests: request_count,
            ..CycleSummary::default()
        };
        let mut baselined = 0;
        let mut outage_errors: Vec<CbsError> = Vec::new();
        // Mutes fail open: an unreadable mute list posts alerts rather than losing them.
        // Read once per cycle, not per job: the check then costs no store reads on the
        // hot path (and none inside the store's transaction).
        let mutes = Mutes::open(&self.store)
            .and_then(|m| m.active(started_at))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the mutes; alerting as if none");
                Vec::new()
            });
        let is_muted = |job: &RestoreJob| {
            mutes
                .iter()
                .any(|m| m.covers(&job.login_name, &job.backup_set_id))
        };
        let stuck_after = chrono::Duration::from_std(self.config.poll.stuck_after)
            .unwrap_or(chrono::Duration::MAX);
        while let Some(joined) = requests.join_next().await {
            let Ok((user, date, result)) = joined else {
                tracing::error!("a CBS request task ended abnormally");
                continue;
            };
            crate::metrics::cbs_request(&result);
            let Some((state, baseline_counts, all_ok)) = user_states.get_mut(&user.login) else {
                continue;
            };
            match result {
                Ok(list) => {
                    for skipped in &list.skipped {
                        tracing::warn!(
                            user = %user.login, %date, reason = %skipped.reason, raw = %skipped.raw,
                            "skipped a malformed job in the CBS reply"
                        );
                    }
                    let policy = Policy {
                        now: self.clock.now(),
                        alert_classes: &self.config.poll.alert_classes,
                        stuck_after,
                        baseline: self.config.poll.baseline_first_cycle && !state.baselined,
                        muted: &is_muted,
                    };
                    for job in &list.jobs {
                        crate::metrics::job_observed(job.class);
                        let obs = self.store.observe(job, date, &policy)?;
                        match obs.change {
                            Change::NewRunning => summary.started_running += 1,
                            Change::Finished(class) => {
                                *summary.finished.entry(class).or_default() += 1
                            }
                            Change::Baseline(class) => {
                                baselined += 1;
                                *baseline_counts.entry(class).or_default() += 1;
                            }
                            Change::Stuck | Change::Unchanged => {}
                        }
                        if obs.event.is_some() {
                            summary.alerts += 1;
                        }
                        if obs.muted {
                            summary.muted += 1;
                        }
                    }
                }
                Err(error) => {
                    *all_ok = false;
                    tracing::warn!(user = %user.login, %date, %error, "CBS request failed");
                    summary.errors.push(PollError {
                        login_name: user.login.clone(),
                        date,
                        message: error.to_string(),
                    });
                    if error.outage_reason().is_some() {
                        outage_errors.push(error);
                    }
                }
            }
        }

        let now = self.clock.now();
        let mut baselines: BTreeMap<String, Vec<BaselineUser>> = BTreeMap::new();
        for user in &users {
            let Some((mut state, counts, all_ok)) = user_states.remove(&user.login) else {
                continue;
            };
            if all_ok {
                if !state.baselined && self.config.poll.baseline_first_cycle {
                    baselines
                        .entry(user.owner.clone())
                        .or_default()
                        .push(BaselineUser {
                            login_name: user.login.clone(),
                            counts,
                        });
                }
                state.baselined = true;
                state.last_success = Some(started_at);
            } else if let Some(e) = summary
                .errors
                .iter()
                .rev()
                .find(|e| e.login_name == user.login)
            {
                state.last_error = Some((now, e.message.clone()));
            }
            self.store.set_user_state(&user.login, &state)?;
        }
        for (owner, users) in baselines {
            self.store
                .push_event(EventKind::Baseline { owner, users }, now)?;
        }
        self.store
            .set_watched_logins(&users.iter().map(|u| u.login.clone()).collect())?;

        let outage_secs = self.track_outage(&summary, &outage_errors, now)?;
        summary
            .errors
            .sort_by(|a, b| (&a.login_name, a.date).cmp(&(&b.login_name, b.date)));
        summary.finished_at = now;
        let error_logins: BTreeSet<String> = summary
            .errors
            .iter()
            .map(|e| e.login_name.clone())
            .collect();
        let changed = summary.started_running > 0
            || summary.alerts > 0
            || summary.muted > 0
            || summary.finished.values().any(|n| *n > 0)
            || error_logins != self.store.error_logins()?;
        if changed {
            self.store
                .push_event(EventKind::CycleSummary(summary.clone()), now)?;
        }
        self.store.set_error_logins(&error_logins)?;
        self.store.record_cycle(
            &CycleRecord {
                started_at,
                finished_at: now,
                users: summary.users_polled,
                requests: summary.requests,
                errors: summary.errors.len() as u32,
            },
            started_at.with_timezone(&tz).date_naive(),
            outage_secs,
        )?;
        let today = now.with_timezone(&tz).date_naive();
        // A retention reaching before the calendar's start keeps everything.
        let cutoff = today
            .checked_sub_days(Days::new(self.config.retention_days.into()))
            .unwrap_or(NaiveDate::MIN);
        let pruned = self.store.prune_before(cutoff)?;
        Ok(CycleReport {
            summary,
            baselined,
            pruned,
        })
    }

    /// Opens or closes an outage: one "unreachable" notice when every request failed for a
    /// server-wide reason, one "recovered" notice when requests succeed again. Returns the
    /// outage seconds this cycle adds to the day's health.
    fn track_outage(
        &self,
        summary: &CycleSummary,
        outage_errors: &[CbsError],
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let all_failed = summary.requests > 0 && outage_errors.len() as u32 == summary.requests;
        let previous_start = self.store.last_cycle()?.map(|c| c.started_at);
        // Downtime counted for this cycle: since the later of the outage start and the
        // previous cycle, so consecutive cycles never count the same minutes twice.
        let down_secs = |outage: &Outage| {
            let from = previous_start.map_or(outage.since, |p| p.max(outage.since));
            (summary.started_at - from).num_seconds().max(0)
        };
        let first_reason = outage_errors.first().map(|e| {
            (
                e.outage_reason().unwrap_or(OutageReason::Unreachable),
                e.to_string(),
            )
        });
        match (self.store.outage()?, first_reason.filter(|_| all_failed)) {
            // Down, or down for a new reason (say unreachable, then the password expired):
            // one notice per reason, written with the outage record in one transaction.
            (previous, Some((reason, error)))
                if previous.as_ref().is_none_or(|o| o.reason != reason) =>
            {
                let outage = Outage {
                    since: previous.as_ref().map_or(summary.started_at, |o| o.since),
                    reason,
                    error,
                };
                tracing::error!(error = %outage.error, ?reason, "the backup server is unreachable");
                let event = EventKind::CbsUnreachable {
                    since: outage.since,
                    reason,
                    error: outage.error.clone(),
                };
                self.store
                    .set_outage_with_event(Some(&outage), event, now)?;
                Ok(previous.as_ref().map_or(0, &down_secs))
            }
            (Some(outage), Some(_)) => Ok(down_secs(&outage)),
            (Some(outage), None) if summary.requests > 0 => {
                tracing::info!(since = %outage.since, "the backup server answers again");
                let event = EventKind::CbsRecovered {
                    down_since: outage.since,
                    recovered_at: summary.started_at,
                };
                self.store.set_outage_with_event(None, event, now)?;
                Ok(down_secs(&outage))
            }
            _ => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn today_only_in_the_afternoon() {
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 14, 0, 0).unwrap();
        let dates = dates_to_poll(
            now,
            chrono_tz::UTC,
            6 * HOUR,
            7,
            Some(now),
            &BTreeSet::new(),
        );
        assert_eq!(dates, BTreeSet::from([d("2024-06-26")]));
    }

    #[test]
    fn yesterday_within_grace_in_the_server_zone() {
        // 23:30 UTC is 01:30 in Berlin: inside the grace window of the Berlin day.
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 23, 30, 0).unwrap();
        let berlin = chrono_tz::Europe::Berlin;
        let dates = dates_to_poll(now, berlin, 6 * HOUR, 7, Some(now), &BTreeSet::new());
        assert_eq!(dates, BTreeSet::from([d("2024-06-26"), d("2024-06-27")]));
        let utc = dates_to_poll(
            now,
            chrono_tz::UTC,
            6 * HOUR,
            7,
            Some(now),
            &BTreeSet::new(),
        );
        assert_eq!(utc, BTreeSet::from([d("2024-06-26")]));
    }

    /// The grace window is real time after the local midnight, also on the days the clocks
    /// change: six hours after midnight is 07:00 on the spring day (the night is an hour
    /// short) and 05:00 on the autumn day (an hour long).
    #[test]
    fn the_grace_window_counts_real_hours_on_the_days_the_clocks_change() {
        let berlin = chrono_tz::Europe::Berlin;
        let asks_yesterday = |y, m, d, h, min| {
            let now = berlin
                .with_ymd_and_hms(y, m, d, h, min, 0)
                .single()
                .unwrap()
                .with_timezone(&Utc);
            let dates = dates_to_poll(now, berlin, 6 * HOUR, 7, Some(now), &BTreeSet::new());
            dates.len() == 2
        };
        // 2024-03-31: 02:00 CET jumps to 03:00 CEST.
        assert!(asks_yesterday(2024, 3, 31, 6, 30), "5.5 h have passed");
        assert!(!asks_yesterday(2024, 3, 31, 7, 0), "6 h have passed");
        // 2024-10-27: 03:00 CEST falls back to 02:00 CET.
        assert!(
            asks_yesterday(2024, 10, 27, 4, 59),
            "5 h 59 min have passed"
        );
        assert!(!asks_yesterday(2024, 10, 27, 5, 0), "6 h have passed");
        // An ordinary day: the wall clock and real time agree.
        assert!(asks_yesterday(2024, 6, 26, 5, 59));
        assert!(!asks_yesterday(2024, 6, 26, 6, 0));
    }

    #[test]
    fn catch_up_is_bounded_and_running_dates_kept() {
        let now = Utc.with_ymd_and_hms(2024, 6, 26, 14, 0, 0).unwrap();
        let last = Utc.with_ymd_and_hms(2024, 6, 1, 9, 0, 0).unwrap();
        let running = BTreeSet::from([d("2024-05-30")]);
        let dates = dates_to_poll(now, chrono_tz::UTC, 6 * HOUR, 3, Some(last), &running);
        let want: BTreeSet<_> = [
            "2024-05-30",
            "2024-06-23",
            "2024-06-24",
            "2024-06-25",
            "2024-06-26",
        ]
        .into_iter()
        .map(d)
        .collect();
        assert_eq!(dates, want);
    }
}
