//! The simulator's HTTP side: the `ListRestoreJobStatus.do` handler, its shared state and
//! statistics, and a listener that can be switched off and on.
//!
//! "Down" must look like a dead server to a client, not like an error reply: the listening
//! socket is closed (new connections are refused) and every open connection is cut, so a
//! pooled keep-alive connection cannot sneak a request through. Each accepted connection
//! is wrapped in [`SimConn`](listener::SimConn), which fails its reads and writes once
//! the current "epoch" token is cancelled; going down cancels the epoch and starts a new
//! one.

mod handlers;
mod listener;
mod stats;
mod world;

pub(crate) use handlers::{
    byte_order_mark, get_restore_job_report, list_restore_job_status, list_users, not_found_page,
};
pub(crate) use listener::{ListenCmd, SimListener};
pub(crate) use world::World;

use crate::clock::SharedClock;
use crate::tz::Tz;
use stats::Stats;
use std::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

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
