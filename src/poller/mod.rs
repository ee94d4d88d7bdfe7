//! One poll cycle: ask the backup server about every watched user for every date in the
//! window, record what changed, and queue the events that follow.
//!
//! Requests run concurrently (at most `cbs.max_concurrency` in flight); their results are
//! applied to the store one by one in this task, so the store sees a single writer. A user
//! whose requests fail is recorded and skipped; the cycle goes on.
//!
//! # Layout
//! This module holds the [`Poller`], its [`PollerConfig`] and the cycle itself;
//! `dates.rs` picks the dates to ask about ([`dates_to_poll`]), `report.rs` holds the
//! [`CycleReport`] a cycle returns, `outage.rs` opens and closes outages from a cycle's
//! requests, `job_reports.rs` adds the restore job reports to failure alerts, and
//! `unreadable.rs` remembers the reply items that could not be read, so each is told once.

mod dates;
mod job_reports;
mod outage;
mod progress;
mod report;
mod unreadable;

pub use dates::dates_to_poll;
pub use progress::{Progress, ServerProgress};
pub use report::CycleReport;

use crate::cbs::model::{RestoreJob, StatusClass};
use crate::cbs::{CbsClient, CbsError};
use crate::clock::SharedClock;
use crate::config::{
    AlertSettings, PollSettings, SummarySettings, WatchEntry, VANISHED_MIN_CYCLES,
};
use crate::escalation::Streaks;
use crate::event::{
    BaselineUser, ClassCounts, CycleSummary, EventKind, PollError, StormJob,
    BASELINE_WOULD_ALERT_MAX, UNREADABLE_LISTED_MAX,
};
use crate::mutes::Mutes;
use crate::store::{Change, CycleRecord, Policy, Store, StoreError, UserState};
use crate::summary::Disposition;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet};
use tokio::task::JoinSet;

/// The most "now watching" notices one cycle posts to the alert channel, one per owner;
/// beyond it, the owners without a `[[route]]` of their own share one.
pub const BASELINE_OWNER_NOTICES_MAX: usize = 5;

/// What the poller needs from the settings.
#[derive(Clone, Debug)]
pub struct PollerConfig {
    pub poll: PollSettings,
    /// Watched users from the config file; the store's dynamic list is merged in.
    pub watch: Vec<WatchEntry>,
    pub max_concurrency: usize,
    pub retention_days: u32,
    /// `[summary]`: which cycles post a summary, or roll up.
    pub summary: SummarySettings,
    /// `[alerts]`: storms and repeats.
    pub alerts: AlertSettings,
    /// Owners with their own channel (`[[route]]`): their storms are counted apart.
    pub routed_owners: BTreeSet<String>,
    /// `cbs.down_after`: consecutive cycles without one successful request that open an
    /// outage.
    pub down_after: u32,
    /// `cbs.fetch_reports`: add `GetRestoreJobReport.do` details to failure alerts.
    pub fetch_reports: bool,
}

pub struct Poller {
    client: CbsClient,
    store: Store,
    config: PollerConfig,
    clock: SharedClock,
    /// `None`: discovery is off (and its last list forgotten).
    discovery: Option<crate::discover::Discovery>,
    /// Set once a cycle's report calls failed and it was logged; cleared when one works
    /// again, so a lasting refusal (a Read-Only API role) is logged once, not every cycle.
    reports_failing: std::sync::atomic::AtomicBool,
    /// Its cycles under way, for `/healthz`.
    progress: Progress,
}

/// A clock moving more than this many days between two cycles holds pruning for a day.
const CLOCK_JUMP_DAYS: i64 = 2;
/// A clock going back by more than this between two cycles holds pruning too.
const CLOCK_BACK_TOLERANCE: chrono::Duration = chrono::Duration::minutes(5);

impl Poller {
    pub fn new(client: CbsClient, store: Store, config: PollerConfig, clock: SharedClock) -> Self {
        Poller {
            client,
            store,
            config,
            clock,
            discovery: None,
            reports_failing: Default::default(),
            progress: Progress::default(),
        }
    }

