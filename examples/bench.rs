//! Benchmarks behind the performance statements in BENCHMARKS.md (issue 12). Each figure is
//! a ratio to an ideal or to a floor measured side by side in the same run, and each
//! section checks its request and event counts exactly:
//!
//! - `cycle`: a poll cycle at 1,000 and 10,000 users, 20 ms of simulated latency, C = 8
//!   and 32, against the ideal `ceil(requests / C) × latency`; the requests the simulator
//!   counts must be the minimum (one per user).
//! - `cpu`: the client's process CPU per request in a cycle against a floor, a bare
//!   `reqwest` client POSTing the same bodies to the same simulator (a separate
//!   `restorewatch simulate` process) and decoding them into `serde_json::Value`.
//! - `memory`: peak RSS of the built binary's `once` during a 10,000-user cycle, and the
//!   idle RSS of `run` watching the same 10,000 users (discovered), console sink.
//! - `store_size`: bytes on disk per retained job over a simulated year of 1,000 users
//!   with 3 restores each a day, and whether the size stops growing past retention.
//! - `delivery`: draining a backlog of 1,000 and 10,000 events through the real drain
//!   (outbox cursor, acknowledgement, flush), time per event and store work per event.
//! - `steady_state`: a cycle that finds nothing new against the cycle that recorded it.
//! - `discovery`: 10,000 users listed by `2/ListUsers.do` in one call.
//! - `smoke`: every section at a small size, checking counts only (no timing), for CI.
//!
//! Run (BENCHMARKS.md): `cargo build --release --locked --bin restorewatch --example bench
//! && target/release/examples/bench all` (several minutes). `cpu` and `memory` start the
//! `restorewatch` binary beside this one (or `$RESTOREWATCH_BIN`). `--runs N` sets how many
//! runs each median is over (default 3); `--year-users N` and `--year-days N` shrink
//! `store_size`'s simulated year (1,000 users, 365 days) for a quicker look.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use restorewatch::cbs::{CbsClient, CbsClientConfig};
use restorewatch::clock::{Clock, ManualClock, SharedClock, SystemClock};
use restorewatch::config::{PollSettings, WatchEntry, DEFAULT_ALERT_CLASSES};
use restorewatch::discover::{DiscoverSettings, Discovery};
use restorewatch::event::{Event, EventKind};
use restorewatch::poller::{dates_to_poll, Poller, PollerConfig};
use restorewatch::render::RenderOptions;
use restorewatch::schedule::CronSchedule;
use restorewatch::simulator::{Faults, SimConfig, SimHandle, SimJob, SimUser, Simulator};
use restorewatch::sink::{drain, ConsoleSink, Delivered, Sink, SinkError, DRAIN_BATCH_EVENTS};
use restorewatch::store::Store;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// Sizes of one run of the benchmark: the full one, or the CI smoke case.
#[derive(Clone, Copy)]
struct Scale {
    smoke: bool,
    runs: usize,
    cycle_users: &'static [usize],
    cycle_latency_ms: u64,
    cpu_users: usize,
    memory_users: usize,
    year_users: usize,
    year_days: u32,
    retention_days: u32,
    delivery_events: [usize; 2],
    discovery_users: usize,
}

const FULL: Scale = Scale {
    smoke: false,
    runs: 3,
    cycle_users: &[1_000, 10_000],
    cycle_latency_ms: 20,
    cpu_users: 2_000,
    memory_users: 10_000,
    year_users: 1_000,
    year_days: 365,
    retention_days: 35,
    delivery_events: [1_000, 10_000],
    discovery_users: 10_000,
};

const SMOKE: Scale = Scale {
    smoke: true,
    runs: 1,
    cycle_users: &[40],
    cycle_latency_ms: 2,
    cpu_users: 40,
    memory_users: 100,
    year_users: 10,
    year_days: 12,
    retention_days: 5,
    delivery_events: [100, 600],
    discovery_users: 500,
};

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap()
        + Duration::days(day.into())
        + Duration::hours(hour.into())
}

fn login(i: usize) -> String {
    format!("user{i:05}")
}

