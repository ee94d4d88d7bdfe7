//! The operator's listener (`[server] listen`): `GET /healthz` says whether restorewatch is
//! doing its job, `GET /metrics` shows the Prometheus metrics of [`crate::metrics`].
//!
//! Health is judged from the store and the schedule, not from "the process answers": the
//! last cycle ended within two schedule periods plus the time a cycle may take (the longer
//! of the last cycle's length and `cbs.request_timeout`: ticks that pass during a cycle are
//! skipped, so a cycle longer than the period is no sign of trouble) or, during a long
//! cycle, the backup server's last answer came within that limit; the store takes a write;
//! the oldest undelivered event is younger than that limit plus the delivery backoff and
//! the time the cycle under way has run; and Discord has not refused the token (a 401
//! recorded by delivery among the refusing channels). Each failing check is named in
//! the 503 answer. The `healthcheck` subcommand ([`healthcheck`]) asks this endpoint, for
//! container health checks in an image without curl.

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::discord::DeliveryTiming;
use crate::gateway::GatewayHealth;
use crate::metrics;
use crate::poller::Progress;
use crate::schedule::CronSchedule;
use crate::store::{CycleRecord, Store};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The sled tree `/healthz` writes its probe to.
const PROBE_TREE: &str = "health_probe";
/// How long `restorewatch healthcheck` waits for an answer.
pub const HEALTHCHECK_TIMEOUT_SECS: u64 = 5;
/// The period assumed for a schedule that never fires again.
const FALLBACK_PERIOD_SECS: i64 = 24 * 60 * 60;

/// What the listener reads.
#[derive(Clone)]
pub struct ServerState {
    pub store: Store,
    pub clock: SharedClock,
    /// The poll schedule: how often a cycle should end.
    pub schedule: CronSchedule,
    /// When the program started: before the first cycle, health counts from here.
    pub started_at: DateTime<Utc>,
    /// Whether a `[discord]` section is configured (else the token is not checked).
    pub discord: bool,
    /// How long delivery may rest after Discord failures, on top of the cycle's limit.
    pub backoff: Duration,
    /// The least time a cycle is allowed on top of two periods: the longest
    /// `cbs.request_timeout` (a server that stops answering makes its cycle this long).
    pub cycle_allowance: Duration,
    pub metrics: PrometheusHandle,
    /// The pollers' cycles under way: a long cycle whose answers keep coming is healthy.
    pub progress: Progress,
    /// Whether slash commands are available (the bot sets it).
    pub gateway: GatewayHealth,
}

impl ServerState {
    /// The state for `store`, `schedule` and the default delivery backoff.
    pub fn new(
        store: Store,
        clock: SharedClock,
        schedule: CronSchedule,
        discord: bool,
        metrics: PrometheusHandle,
    ) -> Self {
        ServerState {
            started_at: clock.now(),
            store,
            clock,
            schedule,
            discord,
            backoff: DeliveryTiming::default().backoff_max,
            cycle_allowance: Duration::ZERO,
            metrics,
            progress: Progress::default(),
            gateway: GatewayHealth::default(),
        }
    }

    /// The state for the program the settings describe, whose pollers note their cycles
    /// under way in `progress`.
    pub fn from_settings(
        settings: &Settings,
        store: Store,
        clock: SharedClock,
        metrics: PrometheusHandle,
        progress: Progress,
    ) -> Self {
        let longest_timeout = (settings.servers().iter())
            .map(|s| s.cbs.request_timeout)
            .max()
            .unwrap_or_default();
        ServerState {
            cycle_allowance: longest_timeout,
            progress,
            ..ServerState::new(
                store,
                clock,
                settings.poll.schedule.clone(),
                settings.discord.is_some(),
                metrics,
            )
        }
    }
}

