//! A small world for end-to-end tests: the CBS simulator on loopback with a manual clock, a
//! poller over a sled store in a temporary directory, and a recording sink.
//!
//! Dropping a [`Poller`] and calling [`Harness::poller`] again reopens the store: that is how
//! tests restart the program.

use chrono::{DateTime, Utc};
use restorewatch::cbs::model::StatusClass;
use restorewatch::cbs::{CbsClient, CbsClientConfig};
use restorewatch::clock::ManualClock;
use restorewatch::config::{AlertSettings, PollSettings, SummarySettings, WatchEntry};
use restorewatch::event::{Event, EventKind};
use restorewatch::poller::{Poller, PollerConfig};
use restorewatch::schedule::CronSchedule;
use restorewatch::simulator::{SimConfig, SimHandle, SimJob, SimUser, Simulator};
use restorewatch::sink::{Delivered, Sink, SinkError};
use restorewatch::store::Store;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tempfile::TempDir;

/// Wall-clock time that follows tokio's clock from `base`: under `start_paused` it moves
/// exactly as far as tokio's timers do, so a program that sleeps until its next cron tick
/// (on tokio time) finds its clock at that tick, without anyone waiting for real.
#[derive(Clone, Debug)]
pub struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(base: DateTime<Utc>) -> Self {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl restorewatch::clock::Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        self.base + elapsed
    }
}

/// The name the poller gives the simulated backup server.
pub const SERVER: &str = "cbs-test";

/// A simulated job: `set` is the backup set id; `end: None` runs forever.
pub fn job(
    login: &str,
    set: &str,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    status: &str,
) -> SimJob {
    SimJob {
        backup_set_name: format!("set {set}"),
        size_bytes: 1024,
        destination_id: Some("dest-1".into()),
        ..SimJob::new(login, set, start, end, status)
    }
}

/// The simulator, its clock and a store directory that outlives pollers.
pub struct Harness {
    pub sim: SimHandle,
    pub clock: ManualClock,
    pub dir: TempDir,
    /// The watch list the poller is configured with.
    pub watch: Vec<WatchEntry>,
    pub max_concurrency: usize,
    pub retention_days: u32,
    /// `poll.max_catch_up_days` (7 here).
    pub max_catch_up_days: u32,
    pub baseline_first_cycle: bool,
    /// `cbs.max_requests_per_second` of the poller's client.
    pub max_requests_per_second: Option<std::num::NonZeroU32>,
    /// `[summary]` of every poller (default: summaries only with alerts).
    pub summary: SummarySettings,
    /// `[alerts]` of every poller (default: storms group after 5).
    pub alerts: AlertSettings,
    /// `cbs.down_after`; 1 here (one failed cycle opens an outage), as the older tests
    /// were written for.
    pub down_after: u32,
    /// `cbs.fetch_reports` of every poller (default: true, as in the config).
    pub fetch_reports: bool,
    /// Owners with a `[[route]]` channel of their own (default: none).
    pub routed_owners: std::collections::BTreeSet<String>,
}

impl Harness {
    /// `obm` and `shop` (owner `reseller-a`) polled once on 2024-06-26 at 09:00 (empty
    /// baselines), then set 1 of `obm` and set 7 of `shop` fail, and a second cycle at
    /// 09:30 queues their events: events for two channels once `reseller-a` is routed.
    pub async fn with_a_reseller_failing() -> (Harness, Poller) {
        use chrono::TimeZone;
        let at = |h, min| Utc.with_ymd_and_hms(2024, 6, 26, h, min, 0).unwrap();
        const FAILED: &str = "RESTORE_STOP_BY_ERROR";
        let mut h = Harness::start(&["obm"], at(9, 0)).await;
        h.add_user("shop", "reseller-a");
        let p = h.poller();
        p.cycle().await.unwrap();
        let mut owned = job("shop", "7", at(9, 1), Some(at(9, 2)), FAILED);
        owned.owner = "reseller-a".into();
        h.sim.add_job(owned);
        h.sim
            .add_job(job("obm", "1", at(9, 1), Some(at(9, 2)), FAILED));
        h.clock.set(at(9, 30));
        p.cycle().await.unwrap();
        (h, p)
    }