    /// Notes its cycles under way in `progress` (shared with `/healthz`).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Watches the users the server lists too (`[discover]`), when enabled.
    pub fn with_discovery(mut self, settings: crate::config::DiscoverSettings) -> Self {
        self.discovery = crate::discover::Discovery::from_settings(settings);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Its client: clones share its limits (`cbs.max_concurrency`,
    /// `cbs.max_requests_per_second`).
    pub fn client(&self) -> &CbsClient {
        &self.client
    }

    /// The backup server this poller polls.
    pub fn server_name(&self) -> &str {
        self.client.server_name()
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
        let _running = self.progress.cycle_running(&server, started_at);
        let known_down = self.store.outage()?.is_some() || self.store.down_streak()?.is_some();
        let discovery_failure = match &self.discovery {
            // While the server is down, the probe below asks it (one request); the list is
            // refreshed in the first cycle after it answers again.
            Some(_) if known_down && !self.watch_list()?.is_empty() => None,
            Some(d) => {
                d.refresh_if_due(&self.client, &self.store, started_at)
                    .await?
            }
            None => {
                crate::discover::forget(&self.store)?;
                None
            }
        };
        // A listing attempted now that failed, in any way `/status` shows (every call, an
        // owner's, or nobody listed): for the cycle's log line.
        let discovery_errors = match &self.discovery {
            Some(_) => {
                let d = crate::discover::status(&self.store)?;
                u32::from(d.last_attempt == Some(started_at) && d.last_error.is_some())
            }
            None => 0,
        };
        let users = self.watch_list()?;
        // With nobody to ask, a listing that failed for a server-wide reason is the
        // cycle's news about the server: a discovery-only server that is down is an outage.
        let discovery_down =
            discovery_failure.filter(|e| users.is_empty() && e.outage_reason().is_some());

        // Every (user, date) to ask about, in order; at most `max_concurrency` of them are
        // in flight, each a task started only when a slot frees up. Starting them all at
        // once (each waiting for a permit) would hold a request's future per watched user
        // in memory: tens of MiB at 10,000 users.
        let mut to_ask: Vec<(WatchEntry, NaiveDate)> = Vec::new();
        let mut user_states = BTreeMap::new();
        let mut request_count = 0u32;
        let watched_before = self.store.watched_logins()?;
        // The users with a job recorded as running when the cycle starts: only their
        // replies can leave a running job out (one a reply adds is in that reply).
        let mut with_running = BTreeSet::new();
        // Circuit breaker: while the server is down (or going down), one probe request
        // (the first user, today) goes first; if it too fails for a server-wide reason,
        // it is the cycle's only request, rather than every user's every catch-up date
        // waiting out its timeout. If it answers, the cycle goes on as usual.
        let probe = match users.first() {
            Some(user) if known_down => {
                let date = started_at.with_timezone(&tz).date_naive();
                let result = self
                    .client
                    .list_restore_jobs(&user.login, &user.owner, date)
                    .await;
                Some((user.clone(), date, result))
            }
            _ => None,
        };
        let server_down = matches!(&probe, Some((_, _, Err(e))) if e.outage_reason().is_some());
        // Users discovery lists now, by lower-case login: read only when someone is back.
        let listed: BTreeSet<String> = match &self.discovery {
            Some(_) if users.iter().any(|u| !watched_before.contains(&u.login)) => self
                .store
                .discovered_users()?
                .into_iter()
                .map(|w| w.login.to_lowercase())
                .collect(),
            _ => BTreeSet::new(),
        };
        // A returning user whose last read is before this date has no records left.
        let kept_since = crate::config::earliest_kept(
            started_at.with_timezone(&tz).date_naive(),
            self.keep_days(),
        );
        let mut resumed = 0usize;
        for user in &users {
            let state = if watched_before.contains(&user.login) {
                self.store.user_state(&user.login)?
            } else if listed.contains(&user.login.to_lowercase()) {
                // A user discovery lists again: their leaving was not anyone's choice (a
                // listing left them out), and the store still knows them, so their
                // polling resumes as after downtime (the missed dates are caught up,
                // bounded) rather than a second baseline that would record the failures
                // of the gap without alerting them. A user gone past the retention has
                // no records left and is new again.
                let known = self.store.user_state(&user.login)?;
                if known.read_since(tz, kept_since) {
                    resumed += 1;
                    known
                } else {
                    UserState::default()
                }
            } else {
                // Added again from chat or the config file: the admin's choice, and
                // `/watch add` promises a baseline: no catch-up over the unwatched days.
                UserState::default()
            };
            let running = self.store.running_dates(&server, &user.login)?;
            if !running.is_empty() {
                with_running.insert(user.login.clone());
            }
            let dates = dates_to_poll(
                started_at,
                tz,
                self.config.poll.midnight_grace,
                self.config.poll.max_catch_up_days,
                state.last_success,
                &running,
            );
            for date in dates {
                let probed = probe
                    .as_ref()
                    .is_some_and(|(p, d, _)| p.login == user.login && *d == date);
                if server_down || probed {
                    continue;
                }
                request_count += 1;
                to_ask.push((user.clone(), date));
            }
            let fresh = !state.baselined && state.baselined_dates.is_empty();
            // A user the breaker left unasked has not been read this cycle.
            let all_ok = !server_down;
            user_states.insert(
                user.login.clone(),
                (state.clone(), ClassCounts::new(), all_ok, fresh, state),
            );
        }
        // Users who left the watch list (no longer listed by discovery, removed from the
        // config or from chat) with jobs recorded as running: a job still running is polled
        // for until its end is recorded, so those jobs' dates are still asked about (and
        // nothing else of theirs), within the retention window. Their end alerts as any
        // other; then they are polled no more. Their poll state is left as it was.
        let watched_lower: BTreeSet<String> =
            users.iter().map(|u| u.login.to_lowercase()).collect();
        let mut leavers = 0usize;
        let watched = |login: &str| watched_lower.contains(&login.to_lowercase());
        for (login, (owner, dates)) in self.store.running_users(&server, watched)? {
            let dates: Vec<NaiveDate> = dates.into_iter().filter(|d| *d >= kept_since).collect();
            if dates.is_empty() {
                continue;
            }
            leavers += 1;
            with_running.insert(login.clone());
            let entry = WatchEntry {
                login: login.clone(),
                owner,
            };
            if !server_down {
                for date in dates {
                    request_count += 1;
                    to_ask.push((entry.clone(), date));
                }
            }
            // Baselined: the end of a job seen running alerts, it is no baseline.
            let state = UserState {
                baselined: true,
                ..UserState::default()
            };
            user_states.insert(
                login,
                (
                    state.clone(),
                    ClassCounts::new(),
                    !server_down,
                    false,
                    state,
                ),
            );
        }
        if probe.is_some() {
            request_count += 1;
        }
        if leavers > 0 {
            tracing::info!(
                %server,
                users = leavers,
                "users no longer watched are polled for their running jobs until these end"
            );
        }
        if resumed > 0 {
            tracing::info!(
                %server,
                users = resumed,
                "users listed again by discovery resume polling where they left off \
                 (missed dates caught up, no new baseline)"
            );
        }

        let mut summary = CycleSummary {
            server: server.clone(),
            started_at,
            finished_at: started_at,
            users_polled: users.len() as u32,
            requests: request_count,
            ..CycleSummary::default()
        };
        let mut baselined = 0;
        let mut alerted: Vec<RestoreJob> = Vec::new();
        let mut would_alert: BTreeMap<String, Vec<StormJob>> = BTreeMap::new();
        let mut outage_errors: Vec<CbsError> = discovery_down.into_iter().collect();
        let mut succeeded = 0u32;
        let mut caught_up = BTreeSet::new();
        // What every cycle asks anyway (today, and yesterday in the midnight grace): a
        // recovery's "caught up on" lists only the dates read beyond these.
        let routine = dates_to_poll(
            started_at,
            tz,
            self.config.poll.midnight_grace,
            0,
            None,
            &BTreeSet::new(),
        );
        // Mutes fail open: an unreadable mute list posts alerts rather than losing them.
        // Read once per cycle, not per job: the check then costs no store reads on the
        // hot path (and none inside the store's transaction).
        let mutes = Mutes::open(&self.store)
            .and_then(|m| m.all())
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the mutes; alerting as if none");
                Vec::new()
            });
        // Muted now, or when the job ended: a failure inside a maintenance window stays
        // muted when the bot first sees it after the window.
        let is_muted = |job: &RestoreJob| {
            let ended = job.end_time.map(|e| e.to_utc());
            mutes.iter().any(|m| {
                m.covers(&job.server, &job.login_name, &job.backup_set_id)
                    && (m.is_active(started_at) || ended.is_some_and(|e| m.held_at(e)))
            })
        };
        let streaks = Streaks::open(&self.store)?;
        let mut unreadable = unreadable::Unreadable::load(&self.store)?;
        let repeat = |job: &RestoreJob| Some(streaks.next(job, started_at));
        let stuck_after = chrono::Duration::from_std(self.config.poll.stuck_after)
            .unwrap_or(chrono::Duration::MAX);
        let vanished_after = chrono::Duration::from_std(self.config.poll.vanished_after)
            .unwrap_or(chrono::Duration::MAX);
        let mut to_ask = to_ask.into_iter();
        let mut requests = JoinSet::new();
        // The probe's answer is in already: it is handled like any other reply.
        if let Some(probe) = probe {
            requests.spawn(async move { probe });
        }
        let ask_next =
            |requests: &mut JoinSet<_>,
             to_ask: &mut std::vec::IntoIter<(WatchEntry, NaiveDate)>| {
                if let Some((user, date)) = to_ask.next() {
                    let client = self.client.clone();
                    requests.spawn(async move {
                        let result = client
                            .list_restore_jobs(&user.login, &user.owner, date)
                            .await;
                        (user, date, result)
                    });
                }
            };
        for _ in 0..self.config.max_concurrency.max(1) {
            ask_next(&mut requests, &mut to_ask);
        }
        while let Some(joined) = requests.join_next().await {
            // The next request goes out before this reply is recorded, so the slot it
            // frees never waits for the store.
            ask_next(&mut requests, &mut to_ask);
            let Ok((user, date, result)) = joined else {
                tracing::error!("a CBS request task ended abnormally");
                continue;
            };
            crate::metrics::cbs_request(&server, &result);
            self.progress.answered(&server, self.clock.now());
            let Some((state, baseline_counts, all_ok, _, _)) = user_states.get_mut(&user.login)
            else {
                continue;
            };
            match result {
                Ok(list) => {
                    succeeded += 1;
                    if !routine.contains(&date) {
                        caught_up.insert(date);
                    }
                    unreadable.read(&user.login, date);
                    for skipped in &list.skipped {
                        // Told once; the same item in later replies only at debug level.
                        if unreadable.note(&user.login, date, skipped) {
                            tracing::warn!(
                                user = %user.login, %date, reason = %skipped.reason, raw = %skipped.raw,
                                "skipped a reply item without a job identity"
                            );
                        } else {
                            tracing::debug!(
                                user = %user.login, %date, reason = %skipped.reason, raw = %skipped.raw,
                                "skipped a reply item without a job identity (seen before)"
                            );
                        }
                        summary.unreadable_items += 1;
                        if summary.unreadable.len() < UNREADABLE_LISTED_MAX {
                            summary.unreadable.push(PollError {
                                login_name: user.login.clone(),
                                date,
                                message: format!("{}: {}", skipped.reason, skipped.raw),
                            });
                        }
                    }
                    let policy = Policy {
                        now: self.clock.now(),
                        alert_classes: &self.config.poll.alert_classes,
                        stuck_after,
                        // Baseline mode ends per (user, date), on its first successful read.
                        baseline: self.config.poll.baseline_first_cycle
                            && !state.baselined
                            && !state.baselined_dates.contains(&date),
                        muted: &is_muted,
                        repeat: &repeat,
                    };
                    let mut seen = Vec::with_capacity(list.jobs.len());
                    // In the order the jobs ended (those still running last), not the
                    // reply's: a set's row of failures counts its jobs as they happened.
                    let mut jobs: Vec<&RestoreJob> = list.jobs.iter().collect();
                    jobs.sort_by_key(|j| (j.end_time.is_none(), j.end_time.map(|e| e.to_utc())));
                    for job in jobs {
                        // One canonical login: the reply may spell the watched login in
                        // another case, and job keys, running dates and mutes use ours.
                        let canonical;
                        let job = if job.login_name != user.login
                            && job.login_name.eq_ignore_ascii_case(&user.login)
                        {
                            canonical = RestoreJob {
                                login_name: user.login.clone(),
                                ..job.clone()
                            };
                            &canonical
                        } else {
                            job
                        };
                        seen.push(job.key());
                        crate::metrics::job_observed(job.class);
                        let obs = self.store.observe(job, date, &policy)?;
                        match obs.change {
                            Change::NewRunning => summary.started_running += 1,
                            Change::Finished(class) => {
                                *summary.finished.entry(class).or_default() += 1;
                                streaks.record(job, &self.config.poll.alert_classes, started_at)?;
                            }
                            Change::Baseline(class) => {
                                baselined += 1;
                                *baseline_counts.entry(class).or_default() += 1;
                                if self.config.poll.alert_classes.contains(&class) {
                                    would_alert
                                        .entry(user.owner.clone())
                                        .or_default()
                                        .push(StormJob::from_job(job));
                                }
                            }
                            Change::Stuck | Change::Reappeared | Change::Unchanged => {}
                        }
                        if let Some(event) = &obs.event {
                            summary.alerts += 1;
                            if matches!(event, EventKind::JobFinished { .. }) {
                                alerted.push(job.clone());
                            }
                        }
                        if obs.muted {
                            summary.muted += 1;
                        }
                    }
                    if !state.baselined {
                        state.baselined_dates.insert(date);
                    }
                    // Running jobs this reply leaves out: vanished once missing long enough.
                    if !with_running.contains(&user.login) {
                        continue;
                    }
                    let now = self.clock.now();
                    for key in self
                        .store
                        .missing_running(&server, &user.login, date, &seen)?
                    {
                        let missing = self.store.note_missing(&key, now)?;
                        if missing.reads < VANISHED_MIN_CYCLES
                            || now - missing.since < vanished_after
                        {
                            continue;
                        }
                        let alerts_unknown = self
                            .config
                            .poll
                            .alert_classes
                            .contains(&StatusClass::Unknown);
                        let alert = |job: &RestoreJob| alerts_unknown && !is_muted(job);
                        if let Some((job, alerted)) =
                            self.store.vanish(&key, missing.since, now, &alert)?
                        {
                            tracing::warn!(
                                user = %user.login, %date, job = %job.job_id,
                                backup_set = %job.backup_set_id, since = %missing.since,
                                "a running job vanished from the CBS reply"
                            );
                            *summary.finished.entry(StatusClass::Unknown).or_default() += 1;
                            if alerted {
                                summary.alerts += 1;
                            }
                        }
                    }
                }
                Err(error) => {
                    *all_ok = false;
                    tracing::warn!(%server, user = %user.login, %date, %error, "CBS request failed");
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

        // Storms first: a job whose alert lives only in a card shows no details, so its
        // report is not asked for (a storm of 2,000 failures asks for a handful, not 2,000).
        let card_only = crate::storm::collapse(
            &self.store,
            &alerted,
            self.config.alerts.group_after,
            &self.config.routed_owners,
            self.clock.now(),
        )?;
        alerted.retain(|job| !card_only.contains(&job.key()));
        if self.config.fetch_reports && !alerted.is_empty() {
            self.attach_reports(&alerted).await?;
        }
        let now = self.clock.now();
        let mut baselines: BTreeMap<String, Vec<BaselineUser>> = BTreeMap::new();
        for user in &users {
            let Some((mut state, counts, all_ok, fresh, loaded)) = user_states.remove(&user.login)
            else {
                continue;
            };
            // One "now watching" notice, from the first cycle that read any of its dates.
            if fresh && !state.baselined_dates.is_empty() && self.config.poll.baseline_first_cycle {
                baselines
                    .entry(user.owner.clone())
                    .or_default()
                    .push(BaselineUser {
                        login_name: user.login.clone(),
                        counts,
                    });
            }
            // Only the date of the last success is read (the catch-up starts there): a
            // later success on the same date leaves the state as it is, so it is not
            // written again (one write per user per day, not per cycle).
            let success_date = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
            if all_ok {
                state.baselined = true;
                state.baselined_dates.clear();
                if state.last_success.map(success_date) != Some(success_date(started_at)) {
                    state.last_success = Some(started_at);
                }
            } else if let Some(e) = summary
                .errors
                .iter()
                .rev()
                .find(|e| e.login_name == user.login)
            {
                state.last_error = Some((now, e.message.clone()));
            }
            if state != loaded {
                self.store.set_user_state(&user.login, &state)?;
            }
        }
        // Hundreds of resellers at a first start must not post hundreds of cards: past a
        // handful, the owners without a channel of their own share one notice.
        let unrouted: Vec<String> = (baselines.keys())
            .filter(|owner| !self.config.routed_owners.contains(*owner))
            .cloned()
            .collect();
        if unrouted.len() > BASELINE_OWNER_NOTICES_MAX {
            let mut shared = (Vec::new(), Vec::new());
            for owner in unrouted {
                shared
                    .0
                    .extend(baselines.remove(&owner).unwrap_or_default());
                shared
                    .1
                    .extend(would_alert.remove(&owner).unwrap_or_default());
            }
            shared.0.sort_by(|a, b| a.login_name.cmp(&b.login_name));
            baselines.insert(String::new(), shared.0);
            would_alert.insert(String::new(), shared.1);
        }
        for (owner, users) in baselines {
            let mut jobs = would_alert.remove(&owner).unwrap_or_default();
            jobs.sort();
            let would_alert_total = jobs.len();
            jobs.truncate(BASELINE_WOULD_ALERT_MAX);
            let event = EventKind::Baseline {
                owner,
                users,
                would_alert: jobs,
                would_alert_total,
                server: self.client.server_name().to_owned(),
            };
            self.store.push_event(event, now)?;
        }
        let watched: BTreeSet<String> = users.iter().map(|u| u.login.clone()).collect();
        if watched != watched_before {
            self.store.set_watched_logins(&watched)?;
        }

        // The last cycle's start, before this one's record replaces it: the outage's
        // downtime and the clock check below count from it.
        let previous_start = self.store.last_cycle()?.map(|c| c.started_at);
        let outage_secs = self.track_outage(
            &summary,
            previous_start,
            succeeded,
            &outage_errors,
            caught_up.into_iter().collect(),
            now,
        )?;
        crate::metrics::cbs_up(&server, self.store.outage()?.is_none());
        summary
            .errors
            .sort_by(|a, b| (&a.login_name, a.date).cmp(&(&b.login_name, b.date)));
        summary.finished_at = now;
        let error_logins: BTreeSet<String> = summary
            .errors
            .iter()
            .map(|e| e.login_name.clone())
            .collect();
        // News worth a summary: the set of erroring users changed, or an unreadable reply
        // item not seen before (one that comes back every cycle is told once).
        let news = error_logins != self.store.error_logins()? || unreadable.any_new();
        match crate::summary::disposition(&self.config.summary, &summary, news) {
            Disposition::Post => {
                self.store
                    .push_event(EventKind::CycleSummary(summary.clone()), now)?;
            }
            Disposition::RollUp => crate::summary::add_to_rollup(&self.store, &summary)?,
            Disposition::Skip => {}
        }
        self.store.set_error_logins(&error_logins)?;
        self.store.record_cycle(
            &CycleRecord {
                started_at,
                finished_at: now,
                users: summary.users_polled,
                requests: summary.requests,
                errors: summary.errors.len() as u32,
                unreadable_items: summary.unreadable_items,
            },
            started_at.with_timezone(&tz).date_naive(),
            outage_secs,
        )?;
        let today = now.with_timezone(&tz).date_naive();
        // A retention reaching before the calendar's start keeps everything. Whatever the
        // retention, a date a later cycle may still ask for (a catch-up, the midnight
        // grace) keeps its records, so a catch-up never alerts a failure twice.
        let cutoff = crate::config::earliest_kept(today, self.keep_days());
        unreadable.save(&self.store, cutoff)?;
        let pruned = if self.prune_waits(previous_start, started_at)? {
            0
        } else {
            let pruned = self.store.prune_before(cutoff)?;
            // Acknowledgements end with their jobs' records.
            crate::acks::Acks::open(&self.store)?.prune_before(cutoff)?;
            pruned
        };
        Ok(CycleReport {
            summary,
            baselined,
            pruned,
            discovery_errors,
            server_errors: outage_errors.len() as u32,
        })
    }

    /// Whether this cycle's pruning waits because the clock jumped. A clock days ahead
    /// (a bad NTP or hypervisor clock) would prune today's records, and once corrected the
    /// jobs still listed would be new and alerted again. So after a jump of more than
    /// [`CLOCK_JUMP_DAYS`] between two cycles (or a clock gone back) pruning waits a day of
    /// cycles; a restart after real downtime only prunes a day later.
    fn prune_waits(
        &self,
        previous_start: Option<DateTime<Utc>>,
        started_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let server = self.client.server_name();
        let held = self.store.prune_held_since()?;
        let Some(previous) = previous_start else {
            return Ok(held.is_some());
        };
        let moved = started_at - previous;
        if moved > chrono::Duration::days(CLOCK_JUMP_DAYS) || moved < -CLOCK_BACK_TOLERANCE {
            let (way, by) = if moved < chrono::Duration::zero() {
                ("back", -moved)
            } else {
                ("ahead", moved)
            };
            tracing::warn!(
                server,
                last_cycle = %previous,
                this_cycle = %started_at,
                "the clock moved {way} by {} since the last cycle (downtime, or a wrong \
                 clock): pruning waits a day",
                crate::render::format_duration(by.num_seconds())
            );
            self.store.set_prune_held_since(Some(started_at))?;
            return Ok(true);
        }
        match held {
            Some(since)
                if started_at >= since && started_at - since < chrono::Duration::days(1) =>
            {
                Ok(true)
            }
            Some(_) => {
                self.store.set_prune_held_since(None)?;
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// How many days of job records a cycle keeps (see [`crate::config::kept_days`]).
    fn keep_days(&self) -> u32 {
        crate::config::kept_days(self.config.retention_days, &self.config.poll)
    }
}
