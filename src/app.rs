//! The running program: builds the parts from [`Settings`] and drives them on schedule.
//!
//! `run` takes its shutdown token (STYLE.md 2): production passes Ctrl-C/SIGTERM, tests and
//! the demo pass their own. Every wait `select!`s on the token; on shutdown the loop stops
//! taking work and flushes the store. Every wait of the stop is bounded: the poll cycle or
//! delivery in flight gets [`IN_FLIGHT_GRACE`] to finish, the gateway close the rest of
//! [`GATEWAY_CLOSE_LIMIT`]; what does not finish in time is dropped and logged as cut short
//! (both are safe to drop: a job record and its event are written together, a message is
//! recorded before it is sent). The binary adds a hard limit of [`STOP_LIMIT`] on top.

use crate::bot::{self, BotContext};
use crate::cbs::CbsClient;
use crate::clock::SharedClock;
use crate::config::{ConfigError, Settings};
use crate::digest;
use crate::discord::DiscordSink;
use crate::event::Event;
use crate::gateway::GatewayHealth;
use crate::heartbeat::Heartbeat;
use crate::metrics::CycleResult;
use crate::poller::{CycleReport, Poller, PollerConfig, Progress};
use crate::render::RenderOptions;
use crate::schedule::CronSchedule;
use crate::sink::{drain, drain_except, ConsoleSink, Delivered, DrainReport, Sink, SinkError};
use crate::store::Store;
use crate::storm;
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The whole stop, from the shutdown signal to the exit, takes at most this long.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long a poll cycle or delivery that is under way may still run after the shutdown.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);
/// How long after the shutdown the Discord gateway connection may take to close.
pub const GATEWAY_CLOSE_LIMIT: Duration = Duration::from_secs(8);

/// Runs `work` to its end unless `shutdown` comes first; after the shutdown it gets at most
/// [`IN_FLIGHT_GRACE`] more, and is dropped (logged as cut short) past that. Work is not
/// begun at all once the shutdown has come. `None`: cut short or not begun.
async fn finish_within_grace<T>(
    work: impl Future<Output = T>,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<T> {
    if shutdown.is_cancelled() {
        return None;
    }
    let mut work = std::pin::pin!(work);
    tokio::select! {
        done = &mut work => return Some(done),
        _ = shutdown.cancelled() => {}
    }
    tracing::info!(
        grace = %humantime::format_duration(IN_FLIGHT_GRACE),
        "stopping: letting the {what} in flight finish"
    );
    match tokio::time::timeout(IN_FLIGHT_GRACE, work).await {
        Ok(done) => Some(done),
        Err(_) => {
            tracing::warn!(
                "stopping: cut short the {what} in flight; what it had not delivered stays \
                 in the outbox for the next start"
            );
            None
        }
    }
}

/// The long-lived parts, built once from the settings.
pub struct App {
    pub settings: Settings,
    /// One poller per backup server, the first server's first: each with its own client,
    /// concurrency, zone, discovery and outage state.
    pub pollers: Vec<Poller>,
    pub store: Store,
    pub clock: SharedClock,
    /// `[heartbeat] url`, called after every cycle of the run loop.
    pub heartbeat: Option<Heartbeat>,
    /// The pollers' cycles under way, which `/healthz` reads.
    pub progress: Progress,
}

/// Poll rounds in a row that fail with the store's I/O error before `run` gives up (see
/// `store_cannot_write`).
pub const STORE_BROKEN_ROUNDS: u32 = 2;

/// The most skipped poll ticks counted after one cycle.
const MAX_SKIPPED_TICKS: u64 = 10_000;
/// How often an idle wait first looks at the store's write stamp; the store is reopened
/// once it has held for a whole interval. Each look that finds nothing written since the
/// last reopen doubles the interval, up to [`SETTLE_CHECK_MAX`].
const SETTLE_CHECK: Duration = Duration::from_secs(2);
/// The longest interval between two looks at the store's write stamp.
const SETTLE_CHECK_MAX: Duration = Duration::from_secs(60);
/// At most this many reopens in one wait between ticks: each reopen lets sled clean its
/// segments again, which writes; the bound keeps a store that never settles from being
/// reopened every few seconds.
const SETTLE_REOPENS: u32 = 3;

/// What one look at the store's write stamp in [`App::settle_store`] finds.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    /// Written since the last look: look again soon.
    Written,
    /// Nothing to reopen: nothing written since the last reopen, or the wait's reopens
    /// are used up.
    Quiet,
    /// Settled after a write: reopen the store now.
    Reopen,
}

/// The bookkeeping of one wait's looks at the store, over write stamps `S`: when to
/// look next and whether to reopen.
struct Settle<S> {
    /// The stamp at the last look.
    seen: S,
    /// Until the next look.
    every: Duration,
    /// Reopens tried in this wait (busy ones too), at most [`SETTLE_REOPENS`].
    reopens: u32,
}

impl<S: Copy + PartialEq> Settle<S> {
    fn new(seen: S) -> Settle<S> {
        Settle {
            seen,
            every: SETTLE_CHECK,
            reopens: 0,
        }
    }

