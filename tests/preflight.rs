//! The built binary as an operator meets it before and after the bot's working life: a stop
//! that always stops (SIGTERM, a second signal), `check` as a pre-flight, and commands run
//! beside a running instance. Every test spawns `restorewatch` itself against the CBS
//! simulator and the fake Discord on loopback and reads only what a user would see.

mod support;

use restorewatch::simulator::{SimConfig, SimHandle, SimUser, Simulator};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::fake_discord::{FakeDiscord, Scripted, GUILD_ID, MENTIONABLE_ROLE_ID, QUIET_ROLE_ID};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

const BIN: &str = env!("CARGO_BIN_EXE_restorewatch");
/// Bound on every wait; a test fails rather than hangs.
const WAIT: Duration = Duration::from_secs(30);
const ALERTS: u64 = 4_000_000_000_000_000_001;
const TOKEN: &str = "fake-token-Kq93";

/// The binary with a clean environment: no RESTOREWATCH_* from the caller leaks in.
fn restorewatch(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("RESTOREWATCH_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn simulator() -> SimHandle {
    let sim = Simulator::new(SimConfig::default()).start().await.unwrap();
    sim.add_user(SimUser {
        login: "obm".into(),
        owner: String::new(),
        user_id: "obm".into(),
    });
    sim
}

/// A config polling `obm` on `schedule`, posting to the fake at `api_base`.
fn config(sim: &SimHandle, fake: &FakeDiscord, state: &Path, schedule: &str) -> String {
    format!(
        r#"
[cbs]
url = "{url}"
server_name = "sim"
sys_user = "{user}"
[[watch]]
login = "obm"
[poll]
schedule = "{schedule}"
[state]
path = "{state}"
[discord]
alert_channel = "{ALERTS}"
api_base = "{api}"
guild_id = "{GUILD_ID}"
"#,
        url = sim.url(),
        user = sim.sys_user(),
        state = state.display(),
        api = fake.api_base(),
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("rw.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `restorewatch run` whose stderr is collected line by line.
struct Running {
    child: Child,
    stderr: watch::Receiver<Vec<String>>,
    all: Arc<Mutex<Vec<String>>>,
    /// Reads stderr to its end; awaited after the exit so that no last line is missed.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn start(config: &Path, sim: &SimHandle) -> Running {
        let mut child = restorewatch(&["run", "--config", config.to_str().unwrap()])
            .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
            .env("RESTOREWATCH_DISCORD_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("restorewatch starts");
        let (tx, rx) = watch::channel(Vec::new());
        let all = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = Arc::clone(&all);
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
                tx.send_replace(kept.lock().unwrap().clone());
            }
        });
        Running {
            child,
            stderr: rx,
            all,
            reader: Some(reader),
        }
    }

    /// Waits until a line of stderr contains `needle`.
    async fn wait_for_log(&mut self, needle: &str) {
        let found = tokio::time::timeout(
            WAIT,
            self.stderr
                .wait_for(|lines| lines.iter().any(|l| l.contains(needle))),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        assert!(found, "no log line with {needle:?} in: {:#?}", self.log());
    }

    fn log(&self) -> Vec<String> {
        self.all.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; returns the exit code and how long it took.
    async fn exit(&mut self) -> (Option<i32>, Duration) {
        let began = Instant::now();
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {WAIT:?}: {:#?}", self.log()))
            .unwrap();
        let took = began.elapsed();
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(WAIT, reader).await;
        }
        (status.code(), took)
    }
}

#[tokio::test]
async fn sigterm_stops_within_10s_while_the_gateway_is_unreachable() {
    let fake = FakeDiscord::start_with_dead_gateway().await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap()
    };
    let toml = config(&sim, &fake, &dir.path().join("state"), "*/5 * * * *");
    let path = write_config(
        dir.path(),
        &format!("{toml}[server]\nlisten = \"{listen}\"\n"),
    );
    let mut running = Running::start(&path, &sim);
    running.wait_for_log("restorewatch running").await;
    // The bot has asked where the gateway is and found nobody there.
    running.wait_for_log("slash commands unavailable").await;
    let health = reqwest::get(format!("http://{listen}/healthz"))
        .await
        .expect("/healthz answers")
        .text()
        .await
        .unwrap();
    assert!(
        health.contains("slash commands unavailable since") && health.contains("refused"),
        "{health}"
    );
    let log = running.log();
    let starting = log
        .iter()
        .find(|l| l.contains("restorewatch starting"))
        .expect("a startup line");
    for part in [
        format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        "revision=".to_owned(),
        format!("config={}", path.display()),
        "poll=*/5 * * * *".to_owned(),
        "digest=0 8 * * *".to_owned(),
    ] {
        assert!(starting.contains(&part), "{part} not in {starting}");
    }
    // Said once, not once per retry; serenity's own info lines stay out by default.
    let unavailable = log
        .iter()
        .filter(|l| l.contains("slash commands unavailable"));
    assert_eq!(unavailable.count(), 1, "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains(" INFO serenity")),
        "{log:#?}"
    );

    running.signal("TERM");
    let (code, took) = running.exit().await;
    let log = running.log();
    assert_eq!(code, Some(0), "{log:#?}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {log:#?}");
    assert!(
        log.iter().any(|l| l.contains("restorewatch stopped")),
        "{log:#?}"
    );
    assert!(
        log.iter().all(|l| !l.contains(TOKEN)),
        "the token never shows"
    );
}

#[tokio::test]
async fn a_second_signal_exits_at_once_while_a_delivery_hangs() {
    let fake = FakeDiscord::start().await;
    // The first message (the baseline of obm) never gets an answer.
    fake.script(ALERTS, [Scripted::Hang]);
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config(&sim, &fake, &dir.path().join("state"), "* * * * * *"),
    );
    let mut running = Running::start(&path, &sim);
    let post = format!("/api/v10/channels/{ALERTS}/messages");
    tokio::time::timeout(
        WAIT,
        fake.wait_for_request(|r| r.method == "POST" && r.path == post),
    )
    .await
    .expect("the baseline is being posted");

    running.signal("TERM");
    running.wait_for_log("in flight finish").await;
    running.signal("INT");
    let (code, took) = running.exit().await;
    let log = running.log();
    assert_eq!(code, Some(130), "{log:#?}");
    // The first signal alone would wait out the delivery's 5 s grace.
    assert!(took < Duration::from_secs(3), "took {took:?}: {log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("second signal: exiting at once")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("the store was flushed")),
        "{log:#?}"
    );
}

/// A config the CBS simulator answers, with a schedule of its own.
fn console_config(sim: &SimHandle, state: &Path, schedule: &str) -> String {
    format!(
        "[cbs]\nurl = \"{}\"\nsys_user = \"{}\"\n[[watch]]\nlogin = \"obm\"\n\
         [poll]\nschedule = \"{schedule}\"\n[state]\npath = \"{}\"\n",
        sim.url(),
        sim.sys_user(),
        state.display()
    )
}

#[tokio::test]
async fn a_schedule_that_never_fires_exits_2_from_check_and_run() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &console_config(&sim, &dir.path().join("state"), "0 8 31 2 *"),
    );
    for command in ["check", "run"] {
        let out = restorewatch(&[command, "--config", path.to_str().unwrap()])
            .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
            .output()
            .await
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("poll.schedule"), "{command}: {stderr}");
        assert!(stderr.contains("never fires"), "{command}: {stderr}");
    }
    assert_eq!(sim.requests_served(), 0, "nothing was polled");
}