/// The `/healthz` answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    /// `ok` or `failing`.
    pub status: &'static str,
    /// One line per failing check; empty when healthy.
    pub reasons: Vec<String>,
    pub last_cycle: Option<LastCycle>,
    pub outbox_events: usize,
    pub oldest_undelivered_age_seconds: Option<i64>,
    /// `rejected` (a post was answered 401), `not_refused` or `not_configured`.
    pub discord_token: &'static str,
    pub store_writable: bool,
    /// "slash commands unavailable since ...: reason" during a gateway outage (or the last
    /// one); absent otherwise. Not a failing check: polling and alerts carry on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slash_commands: Option<String>,
    /// Each configured backup server's outage and last cycle; informational, not a check
    /// of its own (the oldest last cycle is `last_cycle`).
    pub servers: Vec<ServerHealth>,
}

/// One backup server in `/healthz`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerHealth {
    pub name: String,
    /// When its ongoing outage began; `null` while it answers.
    pub outage_since: Option<DateTime<Utc>>,
    pub last_cycle_finished_at: Option<DateTime<Utc>>,
    /// When its cycle under way began; `null` between cycles.
    pub cycle_started_at: Option<DateTime<Utc>>,
}

/// Each configured backup server (none recorded yet: the store's own state, unnamed) with
/// its last cycle and outage, read through its view of the store.
fn server_health(
    store: &Store,
) -> Result<Vec<(ServerHealth, Option<crate::store::CycleRecord>)>, crate::store::StoreError> {
    let names = store.configured_servers()?;
    if names.is_empty() {
        let outage = store.outage()?;
        let health = ServerHealth {
            name: String::new(),
            outage_since: outage.map(|o| o.since),
            last_cycle_finished_at: None,
            cycle_started_at: None,
        };
        let cycle = store.last_cycle()?;
        return Ok(vec![(
            ServerHealth {
                last_cycle_finished_at: cycle.as_ref().map(|c| c.finished_at),
                ..health
            },
            cycle,
        )]);
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let view = store.server_view(&name)?;
        let cycle = view.last_cycle()?;
        out.push((
            ServerHealth {
                outage_since: view.outage()?.map(|o| o.since),
                last_cycle_finished_at: cycle.as_ref().map(|c| c.finished_at),
                cycle_started_at: None,
                name,
            },
            cycle,
        ));
    }
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastCycle {
    pub finished_at: DateTime<Utc>,
    pub age_seconds: i64,
    pub requests: u32,
    pub errors: u32,
}

/// The schedule's period around `now`: the gap between its next two fire times.
fn period(schedule: &CronSchedule, now: DateTime<Utc>) -> chrono::Duration {
    schedule
        .period_after(now)
        .unwrap_or(chrono::Duration::seconds(FALLBACK_PERIOD_SECS))
}

/// When a backup server last showed its polling goes on, in this run.
struct Quiet {
    /// The later of `cycle_ended` and `answered`; the start when neither.
    since: DateTime<Utc>,
    /// Its last cycle's end, when that was in this run.
    cycle_ended: Option<DateTime<Utc>>,
    /// Its last answer after that, from the cycle under way.
    answered: Option<DateTime<Utc>>,
}

impl Quiet {
    fn of(state: &ServerState, server: &ServerHealth, cycle: Option<&CycleRecord>) -> Quiet {
        let cycle_ended = cycle
            .map(|c| c.finished_at)
            .filter(|t| *t >= state.started_at);
        // Progress is this run's alone: only its cycle's end may be newer.
        let answered =
            (state.progress.of(&server.name).last_answer).filter(|t| Some(*t) > cycle_ended);
        Quiet {
            since: answered.or(cycle_ended).unwrap_or(state.started_at),
            cycle_ended,
            answered,
        }
    }
}

/// Runs every check (blocking: sled calls).
pub fn check(state: &ServerState) -> Health {
    let now = state.clock.now();
    let two_periods = period(&state.schedule, now) * 2;
    let mut reasons = Vec::new();

    // Each configured server shows it is polling by ending a cycle or, while a cycle runs
    // (a first cycle over thousands of users on a slow server can take longer than the
    // limit below), by the server's answers coming in. The server quiet longest speaks for
    // all; one that never did since the start counts from the start.
    let (servers, last_cycle, longest, quiet) = match server_health(&state.store) {
        Ok(servers) => {
            let never = servers.iter().any(|(_, c)| c.is_none());
            let cycles = servers.iter().filter_map(|(_, c)| c.as_ref());
            let oldest = cycles.clone().min_by_key(|c| c.finished_at).cloned();
            let longest = cycles
                .map(|c| c.finished_at - c.started_at)
                .max()
                .unwrap_or_default();
            let quiet = servers
                .iter()
                .map(|(s, c)| Quiet::of(state, s, c.as_ref()))
                .min_by_key(|q| q.since);
            let servers: Vec<ServerHealth> = (servers.into_iter())
                .map(|(s, _)| ServerHealth {
                    cycle_started_at: (state.progress).of(&s.name).cycle_started,
                    ..s
                })
                .collect();
            (servers, if never { None } else { oldest }, longest, quiet)
        }
        Err(e) => {
            reasons.push(format!("cannot read the last cycle: {e}"));
            (Vec::new(), None, chrono::Duration::zero(), None)
        }
    };
    // Ticks that pass during a cycle are skipped, so the next cycle ends at most a period
    // plus its own length after the last: a cycle is allowed as long as the last one took,
    // and at least the request timeout (what a server that stops answering adds).
    let allowance = chrono::Duration::from_std(state.cycle_allowance)
        .unwrap_or(chrono::Duration::MAX)
        .max(longest);
    let limit = two_periods
        .checked_add(&allowance)
        .unwrap_or(chrono::Duration::MAX);
    let quiet = quiet.unwrap_or(Quiet {
        since: state.started_at,
        cycle_ended: None,
        answered: None,
    });
    if now - quiet.since > limit {
        let answered = quiet.answered.map_or(String::new(), |at| {
            format!(
                " and the cycle under way last had an answer {}s ago",
                (now - at).num_seconds()
            )
        });
        reasons.push(match quiet.cycle_ended {
            Some(ended) => format!(
                "the last poll cycle ended {}s ago{answered}, more than two schedule periods \
                 and the time a cycle may take ({}s)",
                (now - ended).num_seconds(),
                limit.num_seconds()
            ),
            None => format!(
                "no poll cycle has ended in the {}s since start{answered}, more than two \
                 schedule periods and the time a cycle may take ({}s)",
                (now - state.started_at).num_seconds(),
                limit.num_seconds()
            ),
        });
    }
    let store_writable = match probe(&state.store, now) {
        Ok(()) => true,
        Err(e) => {
            reasons.push(format!("the store does not take a write: {e}"));
            false
        }
    };

    let oldest = match state.store.pending_events(1) {
        Ok(events) => events
            .first()
            .map(|e| (now - e.created_at).max(chrono::Duration::zero())),
        Err(e) => {
            reasons.push(format!("cannot read the outbox: {e}"));
            None
        }
    };
    // An event waits for the end of its server's cycle, and then for the backoff; one
    // queued by a cycle still under way waits for that cycle too.
    let under_way = (state.progress.oldest_running()).map_or(chrono::Duration::zero(), |t| {
        (now - t).max(chrono::Duration::zero())
    });
    let allowed = (chrono::Duration::from_std(state.backoff).ok())
        .and_then(|backoff| limit.checked_add(&backoff))
        .and_then(|allowed| allowed.checked_add(&under_way))
        .unwrap_or(chrono::Duration::MAX);
    if let Some(age) = oldest.filter(|age| *age > allowed) {
        reasons.push(format!(
            "the oldest undelivered event is {}s old, more than two periods, the time a cycle \
             may take and the backoff ({}s)",
            age.num_seconds(),
            allowed.num_seconds()
        ));
    }

    // Delivery records the channels that refuse us, with Discord's reason, and a rejected
    // token (401) as one entry for every channel.
    let refused = state.store.refused_destinations().unwrap_or_default();
    let token_refused: Vec<&String> = refused
        .iter()
        .filter(|r| r.contains(crate::discord::delivery::TOKEN_REJECTED))
        .collect();
    if let Some(first) = token_refused.first() {
        reasons.push(format!("Discord refuses the bot token ({first})"));
    }

    Health {
        status: if reasons.is_empty() { "ok" } else { "failing" },
        reasons,
        last_cycle: last_cycle.map(|c| LastCycle {
            age_seconds: (now - c.finished_at).num_seconds(),
            finished_at: c.finished_at,
            requests: c.requests,
            errors: c.errors,
        }),
        outbox_events: state.store.outbox_len().unwrap_or_default(),
        oldest_undelivered_age_seconds: oldest.map(|a| a.num_seconds()),
        discord_token: match (state.discord, token_refused.is_empty()) {
            (false, _) => "not_configured",
            (true, true) => "not_refused",
            (true, false) => "rejected",
        },
        store_writable,
        slash_commands: state.gateway.unavailable(),
        servers: servers.into_iter().filter(|s| !s.name.is_empty()).collect(),
    }
}

/// Writes and flushes a small record: a full disk or a read-only directory fails here.
fn probe(store: &Store, now: DateTime<Utc>) -> anyhow::Result<()> {
    let tree = store.tree(PROBE_TREE)?;
    tree.insert("last", now.to_rfc3339().as_bytes())?;
    tree.flush()?;
    Ok(())
}

/// Sets the store gauges and renders every metric in Prometheus text format.
pub fn render_metrics(state: &ServerState) -> String {
    let now = state.clock.now();
    let oldest = state
        .store
        .pending_events(1)
        .ok()
        .and_then(|e| e.first().map(|e| e.created_at))
        .map(|t| (now - t).to_std().unwrap_or_default());
    metrics::store_gauges(
        state.store.outbox_len().unwrap_or_default(),
        oldest,
        state.store.size_on_disk().unwrap_or_default(),
    );
    state.metrics.render()
}

/// The listener's routes.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(Arc::new(state))
}

