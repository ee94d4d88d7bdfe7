//! The `restorewatch` binary itself: exit codes for bad configs, `once` against the
//! simulator, and the demo from start to its own end.

mod support;

use restorewatch::simulator::{LoginFault, SimConfig, SimHandle, SimUser, Simulator};
use std::path::Path;
use std::process::Output;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_restorewatch");

/// The binary with a clean environment: no RESTOREWATCH_* from the caller leaks in.
fn restorewatch(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
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

const GOOD: &str = r#"
[cbs]
url = "http://127.0.0.1:9"
sys_user = "api"
[[watch]]
login = "obm"
[poll]
schedule = "*/5 * * * *"
"#;

async fn check_with(config: &str, dir: &Path, with_password: bool) -> Output {
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = restorewatch(&["check", "--config", path.to_str().unwrap()]);
    if with_password {
        cmd.env("RESTOREWATCH_CBS_SYS_PWD", "pw-Zq81");
    }
    cmd.output().await.unwrap()
}

#[tokio::test]
async fn bad_configs_stop_the_start_with_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, String, bool); 6] = [
        (
            "poll.schedule",
            GOOD.replace("*/5 * * * *", "*/5 * *"),
            true,
        ),
        (
            "cbs.timezone",
            GOOD.replace(
                "sys_user = \"api\"",
                "sys_user = \"api\"\ntimezone = \"Mars/Olympus\"",
            ),
            true,
        ),
        (
            "cbs.url",
            GOOD.replace("url = \"http://127.0.0.1:9\"\n", ""),
            true,
        ),
        (
            "poll.shedule",
            GOOD.replace("schedule =", "shedule ="),
            true,
        ),
        ("cbs.sys_pwd", GOOD.to_owned(), false),
        (
            "state.retention_days",
            format!("{GOOD}[state]\nretention_days = \"a month\"\n"),
            true,
        ),
    ];
    for (key, config, with_password) in cases {
        let out = check_with(&config, dir.path(), with_password).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("pw-Zq81"));
    }
}

async fn simulator_with(users: &[&str]) -> SimHandle {
    let sim = Simulator::new(SimConfig::default()).start().await.unwrap();
    for login in users {
        sim.add_user(SimUser {
            login: (*login).into(),
            owner: String::new(),
            user_id: (*login).into(),
        });
    }
    sim
}

fn config_for(sim: &SimHandle, state: &Path) -> String {
    format!(
        "[cbs]\nurl = \"{}\"\nsys_user = \"{}\"\nserver_name = \"sim\"\n\
         [[watch]]\nlogin = \"alice\"\n[[watch]]\nlogin = \"bob\"\n\
         [state]\npath = \"{}\"\n",
        sim.url(),
        sim.sys_user(),
        state.display()
    )
}

#[tokio::test]
async fn once_exits_0_when_all_is_well_and_1_with_a_clear_message_when_a_call_fails() {
    let sim = simulator_with(&["alice", "bob"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rw.toml");
    // No midnight grace: one request per user at any time of day, so the count below
    // holds at 01:00 as at noon.
    let base = config_for(&sim, &dir.path().join("state"));
    std::fs::write(&config, format!("{base}[poll]\nmidnight_grace = \"0s\"\n")).unwrap();
    let run = || {
        let mut cmd = restorewatch(&["once", "--config", config.to_str().unwrap()]);
        cmd.env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd());
        cmd.output()
    };

    let out = run().await.unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("Now watching 2 users"), "{stdout}");
    assert!(
        stdout.contains("alice: no earlier jobs recorded"),
        "{stdout}"
    );
    assert!(stdout.contains("bob: no earlier jobs recorded"), "{stdout}");
    assert_eq!(sim.requests_served(), 2);

    sim.set_login_fault("bob", Some(LoginFault::Http500));
    let out = run().await.unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: bob on "), "{stderr}");
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    assert!(!stderr.contains(sim.sys_pwd()), "the password never shows");
}