#[tokio::test]
async fn check_offline_passes_a_good_config_with_no_secrets_set() {
    let dir = tempfile::tempdir().unwrap();
    // Secrets named by files that do not exist here: offline, they are not read.
    let path = write_config(
        dir.path(),
        "[cbs]\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\nsys_pwd_file = \"/run/secrets/none\"\n\
         [discord]\nalert_channel = \"1\"\nguild_id = \"2\"\ntoken_file = \"/run/secrets/nothing\"\n",
    );
    let out = restorewatch(&["check", "--offline", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("config OK"), "{stdout}");
    // Without a server, `run` would refuse to start: so does the check.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("guild_id = \"2\"\n", ""),
    )
    .unwrap();
    let out = restorewatch(&["check", "--offline", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("discord.guild_id"));
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("alert_channel", "guild_id = \"2\"\nalert_channel"),
    )
    .unwrap();
    assert!(
        stdout.contains("poll.schedule \"*/5 * * * *\": next "),
        "{stdout}"
    );
    // Without --offline the same file needs its secrets.
    let out = restorewatch(&["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("cbs.sys_pwd_file"));
}

#[tokio::test]
async fn an_unknown_restorewatch_variable_exits_2_naming_it_and_the_nearest_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[cbs]\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\n",
    );
    for command in [&["check", "--offline"][..], &["run"], &["once"]] {
        let mut args = command.to_vec();
        args.extend(["--config", path.to_str().unwrap()]);
        let out = restorewatch(&args)
            .env("RESTOREWATCH_CBS_SYS_PWD", "pw")
            .env("RESTOREWATCH_POLL_SCHEDUEL", "*/10 * * * *")
            .output()
            .await
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains("RESTOREWATCH_POLL_SCHEDUEL"), "{stderr}");
        assert!(
            stderr.contains("did you mean RESTOREWATCH_POLL_SCHEDULE?"),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test]
async fn check_probes_the_credentials_without_watched_users() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "[cbs]\nurl = \"{}\"\nsys_user = \"{}\"\n",
            sim.url(),
            sim.sys_user()
        ),
    );
    let check = |pwd: &str| {
        restorewatch(&["check", "--config", path.to_str().unwrap()])
            .env("RESTOREWATCH_CBS_SYS_PWD", pwd)
            .output()
    };
    let out = check(sim.sys_pwd()).await.unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("credentials of"), "{stdout}");
    assert!(stdout.contains(": accepted"), "{stdout}");
    assert_eq!(sim.requests_served(), 1);

    let out = check("wrong-password-7Hq").await.unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("username/password"), "{stdout}");
    assert!(!stdout.contains("wrong-password-7Hq"));
}

