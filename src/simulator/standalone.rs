//! `restorewatch simulate`: the simulator as a server of its own, on the real clock, for
//! the demo and for trying restorewatch without a CBS.

use super::scenario::Scenario;
use super::workload::{generate, GenParams, Pace, Workload};
use super::{SimConfig, Simulator, DEFAULT_SYS_PWD, DEFAULT_SYS_USER};
use crate::clock::{SharedClock, SystemClock};
use crate::tz::Tz;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where the standalone simulator's jobs come from.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkloadSource {
    /// A scenario file (see `config/scenario.example.toml`).
    Scenario(PathBuf),
    /// A generated workload, the same for the same seed and start time.
    Generated { users: usize, seed: u64, pace: Pace },
}

/// Everything `restorewatch simulate` needs.
#[derive(Clone, Debug)]
pub struct SimulateArgs {
    pub listen: SocketAddr,
    pub source: WorkloadSource,
    pub sys_user: String,
    /// The simulator's own demo password: printed at start, not a secret.
    pub sys_pwd: String,
    /// The server zone; a scenario file's `timezone` takes precedence.
    pub timezone: Tz,
}

impl SimulateArgs {
    /// Demo credentials and UTC.
    pub fn new(listen: SocketAddr, source: WorkloadSource) -> Self {
        Self {
            listen,
            source,
            sys_user: DEFAULT_SYS_USER.to_owned(),
            sys_pwd: DEFAULT_SYS_PWD.to_owned(),
            timezone: crate::tz::Tz::UTC,
        }
    }
}

/// Listens on `args.listen` and runs the simulator until `shutdown` is cancelled.
pub async fn serve(args: SimulateArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    serve_on(listener, args, shutdown).await
}

/// Like [`serve`] on a listener the caller bound (`args.listen` is not used).
pub async fn serve_on(
    listener: TcpListener,
    args: SimulateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.now();
    let (timezone, workload): (Tz, Workload) = match &args.source {
        WorkloadSource::Scenario(path) => {
            let s = Scenario::load(path, args.timezone, now)?;
            (s.timezone, s.workload)
        }
        WorkloadSource::Generated { users, seed, pace } => {
            let params = GenParams {
                users: *users,
                seed: *seed,
                anchor: now,
                pace: *pace,
                timezone: args.timezone,
            };
            (args.timezone, generate(&params))
        }
    };
    let config = SimConfig {
        sys_user: args.sys_user.clone(),
        sys_pwd: args.sys_pwd.clone(),
        timezone,
        clock,
    };
    let (users, jobs) = (workload.users.len(), workload.jobs.len());
    let handle = Simulator::new(config)
        .with_workload(workload)
        .start_on(listener)
        .await
        .context("cannot start the simulator")?;
    tracing::info!(
        url = %handle.url(),
        sys_user = %args.sys_user,
        // The simulator's own demo password, printed so the bot can be pointed at it.
        sys_pwd = %args.sys_pwd,
        timezone = %timezone,
        users,
        jobs,
        "CBS simulator listening"
    );
    shutdown.cancelled().await;
    tracing::info!("CBS simulator stopping");
    handle.shutdown().await;
    Ok(())
}