    /// A look: `written` is the store's stamp now, `reopened_at` its stamp after the
    /// last reopen.
    fn look(&mut self, written: S, reopened_at: Option<S>) -> Look {
        if written != self.seen {
            (self.seen, self.every) = (written, SETTLE_CHECK);
            Look::Written
        } else if Some(written) == reopened_at || self.reopens == SETTLE_REOPENS {
            self.every = (self.every * 2).min(SETTLE_CHECK_MAX);
            Look::Quiet
        } else {
            Look::Reopen
        }
    }

    /// After the reopen [`Settle::look`] asked for: `done` when it happened (not when
    /// the store was busy), `now` the stamp after it. One that did not happen is tried
    /// again at the next look, within the wait's bound.
    fn reopened(&mut self, done: bool, now: S, reopened_at: &mut Option<S>) {
        self.reopens += 1;
        (self.seen, self.every) = (now, SETTLE_CHECK);
        if done {
            *reopened_at = Some(now);
        }
    }
}

impl App {
    /// Opens the store (waiting a moment for a previous instance that is still stopping)
    /// and builds the CBS client.
    pub async fn build(settings: Settings, clock: SharedClock) -> anyhow::Result<App> {
        App::build_waiting(settings, clock, crate::store::OPEN_LOCK_WAIT_MS).await
    }

    /// [`App::build`] for a one-off command: a store held by a running instance is an
    /// error at once, saying so and what to do instead.
    pub async fn build_now(settings: Settings, clock: SharedClock) -> anyhow::Result<App> {
        App::build_waiting(settings, clock, 0).await
    }