/// With `[discover]` on, `check` lists the users as discovery will: how many each call
/// lists and the filters keep, or why it fails (a role refusal names the role; an unknown
/// owner is named, without the role hint), and a failure fails the check.
#[tokio::test]
async fn check_lists_the_users_discovery_would_watch() {
    let sim = simulator().await;
    for (login, owner) in [("alice", "r1"), ("test-1", "r1"), ("bob", "r2")] {
        sim.add_user(SimUser {
            login: login.into(),
            owner: owner.into(),
            user_id: login.into(),
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |discover: &str| {
        write_config(
            dir.path(),
            &format!(
                "[cbs]\nurl = \"{}\"\nsys_user = \"{}\"\n[discover]\nenabled = true\n{discover}",
                sim.url(),
                sim.sys_user()
            ),
        )
    };
    let check = |path: PathBuf| {
        restorewatch(&["check", "--config", path.to_str().unwrap()])
            .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
            .output()
    };
    let out = check(write("exclude = [\"test-*\"]\n")).await.unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("  discovery (2/ListUsers.do): 4 user(s) listed, 3 kept"),
        "{stdout}"
    );
    assert!(!stdout.contains("no [[watch]] users"), "{stdout}");

    sim.set_reseller_missing("gone", true);
    let out = check(write("owners = [\"r2\", \"gone\"]\n")).await.unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("of owner \"r2\": 1 user(s) listed, 1 kept"),
        "{stdout}"
    );
    let gone = (stdout.lines())
        .find(|l| l.contains("of owner \"gone\""))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        gone.contains("FAILED") && gone.contains("Reseller 'gone' not found"),
        "{gone}"
    );
    assert!(!gone.contains("role"), "not a role refusal: {gone}");

    sim.set_list_users_denied(true);
    let out = check(write("")).await.unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let refused = (stdout.lines())
        .find(|l| l.contains("discovery (2/ListUsers.do): FAILED"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(refused.contains("Admin or API role"), "{refused}");
    assert!(!stdout.contains(sim.sys_pwd()), "{stdout}");
}

const REFUSED: u64 = 4_000_000_000_000_000_009;
const DIGESTS: u64 = 4_000_000_000_000_000_002;

#[tokio::test]
async fn check_reports_a_channel_discord_refuses_and_the_mention_role() {
    let fake = FakeDiscord::start().await;
    fake.set_channel_forbidden(REFUSED, true);
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let base = config(&sim, &fake, &dir.path().join("state"), "*/5 * * * *");
    let with = |role: u64| {
        format!(
            "{base}digest_channel = \"{DIGESTS}\"\nmention_role = \"{role}\"\n\
             [[route]]\nowner = \"acme\"\nchannel = \"{REFUSED}\"\n"
        )
    };
    let path = write_config(dir.path(), &with(MENTIONABLE_ROLE_ID));
    let check = || {
        restorewatch(&["check", "--config", path.to_str().unwrap()])
            .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
            .env("RESTOREWATCH_DISCORD_TOKEN", TOKEN)
            .output()
    };
    let out = check().await.unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("token of restorewatch-test"), "{stdout}");
    let line = |needle: String| {
        stdout
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no line with {needle}: {stdout}"))
            .to_owned()
    };
    for channel in [
        format!("alert channel {ALERTS}"),
        format!("digest channel {DIGESTS}"),
    ] {
        let found = line(channel);
        assert!(
            found.ends_with("can view, send messages and embed links"),
            "{found}"
        );
    }
    let refused = line(format!("channel of owner \"acme\" {REFUSED}"));
    assert!(
        refused.contains("FAILED: cannot see it: 403 Missing Access"),
        "{refused}"
    );
    assert!(line(format!("mention role {MENTIONABLE_ROLE_ID}")).ends_with("mentionable"));
    assert!(!stdout.contains(TOKEN) && !text(&out.stderr).contains(TOKEN));
    assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());

    fake.set_channel_forbidden(REFUSED, false);
    std::fs::write(&path, with(QUIET_ROLE_ID)).unwrap();
    let out = check().await.unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "mention role {QUIET_ROLE_ID} (quiet): FAILED: not mentionable"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("cannot see it"), "{stdout}");
}