async fn healthz(State(state): State<Arc<ServerState>>) -> Response {
    let health = match tokio::task::spawn_blocking(move || check(&state)).await {
        Ok(h) => h,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("health check failed: {e}"),
            )
                .into_response()
        }
    };
    let status = if health.reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

async fn metrics_text(State(state): State<Arc<ServerState>>) -> Response {
    match tokio::task::spawn_blocking(move || render_metrics(&state)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics failed: {e}"),
        )
            .into_response(),
    }
}

/// What one client may hold of the listener. An outsider who opens connections and never
/// finishes a request (slowloris) would otherwise hold a file descriptor each, forever,
/// until the process runs out of them.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Connections served at once; one more is closed as soon as it is accepted.
    max_connections: usize,
    /// How long a request's head may take to arrive, counted from when the connection
    /// waits for it (also bounds an idle keep-alive connection).
    header_read_timeout: Duration,
    /// How long a connection may live; then it is asked to close after the request under
    /// way, and dropped [`CLOSE_GRACE_SECS`] later (a client that never reads its answer).
    connection_lifetime: Duration,
}

/// Connections the listener serves at once (health checks and a scraper need a handful).
const MAX_CONNECTIONS: usize = 64;
/// How long a request's head may take to arrive.
const HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// How long one connection may live.
const CONNECTION_LIFETIME_SECS: u64 = 60;
/// How long a connection asked to close (its lifetime is up, or the program stops) may
/// take to finish the request under way.
const CLOSE_GRACE_SECS: u64 = 5;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(HEADER_READ_TIMEOUT_SECS),
            connection_lifetime: Duration::from_secs(CONNECTION_LIFETIME_SECS),
        }
    }
}

