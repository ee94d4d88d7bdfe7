//! The built binary from outside (STYLE.md 15): `healthcheck`, the log output, SIGTERM,
//! the state directory's faults, and the SIGKILL soak that shows every failure reaches
//! Discord in exactly one message (by nonce) with the fake's nonce de-duplication off.
//!
//! The soak runs `RESTOREWATCH_SOAK_ROUNDS` rounds (default 4, so CI stays quick); the full
//! run for RELIABILITY.md is
//! `RESTOREWATCH_SOAK_ROUNDS=25 cargo test --test process soak -- --nocapture`.

mod support;

use chrono::{Duration, SubsecRound, Utc};
use rand::{Rng, SeedableRng};
use restorewatch::simulator::{Faults, SimConfig, SimHandle, SimJob, SimUser, Simulator};
use restorewatch::store::Store;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use support::fake_discord::{FakeDiscord, NonceMemory, GUILD_ID};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound on every wait for the child; the test fails rather than hangs.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const ALERTS: u64 = 4_000_000_000_000_000_001;
/// Seed of the soak's kill moments and failures.
const SOAK_SEED: u64 = 20_261_128;

async fn simulator() -> SimHandle {
    let sim = Simulator::new(SimConfig::default()).start().await.unwrap();
    sim.add_user(SimUser {
        login: "obm".into(),
        owner: String::new(),
        user_id: "obm".into(),
    });
    sim
}

/// A failed restore of backup set `set` named `name`, ended a minute ago.
fn failure(set: u32, name: &str) -> SimJob {
    let start = (Utc::now() - Duration::minutes(2)).trunc_subsecs(0);
    SimJob {
        backup_set_name: name.into(),
        ..SimJob::new(
            "obm",
            &set.to_string(),
            start,
            Some(start + Duration::seconds(30)),
            "RESTORE_STOP_BY_ERROR",
        )
    }
}

/// A config polling every second, without a baseline; `extra` is appended.
fn write_config(dir: &Path, sim: &SimHandle, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[cbs]
url = "{url}"
server_name = "sim"
sys_user = "{user}"
request_timeout = "5s"
[[watch]]
login = "obm"
[poll]
schedule = "* * * * * *"
baseline_first_cycle = false
[state]
path = "{state}"
{extra}
"#,
        url = sim.url(),
        user = sim.sys_user(),
        state = dir.join("state").display(),
    );
    let path = dir.join("restorewatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn discord_section(fake: &FakeDiscord) -> String {
    format!(
        "[discord]\nalert_channel = \"{ALERTS}\"\napi_base = \"{}\"\nguild_id = \"{GUILD_ID}\"\n",
        fake.api_base()
    )
}

fn restorewatch(config: &Path, sim: &SimHandle) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_restorewatch"));
    cmd.arg("--config")
        .arg(config)
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .env("RESTOREWATCH_DISCORD_TOKEN", "fake-token")
        .env_remove("RESTOREWATCH_LOG_FORMAT")
        .env_remove("RESTOREWATCH_SERVER_LISTEN")
        .env_remove("RESTOREWATCH_SOAK_ROUNDS")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// A running child whose stderr lines are collected.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
        let (l, c) = (lines.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                l.lock().unwrap().push(line);
                c.notify_waiters();
            }
        });
        Running {
            child,
            lines,
            changed,
        }
    }

    /// Waits for a stderr line containing `needle`.
    async fn wait_for_line(&self, needle: &str) -> String {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.changed.notified();
                if let Some(l) = self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|l| l.contains(needle))
                {
                    return l.clone();
                }
                notified.await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {needle:?} in\n{}", self.stderr()))
    }

    fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("still running") as i32;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the child exits")
            .unwrap()
    }
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn healthcheck_exits_0_while_healthy_and_1_once_the_bot_is_gone() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sim,
        &format!("[server]\nlisten = \"127.0.0.1:{port}\""),
    );
    let mut bot = Running::spawn(restorewatch(&config, &sim));
    bot.wait_for_line("serving /healthz and /metrics").await;
    bot.wait_for_line("poll cycle done").await;

    let check = restorewatch(&config, &sim)
        .arg("healthcheck")
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{out}");
    let body: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(body["status"], "ok");

    // Logs to a pipe carry no colour codes.
    assert!(!bot.stderr().contains('\u{1b}'), "{}", bot.stderr());

    bot.signal(libc::SIGTERM);
    assert!(bot.wait().await.success());
    let check = restorewatch(&config, &sim)
        .arg("healthcheck")
        .output()
        .await
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains("no answer from"), "{err}");
}

