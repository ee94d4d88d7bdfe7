//! The simulator's HTTP side: the `ListRestoreJobStatus.do` handler, its shared state and
//! statistics, and a listener that can be switched off and on.
//!
//! "Down" must look like a dead server to a client, not like an error reply: the listening
//! socket is closed (new connections are refused) and every open connection is cut, so a
//! pooled keep-alive connection cannot sneak a request through. Each accepted connection
//! is wrapped in [`SimConn`], which fails its reads and writes once the current "epoch"
//! token is cancelled; going down cancels the epoch and starts a new one.

use super::faults::{FaultDice, Faults, Injected, LoginFault, MALFORMED_BODIES};
use super::job::{write_object, Phase, SimJob, SimUser};
use crate::clock::SharedClock;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use chrono_tz::Tz;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The one call the simulator implements.
pub const LIST_RESTORE_JOB_STATUS_PATH: &str = "/obs/api/json/ListRestoreJobStatus.do";
pub const GET_RESTORE_JOB_REPORT_PATH: &str = "/obs/api/json/GetRestoreJobReport.do";

/// What a Read-Only API system user gets from `GetRestoreJobReport.do`.
pub const REPORT_NOT_ALLOWED_MESSAGE: &str =
    "Permission denied: GetRestoreJobReport requires the Admin or API role";

/// How the simulator fails `GetRestoreJobReport.do` when told to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFault {
    /// `Status: Error`, as for a Read-Only API system user.
    ReadOnlyRole,
    /// Never answers (until the simulator stops or goes down).
    Hang,
}

/// The user-listing call (CBS 9.7+), used by discovery.
pub const LIST_USERS_PATH: &str = "/obs/api/json/2/ListUsers.do";

/// What the simulator answers to `2/ListUsers.do` when told its system user lacks the role
/// (a Read-Only API user).
pub const ROLE_DENIED_MESSAGE: &str =
    "Permission denied: this call is not allowed for a Read-Only API user";

/// The vendor's documented reply to bad system credentials.
pub const INCORRECT_CREDENTIALS_MESSAGE: &str = "Incorrect system username/password";

/// What CBS 8.3.4+ answers to every call once the system user's password has expired.
pub const PASSWORD_EXPIRED_MESSAGE: &str =
    "Your password has expired. Please change your password.";

/// Pause before accepting again after an accept error (e.g. out of file descriptors).
const ACCEPT_RETRY_MS: u64 = 50;

/// State shared by the handler, the listener and every [`super::SimHandle`].
pub(crate) struct Shared {
    pub sys_user: String,
    pub sys_pwd: String,
    pub tz: Tz,
    pub clock: SharedClock,
    pub world: Mutex<World>,
    pub stats: Stats,
    /// Cancelled when the simulator stops.
    pub shutdown: CancellationToken,
    /// Cancelled when the simulator goes down: cuts the connections of this epoch.
    epoch: Mutex<CancellationToken>,
}

/// The simulated server's data and knobs.
pub(crate) struct World {
    pub users: BTreeMap<String, SimUser>,
    /// Every job; read through [`World::jobs`], changed through the methods below, which
    /// keep `by_login` in step.
    jobs: Vec<SimJob>,
    /// Indices into `jobs` by lowercased login: a request reads its user's jobs, not every
    /// job of a 10,000-user server under the lock.
    by_login: HashMap<String, Vec<usize>>,
    pub login_faults: HashMap<String, LoginFault>,
    /// Faults of one login on one `RestoreDate`.
    pub login_date_faults: HashMap<(String, NaiveDate), LoginFault>,
    pub dice: FaultDice,
    pub password_expired: bool,
    /// `2/ListUsers.do` answers as to a Read-Only API system user.
    pub list_users_denied: bool,
    /// Set: `GetRestoreJobReport.do` fails this way.
    pub report_fault: Option<ReportFault>,
    /// `GetRestoreJobReport.do` requests received.
    pub report_requests: u64,
}

impl World {
    pub fn new(faults: Faults) -> Self {
        Self {
            users: BTreeMap::new(),
            jobs: Vec::new(),
            by_login: HashMap::new(),
            login_faults: HashMap::new(),
            login_date_faults: HashMap::new(),
            dice: FaultDice::new(faults),
            password_expired: false,
            list_users_denied: false,
            report_fault: None,
            report_requests: 0,
        }
    }

