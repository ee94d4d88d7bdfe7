//! Secrets never reach a log, an error or the chat. The built binary runs at `trace` (its
//! own logs and serenity's, reqwest's, hyper's and tungstenite's) against a CBS that echoes
//! the password back, raw and JSON-escaped, and a Discord whose error bodies quote the
//! token; then its stdout, its stderr, every chat message and `/status` are searched.
//!
//! Real time on purpose: the subject is a separate process on a one-second schedule; the
//! waits are bounded by [`WAIT`] and end on the fake's notifications.

mod support;

use chrono::{Duration, SubsecRound, Utc};
use restorewatch::simulator::{LoginFault, SimConfig, SimJob, SimUser, Simulator};
use serde_json::{json, Value};
use support::fake_discord::{FakeDiscord, RecordedRequest, Scripted, SlashCommand, GUILD_ID};
use tokio::time::timeout;

const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const ALERTS: u64 = 4_000_000_000_000_000_001;
const RESELLER: u64 = 4_000_000_000_000_000_003;
/// Quotes and a backslash, so its JSON-escaped form differs from the raw one.
const PASSWORD: &str = r#"Pw"q7\Zx-NEVER-PRINT-ME"#;
const TOKEN: &str = "fake.TOKEN-never-show-81kd";
/// Common to every form of the password (raw, JSON-escaped) and of the token.
const NEEDLES: [&str; 3] = ["NEVER-PRINT", "never-show", r#"q7\Zx"#];

fn leaks(text: &str) -> Vec<&'static str> {
    NEEDLES.into_iter().filter(|n| text.contains(n)).collect()
}

fn is_post_to(channel: u64) -> impl Fn(&RecordedRequest) -> bool {
    move |r| r.method == "POST" && r.path == format!("/api/v10/channels/{channel}/messages")
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_trace_the_chat_or_status() {
    let escaped = serde_json::to_string(PASSWORD).unwrap();
    let escaped = escaped.trim_matches('"');
    assert_ne!(escaped, PASSWORD);

    let sim = Simulator::new(SimConfig {
        sys_pwd: PASSWORD.into(),
        ..SimConfig::default()
    })
    .start()
    .await
    .unwrap();
    for (login, owner) in [
        ("alice", ""),
        ("bob", ""),
        ("carol", "reseller"),
        ("dave", ""),
    ] {
        sim.add_user(SimUser {
            login: login.into(),
            owner: owner.into(),
            user_id: login.into(),
        });
    }
    // One reply quotes the password in an API error (JSON-escaped on the wire, raw once
    // decoded); another is a page that echoes the request in both spellings.
    sim.set_login_fault(
        "alice",
        Some(LoginFault::ApiError(format!(
            "Invalid request SysPwd={PASSWORD}"
        ))),
    );
    sim.set_login_fault(
        "bob",
        Some(LoginFault::RawBody(format!(
            "<html>echo: {{\"SysPwd\":\"{escaped}\"}} raw: {PASSWORD}</html>"
        ))),
    );
    let start = (Utc::now() - Duration::minutes(2)).trunc_subsecs(0);
    let mut failed = SimJob::new(
        "carol",
        "7",
        start,
        Some(start + Duration::seconds(5)),
        "RESTORE_STOP_BY_ERROR",
    );
    failed.owner = "reseller".into();
    sim.add_job(failed.clone());
    // Dave's failure and the cycle's summary make two events for the alert channel: the
    // 400 sends them again one at a time, so the channel carries on.
    sim.add_job(SimJob {
        login: "dave".into(),
        owner: String::new(),
        user_id: "dave".into(),
        ..failed
    });

    // Discord's error bodies quote the token: a 400 on the alert channel (logged, the
    // message dropped) and a 403 on the reseller's channel (kept for /status).
    let fake = FakeDiscord::start().await;
    fake.script(
        ALERTS,
        [Scripted::Body(
            400,
            json!({"message": format!("Invalid Form Body for Bot {TOKEN}"), "code": 50035}),
        )],
    );
    fake.script(
        RESELLER,
        [Scripted::Body(
            403,
            json!({"message": format!("Missing Access (Authorization: Bot {TOKEN})"), "code": 50001}),
        )],
    );

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
        [cbs]
        url = "{url}"
        server_name = "sim"
        sys_user = "{user}"
        [[watch]]
        login = "alice"
        [[watch]]
        login = "bob"
        [[watch]]
        login = "carol"
        owner = "reseller"
        [[watch]]
        login = "dave"
        [poll]
        schedule = "* * * * * *"
        baseline_first_cycle = false
        [state]
        path = "{state}"
        [discord]
        alert_channel = "{ALERTS}"
        api_base = "{api}"
        guild_id = "{GUILD_ID}"
        [[route]]
        owner = "reseller"
        channel = "{RESELLER}"
        "#,
        url = sim.url(),
        user = sim.sys_user(),
        state = dir.path().join("state").display(),
        api = fake.api_base(),
    );
    let path = dir.path().join("rw.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_restorewatch"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", PASSWORD)
        .env("RESTOREWATCH_DISCORD_TOKEN", TOKEN)
        .env("RESTOREWATCH_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read both pipes all along: trace output fills a pipe buffer in moments.
    let read_all = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut pipe.unwrap(), &mut bytes)
                .await
                .unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read_all(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read_all(child.stderr.take().map(|p| Box::new(p) as _));

    timeout(WAIT, fake.wait_for_commands(Some(GUILD_ID)))
        .await
        .expect("the bot registers its commands");
    timeout(WAIT, fake.wait_for_requests(1, is_post_to(RESELLER)))
        .await
        .expect("carol's failure is offered to the reseller's channel");
    // The 400 first, then the alert channel's messages one at a time.
    timeout(WAIT, fake.wait_for_messages(ALERTS, 1))
        .await
        .expect("the alert channel gets messages after the rejected one");
    // /status shows the refusal once the sink has recorded it.
    let status = timeout(WAIT, async {
        loop {
            let asked = fake.inject_interaction(SlashCommand::new("status").build());
            let answer = fake.wait_for_callback(asked.id).await;
            if answer.to_string().contains("403") {
                return answer;
            }
        }
    })
    .await
    .expect("/status shows the refused channel");

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let (stdout, stderr) = (stdout.await.unwrap(), stderr.await.unwrap());
    // The paths that carry the secrets were taken, at trace, for every crate.
    assert!(stderr.contains("TRACE"), "not at trace");
    for target in ["serenity", "reqwest", "hyper"] {
        assert!(stderr.contains(target), "no {target} logs");
    }
    assert!(
        stderr.contains("alice") && stderr.contains("bob"),
        "errors logged"
    );
    assert!(
        stderr.contains("[REDACTED]"),
        "the echoes were logged, redacted"
    );

    let chat: Vec<Value> = fake.all_messages();
    let mut seen = vec![
        ("stdout", stdout),
        ("stderr", stderr),
        ("/status", status.to_string()),
    ];
    seen.extend(chat.iter().map(|m| ("chat", m.to_string())));
    for (place, text) in &seen {
        let found = leaks(text);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !leaks(l).is_empty())
            .take(5)
            .collect();
        assert!(found.is_empty(), "{found:?} in {place}: {lines:#?}");
    }
    assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
}