/// A configured channel where no message can be posted (a forum, a category) fails the
/// check, by name and type, whichever role it has: Discord would refuse every post there.
#[tokio::test]
async fn check_fails_a_forum_or_category_channel() {
    let fake = FakeDiscord::start().await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let base = config(&sim, &fake, &dir.path().join("state"), "*/5 * * * *");
    let text_config = format!(
        "{base}digest_channel = \"{DIGESTS}\"\n[[route]]\nowner = \"acme\"\nchannel = \"{REFUSED}\"\n"
    );
    let path = write_config(dir.path(), &text_config);
    let check = || {
        restorewatch(&["check", "--config", path.to_str().unwrap()])
            .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
            .env("RESTOREWATCH_DISCORD_TOKEN", TOKEN)
            .output()
    };
    let out = check().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    for (channel, what, kind, name) in [
        (ALERTS, "alert channel".to_owned(), 15, "forum channel"),
        (DIGESTS, "digest channel".to_owned(), 4, "category"),
        (
            REFUSED,
            "channel of owner \"acme\"".to_owned(),
            16,
            "media channel",
        ),
    ] {
        fake.set_channel_type(channel, kind);
        let out = check().await.unwrap();
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
        let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAILED")).collect();
        assert_eq!(
            failed,
            [format!(
                "  {what} {channel}: FAILED: it is a {name} (channel type {kind}), where no \
                 message can be posted; use a text or announcement channel or a thread"
            )],
            "{stdout}"
        );
        fake.set_channel_type(channel, 0);
    }
    // Announcement channels and threads take messages.
    for kind in [5, 11] {
        fake.set_channel_type(ALERTS, kind);
        let out = check().await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{kind}: {}", text(&out.stdout));
    }
}