    /// Adds a job, registering its user when the server does not know it yet.
    pub fn add_job(&mut self, job: SimJob) {
        self.users
            .entry(job.login.clone())
            .or_insert_with(|| SimUser {
                login: job.login.clone(),
                owner: job.owner.clone(),
                user_id: job.user_id.clone(),
            });
        self.by_login
            .entry(job.login.to_ascii_lowercase())
            .or_default()
            .push(self.jobs.len());
        self.jobs.push(job);
    }

    pub fn jobs(&self) -> &[SimJob] {
        &self.jobs
    }

    /// The jobs of `login`, its case ignored (as AhsayCBS does).
    pub fn jobs_of(&self, login: &str) -> impl Iterator<Item = &SimJob> {
        (self.by_login.get(&login.to_ascii_lowercase()).into_iter())
            .flatten()
            .map(|&i| &self.jobs[i])
    }

    /// Changes the jobs in place (any change: the index is built again after).
    pub fn edit_jobs(&mut self, edit: impl FnOnce(&mut Vec<SimJob>)) {
        edit(&mut self.jobs);
        let mut by_login: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, job) in self.jobs.iter().enumerate() {
            by_login
                .entry(job.login.to_ascii_lowercase())
                .or_default()
                .push(i);
        }
        self.by_login = by_login;
    }
}

/// Request counters.
#[derive(Default)]
pub(crate) struct Stats {
    pub received: AtomicU64,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Requests per (LoginName, RestoreDate), for requests that named both readably.
    pub per_user_date: Mutex<HashMap<(String, NaiveDate), u64>>,
    /// When the last [`ARRIVALS_KEPT`] requests arrived (tokio time), oldest first.
    pub arrivals: Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

/// How many arrival times the simulator keeps, for rate checks.
pub const ARRIVALS_KEPT: usize = 4096;

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a Stats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        stats.received.fetch_add(1, Ordering::SeqCst);
        let mut arrivals = lock(&stats.arrivals);
        if arrivals.len() == ARRIVALS_KEPT {
            arrivals.pop_front();
        }
        arrivals.push_back(tokio::time::Instant::now());
        drop(arrivals);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks a mutex, carrying on if a panicking thread poisoned it: the data is plain and a
/// half-done update is no worse than a lost one in a simulator.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(
        sys_user: String,
        sys_pwd: String,
        tz: Tz,
        clock: SharedClock,
        world: World,
    ) -> Self {
        let shutdown = CancellationToken::new();
        Self {
            sys_user,
            sys_pwd,
            tz,
            clock,
            world: Mutex::new(world),
            stats: Stats::default(),
            epoch: Mutex::new(shutdown.child_token()),
            shutdown,
        }
    }

    fn current_epoch(&self) -> CancellationToken {
        lock(&self.epoch).clone()
    }

    /// Cuts every open connection and starts a new epoch for the ones accepted later.
    fn cut_connections(&self) {
        let mut epoch = lock(&self.epoch);
        epoch.cancel();
        *epoch = self.shutdown.child_token();
    }
}

/// The request body, read leniently: the real server ignores what it does not know, and a
/// missing field is simply empty.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct ListRequest {
    #[serde(rename = "SysUser")]
    sys_user: String,
    #[serde(rename = "SysPwd")]
    sys_pwd: String,
    #[serde(rename = "Owner")]
    owner: String,
    #[serde(rename = "LoginName")]
    login_name: String,
    #[serde(rename = "RestoreDate")]
    restore_date: String,
}