    /// The simulator with `users` (no owner), watched by every poller.
    pub async fn start(users: &[&'static str], now: DateTime<Utc>) -> Harness {
        let clock = ManualClock::new(now);
        let sim = Simulator::new(SimConfig::with_clock(Arc::new(clock.clone())))
            .start()
            .await
            .expect("simulator starts");
        let mut harness = Harness {
            sim,
            clock,
            dir: tempfile::tempdir().unwrap(),
            watch: Vec::new(),
            max_concurrency: 8,
            retention_days: 35,
            max_catch_up_days: 7,
            baseline_first_cycle: true,
            max_requests_per_second: None,
            summary: SummarySettings::default(),
            alerts: AlertSettings::default(),
            down_after: 1,
            fetch_reports: true,
            routed_owners: Default::default(),
        };
        for login in users {
            harness.add_user(login, "");
        }
        harness
    }

    /// Adds a user owned by `owner` (`""`: none) to the simulator and the watch list.
    pub fn add_user(&mut self, login: &str, owner: &str) {
        self.sim.add_user(SimUser {
            login: login.into(),
            owner: owner.into(),
            user_id: login.into(),
        });
        self.watch.push(WatchEntry {
            login: login.into(),
            owner: owner.into(),
        });
    }

    /// Crashes the program now: the store directory becomes a copy of its files as they
    /// are at this moment, which is what a SIGKILL leaves (what sled wrote is in the page
    /// cache and so in the copy; what it still buffers in memory is lost). Handles to the
    /// old store may live on; the next [`Harness::poller`] opens the copy, as a restart.
    pub fn crash(&mut self) {
        self.dir = crash_image(self.dir.path());
    }

    /// A poller over a freshly opened store: dropping it and calling this again is a restart.
    pub fn poller(&self) -> Poller {
        let client = CbsClient::new(CbsClientConfig {
            url: self.sim.url(),
            server_name: SERVER.into(),
            sys_user: self.sim.sys_user().into(),
            sys_pwd: self.sim.sys_pwd().to_owned().into(),
            timezone: self.sim.timezone(),
            request_timeout: std::time::Duration::from_secs(10),
            ca_cert: None,
        })
        .unwrap()
        .with_max_requests_per_second(self.max_requests_per_second)
        .with_max_concurrency(Some(self.max_concurrency));
        // Store::open waits for a previous handle's lock itself.
        let store = Store::open(self.dir.path()).unwrap();
        let config = PollerConfig {
            poll: PollSettings {
                schedule: CronSchedule::parse("*/5 * * * *", restorewatch::tz::Tz::UTC).unwrap(),
                midnight_grace: std::time::Duration::from_secs(6 * 3600),
                max_catch_up_days: self.max_catch_up_days,
                stuck_after: std::time::Duration::from_secs(12 * 3600),
                vanished_after: std::time::Duration::from_secs(30 * 60),
                alert_classes: [
                    StatusClass::PartialFailure,
                    StatusClass::Failure,
                    StatusClass::Unknown,
                ]
                .into(),
                baseline_first_cycle: self.baseline_first_cycle,
            },
            watch: self.watch.clone(),
            max_concurrency: self.max_concurrency,
            retention_days: self.retention_days,
            alerts: self.alerts,
            routed_owners: self.routed_owners.clone(),
            summary: self.summary.clone(),
            down_after: self.down_after,
            fetch_reports: self.fetch_reports,
        };
        Poller::new(client, store, config, Arc::new(self.clock.clone()))
    }
}

/// A copy of the store directory `dir` as its files are now: what a SIGKILL at this moment
/// leaves (see [`Harness::crash`]).
pub fn crash_image(dir: &std::path::Path) -> TempDir {
    let image = tempfile::tempdir().unwrap();
    copy_dir(dir, image.path());
    image
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A sink that keeps what it is given; fails from the `fail_after`-th event on.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Event>>,
    pub fail_after: Option<usize>,
    pub calls: AtomicUsize,
    /// Called with the call's number (1, 2, ...) as each delivery starts.
    pub on_call: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

impl Sink for Recorder {
    async fn deliver(&self, events: &[Event]) -> Result<Delivered, SinkError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(on_call) = &self.on_call {
            on_call(call);
        }
        let mut got = self.events.lock().unwrap();
        let mut accepted = Vec::new();
        for e in events {
            if self.fail_after.is_some_and(|k| got.len() >= k) {
                if accepted.is_empty() {
                    return Err(SinkError("sink is down".into()));
                }
                return Ok(accepted.into());
            }
            got.push(e.clone());
            accepted.push(e.id);
        }
        Ok(accepted.into())
    }
}

impl Recorder {
    /// The job alerts (finished in an alerting class, or stuck) it was given.
    pub fn alerts(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::JobFinished { .. } | EventKind::JobStuck { .. }
                )
            })
            .cloned()
            .collect()
    }
}

/// A console sink that writes nowhere (UTC, no role, servers unnamed): for tests that run
/// cycles and deliver but read only what the store or the metrics say.
pub fn console() -> restorewatch::sink::ConsoleSink {
    restorewatch::sink::ConsoleSink::new(
        restorewatch::render::RenderOptions {
            mention_role: None,
            timezone: restorewatch::tz::Tz::UTC,
            servers_named: false,
        },
        Box::new(std::io::sink()),
    )
}