/// `NAME=value` entries of a running process's environment as the kernel shows it: as it
/// was at its last `execve` (glibc cuts `GLIBC_TUNABLES` there after its first value).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn environment(bot: &Running) -> Vec<String> {
    let pid = bot.child.id().expect("still running");
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|&b| b == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn run_restarts_itself_in_its_process_without_glibcs_thread_cache_unless_told_otherwise() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "");
    for (given, expected) in [
        (None, "glibc.malloc.tcache_count=0"),
        (
            Some("glibc.malloc.arena_max=2"),
            "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0",
        ),
        // The operator's size of the cache is kept.
        (
            Some("glibc.malloc.tcache_count=3"),
            "glibc.malloc.tcache_count=3",
        ),
    ] {
        let mut cmd = restorewatch(&config, &sim);
        match given {
            Some(tunables) => cmd.env("GLIBC_TUNABLES", tunables),
            None => cmd.env_remove("GLIBC_TUNABLES"),
        };
        let mut bot = Running::spawn(cmd);
        let started = bot.wait_for_line("restorewatch starting").await;
        assert!(
            started.contains(&format!("glibc_tunables=\"{expected}\"")),
            "given {given:?}: {started}"
        );
        bot.wait_for_line("poll cycle done").await;
        // The child's own pid was started again: in place, not beside.
        let first = expected.split(':').next().unwrap();
        let shown: Vec<_> = environment(&bot)
            .into_iter()
            .filter(|e| e.starts_with("GLIBC_TUNABLES="))
            .collect();
        assert_eq!(
            shown,
            [format!("GLIBC_TUNABLES={first}")],
            "given {given:?}"
        );
        assert_eq!(
            bot.stderr().matches("restorewatch starting").count(),
            1,
            "{}",
            bot.stderr()
        );
        assert!(!bot.stderr().contains("thread cache"), "{}", bot.stderr());
        bot.signal(libc::SIGTERM);
        assert!(bot.wait().await.success());
    }
}

#[tokio::test]
async fn json_logs_and_each_delivered_alert_logged_with_its_job_identity() {
    let sim = simulator().await;
    sim.add_job(failure(42, "Accounts"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "");
    let out = restorewatch(&config, &sim)
        .env("RESTOREWATCH_LOG_FORMAT", "json")
        .arg("once")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "{stderr}");
    let alert = lines
        .iter()
        .find(|l| l["fields"]["message"] == "alert delivered")
        .unwrap_or_else(|| panic!("no delivered alert in {stderr}"));
    assert_eq!(alert["level"], "INFO");
    let fields = &alert["fields"];
    assert_eq!(
        (
            &fields["server"],
            &fields["login"],
            &fields["backup_set"],
            &fields["class"]
        ),
        (
            &Value::from("sim"),
            &Value::from("obm"),
            &Value::from("42"),
            &Value::from("failure")
        ),
        "{alert}"
    );
    assert!(fields["job"].as_str().is_some_and(|j| !j.is_empty()));
}

#[tokio::test]
async fn sigterm_stops_within_5s_and_flushes() {
    let sim = simulator().await;
    let fake = FakeDiscord::start().await;
    sim.add_job(failure(7, "Payroll"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, &discord_section(&fake));
    let mut bot = Running::spawn(restorewatch(&config, &sim));
    bot.wait_for_line("alert delivered").await;
    bot.wait_for_line("poll cycle done").await;

    let asked = std::time::Instant::now();
    bot.signal(libc::SIGTERM);
    let status = bot.wait().await;
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}\n{}", bot.stderr());
    assert!(
        took < std::time::Duration::from_secs(5),
        "stopping took {took:?}"
    );
    bot.wait_for_line("restorewatch stopped").await;

    // What it did is on disk: the job is known and its alert acknowledged.
    let store = Store::open(&dir.path().join("state")).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert!(store.job_count().unwrap() >= 1);
    assert_eq!(fake.messages(ALERTS).len(), 1);
}

/// Opens the store a test prepared and returns (jobs, outbox) to compare later.
fn store_counts(state: &Path) -> (usize, usize) {
    let store = Store::open(state).unwrap();
    (store.job_count().unwrap(), store.outbox_len().unwrap())
}

/// A store with one job recorded and its alert delivered (to the console).
async fn prepared_store(dir: &Path, sim: &SimHandle) -> std::path::PathBuf {
    sim.add_job(failure(9, "Ledger"));
    let config = write_config(dir, sim, "");
    let out = restorewatch(&config, sim)
        .arg("once")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(store_counts(&dir.join("state")), (1, 0));
    config
}

#[tokio::test]
async fn a_read_only_state_directory_is_a_clear_error_with_exit_2_and_nothing_changes() {
    use std::os::unix::fs::PermissionsExt;
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = prepared_store(dir.path(), &sim).await;
    let state = dir.path().join("state");
    let before = store_counts(&state);
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let mode = if path.is_dir() { 0o555 } else { 0o444 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut cmd = restorewatch(&config, &sim);
    // Root writes anywhere; the bot then runs as nobody, for whom the directory is
    // read-only like for any service user.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.arg("once").output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("state.path") && stderr.contains("cannot write in the state directory"),
        "{stderr}"
    );

    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    assert_eq!(store_counts(&state), before, "the store is as it was");
}