#[tokio::test]
async fn check_print_config_redacts_secrets_and_names_origins() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[cbs]\nurl = \"http://127.0.0.1:9\"\nsys_user = \"api\"\n[[watch]]\nlogin = \"obm\"\n",
    );
    let out = restorewatch(&[
        "check",
        "--print-config",
        "--config",
        path.to_str().unwrap(),
    ])
    .env("RESTOREWATCH_CBS_SYS_PWD", "pw-Xy81")
    .env("RESTOREWATCH_POLL_SCHEDULE", "*/10 * * * *")
    .output()
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!stdout.contains("pw-Xy81"), "{stdout}");
    for line in [
        "url = \"http://127.0.0.1:9/\"  # file",
        "sys_pwd = \"<redacted>\"  # environment RESTOREWATCH_CBS_SYS_PWD",
        "schedule = \"*/10 * * * *\"  # environment RESTOREWATCH_POLL_SCHEDULE",
        "retention_days = 35  # default",
        "[[watch]]",
        "login = \"obm\"  # file",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }
}

/// Every section and key a config can set is in the effective configuration, with where
/// it came from; the heartbeat's push URL (it carries a token) is redacted like a password.
#[tokio::test]
async fn check_print_config_shows_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["cbs.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            r#"[cbs]
url = "http://127.0.0.1:9"
sys_user = "api"
down_after = 4
max_requests_per_second = 50
ca_cert = "{ca}"
[poll]
vanished_after = "45m"
[digest]
max_catch_up_days = 5
[server]
listen = "127.0.0.1:9187"
[heartbeat]
url = "https://hc.example/ping/secret-uuid-77"
[summary]
when = "changes"
channel = "333"
schedule = "0 */2 * * *"
[alerts]
group_after = 9
escalate_after = 4
ping = "every"
[discord]
alert_channel = "111"
guild_id = "999"
[[route]]
owner = "resellerA"
channel = "222"
"#,
            ca = ca.display()
        ),
    );
    let out = restorewatch(&[
        "check",
        "--print-config",
        "--config",
        path.to_str().unwrap(),
    ])
    .output()
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!stdout.contains("secret-uuid-77"), "{stdout}");
    for line in [
        "down_after = 4  # file",
        "max_requests_per_second = 50  # file",
        "vanished_after = \"45m\"  # file",
        "max_catch_up_days = 5  # file",
        "[server]",
        "listen = \"127.0.0.1:9187\"  # file",
        "[heartbeat]",
        "url = \"<redacted>\"  # file",
        "[summary]",
        "when = \"changes\"  # file",
        "channel = \"333\"  # file",
        "schedule = \"0 */2 * * *\"  # file",
        "[alerts]",
        "group_after = 9  # file",
        "escalate_after = 4  # file",
        "ping = \"every\"  # file",
        "guild_ids = [\"999\"]  # file",
        "[[route]]",
        "owner = \"resellerA\"  # file",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("ca_cert = "), "{stdout}");
}