/// `POST /obs/api/json/ListRestoreJobStatus.do`.
pub(crate) async fn list_restore_job_status(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared.stats);
    let epoch = shared.current_epoch();
    let request: Result<ListRequest, _> = serde_json::from_slice(&body);
    if let Ok(req) = &request {
        if let Ok(date) = NaiveDate::parse_from_str(&req.restore_date, "%Y-%m-%d") {
            *lock(&shared.stats.per_user_date)
                .entry((req.login_name.clone(), date))
                .or_default() += 1;
        }
    }
    // Dice are rolled on arrival, so the fault sequence follows the request order.
    let (latency, injected) = {
        let mut world = lock(&shared.world);
        let latency = world.dice.faults().latency;
        (latency, world.dice.roll())
    };
    if !latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            // Going down or stopping ends the wait; the cut connection carries no answer.
            () = epoch.cancelled() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    match injected {
        Injected::None => {}
        Injected::Http500 => return http_500(),
        Injected::Malformed(i) => {
            return json_response(MALFORMED_BODIES[i % MALFORMED_BODIES.len()].to_owned())
        }
        Injected::ApiError => {
            return api_error(
                "Unexpected error, please try again later",
                "com.ahsay.obs.core.ae",
            )
        }
    }
    let Ok(req) = request else {
        return api_error(
            "Invalid request: the body is not JSON",
            "com.ahsay.obs.core.q",
        );
    };
    if req.sys_user != shared.sys_user || req.sys_pwd != shared.sys_pwd {
        return api_error(INCORRECT_CREDENTIALS_MESSAGE, "com.ahsay.obs.core.dbs.c");
    }
    let now = shared.clock.now();
    let world = lock(&shared.world);
    if world.password_expired {
        return api_error(PASSWORD_EXPIRED_MESSAGE, "com.ahsay.obs.core.dbs.p");
    }
    let Ok(date) = NaiveDate::parse_from_str(&req.restore_date, "%Y-%m-%d") else {
        return api_error(
            &format!(
                "Invalid RestoreDate \"{}\", expected yyyy-MM-dd",
                req.restore_date
            ),
            "com.ahsay.obs.core.q",
        );
    };
    let not_found = || {
        api_error(
            &format!("User \"{}\" not found", req.login_name),
            "com.ahsay.obs.core.dbs.d",
        )
    };
    let date_fault = world.login_date_faults.get(&(req.login_name.clone(), date));
    match world.login_faults.get(&req.login_name).or(date_fault) {
        None => {}
        Some(LoginFault::Http500) => return http_500(),
        Some(LoginFault::NotFound) => return not_found(),
        Some(LoginFault::ApiError(message)) => return api_error(message, "com.ahsay.obs.core.x"),
        Some(LoginFault::RawBody(body)) => return json_response(body.clone()),
    }
    // Login names are case-insensitive, as in AhsayCBS: the reply spells them as stored.
    let user = world.users.get(&req.login_name).or_else(|| {
        world
            .users
            .iter()
            .find(|(login, _)| login.eq_ignore_ascii_case(&req.login_name))
            .map(|(_, user)| user)
    });
    let Some(user) = user else {
        return not_found();
    };
    // An empty Owner means "any": a system user sees every backup user.
    if !req.owner.is_empty() && req.owner != user.owner {
        return not_found();
    }
    let mut listed: Vec<&SimJob> = world
        .jobs_of(&req.login_name)
        .filter(|j| j.listed_on(shared.tz) == date)
        .filter(|j| j.phase(now) != Phase::NotStarted)
        .collect();
    listed.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(a.backup_set_id.cmp(&b.backup_set_id))
    });
    let items: Vec<String> = listed
        .iter()
        .map(|j| write_object(&j.render(shared.tz, now)))
        .collect();
    json_response(format!(
        "{{\"Status\":\"OK\",\"Data\":[{}]}}",
        items.join(",")
    ))
}

/// The body of `2/ListUsers.do`: credentials and the optional `reseller` filter.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct ListUsersRequest {
    #[serde(rename = "SysUser")]
    sys_user: String,
    #[serde(rename = "SysPwd")]
    sys_pwd: String,
    reseller: String,
}

/// `POST /obs/api/json/2/ListUsers.do`: every user in one reply, under the key `User`.
pub(crate) async fn list_users(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&shared.stats);
    let Ok(req) = serde_json::from_slice::<ListUsersRequest>(&body) else {
        return api_error(
            "Invalid request: the body is not JSON",
            "com.ahsay.obs.core.q",
        );
    };
    if req.sys_user != shared.sys_user || req.sys_pwd != shared.sys_pwd {
        return api_error(INCORRECT_CREDENTIALS_MESSAGE, "com.ahsay.obs.core.dbs.c");
    }
    let world = lock(&shared.world);
    if world.password_expired {
        return api_error(PASSWORD_EXPIRED_MESSAGE, "com.ahsay.obs.core.dbs.p");
    }
    if world.list_users_denied {
        return api_error(ROLE_DENIED_MESSAGE, "com.ahsay.obs.core.dbs.r");
    }
    let users: Vec<Value> = world
        .users
        .values()
        .filter(|u| req.reseller.is_empty() || u.owner == req.reseller)
        .map(|u| json!({"ID": u.user_id, "LoginName": u.login, "Owner": u.owner}))
        .collect();
    json_response(json!({"Status": "OK", "User": users}).to_string())
}