    async fn build_waiting(
        settings: Settings,
        clock: SharedClock,
        wait_ms: u64,
    ) -> anyhow::Result<App> {
        writable_state_dir(&settings.state.path)?;
        let dir = &settings.state.path;
        let store = match Store::open_async(dir, wait_ms).await {
            Ok(store) => store,
            // One line, without sled's error chain (it repeats the lock message).
            Err(e) if crate::store::is_locked(&e) => anyhow::bail!(
                "the state store {} is in use by a running restorewatch (two instances on one \
                 store would post everything twice); stop it first, or ask it in Discord \
                 (/digest, /status)",
                dir.display()
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("opening the state store in {}", dir.display()))
            }
        };
        // sled opens a damaged or replaced store without an error: say so, loudly.
        if let Some(rollback) = store
            .check_mark(dir, clock.now())
            .context("reading the state store's mark")?
        {
            tracing::error!(
                store = %dir.display(),
                store_flushes = rollback.store_flushes,
                mark_flushes = rollback.mark_flushes,
                "{rollback}: users may be baselined again, and alerts queued or posted before \
                 may be lost or posted again; check the disk and the log since the last start"
            );
        }
        let servers = settings.servers();
        let names: Vec<&str> = servers.iter().map(|s| s.cbs.server_name.as_str()).collect();
        check_servers(&store, &names)?;
        let mut pollers = Vec::with_capacity(servers.len());
        let progress = Progress::default();
        for server in servers {
            let poller = Poller::new(
                cbs_client_for(server.cbs)?,
                store.server_view(&server.cbs.server_name)?,
                PollerConfig {
                    poll: settings.poll.clone(),
                    watch: server.watch.to_vec(),
                    max_concurrency: server.cbs.max_concurrency,
                    retention_days: settings.state.retention_days,
                    summary: settings.summary.clone(),
                    alerts: settings.alerts,
                    routed_owners: routed_owners(&settings),
                    down_after: server.cbs.down_after,
                    fetch_reports: server.cbs.fetch_reports,
                },
                clock.clone(),
            )
            .with_discovery(server.discover.clone())
            .with_progress(progress.clone());
            pollers.push(poller);
        }
        let heartbeat = settings
            .heartbeat
            .url
            .clone()
            .map(Heartbeat::new)
            .transpose()?;
        Ok(App {
            settings,
            pollers,
            store,
            clock,
            heartbeat,
            progress,
        })
    }

    /// One poll cycle of every backup server, side by side: a server that is slow or down
    /// holds up none of the others' requests. Fails when the store fails.
    pub async fn cycle(&self) -> Result<CycleReport, crate::store::StoreError> {
        let reports = futures_util::future::join_all(self.pollers.iter().map(|p| p.cycle())).await;
        let mut combined: Option<CycleReport> = None;
        for report in reports {
            let report = report?;
            combined = Some(match combined {
                None => report,
                Some(total) => total.combine(report),
            });
        }
        Ok(combined.expect("there is at least one backup server"))
    }

    /// One poll cycle of every backup server, each server's alerts delivered as soon as
    /// its own cycle ends: a server that hangs until its requests time out holds up no
    /// other server's alerts. Returns when every server's cycle has ended (so poll ticks
    /// never stack), with the combined report and the delivery totals.
    pub async fn cycle_and_deliver<S: Sink>(
        &self,
        sink: &S,
    ) -> anyhow::Result<(CycleReport, DrainReport)> {
        self.poll_round(sink, None).await
    }

    /// [`App::cycle_and_deliver`], and while a server's first cycle of the round runs past
    /// ticks of `schedule`, the servers whose cycles have ended poll again at each of them:
    /// a slow server holds up neither the others' alerts nor their next cycles. A server's
    /// cycles never overlap; the round ends when no cycle is running (at most one more
    /// cycle after the slowest server's), and its report combines each server's last cycle.
    /// Each such tick also counts as a cycle in the metrics and calls the heartbeat, from
    /// the servers' cycles that have ended, so a slow server stops neither.
    async fn poll_round<S: Sink>(
        &self,
        sink: &S,
        schedule: Option<&CronSchedule>,
    ) -> anyhow::Result<(CycleReport, DrainReport)> {
        let started = std::time::Instant::now();
        // Before any cycle queues more alerts.
        self.fold_backlog();
        let mut polling: BTreeSet<String> = self
            .pollers
            .iter()
            .map(|p| p.server_name().to_owned())
            .collect();
        let mut cycles: FuturesUnordered<_> = self.pollers.iter().map(cycle_of).collect();
        let mut next_tick = schedule.and_then(|s| s.next_after(self.clock.now()));
        // The servers whose first cycle of the round is still running: while one is, a
        // tick polls the servers that are done again; after that, the round only waits
        // for the cycles under way.
        let mut first_running = polling.clone();
        let mut last: BTreeMap<&str, CycleReport> = BTreeMap::new();
        let mut failed = None;
        let mut drained = DrainReport::default();
        // Since the last tick counted (see `cycles_ended`).
        let mut since = started;
        loop {
            let repoll = (schedule.zip(next_tick)).filter(|_| !first_running.is_empty());
            let wait = repoll.map_or(Duration::ZERO, |(_, tick)| until(self.clock.now(), tick));
            let ended = tokio::select! {
                biased;
                ended = cycles.next() => ended,
                _ = tokio::time::sleep(wait), if repoll.is_some() => {
                    if let Some(report) = last.values().cloned().reduce(CycleReport::combine) {
                        self.cycles_ended(&Ok(report), since.elapsed(), schedule.is_some());
                        since = std::time::Instant::now();
                    }
                    for poller in &self.pollers {
                        if polling.insert(poller.server_name().to_owned()) {
                            cycles.push(cycle_of(poller));
                        }
                    }
                    next_tick = repoll.and_then(|(schedule, tick)| {
                        schedule.next_after(tick.max(self.clock.now()))
                    });
                    continue;
                }
            };
            let Some((server, report)) = ended else {
                break;
            };
            polling.remove(server);
            first_running.remove(server);
            match report {
                Ok(report) => {
                    last.insert(server, report);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
            // What the cycle recorded must be on disk before anything is delivered: a
            // crash after delivery must not forget the job and alert about it again.
            self.store.flush().context("flushing the state store")?;
            // Events queued earlier are delivered even when this cycle failed half-way;
            // the job alerts of servers still polling wait for their cycle's end.
            let report = drain_except(&self.store, sink, &polling)
                .await
                .context("delivery")?;
            drained = DrainReport {
                delivered: drained.delivered + report.delivered,
                dropped: drained.dropped + report.dropped,
                ..report
            };
        }
        let combined = last.into_values().reduce(CycleReport::combine);
        let report = match (failed, combined) {
            (Some(e), _) => Err(anyhow::Error::new(e).context("poll cycle")),
            (None, Some(report)) => Ok(report),
            (None, None) => Err(anyhow::anyhow!("no backup server to poll")),
        };
        self.cycles_ended(&report, since.elapsed(), schedule.is_some());
        Ok((report?, drained))
    }

    /// Counts a cycle (the last cycles of the servers, combined) in the metrics and, in the
    /// run loop (`heartbeat`), calls the heartbeat.
    fn cycles_ended(&self, report: &anyhow::Result<CycleReport>, took: Duration, heartbeat: bool) {
        crate::metrics::cycle_finished(
            cycle_result(report),
            servers_answered(report),
            took,
            self.clock.now(),
        );
        if let Some(beat) = self.heartbeat.as_ref().filter(|_| heartbeat) {
            beat.spawn_after(report.as_ref());
        }
    }

    /// Builds the digest of `date` and queues it for delivery.
    pub fn queue_digest(&self, date: NaiveDate) -> anyhow::Result<()> {
        digest::queue_digest(
            &self.store,
            date,
            self.settings.cbs.timezone,
            self.store.refused_destinations()?,
            self.clock.now(),
        )
        .with_context(|| format!("building the digest for {date}"))?;
        Ok(())
    }

    /// Queues the digest of every day whose `digest.schedule` tick has passed and that was
    /// not digested yet, oldest first, at most `digest.max_catch_up_days` back (see
    /// [`digest::catch_up`]): a tick that fell inside a long cycle, a restart or a Discord
    /// outage is posted late rather than never. Returns the days queued.
    pub fn catch_up_digests(&self) -> anyhow::Result<Vec<NaiveDate>> {
        let days = digest::catch_up(
            &self.store,
            &self.settings.digest.schedule,
            self.settings.cbs.timezone,
            self.clock.now(),
            self.settings.digest.max_catch_up_days,
            &self.store.refused_destinations()?,
            &self.other_zones(),
        )
        .context("building the daily digest")?;
        if days.len() > 1 {
            tracing::info!(?days, "posting missed digests late");
        }
        Ok(days)
    }

    /// The other backup servers' zones, which a digest waits for (see [`digest::catch_up`]).
    fn other_zones(&self) -> Vec<crate::tz::Tz> {
        (self.settings.other_servers.iter())
            .map(|s| s.cbs.timezone)
            .collect()
    }

    /// Whether [`App::catch_up_digests`] would queue a digest now.
    fn digest_due(&self) -> anyhow::Result<bool> {
        digest::digest_due(
            &self.store,
            &self.settings.digest.schedule,
            self.settings.cbs.timezone,
            self.clock.now(),
            self.settings.digest.max_catch_up_days,
            &self.other_zones(),
        )
        .context("reading the digest schedule's state")
    }

    /// Folds the failure alerts waiting in the outbox into cards where more than
    /// `alerts.group_after` of one channel wait (a stop in the middle of a storm, a
    /// backlog Discord refused): called before each delivery made while no cycle runs, so
    /// such a backlog is never posted alert by alert. A failure leaves them as they are:
    /// louder, nothing lost.
    pub fn fold_backlog(&self) {
        let group_after = self.settings.alerts.group_after;
        let routed = routed_owners(&self.settings);
        if let Err(e) = storm::collapse_backlog(&self.store, group_after, &routed, self.clock.now())
        {
            tracing::warn!(error = %e, "cannot fold the queued failure alerts into a card");
        }
    }

    /// Closes the store and opens it again ([`Store::reopen`]): what sled keeps of the
    /// pages read or rewritten since it opened goes back to the allocator. Answers whether
    /// it did: not while operations kept the store busy, nor on an error (logged; the
    /// next use of the store opens it again).
    async fn reopen_store(&self) -> bool {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.reopen()).await {
            Ok(Ok(true)) => {
                tracing::debug!("state store reopened: its writes have settled");
                return true;
            }
            Ok(Ok(false)) => tracing::debug!("state store busy; tried again at the next look"),
            Ok(Err(e)) => tracing::error!(error = %e, "reopening the state store failed"),
            Err(e) => tracing::error!(error = %e, "reopening the state store failed"),
        }
        false
    }

    /// Reopens the store once its write stamp has settled after a change since the last
    /// reopen, and gives the freed memory back: sled keeps every page it read or rewrote
    /// decoded until it is closed, and after the store is opened (and after each round)
    /// its background clean-up rewrites the live pages of half-empty segments for some
    /// seconds (about 10 s and 12 MiB at 10,000 users; BENCHMARKS.md). Reopened once
    /// that is over, the store idles at what a fresh open holds. Runs for as long as the
    /// wait for the next tick, which drops it; at most [`SETTLE_REOPENS`] reopens. A look
    /// that finds nothing to reopen still gives back what was freed since.
    async fn settle_store(
        &self,
        reopened_at: &mut Option<crate::store::WriteStamp>,
    ) -> std::convert::Infallible {
        let mut settle = Settle::new(self.store.write_stamp());
        loop {
            tokio::time::sleep(settle.every).await;
            match settle.look(self.store.write_stamp(), *reopened_at) {
                Look::Written => {}
                // Nothing to reopen; what was freed since (the CBS connections closed once
                // idle, a command's reply) still goes back.
                Look::Quiet => crate::memory::release_free_memory(),
                Look::Reopen => {
                    let done = self.reopen_store().await;
                    crate::memory::release_free_memory();
                    settle.reopened(done, self.store.write_stamp(), reopened_at);
                }
            }
        }
    }

    /// Queues due digests and delivers them; errors are logged, never fatal.
    async fn digests_due<S: Sink>(&self, sink: &S) {
        match self.catch_up_digests() {
            Ok(days) if days.is_empty() => {}
            Ok(_) => {
                self.fold_backlog();
                if let Err(e) = drain(&self.store, sink).await {
                    tracing::error!(error = %e, "delivery of the digest failed");
                }
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "daily digest failed"),
        }
    }

    /// Polls on `poll.schedule` and sends the digest of the previous day on
    /// `digest.schedule`, delivering after each, until `shutdown`. Digests missed while the
    /// program was down or busy are posted after every tick, and at start after a poll
    /// cycle run at once.
    pub async fn run_loop<S: Sink>(
        &self,
        sink: &S,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        // Deliver whatever an earlier run left queued before waiting for the first tick.
        self.fold_backlog();
        match finish_within_grace(drain(&self.store, sink), &shutdown, "delivery").await {
            Some(Err(e)) => tracing::error!(error = %e, "delivery of queued events failed"),
            Some(Ok(_)) => {}
            None => return self.store.flush().context("flushing the state store"),
        }
        // A digest missed while the program was down is about days the store may not have
        // read to their end: a cycle first (it catches up the days missed), then the
        // digest, instead of a late digest without the failures alerted right after it.
        let due = self.digest_due().and_then(|due| {
            if !due {
                // Nothing to post; a fresh store notes the days it never watched as done.
                self.catch_up_digests()?;
            }
            Ok(due)
        });
        let mut poll_now = due.unwrap_or_else(|e| {
            tracing::error!(error = format!("{e:#}"), "daily digest failed");
            false
        });
        if poll_now {
            tracing::info!("a digest was missed while stopped: polling now, then posting it");
        }
        // Poll rounds in a row that failed with the store's I/O error.
        let mut broken_rounds = 0;
        // The store's write stamp as of the last reopen.
        let mut reopened_at = None;
        loop {
            let now = self.clock.now();
            let next_poll = if std::mem::take(&mut poll_now) {
                Some(now)
            } else {
                self.settings.poll.schedule.next_after(now)
            };
            let next_digest = self.settings.digest.schedule.next_after(now);
            let next_rollup =
                (self.settings.summary.schedule.as_ref()).and_then(|s| s.next_after(now));
            let Some(next) = next_poll
                .into_iter()
                .chain(next_digest)
                .chain(next_rollup)
                .min()
            else {
                tracing::warn!("neither schedule fires again");
                break;
            };
            tracing::debug!(%next, "next tick");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(until(now, next)) => {}
                never = self.settle_store(&mut reopened_at) => match never {},
            }
            if next_poll.is_some_and(|t| t <= next) {
                // Shutdown waits a bounded while for a slow cycle or a long delivery retry:
                // both are safe to drop between steps (records and their events are written
                // together; a message is recorded before it is sent).
                let work = self.poll_round(sink, Some(&self.settings.poll.schedule));
                let Some(done) =
                    finish_within_grace(work, &shutdown, "poll cycle and delivery").await
                else {
                    break;
                };
                match &done {
                    Ok((report, drained)) => tracing::info!(
                        users = report.summary.users_polled,
                        requests = report.summary.requests,
                        errors = report.summary.errors.len(),
                        discovery_errors = report.discovery_errors,
                        alerts = report.summary.alerts,
                        delivered = drained.delivered,
                        dropped = drained.dropped,
                        pending = drained.pending,
                        "poll cycle done"
                    ),
                    Err(e) => tracing::error!(error = format!("{e:#}"), "poll cycle failed"),
                }
                broken_rounds = match &done {
                    Err(e) if store_cannot_write(e) => broken_rounds + 1,
                    _ => 0,
                };
                if broken_rounds >= STORE_BROKEN_ROUNDS {
                    let cause = done.err().map(|e| format!("{e:#}")).unwrap_or_default();
                    tracing::error!(
                        rounds = broken_rounds,
                        error = %cause,
                        "the state store cannot write any more (sled keeps an I/O error, such \
                         as a full disk, until it is reopened): stopping with exit status 1 so \
                         that a restart policy reopens it; queued events stay in the outbox"
                    );
                    anyhow::bail!(
                        "the state store cannot write any more ({cause}); free space in \
                         state.path or fix the disk, then start again: queued events are kept"
                    );
                }
                // A store failure ends the round before its cycles are counted: the
                // monitor hears of it all the same.
                if let (Err(_), Some(beat)) = (&done, &self.heartbeat) {
                    beat.spawn_after(Err::<&CycleReport, ()>(()));
                }
                // What the cycle freed goes back now; what sled keeps of the pages it
                // read goes once the store has settled (`settle_store`).
                crate::memory::release_free_memory();
                self.skip_missed_ticks(next);
            }
            if next_rollup.is_some_and(|t| t <= next) {
                match crate::summary::queue_rollup(&self.store, self.clock.now()) {
                    Ok(true) => {
                        self.fold_backlog();
                        let drained = tokio::select! {
                            drained = drain(&self.store, sink) => drained,
                            _ = shutdown.cancelled() => break,
                        };
                        if let Err(e) = drained {
                            tracing::error!(error = %e, "delivery of the summary roll-up failed");
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "summary roll-up failed"),
                }
            }
            // After every tick, not only the digest's: a cycle may have run past it.
            if finish_within_grace(self.digests_due(sink), &shutdown, "digest delivery")
                .await
                .is_none()
            {
                break;
            }
        }
        self.store.flush().context("flushing the state store")?;
        Ok(())
    }
}

