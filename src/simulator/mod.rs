//! A stand-in AhsayCBS: an HTTP server implementing `ListRestoreJobStatus.do` as the vendor
//! documents it, with the reply quirks real servers show and faults on demand.
//!
//! Tests start it in-process on loopback ([`Simulator::start`]) and steer it through a
//! [`SimHandle`]: change the jobs, move the injected clock so jobs start and finish, inject
//! faults, take the server down and up, and read request statistics. The demo and
//! `restorewatch simulate` run it standalone with [`serve`].
//!
//! Layout: [`job`] (a job and how it renders), [`workload`] (generated workloads),
//! [`scenario`] (hand-written ones), [`faults`] (fault knobs), `server` (HTTP side).

pub mod faults;
pub mod job;
pub mod scenario;
mod server;
mod standalone;
pub mod workload;

pub use faults::{Faults, LoginFault};
pub use job::{Quirks, SimJob, SimUser};
pub use scenario::{Scenario, ScenarioError};
pub use server::{
    ReportFault, GET_RESTORE_JOB_REPORT_PATH, INCORRECT_CREDENTIALS_MESSAGE,
    LIST_RESTORE_JOB_STATUS_PATH, LIST_USERS_PATH, PASSWORD_EXPIRED_MESSAGE,
    REPORT_NOT_ALLOWED_MESSAGE, ROLE_DENIED_MESSAGE,
};
pub use standalone::{serve, serve_on, SimulateArgs, WorkloadSource};
pub use workload::{generate, GenParams, Pace, Workload};

use crate::cbs::model::RestoreJob;
use crate::clock::{SharedClock, SystemClock};
use crate::tz::Tz;
use chrono::NaiveDate;
use server::{lock, ListenCmd, Shared, SimListener, World};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The simulator's system user unless told otherwise. Demo credentials, not a secret.
pub const DEFAULT_SYS_USER: &str = "api";
/// The simulator's system password unless told otherwise. Demo credentials, not a secret.
pub const DEFAULT_SYS_PWD: &str = "sim-secret";

/// How the simulated server is set up.
#[derive(Clone)]
pub struct SimConfig {
    pub sys_user: String,
    pub sys_pwd: String,
    /// The server zone: job IDs, times and `RestoreDate` are in it.
    pub timezone: Tz,
    /// "Now" for the jobs: which have started, which have ended.
    pub clock: SharedClock,
}

impl SimConfig {
    /// Demo credentials, UTC, and the given clock.
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            sys_user: DEFAULT_SYS_USER.to_owned(),
            sys_pwd: DEFAULT_SYS_PWD.to_owned(),
            timezone: crate::tz::Tz::UTC,
            clock,
        }
    }
}

impl Default for SimConfig {
    /// Demo credentials, UTC, the system clock.
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

/// A simulator about to start.
pub struct Simulator {
    config: SimConfig,
    workload: Workload,
    faults: Faults,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        Self {
            config,
            workload: Workload::default(),
            faults: Faults::default(),
        }
    }

    pub fn with_workload(mut self, workload: Workload) -> Self {
        self.workload = workload;
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Starts on `127.0.0.1` with a port the system picks.
    pub async fn start(self) -> io::Result<SimHandle> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        self.start_on(listener).await
    }

    /// Starts on a listener the caller bound.
    pub async fn start_on(self, listener: TcpListener) -> io::Result<SimHandle> {
        let mut world = World::new(self.faults);
        set_workload(&mut world, self.workload);
        let c = self.config;
        let shared = Arc::new(Shared::new(
            c.sys_user, c.sys_pwd, c.timezone, c.clock, world,
        ));
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let listener = SimListener::new(listener, cmd_rx, shared.clone())?;
        let addr = axum::serve::Listener::local_addr(&listener)?;
        let app = axum::Router::new()
            .route(
                LIST_RESTORE_JOB_STATUS_PATH,
                axum::routing::post(server::list_restore_job_status),
            )
            .route(LIST_USERS_PATH, axum::routing::post(server::list_users))
            .route(
                server::GET_RESTORE_JOB_REPORT_PATH,
                axum::routing::post(server::get_restore_job_report),
            )
            .fallback(server::not_found_page)
            .layer(axum::middleware::map_response_with_state(
                shared.clone(),
                server::byte_order_mark,
            ))
            .with_state(shared.clone());
        let stop = shared.shutdown.clone();
        let task = tokio::spawn(async move {
            // Serving only ends on shutdown; an error here is the listener's own.
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "simulator stopped with an error");
            }
        });
        let url = reqwest::Url::parse(&format!("http://{addr}/"))
            .map_err(|e| io::Error::other(format!("no URL for {addr}: {e}")))?;
        Ok(SimHandle {
            control: Arc::new(Control {
                addr,
                url,
                switch: tokio::sync::Mutex::new(Switch { down: false, cmds }),
                task: std::sync::Mutex::new(Some(task)),
                _stop_when_dropped: shared.shutdown.clone().drop_guard(),
            }),
            shared,
        })
    }
}