#[derive(serde::Deserialize)]
struct ReportRequest {
    #[serde(rename = "SysUser", default)]
    sys_user: String,
    #[serde(rename = "SysPwd", default)]
    sys_pwd: String,
    #[serde(rename = "LoginName", default)]
    login_name: String,
    #[serde(rename = "BackupSetID", default)]
    backup_set_id: String,
    #[serde(rename = "JobID", default)]
    job_id: String,
}

/// `POST /obs/api/json/GetRestoreJobReport.do`: one Report object, times in epoch
/// milliseconds, with plausible logs (errors for failed jobs, a warning for warned ones).
pub(crate) async fn get_restore_job_report(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared.stats);
    let epoch = shared.current_epoch();
    let fault = {
        let mut world = lock(&shared.world);
        world.report_requests += 1;
        world.report_fault
    };
    match fault {
        None => {}
        Some(ReportFault::ReadOnlyRole) => {
            return api_error(REPORT_NOT_ALLOWED_MESSAGE, "com.ahsay.obs.core.dbs.r")
        }
        Some(ReportFault::Hang) => {
            epoch.cancelled().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let Ok(req) = serde_json::from_slice::<ReportRequest>(&body) else {
        return api_error(
            "Invalid request: the body is not JSON",
            "com.ahsay.obs.core.q",
        );
    };
    if req.sys_user != shared.sys_user || req.sys_pwd != shared.sys_pwd {
        return api_error(INCORRECT_CREDENTIALS_MESSAGE, "com.ahsay.obs.core.dbs.c");
    }
    let world = lock(&shared.world);
    let Some(job) = world
        .jobs_of(&req.login_name)
        .find(|j| j.backup_set_id == req.backup_set_id && j.job_id(shared.tz) == req.job_id)
    else {
        return api_error(
            &format!("Restore job \"{}\" not found", req.job_id),
            "com.ahsay.obs.core.dbs.d",
        );
    };
    let start = job.start.timestamp_millis();
    let end = job.end.map_or(start, |e| e.timestamp_millis());
    let status = &job.final_status;
    let files = job.size_bytes / 4096 + 1;
    let mut logs = vec![json!({"Type": "info", "Time": start, "Message": "Start restore"})];
    if status.contains("ERROR") || status.contains("FAIL") || status.contains("INTERRUPTED") {
        logs.push(json!({"Type": "file", "Time": start + 500, "Message": format!("[ERROR] Cannot write \"/restore/{}/data.db\": Access is denied", job.backup_set_name)}));
        logs.push(json!({"Type": "info", "Time": end, "Message": format!("[ERROR] Restore Completed with error(s) ({status})")}));
    } else if status.contains("WARNING") {
        logs.push(json!({"Type": "file", "Time": start + 500, "Message": "[WARN] File skipped: locked by another process"}));
    }
    logs.push(json!({"Type": "info", "Time": end, "Message": "Restore finished"}));
    let body = json!({
        "Status": "OK",
        "Data": {
            "ID": req.job_id,
            "StartTime": start,
            "EndTime": end,
            "FromIp": "127.0.0.1",
            "DestinationID": job.destination_id.clone().unwrap_or_default(),
            "Status": status,
            "TotalFileCount": files,
            "TotalFileSize": job.size_bytes,
            "Logs": logs,
        }
    });
    json_response(body.to_string())
}

/// Anything else: what a Tomcat answers for an unknown path.
pub(crate) async fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
        "<html><body><h1>HTTP Status 404 - Not Found</h1></body></html>",
    )
        .into_response()
}

fn json_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body,
    )
        .into_response()
}

fn api_error(message: &str, expt_type: &str) -> Response {
    let body: Value = json!({"Status": "Error", "Message": message, "ExptType": expt_type});
    json_response(body.to_string())
}