impl App {
    /// Ticks never stack: the loop waits for the next tick after the cycle ended, so poll
    /// ticks that passed while it ran are skipped; this logs and counts them.
    fn skip_missed_ticks(&self, fired: DateTime<Utc>) {
        let now = self.clock.now();
        let skipped = self
            .settings
            .poll
            .schedule
            .fires_between(fired, now, MAX_SKIPPED_TICKS);
        if skipped > 0 {
            tracing::warn!(skipped, "poll ticks skipped: the cycle was still running");
            crate::metrics::ticks_skipped(skipped);
        }
    }
}

/// Checks that the store belongs to the configured backup servers `names` (see
/// [`Store::check_server_names`]): a refusal is a config error (exit 2) naming the key. A
/// server the store has records of that the config leaves out is warned about, with what
/// it means for its jobs recorded as running.
fn check_servers(store: &Store, names: &[&str]) -> anyhow::Result<()> {
    store
        .check_server_names(names)
        .map_err(|message| ConfigError::Key {
            key: if names.len() > 1 {
                "cbs.name"
            } else {
                "cbs.server_name"
            }
            .into(),
            message,
        })?;
    for server in store
        .unconfigured_servers(names)
        .context("reading the state store's backup servers")?
    {
        tracing::warn!(
            server = %server.name,
            running = server.running,
            "backup server {:?} has records in the state store but is not in the \
             configuration; {}. If it was renamed, put the old name back; its records stay \
             until the retention ends (those recorded as running, until it is configured \
             again)",
            server.name,
            server.running_text(),
        );
    }
    Ok(())
}