#[tokio::test]
async fn check_reports_each_watched_user() {
    let sim = simulator_with(&["alice"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rw.toml");
    std::fs::write(&config, config_for(&sim, &dir.path().join("state"))).unwrap();
    let out = restorewatch(&["check", "--config", config.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .output()
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "bob is unknown to the simulator: {stdout}"
    );
    assert!(stdout.contains("alice: 0 job(s)"), "{stdout}");
    assert!(stdout.contains("bob: FAILED"), "{stdout}");
}

/// Real time on purpose: the subject is the demo, which runs on the wall clock for people
/// to watch (compressed days); the test waits only for the process to end.
#[tokio::test]
async fn the_demo_shows_jobs_running_finishing_and_failures_alerted_once_then_exits_0() {
    let out = restorewatch(&["demo", "--users", "3", "--duration", "100s"])
        .output()
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("restorewatch demo: CBS simulator at http://127.0.0.1:"));
    // One baseline card per owner, a line per user.
    for user in ["user001", "user002", "user003"] {
        let listed = stdout.contains(&format!("Now watching {user}"))
            || stdout.contains(&format!("{user}: no earlier jobs recorded"));
        assert!(listed, "{user} not in a baseline: {stdout}");
    }
    assert!(stdout.contains("Poll cycle summary"));
    // Issue 11: a grouped storm, an escalated repeat with its report lines, and the day's
    // digest to close. Cards are the blocks that open with a `== title ==` line.
    let cards: Vec<&str> = stdout.split("\n== ").skip(1).collect();
    let storm = cards.iter().position(|c| c.contains(" restores failed =="));
    let storm = storm.unwrap_or_else(|| panic!("a grouped storm: {stdout}"));
    assert!(
        cards[storm].contains("`/failures days:") && cards[storm].contains("` shows"),
        "{}",
        cards[storm]
    );
    let escalated = cards
        .iter()
        .find(|c| c.starts_with("Restore failed: ") && c.contains("3rd failure in a row"))
        .unwrap_or_else(|| panic!("an escalated repeat: {stdout}"));
    for part in ["\nFiles: ", "\nLast log lines:\n  [ERROR] "] {
        assert!(escalated.contains(part), "report lines: {escalated}");
    }
    let digest = cards
        .iter()
        .position(|c| c.starts_with("Restore digest for "))
        .unwrap_or_else(|| panic!("the day's digest: {stdout}"));
    assert!(digest > storm, "{stdout}");
    // After it, only the digest's own list cards (failures, by owner, ...).
    for card in &cards[digest + 1..] {
        let other = ["Restore ", "Poll cycle", "Roll-up", "Now watching"]
            .iter()
            .any(|t| card.starts_with(t))
            || card.contains(" restores failed ==");
        assert!(!other, "the digest is the last thing shown: {card}");
    }
    assert!(
        cards[digest].contains("restore jobs on "),
        "{}",
        cards[digest]
    );
    // The console has no Discord markup: times read as times.
    assert!(!stdout.contains("<t:"), "{stdout}");
    assert!(stdout.contains("started running"));
    let finished_line = stdout
        .lines()
        .any(|l| l.contains("Finished: ") && !l.contains("none"));
    assert!(finished_line, "{stdout}");
    // Every failure is alerted, each job once.
    let alerted: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Job: ")).collect();
    assert!(
        !alerted.is_empty(),
        "the demo workload always has a failure: {stdout}"
    );
    let mut unique = alerted.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        alerted.len(),
        "no job alerted twice: {alerted:?}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("demo finished: "), "{last}");
    assert!(
        !last.contains("stopped before"),
        "the demo ran to its own end: {last}"
    );
}

#[tokio::test]
async fn digest_print_shows_the_days_failures_from_the_store() {
    use chrono::{Duration, SubsecRound, Utc};
    use restorewatch::simulator::SimJob;
    let sim = simulator_with(&["alice", "bob"]).await;
    let start = (Utc::now() - Duration::minutes(3)).trunc_subsecs(0);
    sim.add_job(SimJob {
        backup_set_name: "Ledger DB".into(),
        missed_databases: vec!["ledger".into()],
        ..SimJob::new(
            "alice",
            "77",
            start,
            Some(start + Duration::minutes(1)),
            "RESTORE_STOP_BY_ERROR",
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rw.toml");
    std::fs::write(&config, config_for(&sim, &dir.path().join("state"))).unwrap();
    let config = config.to_str().unwrap();
    let out = restorewatch(&["once", "--config", config])
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let date = start.date_naive().to_string();
    let out = restorewatch(&["digest", "--config", config, "--date", &date, "--print"])
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .output()
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("Restore digest for {date}")),
        "{stdout}"
    );
    assert!(stdout.contains("alice"), "{stdout}");
    assert!(stdout.contains("Ledger DB"), "{stdout}");
    assert!(stdout.contains("RESTORE_STOP_BY_ERROR"), "{stdout}");

    // A day that has not come yet has no digest, printed or posted; nor has a day whose
    // records the retention has pruned.
    let refused = [
        ("2099-01-01", "--date 2099-01-01 is in the future"),
        (
            "2000-01-01",
            "--date 2000-01-01 is past the store's retention",
        ),
    ];
    for (print, (date, says)) in [true, false]
        .into_iter()
        .zip(refused)
        .chain([false, true].into_iter().zip(refused))
    {
        let mut args = vec!["digest", "--config", config, "--date", date];
        args.extend(print.then_some("--print"));
        let out = restorewatch(&args)
            .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
        assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    }
}

/// `digest` without `--print` delivers the digest to the digest channel (and nothing else).
#[tokio::test]
async fn digest_delivers_to_the_digest_channel() {
    use chrono::{Duration, SubsecRound, Utc};
    use restorewatch::simulator::SimJob;
    const ALERTS: u64 = 4_000_000_000_000_000_001;
    const DIGESTS: u64 = 4_000_000_000_000_000_002;
    let sim = simulator_with(&["alice", "bob"]).await;
    let start = (Utc::now() - Duration::minutes(3)).trunc_subsecs(0);
    sim.add_job(SimJob {
        backup_set_name: "Ledger DB".into(),
        ..SimJob::new(
            "alice",
            "77",
            start,
            Some(start + Duration::minutes(1)),
            "RESTORE_STOP_BY_ERROR",
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let quiet = dir.path().join("quiet.toml");
    std::fs::write(&quiet, config_for(&sim, &state)).unwrap();
    let out = restorewatch(&["once", "--config", quiet.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let fake = support::fake_discord::FakeDiscord::start().await;
    let chatty = dir.path().join("chatty.toml");
    let discord = format!(
        "[discord]\nalert_channel = \"{ALERTS}\"\ndigest_channel = \"{DIGESTS}\"\napi_base = \"{}\"\n",
        fake.api_base()
    );
    std::fs::write(&chatty, config_for(&sim, &state) + &discord).unwrap();
    let date = start.date_naive().to_string();
    let out = restorewatch(&[
        "digest",
        "--config",
        chatty.to_str().unwrap(),
        "--date",
        &date,
    ])
    .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
    .env("RESTOREWATCH_DISCORD_TOKEN", "fake-token")
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let digests = fake.messages(DIGESTS);
    assert_eq!(digests.len(), 1, "{digests:#?}");
    let shown = digests[0].to_string();
    assert!(
        shown.contains(&format!("Restore digest for {date}")),
        "{shown}"
    );
    assert!(
        shown.contains("alice") && shown.contains("RESTORE_STOP_BY_ERROR"),
        "{shown}"
    );
    assert!(
        fake.messages(ALERTS).is_empty(),
        "only the digest is posted"
    );
    assert!(fake.unexpected().is_empty(), "{:?}", fake.unexpected());
}

/// Discord refuses every message as malformed (400): `once` drops the events (they must not
/// block the outbox) but counts them as dropped, not delivered, and exits 1.
#[tokio::test]
async fn once_counts_messages_discord_rejects_as_dropped_and_exits_1() {
    use support::fake_discord::{FakeDiscord, Scripted};
    const ALERTS: u64 = 4_000_000_000_000_000_001;
    let sim = simulator_with(&["alice", "bob"]).await;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    fake.script(ALERTS, std::iter::repeat_n(Scripted::Status(400), 20));
    let config = dir.path().join("rw.toml");
    let discord = format!(
        "[discord]\nalert_channel = \"{ALERTS}\"\napi_base = \"{}\"\n",
        fake.api_base()
    );
    std::fs::write(
        &config,
        config_for(&sim, &dir.path().join("state")) + &discord,
    )
    .unwrap();
    let out = restorewatch(&["once", "--config", config.to_str().unwrap()])
        .env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd())
        .env("RESTOREWATCH_DISCORD_TOKEN", "fake-token")
        .output()
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(fake.messages(ALERTS).is_empty(), "Discord accepted nothing");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The baseline "Now watching" event: dropped, not delivered, and nothing left queued.
    assert!(
        stderr.contains("0 events delivered, 1 dropped, 0 pending"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: Discord rejected 1 event(s) as malformed"),
        "{stderr}"
    );
    let logged: Vec<&str> = (stderr.lines())
        .filter(|l| l.contains("ERROR") && l.contains("dropping the event"))
        .collect();
    assert_eq!(logged.len(), 1, "{stderr}");
}

/// sled opens a store whose log lost its last writes (or whose files were replaced) as if
/// nothing happened. The store's mark makes that an error at the start: the store rolled
/// back to an older copy is named, with what it means, and the start after it is quiet.
#[tokio::test]
async fn a_store_rolled_back_under_its_mark_is_an_error_at_the_start() {
    let sim = simulator_with(&["alice", "bob"]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("rw.toml");
    std::fs::write(&config, config_for(&sim, &state)).unwrap();
    let run = || {
        let mut cmd = restorewatch(&["once", "--config", config.to_str().unwrap()]);
        cmd.env("RESTOREWATCH_CBS_SYS_PWD", sim.sys_pwd());
        cmd.output()
    };
    let rolled_back = |stderr: &str| {
        stderr
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("the state store lost its last"))
            .count()
    };
    let out = run().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let old = std::fs::read(state.join("db")).unwrap();
    let out = run().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rolled_back(&text(&out.stderr)), 0, "{}", text(&out.stderr));

    // The store's log goes back to the first run's end; its mark stays.
    std::fs::write(state.join("db"), old).unwrap();
    let out = run().await.unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(rolled_back(&stderr), 1, "{stderr}");
    assert!(stderr.contains("may be lost or posted again"), "{stderr}");

    let out = run().await.unwrap();
    assert_eq!(rolled_back(&text(&out.stderr)), 0, "said once");
}

/// The demo's numbers are bounded: a huge user count or a run of years is refused with the
/// bound, before anything starts.
#[tokio::test]
async fn demo_bounds_its_users_and_duration() {
    for (args, said) in [
        (["demo", "--users", "100000"], "a number from 1 to 1000"),
        (["demo", "--users", "0"], "a number from 1 to 1000"),
        (["demo", "--duration", "2y"], "at most 1h"),
    ] {
        let out = restorewatch(&args).output().await.unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(said) && stderr.contains(args[1]),
            "{stderr}"
        );
    }
}

/// The sizes of the binary's sections named `names` (ELF64, little-endian), by reading
/// its section headers.
fn section_sizes(elf: &[u8], names: &[&str]) -> Vec<Option<u64>> {
    let u16_at = |at: usize| u64::from(u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()));
    let u32_at = |at: usize| u64::from(u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()));
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let (table, entry, count) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let header = |i: u64| usize::try_from(table + i * entry).unwrap();
    let strings = usize::try_from(u64_at(header(u16_at(0x3e)) + 0x18)).unwrap();
    let name_of = |i: u64| {
        let start = strings + usize::try_from(u32_at(header(i))).unwrap();
        let len = elf[start..].iter().position(|&b| b == 0).unwrap();
        std::str::from_utf8(&elf[start..start + len])
            .unwrap()
            .to_owned()
    };
    names
        .iter()
        .map(|name| {
            (0..count)
                .find(|&i| name_of(i) == *name)
                .map(|i| u64_at(header(i) + 0x20))
        })
        .collect()
}

/// Where the build host's glibc allows it (build.rs), the binary's relative relocations
/// are packed: as RELA entries they took 1.4 MB that each start reads and keeps resident.
#[test]
fn the_binary_packs_its_relative_relocations_where_glibc_allows() {
    if option_env!("BUILD_PACKED_RELOCS") != Some("1") {
        return;
    }
    let elf = std::fs::read(BIN).unwrap();
    let [rela, relr] = section_sizes(&elf, &[".rela.dyn", ".relr.dyn"])[..] else {
        unreachable!()
    };
    let relr = relr.expect("a .relr.dyn section");
    assert!(relr > 0 && relr < 64 * 1024, "packed: {relr} bytes");
    let rela = rela.unwrap_or(0);
    assert!(rela < 64 * 1024, "what is left as RELA: {rela} bytes");
}