fn http_500() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
        "<html><body><h1>HTTP Status 500 - Internal Server Error</h1></body></html>",
    )
        .into_response()
}

/// Orders for the listener.
pub(crate) enum ListenCmd {
    /// Close the listening socket, cut every connection, then acknowledge.
    Down(oneshot::Sender<()>),
    /// Listen on this socket again, then acknowledge.
    Up(TcpListener, oneshot::Sender<()>),
}

/// An axum listener that can stop listening and start again on command.
pub(crate) struct SimListener {
    listener: Option<TcpListener>,
    addr: SocketAddr,
    cmds: mpsc::UnboundedReceiver<ListenCmd>,
    cmds_open: bool,
    shared: Arc<Shared>,
}

impl SimListener {
    pub fn new(
        listener: TcpListener,
        cmds: mpsc::UnboundedReceiver<ListenCmd>,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        Ok(Self {
            addr: listener.local_addr()?,
            listener: Some(listener),
            cmds,
            cmds_open: true,
            shared,
        })
    }

    fn apply(&mut self, cmd: ListenCmd) {
        match cmd {
            ListenCmd::Down(ack) => {
                self.listener = None;
                self.shared.cut_connections();
                tracing::info!(addr = %self.addr, "simulator down: refusing connections");
                // The caller may have given up waiting; nothing to do then.
                let _ = ack.send(());
            }
            ListenCmd::Up(listener, ack) => {
                self.listener = Some(listener);
                tracing::info!(addr = %self.addr, "simulator up again");
                let _ = ack.send(());
            }
        }
    }
}

/// The next order, or never once every handle is gone.
async fn next_cmd(cmds: &mut mpsc::UnboundedReceiver<ListenCmd>, open: bool) -> Option<ListenCmd> {
    if open {
        cmds.recv().await
    } else {
        std::future::pending().await
    }
}

impl axum::serve::Listener for SimListener {
    type Io = SimConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SimConn, SocketAddr) {
        loop {
            let cmd = match &self.listener {
                Some(listener) => tokio::select! {
                    cmd = next_cmd(&mut self.cmds, self.cmds_open) => cmd,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            return (SimConn::new(stream, self.shared.current_epoch()), peer)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "simulator accept failed; retrying");
                            tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                            continue;
                        }
                    },
                },
                None => next_cmd(&mut self.cmds, self.cmds_open).await,
            };
            match cmd {
                Some(cmd) => self.apply(cmd),
                None => self.cmds_open = false,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A TCP connection that breaks when its epoch is cancelled.
pub(crate) struct SimConn {
    stream: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    broken: bool,
}

impl SimConn {
    fn new(stream: TcpStream, epoch: CancellationToken) -> Self {
        Self {
            stream,
            cut: Box::pin(epoch.cancelled_owned()),
            broken: false,
        }
    }

    /// Fails once the epoch is over; registers the waker so an idle connection notices.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.broken && self.cut.as_mut().poll(cx).is_ready() {
            self.broken = true;
        }
        if self.broken {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the simulator went down",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for SimConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn job(login: &str, set: &str) -> SimJob {
        let start = Utc.with_ymd_and_hms(2024, 6, 26, 9, 0, 0).unwrap();
        SimJob::new(login, set, start, None, "RESTORE_STOP_SUCCESS")
    }

    fn sets(world: &World, login: &str) -> Vec<String> {
        let jobs = world.jobs_of(login);
        jobs.map(|j| j.backup_set_id.clone()).collect()
    }

    /// The per-login index follows every change of the jobs, and ignores case.
    #[test]
    fn jobs_of_a_login_follow_adds_and_edits() {
        let mut world = World::new(Faults::default());
        world.add_job(job("Alice", "1"));
        world.add_job(job("bob", "2"));
        world.add_job(job("alice", "3"));
        assert_eq!(sets(&world, "ALICE"), ["1", "3"]);
        assert_eq!(sets(&world, "bob"), ["2"]);
        assert!(sets(&world, "carol").is_empty());
        world.edit_jobs(|jobs| jobs.retain(|j| j.backup_set_id != "1"));
        assert_eq!(sets(&world, "alice"), ["3"]);
        assert_eq!(sets(&world, "bob"), ["2"]);
        world.edit_jobs(Vec::clear);
        assert!(sets(&world, "bob").is_empty());
    }
}