/// Creates the state directory and checks that a file can be written in it, so a read-only
/// or foreign-owned directory stops the start with a config error naming `state.path`
/// (exit 2) before the store is touched.
fn writable_state_dir(dir: &std::path::Path) -> Result<(), ConfigError> {
    let fail = |what: &str, e: std::io::Error| ConfigError::Key {
        key: "state.path".into(),
        message: format!("{what} {}: {e}", dir.display()),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the state directory", e))?;
    tempfile::tempfile_in(dir).map_err(|e| fail("cannot write in the state directory", e))?;
    Ok(())
}

/// Whether a poll round failed because the store cannot write: sled's I/O error, which
/// sled keeps returning from every later operation (even once disk space is freed) until
/// the store is reopened. After [`STORE_BROKEN_ROUNDS`] such rounds in a row `run` ends
/// with an error, so that a restart policy reopens the store instead of the bot failing
/// every cycle for good.
fn store_cannot_write(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        (cause.downcast_ref::<crate::store::StoreError>()).is_some_and(crate::store::is_io)
    })
}

/// How a cycle ended, for the metrics: a cycle that reached no backup server at all (every
/// request failed) is an error like one the store broke, not a partial success.
fn cycle_result<E>(report: &Result<CycleReport, E>) -> CycleResult {
    match report {
        Ok(r) if r.ok() => CycleResult::Success,
        Ok(r) if crate::heartbeat::reached_cbs(r) => CycleResult::Partial,
        Ok(_) | Err(_) => CycleResult::Error,
    }
}