fn set_workload(world: &mut World, workload: Workload) {
    world.users = workload
        .users
        .into_iter()
        .map(|u| (u.login.clone(), u))
        .collect();
    world.edit_jobs(Vec::clear);
    for job in workload.jobs {
        world.add_job(job);
    }
}

/// Controls a running simulator. Clones share it; when the last clone is dropped the
/// simulator stops.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    control: Arc<Control>,
}

struct Control {
    addr: SocketAddr,
    url: reqwest::Url,
    /// Serialises down/up switches.
    switch: tokio::sync::Mutex<Switch>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    _stop_when_dropped: DropGuard,
}

struct Switch {
    down: bool,
    cmds: mpsc::UnboundedSender<ListenCmd>,
}

impl SimHandle {
    /// The base URL to give a client (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> reqwest::Url {
        self.control.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.control.addr
    }

    pub fn sys_user(&self) -> &str {
        &self.shared.sys_user
    }

    pub fn sys_pwd(&self) -> &str {
        &self.shared.sys_pwd
    }

    pub fn timezone(&self) -> Tz {
        self.shared.tz
    }

    /// Replaces users and jobs.
    pub fn set_workload(&self, workload: Workload) {
        set_workload(&mut lock(&self.shared.world), workload);
    }

    /// Registers a user (replacing one with the same login).
    pub fn add_user(&self, user: SimUser) {
        lock(&self.shared.world)
            .users
            .insert(user.login.clone(), user);
    }

    /// Adds a job; its user is registered if the server does not know the login yet.
    pub fn add_job(&self, job: SimJob) {
        lock(&self.shared.world).add_job(job);
    }

    /// Replaces every job (users stay; new logins are registered).
    pub fn set_jobs(&self, jobs: Vec<SimJob>) {
        let mut world = lock(&self.shared.world);
        world.edit_jobs(Vec::clear);
        for job in jobs {
            world.add_job(job);
        }
    }

    /// Edits the jobs in place, e.g. to change how a running job will end.
    pub fn edit_jobs(&self, edit: impl FnOnce(&mut Vec<SimJob>)) {
        lock(&self.shared.world).edit_jobs(edit);
    }

    pub fn jobs(&self) -> Vec<SimJob> {
        lock(&self.shared.world).jobs().to_vec()
    }

    pub fn users(&self) -> Vec<SimUser> {
        lock(&self.shared.world).users.values().cloned().collect()
    }

    /// What a correct client decodes for `login` on `date` right now, in the server's order
    /// (the oracle for tests).
    pub fn expected(&self, server: &str, login: &str, date: NaiveDate) -> Vec<RestoreJob> {
        let now = self.shared.clock.now();
        let tz = self.shared.tz;
        let mut jobs: Vec<SimJob> = lock(&self.shared.world)
            .jobs()
            .iter()
            .filter(|j| j.login == login && j.listed_on(tz) == date)
            .cloned()
            .collect();
        jobs.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(a.backup_set_id.cmp(&b.backup_set_id))
        });
        jobs.iter()
            .filter_map(|j| j.expected(server, tz, now))
            .collect()
    }

    /// Sets the server-wide fault knobs; the dice restart from `faults.seed`.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared.world).dice = faults::FaultDice::new(faults);
    }

    pub fn faults(&self) -> Faults {
        lock(&self.shared.world).dice.faults().clone()
    }

    /// Makes every request for `login` fail this way (`None` heals it).
    pub fn set_login_fault(&self, login: &str, fault: Option<LoginFault>) {
        let mut world = lock(&self.shared.world);
        match fault {
            Some(f) => world.login_faults.insert(login.to_owned(), f),
            None => world.login_faults.remove(login),
        };
    }

    /// `true`: `2/ListUsers.do` refuses the system user's role (as for Read-Only API).
    pub fn set_list_users_denied(&self, denied: bool) {
        lock(&self.shared.world).list_users_denied = denied;
    }

    /// `true`: `2/ListUsers.do` answers `Status: Error` `"Reseller '<reseller>' not found"`
    /// for that reseller, as for one deleted or renamed.
    pub fn set_reseller_missing(&self, reseller: &str, missing: bool) {
        let mut world = lock(&self.shared.world);
        if missing {
            world.missing_resellers.insert(reseller.to_owned());
        } else {
            world.missing_resellers.remove(reseller);
        }
    }

    /// Pads every `2/ListUsers.do` item with `chars` characters of filler (a real listing
    /// carries many fields per user; 0: only `ID`, `LoginName` and `Owner`).
    pub fn set_list_users_padding(&self, chars: usize) {
        lock(&self.shared.world).list_users_padding = chars;
    }

    /// `true`: every JSON reply (each call's) starts with a UTF-8 byte order mark.
    pub fn set_byte_order_mark(&self, on: bool) {
        lock(&self.shared.world).byte_order_mark = on;
    }

    /// Removes a user and their jobs.
    pub fn remove_user(&self, login: &str) {
        let mut world = lock(&self.shared.world);
        world.users.remove(login);
        world.edit_jobs(|jobs| jobs.retain(|j| j.login != login));
    }

    /// Makes the requests for `login` and one `RestoreDate` fail this way (`None` heals it):
    /// say, yesterday's reply breaks while today's does not.
    pub fn set_login_date_fault(&self, login: &str, date: NaiveDate, fault: Option<LoginFault>) {
        let mut world = lock(&self.shared.world);
        let key = (login.to_owned(), date);
        match fault {
            Some(f) => world.login_date_faults.insert(key, f),
            None => world.login_date_faults.remove(&key),
        };
    }

    /// Makes `GetRestoreJobReport.do` fail this way (`None`: serve it).
    pub fn set_report_fault(&self, fault: Option<ReportFault>) {
        lock(&self.shared.world).report_fault = fault;
    }

    /// `GetRestoreJobReport.do` requests received so far.
    pub fn report_requests(&self) -> u64 {
        lock(&self.shared.world).report_requests
    }

    /// Makes every call fail as with an expired system-user password.
    pub fn set_password_expired(&self, expired: bool) {
        lock(&self.shared.world).password_expired = expired;
    }

    /// `true`: close the listening socket and cut open connections, so clients get
    /// "connection refused". `false`: listen again on the same address. Returns once the
    /// switch is done.
    pub async fn set_down(&self, down: bool) -> io::Result<()> {
        let mut switch = self.control.switch.lock().await;
        if switch.down == down {
            return Ok(());
        }
        let (ack, acked) = oneshot::channel();
        let cmd = if down {
            ListenCmd::Down(ack)
        } else {
            ListenCmd::Up(TcpListener::bind(self.control.addr).await?, ack)
        };
        let stopped = || io::Error::other("the simulator has stopped");
        switch.cmds.send(cmd).map_err(|_| stopped())?;
        acked.await.map_err(|_| stopped())?;
        switch.down = down;
        Ok(())
    }

    /// Requests received so far (answered, failed or cut off).
    pub fn requests_served(&self) -> u64 {
        self.shared.stats.received.load(Ordering::SeqCst)
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.shared.stats.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests ever handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.stats.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests for `login` and `date` so far.
    pub fn requests_for(&self, login: &str, date: NaiveDate) -> u64 {
        lock(&self.shared.stats.per_user_date)
            .get(&(login.to_owned(), date))
            .copied()
            .unwrap_or(0)
    }

    /// Zeroes the counters (the peak restarts from what is in flight now).
    pub fn reset_stats(&self) {
        let stats = &self.shared.stats;
        stats.received.store(0, Ordering::SeqCst);
        stats
            .max_in_flight
            .store(stats.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        lock(&stats.per_user_date).clear();
        lock(&stats.arrivals).clear();
    }

    /// When the last requests arrived (at most the last 4096), on tokio's clock, in order.
    pub fn arrivals(&self) -> Vec<tokio::time::Instant> {
        lock(&self.shared.stats.arrivals).iter().copied().collect()
    }

    /// The token that stops the simulator when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Stops the simulator and waits until it has let go of its socket and connections.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        let task = lock(&self.control.task).take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "simulator task failed");
            }
        }
    }
}
