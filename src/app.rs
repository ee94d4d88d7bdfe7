//! The running program: builds the parts from [`Settings`] and drives them on schedule.
//!
//! `run` takes its shutdown token (STYLE.md 2): production passes Ctrl-C/SIGTERM, tests and
//! the demo pass their own. Every wait `select!`s on the token; on shutdown the loop stops
//! taking work, finishes nothing half-way and flushes the store.

use crate::bot::{self, BotContext};
use crate::cbs::{CbsClient, CbsClientConfig};
use crate::clock::SharedClock;
use crate::config::{ConfigError, Settings};
use crate::digest;
use crate::discord::DiscordSink;
use crate::event::Event;
use crate::heartbeat::Heartbeat;
use crate::metrics::CycleResult;
use crate::poller::{CycleReport, Poller, PollerConfig};
use crate::render::RenderOptions;
use crate::sink::{drain, ConsoleSink, DrainReport, Sink, SinkError};
use crate::store::Store;
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;

/// The long-lived parts, built once from the settings.
pub struct App {
    pub settings: Settings,
    pub poller: Poller,
    pub store: Store,
    pub clock: SharedClock,
    /// `[heartbeat] url`, called after every cycle of the run loop.
    pub heartbeat: Option<Heartbeat>,
}

/// The most skipped poll ticks counted after one cycle.
const MAX_SKIPPED_TICKS: u64 = 10_000;

impl App {
    /// Opens the store and builds the CBS client.
    pub fn build(settings: Settings, clock: SharedClock) -> anyhow::Result<App> {
        writable_state_dir(&settings.state.path)?;
        let store = Store::open(&settings.state.path).map_err(|e| {
            let dir = settings.state.path.display();
            if e.to_string().contains("could not acquire lock") {
                anyhow::anyhow!(
                    "another restorewatch is using the state store in {dir}; \
                     stop it first (two instances on one store would post everything twice)"
                )
            } else {
                anyhow::Error::new(e).context(format!("opening the state store in {dir}"))
            }
        })?;
        store
            .check_server_name(&settings.cbs.server_name)
            .map_err(anyhow::Error::msg)?;
        let client = cbs_client(&settings)?;
        let poller = Poller::new(
            client,
            store.clone(),
            PollerConfig {
                poll: settings.poll.clone(),
                watch: settings.watch.clone(),
                max_concurrency: settings.cbs.max_concurrency,
                retention_days: settings.state.retention_days,
                down_after: settings.cbs.down_after,
            },
            clock.clone(),
        );
        let heartbeat = settings
            .heartbeat
            .url
            .clone()
            .map(Heartbeat::new)
            .transpose()?;
        Ok(App {
            settings,
            poller,
            store,
            clock,
            heartbeat,
        })
    }