/// Whether a cycle ran and every backup server answered it, for
/// `restorewatch_last_success_timestamp_seconds`: the same rule as outages, so a login
/// deleted on the server (refused for that user alone) does not read as a broken poller
/// while a server that cannot be reached, times out or refuses the system user does.
fn servers_answered<E>(report: &Result<CycleReport, E>) -> bool {
    report.as_ref().is_ok_and(CycleReport::servers_answered)
}

/// One poller's cycle, with the name of its server.
async fn cycle_of(poller: &Poller) -> (&str, Result<CycleReport, crate::store::StoreError>) {
    (poller.server_name(), poller.cycle().await)
}

/// Real time to wait from `now` until `next` (zero if it has passed).
fn until(now: DateTime<Utc>, next: DateTime<Utc>) -> std::time::Duration {
    (next - now).to_std().unwrap_or_default()
}

/// The client of the first (or only) backup server the settings describe.
pub fn cbs_client(settings: &Settings) -> anyhow::Result<CbsClient> {
    cbs_client_for(&settings.cbs)
}

/// The client of one backup server.
pub fn cbs_client_for(cbs: &crate::config::CbsSettings) -> anyhow::Result<CbsClient> {
    cbs.client()
        .with_context(|| format!("setting up the client of {}", cbs.server_name))
}

/// The sink the settings ask for: Discord with a `[discord]` section, else the console.
pub enum ConfiguredSink {
    Console(ConsoleSink),
    Discord(Box<DiscordSink>),
}

impl ConfiguredSink {
    pub fn from_settings(settings: &Settings, store: &Store) -> anyhow::Result<ConfiguredSink> {
        let render = RenderOptions {
            mention_role: None,
            timezone: settings.cbs.timezone,
            servers_named: settings.several_servers(),
        };
        Ok(match &settings.discord {
            Some(discord) => {
                let mut sink =
                    DiscordSink::new(discord, store, render)?.with_alerts(settings.alerts);
                if let Some(channel) = settings.summary.channel {
                    sink = sink.with_summary_channel(channel);
                }
                ConfiguredSink::Discord(Box::new(sink))
            }
            None => ConfiguredSink::Console(ConsoleSink::stdout(render)),
        })
    }
}

impl Sink for ConfiguredSink {
    async fn deliver(&self, events: &[Event]) -> Result<Delivered, SinkError> {
        match self {
            ConfiguredSink::Console(sink) => sink.deliver(events).await,
            ConfiguredSink::Discord(sink) => sink.deliver(events).await,
        }
    }
}

/// `restorewatch run`: polls, delivers and (with a `[discord]` section) answers slash
/// commands in one process until `shutdown`, then stops everything and flushes the store.
pub async fn run(
    settings: Settings,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve(App::build(settings, clock).await?, shutdown).await
}