#[tokio::test]
async fn digest_print_beside_a_running_instance_says_so_in_one_line() {
    let fake = FakeDiscord::start().await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = write_config(dir.path(), &config(&sim, &fake, &state, "*/5 * * * *"));
    let mut running = Running::start(&path, &sim);
    running.wait_for_log("restorewatch running").await;

    let began = Instant::now();
    let out = restorewatch(&["digest", "--print", "--config", path.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .env("RESTOREWATCH_DISCORD_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    let took = began.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("in use by a running restorewatch"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("lock").count(), 0, "no sled chain: {stderr}");
    // It does not wait for the lock as a restart does.
    assert!(took < Duration::from_secs(3), "took {took:?}");

    running.signal("TERM");
    assert_eq!(running.exit().await.0, Some(0), "{:#?}", running.log());
}

#[tokio::test]
async fn completions_name_the_commands_and_the_check_flags() {
    let out = restorewatch(&["completions", "bash"])
        .output()
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for word in [
        "restorewatch",
        "check",
        "digest",
        "--offline",
        "--print-config",
    ] {
        assert!(
            stdout.contains(word),
            "{word} missing from the bash completions"
        );
    }
    let out = restorewatch(&["completions", "tcsh"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[tokio::test]
async fn check_probes_every_cbs_server_and_prints_each_redacted() {
    let (eu, us) = (simulator().await, simulator().await);
    let dir = tempfile::tempdir().unwrap();
    let entry = |name: &str, sim: &SimHandle| {
        format!(
            "[[cbs]]\nname = \"{name}\"\nurl = \"{}\"\nsys_user = \"{}\"\n\
             [[watch]]\nlogin = \"obm\"\nserver = \"{name}\"\n",
            sim.url(),
            sim.sys_user()
        )
    };
    let good = format!("{}{}", entry("eu", &eu), entry("us-2", &us));
    let path = write_config(dir.path(), &good);
    let run = |args: &[&str], us_pwd: &str| {
        let mut cmd = restorewatch(args);
        cmd.env("RESTOREWATCH_CBS_EU_SYS_PWD", eu.sys_pwd())
            .env("RESTOREWATCH_CBS_US_2_SYS_PWD", us_pwd);
        cmd
    };
    let config = path.to_str().unwrap();
    let out = run(&["check", "--config", config], us.sys_pwd())
        .output()
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for server in ["CBS eu (", "CBS us-2 ("] {
        assert!(stdout.contains(server), "{server} not probed: {stdout}");
    }
    assert_eq!(stdout.matches("credentials of").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("  obm: 0 job(s)").count(), 2, "{stdout}");
    // A wrong password of one server fails the check, naming that server's probe.
    let out = run(&["check", "--config", config], "wrong-Pq72")
        .output()
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    let us_part = stdout.split("CBS us-2 (").nth(1).unwrap_or_default();
    assert!(us_part.contains("FAILED"), "{stdout}");
    assert!(!stdout.contains("wrong-Pq72"), "{stdout}");

    let out = run(&["check", "--print-config", "--config", config], "pw-Us77")
        .output()
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!stdout.contains("pw-Us77"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| *l == "[[cbs]]").count(),
        2,
        "{stdout}"
    );
    for line in [
        "name = \"us-2\"  # file",
        "sys_pwd = \"<redacted>\"  # environment RESTOREWATCH_CBS_EU_SYS_PWD",
        "sys_pwd = \"<redacted>\"  # environment RESTOREWATCH_CBS_US_2_SYS_PWD",
        "server = \"us-2\"  # file",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }

    // A mistake in one entry names its key and exits 2; so does a password variable of a
    // server the file does not have.
    std::fs::write(&path, good.replace("name = \"us-2\"", "name = \"EU\"")).unwrap();
    let out = run(&["check", "--offline", "--config", config], "pw")
        .output()
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cbs[1].name"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    std::fs::write(&path, good.replace("us-2", "us-3")).unwrap();
    let out = run(&["check", "--offline", "--config", config], "pw")
        .output()
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("RESTOREWATCH_CBS_US_2_SYS_PWD")
            && stderr.contains("did you mean RESTOREWATCH_CBS_US_3_SYS_PWD?"),
        "{stderr}"
    );
}