    /// One poll cycle followed by one delivery.
    pub async fn cycle_and_deliver<S: Sink>(
        &self,
        sink: &S,
    ) -> anyhow::Result<(CycleReport, DrainReport)> {
        let started = std::time::Instant::now();
        let report = self.poller.cycle().await.context("poll cycle");
        crate::metrics::cycle_finished(cycle_result(&report), started.elapsed(), self.clock.now());
        // What the cycle recorded must be on disk before anything is delivered: a crash
        // after delivery must not forget the job and alert about it again.
        self.store.flush().context("flushing the state store")?;
        // Events queued earlier are delivered even when this cycle failed half-way.
        let drained = drain(&self.store, sink).await.context("delivery")?;
        Ok((report?, drained))
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
        )
        .context("building the daily digest")?;
        if days.len() > 1 {
            tracing::info!(?days, "posting missed digests late");
        }
        Ok(days)
    }

    /// Queues due digests and delivers them; errors are logged, never fatal.
    async fn digests_due<S: Sink>(&self, sink: &S) {
        match self.catch_up_digests() {
            Ok(days) if days.is_empty() => {}
            Ok(_) => {
                if let Err(e) = drain(&self.store, sink).await {
                    tracing::error!(error = %e, "delivery of the digest failed");
                }
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "daily digest failed"),
        }
    }

    /// Polls on `poll.schedule` and sends the digest of the previous day on
    /// `digest.schedule`, delivering after each, until `shutdown`. Digests missed while the
    /// program was down or busy are posted at start and after every tick.
    pub async fn run_loop<S: Sink>(
        &self,
        sink: &S,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        // Deliver whatever an earlier run left queued, and the digests it missed, before
        // waiting for the first tick.
        if let Err(e) = self.catch_up_digests() {
            tracing::error!(error = format!("{e:#}"), "daily digest failed");
        }
        if let Err(e) = drain(&self.store, sink).await {
            tracing::error!(error = %e, "delivery of queued events failed");
        }
        loop {
            let now = self.clock.now();
            let next_poll = self.settings.poll.schedule.next_after(now);
            let next_digest = self.settings.digest.schedule.next_after(now);
            let Some(next) = next_poll.into_iter().chain(next_digest).min() else {
                tracing::warn!("neither schedule fires again");
                break;
            };
            tracing::debug!(%next, "next tick");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(until(now, next)) => {}
            }
            if next_poll.is_some_and(|t| t <= next) {
                // Shutdown does not wait for a slow cycle or a long delivery retry: both
                // are safe to drop between steps (records and their events are written
                // together; a message is recorded before it is sent).
                let done = tokio::select! {
                    done = self.cycle_and_deliver(sink) => done,
                    _ = shutdown.cancelled() => break,
                };
                match &done {
                    Ok((report, drained)) => tracing::info!(
                        users = report.summary.users_polled,
                        requests = report.summary.requests,
                        errors = report.summary.errors.len(),
                        alerts = report.summary.alerts,
                        delivered = drained.delivered,
                        pending = drained.pending,
                        "poll cycle done"
                    ),
                    Err(e) => tracing::error!(error = format!("{e:#}"), "poll cycle failed"),
                }
                if let Some(heartbeat) = &self.heartbeat {
                    heartbeat.spawn_after(done.as_ref().map(|(report, _)| report));
                }
                self.skip_missed_ticks(next);
            }
            // After every tick, not only the digest's: a cycle may have run past it.
            tokio::select! {
                () = self.digests_due(sink) => {}
                _ = shutdown.cancelled() => break,
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

/// How a cycle ended, for the metrics.
fn cycle_result<E>(report: &Result<CycleReport, E>) -> CycleResult {
    match report {
        Ok(r) if r.ok() => CycleResult::Success,
        Ok(_) => CycleResult::Partial,
        Err(_) => CycleResult::Error,
    }
}

/// Real time to wait from `now` until `next` (zero if it has passed).
fn until(now: DateTime<Utc>, next: DateTime<Utc>) -> std::time::Duration {
    (next - now).to_std().unwrap_or_default()
}

/// The CBS client the settings describe.
pub fn cbs_client(settings: &Settings) -> anyhow::Result<CbsClient> {
    let cbs = &settings.cbs;
    CbsClient::new(CbsClientConfig {
        url: cbs.url.clone(),
        server_name: cbs.server_name.clone(),
        sys_user: cbs.sys_user.clone(),
        sys_pwd: cbs.sys_pwd.clone(),
        timezone: cbs.timezone,
        request_timeout: cbs.request_timeout,
        ca_cert: cbs.ca_cert.clone(),
    })
    .context("setting up the CBS client")
}

/// `restorewatch check`: asks the CBS once per watched user for today and prints what it
/// found. Returns whether every call succeeded.
pub async fn check(
    settings: &Settings,
    clock: SharedClock,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<bool> {
    let client = cbs_client(settings)?;
    let today = clock
        .now()
        .with_timezone(&settings.cbs.timezone)
        .date_naive();
    writeln!(
        out,
        "config OK; asking {} ({}) for {today} ({})",
        settings.cbs.server_name, settings.cbs.url, settings.cbs.timezone
    )?;
    if settings.watch.is_empty() {
        writeln!(
            out,
            "no [[watch]] users in the config (users added from chat live in the store)"
        )?;
    }
    let mut all_ok = true;
    for user in &settings.watch {
        match client
            .list_restore_jobs(&user.login, &user.owner, today)
            .await
        {
            Ok(list) => {
                let mut counts = crate::event::ClassCounts::new();
                for job in &list.jobs {
                    *counts.entry(job.class).or_default() += 1;
                }
                let counts: Vec<String> = counts.iter().map(|(c, n)| format!("{n} {c}")).collect();
                writeln!(
                    out,
                    "  {}: {} job(s){}{}",
                    user.login,
                    list.jobs.len(),
                    if counts.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", counts.join(", "))
                    },
                    if list.skipped.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} unreadable item(s) skipped)", list.skipped.len())
                    },
                )?;
            }
            Err(e) => {
                all_ok = false;
                writeln!(out, "  {}: FAILED: {e}", user.login)?;
            }
        }
    }
    Ok(all_ok)
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
        };
        Ok(match &settings.discord {
            Some(discord) => {
                ConfiguredSink::Discord(Box::new(DiscordSink::new(discord, store, render)?))
            }
            None => ConfiguredSink::Console(ConsoleSink::stdout(render)),
        })
    }
}

impl Sink for ConfiguredSink {
    async fn deliver(&self, events: &[Event]) -> Result<Vec<u64>, SinkError> {
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
    let started_at = clock.now();
    let app = App::build(settings, clock.clone())?;
    let sink = ConfiguredSink::from_settings(&app.settings, &app.store)?;
    let server =
        crate::server::start(&app.settings, &app.store, clock.clone(), shutdown.clone()).await?;
    let bot = match app.settings.discord {
        Some(_) => Some(
            bot::start(
                BotContext {
                    store: app.store.clone(),
                    settings: app.settings.clone(),
                    cbs: cbs_client(&app.settings)?,
                    clock,
                    started_at,
                },
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
    let polled = app.run_loop(&sink, shutdown.clone()).await;
    // The loop only ends on shutdown or a fatal error; either way the bot stops too.
    shutdown.cancel();
    if let Some(bot) = bot {
        bot.stopped().await?;
    }
    if let Some(server) = server {
        server.await.context("the health listener")??;
    }
    polled
}