/// [`run`] with the parts already built (the binary keeps a store handle to flush when a
/// second signal cuts the stop short).
pub async fn serve(app: App, shutdown: CancellationToken) -> anyhow::Result<()> {
    let clock = app.clock.clone();
    let started_at = clock.now();
    let sink = ConfiguredSink::from_settings(&app.settings, &app.store)?;
    // Whether slash commands are available: the bot sets it, /healthz and /status show it.
    let gateway = GatewayHealth::default();
    let server = crate::server::start(
        &app.settings,
        &app.store,
        clock.clone(),
        app.progress.clone(),
        gateway.clone(),
        shutdown.clone(),
    )
    .await?;
    let bot = match app.settings.discord {
        Some(_) => Some(
            bot::start_with_health(
                BotContext {
                    store: app.store.clone(),
                    settings: app.settings.clone(),
                    clients: app.pollers.iter().map(|p| p.client().clone()).collect(),
                    clock,
                    started_at,
                },
                gateway,
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    tracing::info!(
        schedule = %app.settings.poll.schedule,
        digest = %app.settings.digest.schedule,
        discord = bot.is_some(),
        "restorewatch running"
    );
    // When the stop began: the gateway's close limit counts from there.
    let stop_began = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            Instant::now()
        })
    };
    let polled = app.run_loop(&sink, shutdown.clone()).await;
    // The loop only ends on shutdown or a fatal error; either way the bot stops too.
    shutdown.cancel();
    if let Some(bot) = bot {
        let began = stop_began.await.unwrap_or_else(|_| Instant::now());
        match tokio::time::timeout_at(began + GATEWAY_CLOSE_LIMIT, bot.stopped()).await {
            Ok(stopped) => stopped?,
            Err(_) => tracing::warn!(
                limit = %humantime::format_duration(GATEWAY_CLOSE_LIMIT),
                "stopping: cut short the Discord gateway close, which did not finish in time"
            ),
        }
    }
    if let Some(server) = server {
        // A client holding a connection open must not hold up the stop either.
        let began = Instant::now();
        match tokio::time::timeout_at(began + IN_FLIGHT_GRACE, server).await {
            Ok(served) => served.context("the health listener")??,
            Err(_) => tracing::warn!("stopping: cut short the health listener's open connections"),
        }
    }
    polled
}

