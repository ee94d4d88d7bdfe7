//! `restorewatch demo`: the whole loop on a fresh machine, with no CBS and no Discord.
//!
//! Starts the CBS simulator in-process with a compressed generated workload (jobs start
//! within half a minute and run for seconds), keeps state in a temporary directory, polls
//! every [`DEMO_POLL_EVERY_SECS`] seconds and prints every event as the card Discord would
//! show. It stops by itself once every simulated job has ended and its news was shown, or
//! when the time limit or Ctrl-C comes first, and closes with the day's digest as the
//! digest schedule would post it (not after Ctrl-C).
//!
//! The workload is made to show the signal rules too: one set fails three times in a row
//! (the third alert escalates, with the job report's log lines), and every set then fails
//! in the same cycle (one grouped storm card).

use crate::app::App;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{
    CbsSettings, DigestSettings, PollSettings, Settings, StateSettings, WatchEntry,
    DEFAULT_ALERT_CLASSES,
};
use crate::render::RenderOptions;
use crate::schedule::CronSchedule;
use crate::simulator::{generate, GenParams, Pace, SimConfig, SimJob, Simulator};
use crate::sink::{drain, ConsoleSink};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Seconds between demo poll cycles.
pub const DEMO_POLL_EVERY_SECS: u32 = 2;

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Upper bound on the demo's length.
    pub max_duration: Duration,
    pub users: usize,
    pub seed: u64,
}

/// What the demo did, for its closing line and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoReport {
    pub cycles: u32,
    pub jobs_recorded: usize,
    pub alerts: u32,
    pub events_delivered: usize,
    /// Every simulated job had ended and been seen before the demo stopped.
    pub completed: bool,
}

/// After the generated jobs: the first job's set fails twice more, in cycles of their own
/// (an escalated repeat), then every set fails at the same second (a grouped storm).
fn add_repeat_and_storm(jobs: &mut Vec<SimJob>, anchor: DateTime<Utc>) {
    let failed = |template: &SimJob, start: i64, end: i64| SimJob {
        start: anchor + chrono::Duration::seconds(start),
        end: Some(anchor + chrono::Duration::seconds(end)),
        final_status: "RESTORE_STOP_BY_ERROR".to_owned(),
        ..template.clone()
    };
    let mut extra = Vec::new();
    if let Some(first) = jobs.first() {
        extra.push(failed(first, 52, 54));
        extra.push(failed(first, 57, 58));
    }
    let mut sets = std::collections::HashSet::new();
    for job in jobs.iter() {
        if sets.insert((job.login.clone(), job.backup_set_id.clone())) {
            extra.push(failed(job, 60, 64));
        }
    }
    jobs.extend(extra);
}

/// Runs the demo, printing cards to `out`, until done, `max_duration`, or `shutdown`.
pub async fn run_demo(
    options: DemoOptions,
    out: Box<dyn Write + Send>,
    shutdown: CancellationToken,
) -> anyhow::Result<DemoReport> {
    let clock: SharedClock = Arc::new(SystemClock);
    let tz = crate::tz::Tz::UTC;
    let anchor = clock.now();
    let mut workload = generate(&GenParams {
        users: options.users,
        seed: options.seed,
        anchor,
        pace: Pace::Compressed,
        timezone: tz,
    });
    add_repeat_and_storm(&mut workload.jobs, anchor);
    let last_end = workload.jobs.iter().filter_map(|j| j.end).max();
    let watch = workload
        .users
        .iter()
        .map(|u| WatchEntry {
            login: u.login.clone(),
            owner: u.owner.clone(),
        })
        .collect();
    let sim_config = SimConfig {
        timezone: tz,
        ..SimConfig::with_clock(clock.clone())
    };
    let (sys_user, sys_pwd) = (sim_config.sys_user.clone(), sim_config.sys_pwd.clone());
    let sim = Simulator::new(sim_config)
        .with_workload(workload)
        .start()
        .await
        .context("starting the CBS simulator")?;
    let state = tempfile::tempdir().context("creating a temporary state directory")?;
    let every = format!("*/{DEMO_POLL_EVERY_SECS} * * * * *");
    let settings = Settings {
        other_servers: Vec::new(),
        cbs: CbsSettings {
            url: sim.url(),
            server_name: "demo-cbs".into(),
            sys_user,
            sys_pwd: sys_pwd.into(),
            timezone: tz,
            request_timeout: Duration::from_secs(5),
            max_concurrency: 8,
            max_requests_per_second: None,
            down_after: 2,
            fetch_reports: true,
            ca_cert: None,
        },
        watch,
        discover: Default::default(),
        poll: PollSettings {
            schedule: CronSchedule::parse(&every, tz)?,
            midnight_grace: Duration::from_secs(6 * 3600),
            max_catch_up_days: 7,
            stuck_after: Duration::from_secs(12 * 3600),
            vanished_after: std::time::Duration::from_secs(30 * 60),
            alert_classes: DEFAULT_ALERT_CLASSES.into(),
            baseline_first_cycle: true,
        },
        state: StateSettings {
            path: state.path().to_owned(),
            retention_days: 35,
        },
        discord: None,
        digest: DigestSettings {
            schedule: CronSchedule::parse("0 8 * * *", tz)?,
            max_catch_up_days: 3,
        },
        server: Default::default(),
        heartbeat: Default::default(),
        summary: Default::default(),
        alerts: Default::default(),
    };
    let mut out = out;
    writeln!(
        out,
        "restorewatch demo: CBS simulator at {} with {} users; polling every {DEMO_POLL_EVERY_SECS}s \
         (state in {}). Alerts and summaries appear below as they would in Discord.\n",
        sim.url(),
        options.users,
        state.path().display()
    )?;
    let sink = ConsoleSink::new(
        RenderOptions {
            mention_role: None,
            timezone: tz,
            servers_named: false,
        },
        out,
    );
    let app = App::build(settings, clock.clone()).await?;
    let deadline = tokio::time::Instant::now() + options.max_duration;
    let mut report = DemoReport::default();
    let mut cancelled = false;
    loop {
        let now = clock.now();
        let Some(next) = app.settings.poll.schedule.next_after(now) else {
            break;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => {
                cancelled = true;
                break;
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep(wait) => {}
        }
        let cycle_start = clock.now();
        let (cycle, drained) = app.cycle_and_deliver(&sink).await?;
        report.cycles += 1;
        report.alerts += cycle.summary.alerts;
        report.events_delivered += drained.delivered;
        // Done once a cycle that began after the last job ended has been shown.
        if last_end.is_none_or(|end| cycle_start > end) && drained.pending == 0 {
            report.completed = true;
            break;
        }
    }
    if !cancelled {
        let today = clock.now().with_timezone(&tz).date_naive();
        app.queue_digest(today)?;
        let drained = drain(&app.store, &sink)
            .await
            .context("showing the digest")?;
        report.events_delivered += drained.delivered;
    }
    report.jobs_recorded = app.store.job_count()?;
    app.store.flush()?;
    sim.shutdown().await;
    Ok(report)
}