fn job(user: usize, set: usize, start: DateTime<Utc>, status: &str) -> SimJob {
    SimJob {
        size_bytes: 1 << 30,
        client_version: "10.1.4.0".into(),
        destination_id: Some("1700000000000".into()),
        ..SimJob::new(
            &login(user),
            &set.to_string(),
            start,
            Some(start + Duration::minutes(10)),
            status,
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// User plus system CPU time of this process so far.
fn process_cpu() -> std::time::Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn client_for(url: reqwest::Url, sys_user: &str, sys_pwd: &str) -> CbsClient {
    CbsClient::new(CbsClientConfig {
        url,
        server_name: "bench".into(),
        sys_user: sys_user.into(),
        sys_pwd: sys_pwd.to_owned().into(),
        timezone: restorewatch::tz::Tz::UTC,
        request_timeout: std::time::Duration::from_secs(60),
        ca_cert: None,
    })
    .expect("client")
}

fn poller_config(watch: Vec<WatchEntry>, concurrency: usize, retention_days: u32) -> PollerConfig {
    PollerConfig {
        poll: PollSettings {
            schedule: CronSchedule::parse("*/5 * * * *", restorewatch::tz::Tz::UTC)
                .expect("schedule"),
            // No grace window: a cycle asks for today only, so the minimum is one request
            // per user.
            midnight_grace: std::time::Duration::ZERO,
            max_catch_up_days: 3,
            stuck_after: std::time::Duration::from_secs(12 * 3600),
            vanished_after: std::time::Duration::from_secs(30 * 60),
            alert_classes: DEFAULT_ALERT_CLASSES.into(),
            baseline_first_cycle: true,
        },
        watch,
        max_concurrency: concurrency,
        retention_days,
        alerts: Default::default(),
        routed_owners: Default::default(),
        summary: Default::default(),
        down_after: 2,
        fetch_reports: false,
    }
}

/// The users of [`rig`], as watch entries.
fn watch_all(users: usize) -> Vec<WatchEntry> {
    (0..users)
        .map(|i| WatchEntry {
            login: login(i),
            owner: String::new(),
        })
        .collect()
}

struct Rig {
    sim: SimHandle,
    clock: ManualClock,
    _dir: tempfile::TempDir,
    poller: Poller,
}

/// The in-process simulator with `users` users, and a poller watching all of them.
async fn rig(users: usize, concurrency: usize, retention_days: u32, now: DateTime<Utc>) -> Rig {
    let clock = ManualClock::new(now);
    let sim = sim_on_own_runtime(SimConfig::with_clock(Arc::new(clock.clone())));
    for i in 0..users {
        sim.add_user(SimUser {
            login: login(i),
            owner: String::new(),
            user_id: login(i),
        });
    }
    let client = client_for(sim.url(), sim.sys_user(), sim.sys_pwd());
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let config = poller_config(watch_all(users), concurrency, retention_days);
    let poller = Poller::new(client, store, config, Arc::new(clock.clone()));
    Rig {
        sim,
        clock,
        _dir: dir,
        poller,
    }
}

/// Starts the simulator on a runtime of its own, one thread, as a CBS is a process of its
/// own: its timers and replies do not wait behind the poller's work on the bench's runtime,
/// nor the poller's behind them. It serves until the handle's last clone is dropped.
fn sim_on_own_runtime(config: SimConfig) -> SimHandle {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("simulator runtime");
        runtime.block_on(async move {
            let sim = Simulator::new(config)
                .start()
                .await
                .expect("simulator starts");
            let stopped = sim.shutdown_token();
            tx.send(sim).expect("handle sent");
            stopped.cancelled().await;
        });
    });
    rx.recv().expect("simulator started")
}

/// Drops what a cycle queued, as a sink that takes everything would.
fn ack_all(store: &Store) {
    let ids: Vec<u64> = store
        .pending_events(usize::MAX)
        .expect("outbox")
        .iter()
        .map(|e| e.id)
        .collect();
    store.ack(&ids).expect("ack");
    store.flush().expect("flush");
}

/// Cycle time against `ceil(requests / C) × latency`, with the request count checked at
/// the simulator.
async fn cycle(scale: Scale) {
    let latency = scale.cycle_latency_ms;
    println!("## Cycle time: {latency} ms simulated latency per request\n");
    println!(
        "First cycle records one finished job per user; the median is over {} later cycles \
         that see the same jobs again.\n",
        scale.runs
    );
    println!(
        "The floor is a bare reqwest client sending the same requests to the same simulator, \
         C at a time, once: what the simulator and the machine cost before restorewatch does \
         anything.\n"
    );
    println!("| users | C | requests (simulator) | minimum | peak in flight | ideal | floor (/ ideal) | first cycle (/ ideal) | median cycle | median / ideal | median / floor |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &users in scale.cycle_users {
        for c in [8usize, 32] {
            let r = rig(users, c, 35, at(0, 12)).await;
            r.sim.set_jobs(
                (0..users)
                    .map(|u| job(u, 1, at(0, 2), "RESTORE_STOP_SUCCESS"))
                    .collect(),
            );
            r.sim.set_faults(Faults {
                latency: std::time::Duration::from_millis(latency),
                ..Faults::default()
            });
            let ideal = (users.div_ceil(c) as u64 * latency) as f64;
            let mut times = Vec::new();
            let mut first = 0.0;
            let mut requests = Vec::new();
            for run in 0..=scale.runs {
                r.clock.set(at(0, 12) + Duration::minutes(run as i64));
                r.sim.reset_stats();
                let t = Instant::now();
                let report = r.poller.cycle().await.expect("cycle");
                let took = ms(t.elapsed());
                assert!(report.ok(), "{:?}", report.summary.errors.first());
                assert_eq!(report.summary.requests as usize, users);
                requests.push(r.sim.requests_served());
                assert!(r.sim.max_in_flight() <= c, "more than C in flight");
                ack_all(r.poller.store());
                if run == 0 {
                    first = took;
                } else {
                    times.push(took);
                }
            }
            assert!(
                requests.iter().all(|&n| n == users as u64),
                "requests per cycle at the simulator: {requests:?}, minimum {users}"
            );
            let peak = r.sim.max_in_flight();
            let bodies = cycle_bodies(r.poller.store(), &watch_all(users), r.clock.now());
            assert_eq!(bodies.len(), users);
            let url = r
                .sim
                .url()
                .join("obs/api/json/ListRestoreJobStatus.do")
                .expect("url");
            let t = Instant::now();
            floor(&reqwest::Client::new(), &url, &bodies, c).await;
            let bare = ms(t.elapsed());
            let med = median(times);
            println!(
                "| {users} | {c} | {} | {users} | {peak} | {ideal:.0} ms | {bare:.0} ms ({:.2}) | {first:.0} ms ({:.2}) | {med:.0} ms | **{:.2}** | {:.2} |",
                requests[1],
                bare / ideal,
                first / ideal,
                med / ideal,
                med / bare
            );
        }
    }
    println!();
}

/// The `restorewatch` binary beside this example (or `$RESTOREWATCH_BIN`).
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RESTOREWATCH_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("restorewatch");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build --release --bin restorewatch) or set RESTOREWATCH_BIN",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `restorewatch simulate --users N --timezone ZONE` as a process of its own; killed when
/// dropped.
struct SimProcess {
    child: Child,
    url: reqwest::Url,
}