/// The owners with a channel of their own (`[[route]]`): their failures are grouped apart.
fn routed_owners(settings: &Settings) -> BTreeSet<String> {
    (settings.discord.iter())
        .flat_map(|d| d.routes.iter().map(|r| r.owner.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One wait's looks, with stamps as numbers: a write, its settling, the reopen, then
    /// quiet looks further and further apart.
    #[test]
    fn a_settled_write_is_reopened_once_then_the_looks_back_off() {
        let mut reopened_at = None;
        let mut settle = Settle::new(1);
        assert_eq!(settle.look(2, reopened_at), Look::Written);
        assert_eq!(settle.every, SETTLE_CHECK);
        assert_eq!(settle.look(2, reopened_at), Look::Reopen);
        settle.reopened(true, 3, &mut reopened_at);
        assert_eq!(reopened_at, Some(3));
        let mut intervals = Vec::new();
        for _ in 0..7 {
            assert_eq!(settle.look(3, reopened_at), Look::Quiet);
            intervals.push(settle.every.as_secs());
        }
        assert_eq!(intervals, [4, 8, 16, 32, 60, 60, 60]);
        // A write after the reopen: reopened again once it settles.
        assert_eq!(settle.look(4, reopened_at), Look::Written);
        assert_eq!(settle.every, SETTLE_CHECK);
        assert_eq!(settle.look(4, reopened_at), Look::Reopen);
    }

    /// A reopen the store was too busy for is tried again at the next look, not left
    /// until something writes; busy or not, at most `SETTLE_REOPENS` in one wait.
    #[test]
    fn a_busy_reopen_is_tried_again_within_the_bound() {
        let mut reopened_at = None;
        let mut settle = Settle::new(1);
        let mut tried = 0;
        while settle.look(1, reopened_at) == Look::Reopen {
            settle.reopened(false, 1, &mut reopened_at);
            tried += 1;
        }
        assert_eq!(tried, SETTLE_REOPENS);
        assert_eq!(reopened_at, None, "never reopened");
        assert_eq!(settle.look(1, reopened_at), Look::Quiet);
        // The next wait starts a new count: the store, still not reopened, is tried again.
        let mut next = Settle::new(1);
        assert_eq!(next.look(1, reopened_at), Look::Reopen);
        next.reopened(true, 1, &mut reopened_at);
        assert_eq!(next.look(1, reopened_at), Look::Quiet);
    }

    #[test]
    fn a_cycle_in_which_every_request_failed_is_an_error_not_partial() {
        let report = |requests: u32, errors: usize| -> Result<CycleReport, ()> {
            Ok(CycleReport::with_errors(requests, errors))
        };
        assert_eq!(cycle_result(&report(2, 0)), CycleResult::Success);
        assert_eq!(cycle_result(&report(0, 0)), CycleResult::Success);
        assert_eq!(cycle_result(&report(2, 1)), CycleResult::Partial);
        assert_eq!(cycle_result(&report(2, 2)), CycleResult::Error);
        assert_eq!(
            cycle_result(&Err::<CycleReport, ()>(())),
            CycleResult::Error
        );
    }

    #[test]
    fn a_login_refused_alone_does_not_hold_back_last_success_but_a_server_error_does() {
        let per_user = |requests: u32, errors: usize| CycleReport {
            server_errors: 0,
            ..CycleReport::with_errors(requests, errors)
        };
        let ok = |r: CycleReport| servers_answered(&Ok::<CycleReport, ()>(r));
        assert!(ok(per_user(2, 0)));
        assert!(ok(per_user(2, 1)), "an unknown login beside a good one");
        assert!(
            ok(per_user(1, 1)),
            "the only login unknown: the server answered"
        );
        assert!(
            !ok(CycleReport::with_errors(2, 1)),
            "a timeout beside a success"
        );
        assert!(
            !ok(per_user(2, 1).combine(CycleReport::with_errors(1, 1))),
            "a second server down"
        );
        assert!(!servers_answered(&Err::<CycleReport, ()>(())));
        // The cycle's result still says a request failed.
        assert_eq!(
            cycle_result(&Ok::<CycleReport, ()>(per_user(2, 1))),
            CycleResult::Partial
        );
    }

    /// "Now" that follows tokio's (paused) clock from a fixed start.
    struct TokioClock {
        base: DateTime<Utc>,
        start: Instant,
    }

    impl crate::clock::Clock for TokioClock {
        fn now(&self) -> DateTime<Utc> {
            self.base + chrono::Duration::from_std(self.start.elapsed()).unwrap()
        }
    }

    /// The state file system fills: sled fails the write and keeps failing every later
    /// one, even once space is freed. The loop, which carries on after other failed
    /// cycles, ends with an error after two such rounds in a row, so that the container's
    /// restart policy reopens the store.
    #[tokio::test(start_paused = true)]
    async fn a_store_that_cannot_write_any_more_ends_the_run_loop() {
        use crate::simulator::{SimConfig, SimUser, Simulator};
        use chrono::TimeZone as _;
        let clock: SharedClock = std::sync::Arc::new(TokioClock {
            base: Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 30).unwrap(),
            start: Instant::now(),
        });
        let sim = Simulator::new(SimConfig::with_clock(clock.clone()));
        let sim = sim.start().await.unwrap();
        sim.add_user(SimUser {
            login: "obm".into(),
            owner: String::new(),
            user_id: "obm".into(),
        });
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[cbs]\nurl = \"{}\"\nsys_user = \"{}\"\n[[watch]]\nlogin = \"obm\"\n\
             [poll]\nschedule = \"0 * * * * *\"\n[state]\npath = \"{}\"\n",
            sim.url(),
            sim.sys_user(),
            dir.path().display()
        );
        let pwd = sim.sys_pwd().to_owned();
        let env = move |name: &str| (name == "RESTOREWATCH_CBS_SYS_PWD").then(|| pwd.clone());
        let settings = Settings::from_toml_str(&text, &env).unwrap();
        let app = App::build(settings, clock.clone()).await.unwrap();
        let store = app.store.clone();
        let render = RenderOptions {
            mention_role: None,
            timezone: crate::tz::Tz::UTC,
            servers_named: false,
        };
        let sink = ConsoleSink::new(render, Box::new(std::io::sink()));
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(async move { app.run_loop(&sink, shutdown).await });
        // A good round first (at 12:01), then the disk fills.
        while store.last_cycle().unwrap().is_none() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        store.break_writes();
        let broke = Instant::now();

        let ended = tokio::time::timeout(Duration::from_secs(3600), running)
            .await
            .expect("the run loop ends by itself")
            .unwrap();
        let error = format!("{:#}", ended.unwrap_err());
        assert!(error.contains("cannot write any more"), "{error}");
        assert!(error.contains("No space left on device"), "{error}");
        // The rounds at 12:02 and 12:03: not the first failure, the second in a row.
        let took = broke.elapsed();
        assert!(took > Duration::from_secs(60), "{took:?}");
        assert!(took <= Duration::from_secs(120), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn work_in_flight_gets_its_grace_and_no_more() {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.cancel();
        });
        // Ends 3 s after the shutdown: within the grace, so it finishes.
        let began = Instant::now();
        let quick = tokio::time::sleep(Duration::from_secs(4));
        assert_eq!(
            finish_within_grace(quick, &shutdown, "test").await,
            Some(())
        );
        assert_eq!(began.elapsed(), Duration::from_secs(4));
        // Already stopping: not begun.
        let never = std::future::pending::<()>();
        assert_eq!(finish_within_grace(never, &shutdown, "test").await, None);
        assert_eq!(began.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_grace_is_cut_short() {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.cancel();
        });
        let began = Instant::now();
        let slow = std::future::pending::<()>();
        assert_eq!(finish_within_grace(slow, &shutdown, "test").await, None);
        assert_eq!(began.elapsed(), Duration::from_secs(1) + IN_FLIGHT_GRACE);
    }
}