/// Serves the routes on `listener` until `shutdown`, then waits for the connections under
/// way to finish (at most 5 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, Limits::default()).await
}

async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    let router = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors or a connection reset before it was taken: the
                // listener itself is fine, so wait a moment rather than spin.
                Err(e) => {
                    tracing::debug!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                max = limits.max_connections,
                "too many connections to the listener: closing a new one"
            );
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            serve_connection(stream, service, shutdown, limits).await;
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one connection within `limits` until it closes, its lifetime is up or `shutdown`.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    service: hyper_util::service::TowerToHyperService<Router>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "listener connection ended");
            }
            return;
        }
        () = lifetime => {}
        () = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(CLOSE_GRACE_SECS), conn).await;
}

/// Binds `[server] listen` (if set) and serves there on a task of its own until
/// `shutdown`; installs the metrics recorder either way.
pub async fn start(
    settings: &Settings,
    store: &Store,
    clock: SharedClock,
    progress: Progress,
    gateway: GatewayHealth,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    use anyhow::Context as _;
    let handle = metrics::install();
    let Some(listen) = settings.server.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("server.listen: cannot listen on {listen}"))?;
    let state = ServerState {
        gateway,
        ..ServerState::from_settings(settings, store.clone(), clock, handle, progress)
    };
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz and /metrics");
    Ok(Some(tokio::spawn(serve(listener, state, shutdown))))
}