impl SimProcess {
    fn start(users: usize, zone: &str) -> SimProcess {
        let port = free_port();
        let child = Command::new(binary())
            .env_remove("RESTOREWATCH_BIN")
            .args([
                "simulate",
                "--users",
                &users.to_string(),
                "--timezone",
                zone,
            ])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RESTOREWATCH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restorewatch simulate starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "simulator not listening"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        SimProcess {
            child,
            url: format!("http://127.0.0.1:{port}/").parse().expect("url"),
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bodies of a cycle's requests, as the poller would send them now.
fn cycle_bodies(store: &Store, users: &[WatchEntry], now: DateTime<Utc>) -> Vec<String> {
    let mut bodies = Vec::new();
    for user in users {
        let state = store.user_state(&user.login).expect("user state");
        let running = store.running_dates("bench", &user.login).expect("running");
        let dates = dates_to_poll(
            now,
            restorewatch::tz::Tz::UTC,
            std::time::Duration::ZERO,
            3,
            state.last_success,
            &running,
        );
        for date in dates {
            bodies.push(
                serde_json::json!({
                    "SysUser": restorewatch::simulator::DEFAULT_SYS_USER,
                    "SysPwd": restorewatch::simulator::DEFAULT_SYS_PWD,
                    "Owner": user.owner,
                    "LoginName": user.login,
                    "RestoreDate": date.format("%Y-%m-%d").to_string(),
                })
                .to_string(),
            );
        }
    }
    bodies
}

/// The floor: the same bodies POSTed by a bare reqwest client, `c` at a time, each reply
/// decoded into a `serde_json::Value`. Returns the jobs seen.
async fn floor(http: &reqwest::Client, url: &reqwest::Url, bodies: &[String], c: usize) -> usize {
    use futures_util::StreamExt;
    futures_util::stream::iter(bodies.iter().cloned())
        .map(|body| async move {
            let reply = http
                .post(url.clone())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("floor request");
            assert!(reply.status().is_success());
            let bytes = reply.bytes().await.expect("floor body");
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            value["Data"].as_array().map_or(0, Vec::len)
        })
        .buffer_unordered(c)
        .fold(0, |n, jobs| async move { n + jobs })
        .await
}

/// Client CPU per request: a steady cycle against the floor, run alternately.
async fn cpu(scale: Scale) {
    const C: usize = 32;
    let users = scale.cpu_users;
    let sim = SimProcess::start(users, "UTC");
    let client = client_for(
        sim.url.clone(),
        restorewatch::simulator::DEFAULT_SYS_USER,
        restorewatch::simulator::DEFAULT_SYS_PWD,
    );
    let watch: Vec<WatchEntry> = client
        .list_users("")
        .await
        .expect("list users")
        .into_iter()
        .map(|u| WatchEntry {
            login: u.login,
            owner: u.owner,
        })
        .collect();
    assert_eq!(watch.len(), users);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let clock: SharedClock = Arc::new(SystemClock);
    let poller = Poller::new(
        client,
        store.clone(),
        poller_config(watch.clone(), C, 35),
        clock.clone(),
    );
    let t = process_cpu();
    let first = poller.cycle().await.expect("first cycle");
    let first_cpu = process_cpu() - t;
    assert!(first.ok(), "{:?}", first.summary.errors.first());
    let first_per = ms(first_cpu) / f64::from(first.summary.requests);
    ack_all(&store);
    let url: reqwest::Url = sim
        .url
        .join("obs/api/json/ListRestoreJobStatus.do")
        .expect("url");
    let http = reqwest::Client::new();
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    let mut requests = 0;
    for _ in 0..scale.runs.max(3) * 3 {
        let bodies = cycle_bodies(&store, &watch, clock.now());
        let t = process_cpu();
        floor(&http, &url, &bodies, C).await;
        bare.push(ms(process_cpu() - t) / bodies.len() as f64);
        let t = process_cpu();
        let report = poller.cycle().await.expect("cycle");
        let used = process_cpu() - t;
        assert!(report.ok(), "{:?}", report.summary.errors.first());
        assert_eq!(
            report.summary.requests as usize,
            bodies.len(),
            "same requests"
        );
        requests = bodies.len();
        ours.push(ms(used) / f64::from(report.summary.requests));
        ack_all(&store);
    }
    let (ours, bare) = (median(ours), median(bare));
    println!("## Client CPU per request: {users} users, C = {C}, no latency\n");
    println!(
        "Process CPU (getrusage, user + system) over a cycle; the simulator runs as its own \
         process. Median of {} alternating runs, {requests} requests each.\n",
        scale.runs.max(3) * 3
    );
    println!("| client | CPU per request | / floor |\n|---|---:|---:|");
    println!(
        "| floor: bare reqwest + `serde_json::Value` | {:.3} ms | 1.00 |",
        bare
    );
    println!(
        "| restorewatch cycle (steady: jobs known) | {:.3} ms | **{:.2}** |",
        ours,
        ours / bare
    );
    println!(
        "| restorewatch first cycle (records every job) | {:.3} ms | {:.2} |\n",
        first_per,
        first_per / bare
    );
}

/// A zone where it is now between 02:00 and 03:00, inside the default six-hour midnight
/// grace, as its IANA name and offset. The simulator's workload and the poller's dates
/// follow the wall clock in the server's zone, and within the grace a cycle asks for
/// yesterday too (two requests per user): in such a zone the memory runs always measure
/// that busier case, whatever the time of day the bench runs at.
fn zone_in_the_grace() -> (String, chrono::FixedOffset) {
    use chrono::Timelike;
    let utc_hour = Utc::now().hour() as i32;
    // Hours east of UTC that make it 02:xx there, within the zones that exist (-12..=14).
    let east = match (2 - utc_hour).rem_euclid(24) {
        h if h > 14 => h - 24,
        h => h,
    };
    // `Etc/GMT-N` is N hours east of UTC (the POSIX sign).
    let name = match east {
        0 => "Etc/GMT".to_owned(),
        e if e > 0 => format!("Etc/GMT-{e}"),
        e => format!("Etc/GMT+{}", -e),
    };
    (
        name,
        chrono::FixedOffset::east_opt(east * 3600).expect("an offset within a day"),
    )
}

/// The config `once` and `run` use against a standalone simulator in `zone`: every user
/// discovered, console sink.
/// `run` polls once, `lead` from now (then a day later): what follows is idle.
fn memory_config(
    dir: &Path,
    url: &reqwest::Url,
    (zone, offset): &(String, chrono::FixedOffset),
    lead: std::time::Duration,
) -> PathBuf {
    use chrono::Timelike;
    let path = dir.join("restorewatch.toml");
    // The schedule is read in the server's zone.
    let tick = (Utc::now() + lead).with_timezone(offset);
    let text = format!(
        r#"[cbs]
url = "{url}"
server_name = "bench"
sys_user = "{user}"
max_concurrency = 32
timezone = "{zone}"

[discover]
enabled = true

[poll]
schedule = "{second} {minute} {hour} * * *"

[state]
path = "{state}"
"#,
        user = restorewatch::simulator::DEFAULT_SYS_USER,
        state = dir.join("state").display(),
        second = tick.second(),
        minute = tick.minute(),
        hour = tick.hour(),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

fn restorewatch(config: &Path, command: &str) -> Command {
    let mut cmd = Command::new(binary());
    // The bench's own knob: restorewatch refuses a `RESTOREWATCH_*` variable it does not read.
    cmd.env_remove("RESTOREWATCH_BIN");
    cmd.arg("--config")
        .arg(config)
        .arg(command)
        .env(
            "RESTOREWATCH_CBS_SYS_PWD",
            restorewatch::simulator::DEFAULT_SYS_PWD,
        )
        .env("RESTOREWATCH_LOG", "info")
        .env("RESTOREWATCH_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null());
    cmd
}

/// Runs `once` and answers its peak RSS (KiB), from the kernel's accounting at exit.
// The child is reaped by `wait4` (which also answers its resource usage), not `wait`.
#[allow(clippy::zombie_processes)]
fn once_peak_kib(config: &Path) -> (i64, std::time::Duration) {
    let t = Instant::now();
    let child = restorewatch(config, "once")
        .stderr(Stdio::null())
        .spawn()
        .expect("once starts");
    let pid = child.id() as libc::pid_t;
    // SAFETY: waits for our own child and writes only into the zeroed structs given.
    let (status, usage) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut usage), pid);
        (status, usage)
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "once failed (status {status})"
    );
    (usage.ru_maxrss, t.elapsed())
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Starts `run`, waits for its first poll cycle to finish, then reads its resident memory
/// while it waits for the next tick, a day away. Answers (idle RSS, peak RSS) in KiB.
fn run_idle_kib(config: &Path, users: usize) -> (u64, u64) {
    let mut child = restorewatch(config, "run")
        .stderr(Stdio::piped())
        .spawn()
        .expect("run starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("poll cycle done") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(180))
        .expect("a poll cycle within 3 minutes");
    assert!(line.contains(&format!("users={users}")), "{line}");
    // Idle: the cycle and its delivery are done, the next tick is a day away. sled's
    // clean-up and the reopen once the store settles take some seconds more: the figure
    // is read once RSS has held within 256 KiB for 10 s (at most 2 minutes).
    let pid = child.id();
    let mut seen = std::collections::VecDeque::new();
    let started = Instant::now();
    let idle = loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        seen.push_back(proc_status_kib(pid, "VmRSS:"));
        if seen.len() > 10 {
            seen.pop_front();
        }
        let (low, high) = (seen.iter().min(), seen.iter().max());
        let steady = seen.len() == 10 && high.zip(low).is_some_and(|(h, l)| h - l <= 256);
        if steady || started.elapsed() > std::time::Duration::from_secs(120) {
            break *seen.back().expect("a sample");
        }
    };
    let peak = proc_status_kib(pid, "VmHWM:");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    (idle, peak)
}

/// Peak RSS of `once` and idle RSS of `run`, the built binary against `simulate`.
async fn memory(scale: Scale) {
    let users = scale.memory_users;
    let zone = zone_in_the_grace();
    let sim = SimProcess::start(users, &zone.0);
    let lead = std::time::Duration::from_secs(if scale.smoke { 3 } else { 10 });
    // Each run on a fresh store: (first peak, its wall, steady peak, its wall, idle, run peak).
    let mut runs = Vec::new();
    let mut last_store = None;
    for _ in 0..scale.runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = memory_config(dir.path(), &sim.url, &zone, lead);
        let (first, first_t) = once_peak_kib(&config);
        let (steady, steady_t) = once_peak_kib(&config);
        // `run` must start before its one tick: write the config again with the tick ahead.
        let config = memory_config(dir.path(), &sim.url, &zone, lead);
        let (idle, run_peak) = run_idle_kib(&config, users);
        runs.push([
            first as f64 / 1024.0,
            first_t.as_secs_f64(),
            steady as f64 / 1024.0,
            steady_t.as_secs_f64(),
            idle as f64 / 1024.0,
            run_peak as f64 / 1024.0,
        ]);
        last_store = Some(dir);
    }
    let med = |i: usize| median(runs.iter().map(|r| r[i]).collect());
    let all = |i: usize| {
        runs.iter()
            .map(|r| format!("{:.1}", r[i]))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "## Memory: the built binary, {users} discovered users, `restorewatch simulate --users {users} --timezone {}`\n",
        zone.0
    );
    println!(
        "sled cache_capacity: {} KiB (store::CACHE_CAPACITY_BYTES); C = 32; console sink. \
         The server's zone is one where it is 02:xx now, inside the midnight grace: two \
         requests per user. Median of {} runs, each on a fresh store (every run in MiB beside \
         it).\n",
        restorewatch::store::CACHE_CAPACITY_BYTES >> 10,
        runs.len()
    );
    println!("| case | wall | RSS | runs | target | RSS / target |\n|---|---:|---:|---|---:|---:|");
    println!(
        "| `once`, first cycle (records every job), peak | {:.1} s | {:.1} MiB | {} | 48 MiB | **{:.2}** |",
        med(1),
        med(0),
        all(0),
        med(0) / 48.0
    );
    println!(
        "| `once`, next cycle (jobs known), peak | {:.1} s | {:.1} MiB | {} | 48 MiB | **{:.2}** |",
        med(3),
        med(2),
        all(2),
        med(2) / 48.0
    );
    println!(
        "| `run`, idle after a cycle | | {:.1} MiB | {} | 20 MiB | **{:.2}** |",
        med(4),
        all(4),
        med(4) / 20.0
    );
    println!(
        "| `run`, peak over start and that cycle | | {:.1} MiB | {} | | |\n",
        med(5),
        all(5)
    );
    let store = last_store.expect("at least one run");
    let state = store.path().join("state");
    println!(
        "What sled keeps after one read of every key of that store (the last run's), by \
         `cache_capacity`: anonymous memory of a process of its own (`bench store-probe`), \
         after the read and a trim.\n"
    );
    println!("| cache_capacity | keys | after open | after the read | kept by the read |\n|---:|---:|---:|---:|---:|");
    for cache in [64 << 10, restorewatch::store::CACHE_CAPACITY_BYTES, 8 << 20] {
        let out = Command::new(std::env::current_exe().expect("bench path"))
            .arg("store-probe")
            .arg(&state)
            .arg(cache.to_string())
            .output()
            .expect("store-probe runs");
        assert!(out.status.success(), "store-probe: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let n: Vec<u64> = text
            .split_whitespace()
            .map(|w| w.parse().expect("a number"))
            .collect();
        let [keys, opened, read] = n[..] else {
            panic!("store-probe printed {text:?}")
        };
        println!(
            "| {} KiB | {keys} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            cache >> 10,
            opened as f64 / 1024.0,
            read as f64 / 1024.0,
            read.saturating_sub(opened) as f64 / 1024.0
        );
    }
    println!();
}

/// `bench store-probe DIR CACHE_BYTES`: opens the store in DIR as restorewatch does, with
/// sled's `cache_capacity` at CACHE_BYTES, reads every key of every tree once, and prints
/// the key count and the process's anonymous memory (KiB) after the open and after the
/// read (each after a trim). Its own process: what the read leaves is all it holds.
fn store_probe(dir: &Path, cache: u64) {
    let anon = || {
        restorewatch::memory::release_free_memory();
        proc_status_kib(std::process::id(), "RssAnon:")
    };
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(cache)
        .use_compression(true)
        .open()
        .expect("the store opens");
    let opened = anon();
    let mut keys = 0u64;
    for name in db.tree_names() {
        for kv in db.open_tree(name).expect("tree").iter() {
            kv.expect("read");
            keys += 1;
        }
    }
    println!("{keys} {opened} {}", anon());
}

/// Bytes of keys and values in the store's trees: the live data, uncompressed.
fn live_bytes(store: &Store) -> u64 {
    [
        "jobs",
        "by_day",
        "running",
        "outbox",
        "users",
        "watch",
        "meta",
        "vanishing",
    ]
    .iter()
    .map(|name| {
        store
            .tree(name)
            .expect("tree")
            .iter()
            .map(|kv| {
                let (k, v) = kv.expect("read");
                (k.len() + v.len()) as u64
            })
            .sum::<u64>()
    })
    .sum()
}

/// Bytes per retained job over a simulated year, one cycle a day.
async fn store_size(scale: Scale) {
    const JOBS_PER_USER_DAY: usize = 3;
    let (users, days, retention) = (scale.year_users, scale.year_days, scale.retention_days);
    let r = rig(users, 32, retention, at(0, 1)).await;
    r.poller.cycle().await.expect("baseline cycle");
    let mut samples: Vec<(u32, usize, u64)> = Vec::new();
    // Live bytes (keys + values of every tree) on the days the table shows.
    let mut live: Vec<(u32, u64)> = Vec::new();
    let t = Instant::now();
    for day in 0..days {
        // Only the day's jobs in the simulator: the store must not rely on the server
        // forgetting old jobs.
        let mut jobs = Vec::with_capacity(users * JOBS_PER_USER_DAY);
        for u in 0..users {
            for k in 0..JOBS_PER_USER_DAY {
                let status = if (u + k + day as usize).is_multiple_of(10) {
                    "RESTORE_STOP_BY_ERROR"
                } else {
                    "RESTORE_STOP_SUCCESS"
                };
                jobs.push(job(u, k, at(day, 2 + 6 * k as u32), status));
            }
        }
        r.sim.set_jobs(jobs);
        r.clock.set(at(day, 20));
        let report = r.poller.cycle().await.expect("cycle");
        assert!(report.ok());
        // Today, and yesterday since the last success was then (one cycle a day).
        assert!((users..=2 * users).contains(&(report.summary.requests as usize)));
        let store = r.poller.store();
        ack_all(store);
        // Counting records is a scan of the tree: only on the days the table shows.
        let shown = (day + 1).is_multiple_of((days / 12).max(1)) || day + 1 == days;
        let records = if shown { store.job_count().unwrap() } else { 0 };
        if shown {
            live.push((day + 1, live_bytes(store)));
        }
        samples.push((day + 1, records, store.size_on_disk().expect("size")));
    }
    let took = t.elapsed();
    let retained = |n: usize| n as f64;
    println!(
        "## Store size: {users} users × {JOBS_PER_USER_DAY} restores a day, retention {retention} days, {days} simulated days\n"
    );
    println!(
        "One cycle a day on a manual clock, every queued event acknowledged ({:.0} s).\n",
        took.as_secs_f64()
    );
    println!(
        "| day | job records | bytes on disk | bytes per job | live bytes (keys + values) | live per job |\n|---:|---:|---:|---:|---:|---:|"
    );
    for s in samples.iter().filter(|s| s.1 > 0) {
        let l = live.iter().find(|l| l.0 == s.0).map_or(0, |l| l.1);
        println!(
            "| {} | {} | {} | {:.0} | {} | {:.0} |",
            s.0,
            s.1,
            s.2,
            s.2 as f64 / retained(s.1),
            l,
            l as f64 / retained(s.1)
        );
    }
    // Past retention: records are at their bound; the bytes must stop growing.
    let settled = (2 * retention).min(days) as usize;
    let window = |from: usize, to: usize| samples[from.min(to)..to].iter().map(|s| s.2).max();
    let mid = window(settled - 1, (settled + days as usize) / 2).unwrap_or(0);
    let late = window((settled + days as usize) / 2, days as usize).unwrap_or(mid);
    let last = samples.last().expect("a day");
    let bound = (retention as usize + 2) * users * JOBS_PER_USER_DAY;
    assert!(
        last.1 <= bound,
        "records past retention: {} > {bound}",
        last.1
    );
    let per_job: Vec<f64> = samples[settled - 1..]
        .iter()
        .filter(|s| s.1 > 0)
        .map(|s| s.2 as f64 / retained(s.1))
        .collect();
    println!(
        "\nsteady state (days {settled}–{days}): median **{:.0} bytes per job** (target ≤ 1024), \
         {} records at the end (bound {bound}); largest size in the second half / first half \
         after retention: **{:.2}**\n",
        median(per_job),
        last.1,
        late as f64 / mid.max(1) as f64
    );
}

/// Takes every event it is offered, or none (a channel that refuses us).
struct CountingSink {
    accept: bool,
}

impl Sink for CountingSink {
    async fn deliver(&self, events: &[Event]) -> Result<Delivered, SinkError> {
        Ok(if self.accept {
            events.iter().map(|e| e.id).collect::<Vec<_>>()
        } else {
            Vec::new()
        }
        .into())
    }
}

/// A failed restore job as the simulator reports it, to queue as alerts.
async fn sample_alert() -> EventKind {
    let clock = ManualClock::new(at(0, 12));
    let sim = Simulator::new(SimConfig::with_clock(Arc::new(clock)))
        .start()
        .await
        .expect("simulator starts");
    sim.add_job(job(0, 1, at(0, 2), "RESTORE_STOP_BY_ERROR"));
    let date = NaiveDate::from_ymd_opt(2024, 5, 1).expect("date");
    let job = sim.expected("bench", &login(0), date).remove(0);
    EventKind::JobFinished {
        job,
        repeat: None,
        report: None,
        listed_on: None,
        was_vanished: false,
    }
}

fn queue(store: &Store, alert: &EventKind, n: usize) {
    for i in 0..n {
        let mut kind = alert.clone();
        if let EventKind::JobFinished { job, .. } = &mut kind {
            job.job_id = format!("job-{i}");
        }
        store.push_event(kind, at(0, 12)).expect("queued");
    }
}

/// Draining a backlog through the real drain: per-event time at two sizes, and the store
/// work per event (outbox entries read, flushes per window).
async fn delivery(scale: Scale) {
    // A drain of 1,000 events takes milliseconds, one fsync per window: more runs.
    let runs = if scale.smoke {
        1
    } else {
        scale.runs.max(3) * 3
    };
    let alert = sample_alert().await;
    let console = ConsoleSink::new(
        RenderOptions {
            mention_role: None,
            timezone: restorewatch::tz::Tz::UTC,
            servers_named: false,
        },
        Box::new(std::io::sink()),
    );
    println!(
        "## Delivery: draining a backlog (window {DRAIN_BATCH_EVENTS} events), median of {runs} runs\n"
    );
    println!("| sink | events | drain | per event | outbox reads per event | flushes | windows |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for (name, kind) in [
        ("counting, takes all", 0),
        ("console (renders each card)", 1),
        ("refusing (a channel that refuses us)", 2),
    ] {
        let mut per_event = Vec::new();
        for n in scale.delivery_events {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(dir.path()).expect("store");
            let mut times = Vec::new();
            let mut work = Default::default();
            for run in 0..runs {
                // The refused backlog stays; the others are queued again each run.
                if kind != 2 || run == 0 {
                    queue(&store, &alert, n);
                    store.flush().expect("flush");
                }
                let before = store.work();
                let t = Instant::now();
                let report = match kind {
                    0 => drain(&store, &CountingSink { accept: true }).await,
                    1 => drain(&store, &console).await,
                    _ => drain(&store, &CountingSink { accept: false }).await,
                }
                .expect("drain");
                times.push(ms(t.elapsed()));
                let after = store.work();
                work = (
                    after.outbox_reads - before.outbox_reads,
                    after.flushes - before.flushes,
                );
                let expected = if kind == 2 { 0 } else { n };
                assert_eq!(report.delivered, expected);
                assert_eq!(report.pending, n - expected);
            }
            let windows = n.div_ceil(DRAIN_BATCH_EVENTS);
            assert_eq!(work.0, n as u64, "each event read once");
            let flushes = if kind == 2 { 0 } else { windows as u64 };
            assert_eq!(work.1, flushes, "one flush per window taken");
            let t = median(times);
            per_event.push(t * 1000.0 / n as f64);
            println!(
                "| {name} | {n} | {t:.1} ms | {:.1} µs | {:.2} | {} | {windows} |",
                t * 1000.0 / n as f64,
                work.0 as f64 / n as f64,
                work.1
            );
        }
        ratios.push((name, per_event[1] / per_event[0]));
    }
    let [small, large] = scale.delivery_events;
    println!("\nper-event time at {large} / at {small} (target ≤ 1.3):");
    for (name, ratio) in ratios {
        println!("- {name}: **{ratio:.2}**");
    }
    println!();
}

/// A cycle that finds nothing new against the cycle that recorded the jobs.
async fn steady_state(scale: Scale) {
    let (users, jobs_each) = if scale.smoke { (20, 3) } else { (200, 10) };
    println!("## Steady state: {users} users × {jobs_each} finished jobs, no latency\n");
    let r = rig(users, 8, 35, at(0, 1)).await;
    r.poller.cycle().await.expect("baseline");
    let mut jobs = Vec::new();
    for u in 0..users {
        for k in 0..jobs_each {
            jobs.push(job(
                u,
                k,
                at(0, 2) + Duration::minutes(k as i64),
                "RESTORE_STOP_SUCCESS",
            ));
        }
    }
    r.sim.set_jobs(jobs);
    r.clock.set(at(0, 6));
    let t = Instant::now();
    r.poller.cycle().await.expect("recording cycle");
    let recording = ms(t.elapsed());
    assert_eq!(r.poller.store().job_count().unwrap(), users * jobs_each);
    let mut steady = Vec::new();
    for minute in 1..=5 {
        r.clock.set(at(0, 6) + Duration::minutes(minute));
        let t = Instant::now();
        r.poller.cycle().await.expect("steady cycle");
        steady.push(ms(t.elapsed()));
    }
    let steady = median(steady);
    println!("| cycle | time |\n|---|---:|");
    println!(
        "| recording {} new jobs | {recording:.1} ms |",
        users * jobs_each
    );
    println!("| nothing new (median of 5) | {steady:.1} ms |");
    println!("\nsteady / recording: **{:.2}**\n", steady / recording);
}

/// Users discovered in one `2/ListUsers.do` call, and the same call plus filtering and the
/// store write of the list.
async fn discovery(scale: Scale) {
    let users = scale.discovery_users;
    let runs = scale.runs.max(3);
    let now = at(10, 12);
    let rig = rig(users, 8, 35, now).await;
    let client = client_for(rig.sim.url(), rig.sim.sys_user(), rig.sim.sys_pwd());
    let discovery = Discovery::from_settings(DiscoverSettings {
        enabled: true,
        ..DiscoverSettings::default()
    })
    .expect("enabled");
    let mut call = Vec::new();
    let mut whole = Vec::new();
    for run in 0..runs {
        rig.sim.reset_stats();
        let t = Instant::now();
        let listed = client.list_users("").await.expect("list users");
        call.push(ms(t.elapsed()));
        assert_eq!(listed.len(), users);
        assert_eq!(rig.sim.requests_served(), 1, "one call");
        // Each run is due: two hours past the last.
        let at = now + Duration::hours(2 * run as i64 + 2);
        let t = Instant::now();
        discovery
            .refresh_if_due(&client, rig.poller.store(), at)
            .await
            .expect("store");
        whole.push(ms(t.elapsed()));
        assert_eq!(
            rig.poller.store().discovered_users().expect("store").len(),
            users
        );
    }
    println!("## Discovery: {users} users in one call (median of {runs})\n");
    println!("| step | time | target |\n|---|---:|---:|");
    println!(
        "| `2/ListUsers.do` call and decode | {:.0} ms | < 1000 ms |",
        median(call)
    );
    println!(
        "| call, filter and store write (`Discovery::refresh_if_due`) | {:.0} ms | < 1000 ms |",
        median(whole)
    );
    println!();
}

const SECTIONS: [&str; 7] = [
    "cycle",
    "cpu",
    "memory",
    "store_size",
    "delivery",
    "steady_state",
    "discovery",
];

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [probe, dir, cache] = &args[..] {
        if probe == "store-probe" {
            store_probe(
                Path::new(dir),
                cache.parse().expect("a cache size in bytes"),
            );
            return;
        }
    }
    let mut scale = FULL;
    let mut only = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                scale.runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--runs takes a number above 0");
            }
            // A shorter or smaller simulated year for `store_size` (while iterating).
            "--year-users" | "--year-days" => {
                let n: usize = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| panic!("{arg} takes a number above 0"));
                if arg == "--year-users" {
                    scale.year_users = n;
                } else {
                    scale.year_days = u32::try_from(n).expect("--year-days: a number of days");
                }
            }
            "all" => only = None,
            "smoke" => scale = SMOKE,
            name if SECTIONS.contains(&name) => only = Some(name.to_owned()),
            other => {
                eprintln!(
                    "usage: bench [all|smoke|{}] [--runs N] [--year-users N] [--year-days N] (or bench store-probe DIR CACHE_BYTES); unknown {other:?}",
                    SECTIONS.join("|")
                );
                std::process::exit(2);
            }
        }
    }
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    println!(
        "# restorewatch benchmarks{}\n",
        if scale.smoke {
            " (smoke: small sizes, counts checked, times not meaningful)"
        } else {
            ""
        }
    );
    println!(
        "Machine: {} cores, {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    if run("cycle") {
        cycle(scale).await;
    }
    if run("cpu") {
        cpu(scale).await;
    }
    if run("memory") {
        memory(scale).await;
    }
    if run("store_size") {
        store_size(scale).await;
    }
    if run("delivery") {
        delivery(scale).await;
    }
    if run("steady_state") {
        steady_state(scale).await;
    }
    if run("discovery") {
        discovery(scale).await;
    }
}