#[tokio::test]
async fn a_second_instance_on_the_same_state_refuses_and_nothing_is_posted_twice() {
    let sim = simulator().await;
    let fake = FakeDiscord::start().await;
    sim.add_job(failure(3, "Mailbox"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, &discord_section(&fake));
    let mut first = Running::spawn(restorewatch(&config, &sim));
    first.wait_for_line("alert delivered").await;

    let second = restorewatch(&config, &sim)
        .arg("once")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by a running restorewatch"),
        "{stderr}"
    );

    first.signal(libc::SIGTERM);
    assert!(first.wait().await.success());
    let (jobs, outbox) = store_counts(&dir.path().join("state"));
    assert_eq!((jobs, outbox), (1, 0), "the store is intact");
    let failures: Vec<Value> = fake
        .messages(ALERTS)
        .into_iter()
        .filter(|m| m.to_string().contains("Mailbox"))
        .collect();
    assert_eq!(failures.len(), 1);
}

/// The soak: SIGKILL the real binary at seeded random moments while failures keep
/// appearing, then one last run drains. Every failure must reach Discord, in exactly one
/// message. The fake's nonce de-duplication is off, so what the store guarantees alone is
/// visible: the one duplicate it cannot rule out is a message whose post was in flight when
/// the process died (Discord may still create it), re-posted as the same batch with the
/// same nonce, which real Discord turns into a no-op. The test reports those re-posts.
#[tokio::test]
async fn soak_sigkill_at_random_moments_loses_nothing_and_repeats_nothing() {
    let rounds: u32 = std::env::var("RESTOREWATCH_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut rng = rand::rngs::StdRng::seed_from_u64(SOAK_SEED);
    let sim = simulator().await;
    // Some requests fail too: the outage notice and recovery are part of the traffic.
    sim.set_faults(Faults {
        http_500_ratio: 0.1,
        seed: SOAK_SEED,
        ..Faults::default()
    });
    let fake = FakeDiscord::start().await;
    fake.set_nonce_memory(NonceMemory::Off);
    // Posts take a while, so kills also land while one is in flight.
    fake.set_post_delay(std::time::Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, &discord_section(&fake));

    let mut names = Vec::new();
    let mut killed_with_work = 0;
    let started = std::time::Instant::now();
    for round in 0..rounds {
        let mut bot = Running::spawn(restorewatch(&config, &sim));
        // Failures keep coming while the bot runs: some now, some at random moments.
        let kill_after = std::time::Duration::from_millis(rng.gen_range(300..3000));
        let batches = rng.gen_range(1..4);
        let deadline = tokio::time::Instant::now() + kill_after;
        for _ in 0..batches {
            for _ in 0..rng.gen_range(1..4) {
                let n = names.len() as u32 + 1;
                let name = format!("Soak{n:04}x");
                sim.add_job(failure(1000 + n, &name));
                names.push(name);
            }
            let pause = std::time::Duration::from_millis(rng.gen_range(0..800));
            tokio::time::sleep_until((tokio::time::Instant::now() + pause).min(deadline)).await;
        }
        tokio::time::sleep_until(deadline).await;
        bot.child.start_kill().unwrap();
        bot.wait().await;
        // What the kill interrupted: events it left queued for the next run.
        let queued = Store::open(&dir.path().join("state")).map_or(0, |s| s.outbox_len().unwrap());
        if queued > 0 {
            killed_with_work += 1;
        }
        eprintln!(
            "round {round}: killed after {kill_after:?} with {queued} events queued; \
             {} failures so far, {} messages",
            names.len(),
            fake.messages(ALERTS).len()
        );
    }

    // The final drain: a run that is left alone until every failure is out.
    sim.set_faults(Faults::default());
    let mut bot = Running::spawn(restorewatch(&config, &sim));
    // Signals are handled once it runs (before that SIGTERM kills it outright).
    bot.wait_for_line("poll cycle done").await;
    let all_out = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            let text: Vec<String> = fake
                .messages(ALERTS)
                .iter()
                .map(|m| m.to_string())
                .collect();
            if names
                .iter()
                .all(|n| text.iter().any(|t| t.contains(n.as_str())))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    bot.signal(libc::SIGTERM);
    assert!(bot.wait().await.success(), "{}", bot.stderr());
    all_out.unwrap_or_else(|_| panic!("not every failure was delivered:\n{}", bot.stderr()));

    let messages = fake.messages(ALERTS);
    for name in &names {
        let holding: Vec<&Value> = messages
            .iter()
            .filter(|m| m.to_string().contains(name.as_str()))
            .collect();
        // Exactly once, with Discord's nonce check off: the store's batch record, and a
        // read-back of the channel for a post cut short by the kill, hold it alone.
        assert_eq!(
            holding.len(),
            1,
            "{name} posted {} times: {holding:?}",
            holding.len()
        );
    }
    let store = Store::open(&dir.path().join("state")).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0);
    eprintln!(
        "soak: {rounds} SIGKILL rounds ({killed_with_work} with events still queued), {} failures, \
         {} messages, every failure posted exactly once without Discord's nonce check; {:?}",
        names.len(),
        messages.len(),
        started.elapsed()
    );
}