/// `restorewatch healthcheck`: asks `/healthz` at `listen` (an unspecified address such as
/// `0.0.0.0` means this host). `Ok(true)` on 200; the body is printed by the caller.
pub async fn healthcheck(listen: SocketAddr) -> anyhow::Result<(bool, String)> {
    use anyhow::Context as _;
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(HEALTHCHECK_TIMEOUT_SECS))
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .with_context(|| format!("no answer from http://{addr}/healthz"))?;
    let ok = response.status() == reqwest::StatusCode::OK;
    let body = response.text().await.unwrap_or_default();
    Ok((ok, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    fn state(clock: &ManualClock, store: &Store) -> ServerState {
        ServerState::new(
            store.clone(),
            Arc::new(clock.clone()),
            CronSchedule::parse("*/5 * * * *", crate::tz::Tz::UTC).unwrap(),
            false,
            metrics::install(),
        )
    }

    #[test]
    fn a_late_cycle_fails_after_two_periods() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap();
        let clock = ManualClock::new(t0);
        let s = state(&clock, &store);
        assert_eq!(
            check(&s).reasons,
            Vec::<String>::new(),
            "starting up is fine"
        );
        clock.advance(chrono::Duration::minutes(11));
        let h = check(&s);
        assert_eq!(h.status, "failing");
        assert!(h.reasons[0].starts_with("no poll cycle has ended"), "{h:?}");
        let cycle = CycleRecord {
            started_at: t0 + chrono::Duration::minutes(10),
            finished_at: t0 + chrono::Duration::minutes(10),
            users: 1,
            requests: 1,
            errors: 0,
            unreadable_items: 0,
        };
        store.record_cycle(&cycle, t0.date_naive(), 0).unwrap();
        assert!(check(&s).reasons.is_empty());
        clock.advance(chrono::Duration::minutes(10));
        assert!(check(&s).reasons[0].contains(
            "ended 660s ago, more than two schedule periods and the time a cycle may take (600s)"
        ));
        // Restarted after a long stop: the old cycle does not make the new start unhealthy.
        clock.advance(chrono::Duration::hours(5));
        let restarted = state(&clock, &store);
        assert!(
            check(&restarted).reasons.is_empty(),
            "{:?}",
            check(&restarted)
        );
        clock.advance(chrono::Duration::minutes(11));
        assert!(check(&restarted).reasons[0].starts_with("no poll cycle has ended in the 660s"));
    }

    fn cycle(started_at: DateTime<Utc>, took_secs: i64, errors: u32) -> CycleRecord {
        CycleRecord {
            started_at,
            finished_at: started_at + chrono::Duration::seconds(took_secs),
            users: 1,
            requests: 1,
            errors,
            unreadable_items: 0,
        }
    }

    /// Ticks that pass during a cycle are skipped: a cycle longer than the period (a
    /// five-second schedule, a server that takes its 30 s timeout) reads healthy while the
    /// next cycle is no later than it may be.
    #[test]
    fn a_cycle_may_take_its_last_length_and_at_least_the_request_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap();
        let clock = ManualClock::new(t0);
        let s = ServerState {
            schedule: CronSchedule::parse("*/5 * * * * *", crate::tz::Tz::UTC).unwrap(),
            cycle_allowance: Duration::from_secs(30),
            ..state(&clock, &store)
        };
        // Nothing ended yet: 10 s for two periods and 30 s for the first cycle.
        clock.advance(chrono::Duration::seconds(40));
        assert!(check(&s).reasons.is_empty(), "{:?}", check(&s));
        clock.advance(chrono::Duration::seconds(1));
        assert!(check(&s).reasons[0].contains("in the 41s since start"));
        // A cycle of 90 s (more requests than run at once, each timing out) allows 90 s.
        store
            .record_cycle(&cycle(t0, 90, 1), t0.date_naive(), 0)
            .unwrap();
        clock.set(t0 + chrono::Duration::seconds(90 + 100));
        assert!(check(&s).reasons.is_empty(), "{:?}", check(&s));
        clock.advance(chrono::Duration::seconds(1));
        assert!(
            check(&s).reasons[0].contains("ended 101s ago"),
            "{:?}",
            check(&s)
        );
    }

    /// A cycle longer than the limit is healthy while the server's answers keep coming,
    /// and fails once they stop for longer than the limit.
    #[test]
    fn a_cycle_under_way_counts_while_its_answers_come() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap();
        let clock = ManualClock::new(t0);
        let s = state(&clock, &store);
        let running = s.progress.cycle_running("sim", t0);
        s.progress
            .answered("sim", t0 + chrono::Duration::minutes(9));
        clock.advance(chrono::Duration::minutes(11));
        assert!(check(&s).reasons.is_empty(), "{:?}", check(&s));
        clock.advance(chrono::Duration::minutes(9));
        assert!(check(&s).reasons[0].starts_with(
            "no poll cycle has ended in the 1200s since start and the cycle under way last \
             had an answer 660s ago"
        ));
        drop(running);
        assert_eq!(s.progress.oldest_running(), None);
    }

    /// An outsider's half-sent requests (slowloris) hold no slot for long and never more
    /// than the cap: one connection past the cap is closed at once, the idle ones after
    /// the header timeout, and then a fresh client is answered.
    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_capped_and_timed_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpStream;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let header_read_timeout = Duration::from_secs(10);
        let limits = Limits {
            max_connections: 4,
            header_read_timeout,
            connection_lifetime: Duration::from_secs(600),
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_with(
            listener,
            state(&clock, &store),
            shutdown.clone(),
            limits,
        ));
        let started = tokio::time::Instant::now();
        let mut idle = Vec::new();
        for _ in 0..limits.max_connections {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            idle.push(s);
        }
        // Closed (end of stream or reset) without an answer.
        async fn closed(s: &mut TcpStream, within: Duration) -> bool {
            let mut buf = Vec::new();
            match tokio::time::timeout(within, s.read_to_end(&mut buf)).await {
                Ok(Ok(_)) => buf.is_empty(),
                Ok(Err(_)) => true,
                Err(_) => false,
            }
        }
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed(&mut extra, Duration::from_secs(1)).await,
            "a connection past the cap is closed at once"
        );
        for s in &mut idle {
            assert!(
                closed(s, header_read_timeout * 2).await,
                "idle one kept open"
            );
        }
        assert!(
            started.elapsed() >= header_read_timeout,
            "closed by the timeout"
        );
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        fresh
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        fresh.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn the_period_is_the_gap_between_fire_times() {
        let t = Utc.with_ymd_and_hms(2024, 6, 26, 12, 1, 0).unwrap();
        let every_5 = CronSchedule::parse("*/5 * * * *", crate::tz::Tz::UTC).unwrap();
        assert_eq!(period(&every_5, t), chrono::Duration::minutes(5));
        let never = CronSchedule::parse("0 0 31 2 *", crate::tz::Tz::UTC).unwrap();
        assert_eq!(period(&never, t), chrono::Duration::days(1));
    }
}
