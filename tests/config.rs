//! Loading configuration: the committed config files, every way a config can be wrong
//! (each must name its key), environment layering and secrets.

use restorewatch::cbs::model::StatusClass;
use restorewatch::config::{ConfigError, Settings};
use secrecy::ExposeSecret;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PASSWORD_ENV: &str = "RESTOREWATCH_CBS_SYS_PWD";
const TOKEN_ENV: &str = "RESTOREWATCH_DISCORD_TOKEN";

/// A stand-in environment: tests must not change the process's.
fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A valid config without secrets, to break one key at a time.
const BASE: &str = r#"
[cbs]
url = "https://cbs.example.com"
sys_user = "api"
timezone = "Europe/Berlin"

[poll]
schedule = "*/5 * * * *"

[discord]
alert_channel = "123456789012345678"
"#;

const SECRETS: [(&str, &str); 2] = [(PASSWORD_ENV, "pw"), (TOKEN_ENV, "tok")];

fn load(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml_str(text, &env(&SECRETS))
}

/// Fails with an error naming `key`, on one line that says `key: ...`.
fn fails_naming(text: &str, key: &str) -> String {
    let err = load(text).expect_err("config should be rejected");
    let message = err.to_string();
    assert_eq!(err.key(), Some(key), "{message}");
    assert!(
        message.starts_with(&format!("config error: {key}: ")),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    message
}

#[test]
fn the_example_loads_with_its_values() {
    let s = Settings::from_toml_str(
        &repo_file("config/restorewatch.example.toml"),
        &env(&SECRETS),
    )
    .unwrap();
    assert_eq!(s.cbs.url.as_str(), "https://cbs.example.com/");
    assert_eq!(s.cbs.server_name, "cbs1");
    assert_eq!(s.cbs.sys_user, "api-user");
    assert_eq!(s.cbs.sys_pwd.expose_secret(), "pw");
    assert_eq!(
        s.cbs.timezone,
        "Europe/Berlin".parse::<restorewatch::tz::Tz>().unwrap()
    );
    assert_eq!(s.cbs.request_timeout, Duration::from_secs(30));
    assert_eq!(s.cbs.max_concurrency, 8);
    assert_eq!(s.cbs.ca_cert, None);
    let logins: Vec<(&str, &str)> = s
        .watch
        .iter()
        .map(|w| (w.login.as_str(), w.owner.as_str()))
        .collect();
    assert_eq!(logins, [("obm", ""), ("shop-backup", "reseller-a")]);
    assert_eq!(s.poll.schedule.to_string(), "*/5 * * * *");
    assert_eq!(s.poll.midnight_grace, Duration::from_secs(6 * 3600));
    assert_eq!(s.poll.max_catch_up_days, 7);
    assert_eq!(s.poll.stuck_after, Duration::from_secs(12 * 3600));
    assert_eq!(
        s.poll.alert_classes,
        BTreeSet::from([
            StatusClass::PartialFailure,
            StatusClass::Failure,
            StatusClass::Unknown
        ])
    );
    assert_eq!(s.state.path, PathBuf::from("state"));
    assert_eq!(s.state.retention_days, 35);
    let d = s.discord.expect("the example has a [discord] section");
    assert_eq!(d.token.expose_secret(), "tok");
    assert_eq!(d.alert_channel.get(), 123456789012345678);
    assert_eq!(d.digest_channel.get(), 123456789012345679);
    assert_eq!(d.mention_role.map(|r| r.get()), Some(223456789012345678));
    assert_eq!(d.api_base, None);
    assert_eq!(d.guilds, [serenity::all::GuildId::new(323456789012345678)]);
    assert_eq!(d.admin_role.map(|r| r.get()), Some(423456789012345678));
    assert!(!d.public_lookups);
    assert_eq!(d.routes.len(), 1);
    assert_eq!(d.routes[0].owner, "reseller-a");
    assert_eq!(d.routes[0].channel.get(), 523456789012345678);
    assert_eq!(s.digest.schedule.to_string(), "0 8 * * *");
}

#[test]
fn the_local_config_loads() {
    let s = Settings::from_toml_str(
        &repo_file("config/restorewatch.toml"),
        &env(&[(PASSWORD_ENV, "pw")]),
    )
    .unwrap();
    assert_eq!(s.cbs.url.as_str(), "http://127.0.0.1:8620/");
    assert_eq!(s.cbs.sys_user, "api");
    assert!(s.discord.is_none(), "local runs print to the console");
}

#[test]
fn load_reads_the_named_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rw.toml");
    std::fs::write(
        &path,
        "[cbs]\nurl = \"http://127.0.0.1:1\"\nsys_user = \"u\"\nsys_pwd = \"inline\"\n",
    )
    .unwrap();
    let s = Settings::load(Some(&path)).unwrap();
    assert_eq!(s.cbs.server_name, "127.0.0.1");

    let missing = dir.path().join("nope.toml");
    let err = Settings::load(Some(&missing)).unwrap_err().to_string();
    assert!(err.starts_with("config error: cannot read "), "{err}");
    assert!(err.contains("nope.toml"), "{err}");

    std::fs::write(&path, "[cbs\n").unwrap();
    let err = Settings::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("rw.toml line 1, column"), "{err}");
}

#[test]
fn bad_cron_names_poll_schedule() {
    let message = fails_naming(
        &BASE.replace(r#"schedule = "*/5 * * * *""#, r#"schedule = "*/5 * *""#),
        "poll.schedule",
    );
    assert!(
        message.contains(r#""*/5 * *" is not a cron schedule (5 fields, or 6 with seconds)"#),
        "{message}"
    );
    fails_naming(
        &format!("{BASE}[digest]\nschedule = \"0 8 * * 9\"\n"),
        "digest.schedule",
    );
}

#[test]
fn bad_zone_names_cbs_timezone() {
    let message = fails_naming(
        &BASE.replace("Europe/Berlin", "Europe/Berln"),
        "cbs.timezone",
    );
    assert!(message.contains("\"Europe/Berln\""), "{message}");
}

#[test]
fn missing_url_names_cbs_url() {
    fails_naming(
        &BASE.replace(r#"url = "https://cbs.example.com""#, ""),
        "cbs.url",
    );
    fails_naming(&BASE.replace("https://", "ftp://"), "cbs.url");
    fails_naming(
        &BASE.replace("https://cbs.example.com", "not a url"),
        "cbs.url",
    );
}

#[test]
fn missing_sys_user_names_it() {
    fails_naming(&BASE.replace(r#"sys_user = "api""#, ""), "cbs.sys_user");
}

#[test]
fn unknown_keys_are_named() {
    let message = fails_naming(&BASE.replace("schedule = ", "shedule = "), "poll.shedule");
    assert!(message.contains("unknown field `shedule`"), "{message}");
    fails_naming(&format!("{BASE}[pol]\nx = 1\n"), "pol");
    fails_naming(
        &format!("{BASE}[[watch]]\nlogin = \"a\"\nowner = \"\"\nlogn = \"b\"\n"),
        "watch[0].logn",
    );
}

#[test]
fn missing_password_names_cbs_sys_pwd() {
    let err = Settings::from_toml_str(BASE, &env(&[(TOKEN_ENV, "tok")])).unwrap_err();
    assert_eq!(err.key(), Some("cbs.sys_pwd"));
    assert!(
        err.to_string().contains("RESTOREWATCH_CBS_SYS_PWD"),
        "{err}"
    );
}

#[test]
fn missing_token_names_discord_token() {
    let err = Settings::from_toml_str(BASE, &env(&[(PASSWORD_ENV, "pw")])).unwrap_err();
    assert_eq!(err.key(), Some("discord.token"));
}

#[test]
fn bad_channel_ids_are_named() {
    for bad in [r#""general""#, "0", "-5", "1.5", r#""""#] {
        let text = BASE.replace(r#""123456789012345678""#, bad);
        fails_naming(&text, "discord.alert_channel");
    }
    // An integer works as well as a string.
    let s = load(&BASE.replace(r#""123456789012345678""#, "123456789012345678")).unwrap();
    assert_eq!(s.discord.unwrap().alert_channel.get(), 123456789012345678);
    fails_naming(
        &format!("{BASE}[[route]]\nowner = \"r\"\nchannel = \"x\"\n"),
        "route[0].channel",
    );
}

#[test]
fn bad_durations_are_named() {
    let message = fails_naming(
        &BASE.replace("[poll]\n", "[poll]\nstuck_after = \"12 parsecs\"\n"),
        "poll.stuck_after",
    );
    assert!(
        message.contains("\"12 parsecs\" is not a duration"),
        "{message}"
    );
    fails_naming(
        &BASE.replace("[poll]\n", "[poll]\nmidnight_grace = \"2d\"\n"),
        "poll.midnight_grace",
    );
    fails_naming(
        &BASE.replace("[cbs]\n", "[cbs]\nrequest_timeout = \"0s\"\n"),
        "cbs.request_timeout",
    );
    // Bounded: a typo of a unit is refused, not slept on.
    let message = fails_naming(
        &BASE.replace("[cbs]\n", "[cbs]\nrequest_timeout = \"1000000000d\"\n"),
        "cbs.request_timeout",
    );
    assert!(message.contains("longer than a year"), "{message}");
    fails_naming(
        &BASE.replace("[cbs]\n", "[cbs]\nrequest_timeout = \"2h\"\n"),
        "cbs.request_timeout",
    );
    fails_naming(
        &BASE.replace("[poll]\n", "[poll]\nstuck_after = \"400d\"\n"),
        "poll.stuck_after",
    );
    assert!(load(&BASE.replace("[cbs]\n", "[cbs]\nrequest_timeout = \"1h\"\n")).is_ok());
}

#[test]
fn out_of_range_numbers_are_named() {
    let message = fails_naming(
        &BASE.replace("[cbs]\n", "[cbs]\nmax_concurrency = 0\n"),
        "cbs.max_concurrency",
    );
    assert!(message.contains("between 1 and 64, got 0"), "{message}");
    fails_naming(
        &BASE.replace("[poll]\n", "[poll]\nmax_catch_up_days = 32\n"),
        "poll.max_catch_up_days",
    );
    fails_naming(
        &format!("{BASE}[state]\nretention_days = 1\n"),
        "state.retention_days",
    );
    fails_naming(
        &format!("{BASE}[state]\nretention_days = 100000000\n"),
        "state.retention_days",
    );
    assert!(load(&format!("{BASE}[state]\nretention_days = 3650\n")).is_ok());
    fails_naming(
        &BASE.replace("[cbs]\n", "[cbs]\nmax_concurrency = \"8\"\n"),
        "cbs.max_concurrency",
    );
}

#[test]
fn other_bad_values_are_named() {
    fails_naming(
        &BASE.replace("[poll]\n", "[poll]\nalert_classes = [\"failed\"]\n"),
        "poll.alert_classes",
    );
    // Running is not an outcome: it would never alert, so it is refused.
    fails_naming(
        &BASE.replace("[poll]\n", "[poll]\nalert_classes = [\"running\"]\n"),
        "poll.alert_classes",
    );
    fails_naming(
        &format!("{BASE}[[watch]]\nlogin = \"a\"\n[[watch]]\nlogin = \"a\"\n"),
        "watch[1].login",
    );
    fails_naming(
        &format!("{BASE}[[watch]]\nowner = \"x\"\n"),
        "watch[0].login",
    );
    fails_naming(
        &BASE.replace("[cbs]\n", "[cbs]\nca_cert = \"/nonexistent/ca.pem\"\n"),
        "cbs.ca_cert",
    );
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let message = fails_naming(
        &BASE.replace("[cbs]\n", &format!("[cbs]\nca_cert = {not_pem:?}\n")),
        "cbs.ca_cert",
    );
    assert!(message.contains("holds no PEM certificate"), "{message}");
    // An empty path would put the store in the working directory itself.
    fails_naming(&format!("{BASE}[state]\npath = \"\"\n"), "state.path");
    fails_naming(&format!("{BASE}[state]\npath = \"  \"\n"), "state.path");
    // A padded login is the same login: listed twice.
    fails_naming(
        &format!("{BASE}[[watch]]\nlogin = \"alice\"\n[[watch]]\nlogin = \" alice \"\n"),
        "watch[1].login",
    );
    // The login rule of `/watch add` and discovery: bounded, nothing invisible.
    let message = fails_naming(
        &format!("{BASE}[[watch]]\nlogin = \"{}\"\n", "a".repeat(129)),
        "watch[0].login",
    );
    assert!(message.contains("at most 128 characters"), "{message}");
    fails_naming(
        &format!("{BASE}[[watch]]\nlogin = \"ok\"\n[[watch]]\nlogin = \"al\\u202Eice\"\n"),
        "watch[1].login",
    );
    fails_naming(
        &format!("{BASE}[[watch]]\nlogin = \"a\\u0000b\"\n"),
        "watch[0].login",
    );
    let no_discord = BASE.replace("[discord]\nalert_channel = \"123456789012345678\"\n", "");
    fails_naming(
        &format!("{no_discord}[[route]]\nowner = \"r\"\nchannel = \"1\"\n"),
        "route",
    );
}

#[test]
fn environment_beats_the_file() {
    let vars = [
        SECRETS[0],
        SECRETS[1],
        ("RESTOREWATCH_CBS_URL", "http://10.0.0.9:8080"),
        ("RESTOREWATCH_POLL_SCHEDULE", "0 * * * *"),
        ("RESTOREWATCH_POLL_ALERT_CLASSES", "failure, warning"),
        ("RESTOREWATCH_CBS_MAX_CONCURRENCY", "3"),
        ("RESTOREWATCH_DISCORD_ALERT_CHANNEL", "42"),
        ("RESTOREWATCH_DISCORD_PUBLIC_LOOKUPS", "true"),
        // Empty counts as unset.
        ("RESTOREWATCH_CBS_TIMEZONE", ""),
    ];
    let s = Settings::from_toml_str(BASE, &env(&vars)).unwrap();
    assert_eq!(s.cbs.url.as_str(), "http://10.0.0.9:8080/");
    assert_eq!(s.cbs.server_name, "10.0.0.9");
    assert_eq!(
        s.cbs.timezone,
        "Europe/Berlin".parse::<restorewatch::tz::Tz>().unwrap()
    );
    assert_eq!(s.cbs.max_concurrency, 3);
    assert_eq!(s.poll.schedule.to_string(), "0 * * * *");
    assert_eq!(
        s.poll.alert_classes,
        BTreeSet::from([StatusClass::Failure, StatusClass::Warning])
    );
    let d = s.discord.unwrap();
    assert_eq!(d.alert_channel.get(), 42);
    assert!(d.public_lookups);
}

#[test]
fn environment_alone_can_turn_discord_on_but_not_with_the_token() {
    let no_discord = BASE.replace("[discord]\nalert_channel = \"123456789012345678\"\n", "");
    let s = Settings::from_toml_str(&no_discord, &env(&SECRETS)).unwrap();
    assert!(s.discord.is_none(), "a token alone keeps the console");
    let vars = [
        SECRETS[0],
        SECRETS[1],
        ("RESTOREWATCH_DISCORD_ALERT_CHANNEL", "7"),
    ];
    let s = Settings::from_toml_str(&no_discord, &env(&vars)).unwrap();
    assert_eq!(s.discord.unwrap().alert_channel.get(), 7);
}

#[test]
fn bad_environment_values_name_key_and_variable() {
    let vars = [
        SECRETS[0],
        SECRETS[1],
        ("RESTOREWATCH_POLL_SCHEDULE", "often"),
    ];
    let err = Settings::from_toml_str(BASE, &env(&vars)).unwrap_err();
    assert_eq!(err.key(), Some("poll.schedule"));
    assert!(
        err.to_string()
            .ends_with("(set by RESTOREWATCH_POLL_SCHEDULE)"),
        "{err}"
    );
    let vars = [
        SECRETS[0],
        SECRETS[1],
        ("RESTOREWATCH_STATE_RETENTION_DAYS", "a month"),
    ];
    let err = Settings::from_toml_str(BASE, &env(&vars)).unwrap_err();
    assert_eq!(err.key(), Some("state.retention_days"));
    assert!(
        err.to_string()
            .contains("RESTOREWATCH_STATE_RETENTION_DAYS"),
        "{err}"
    );
}

#[test]
fn a_bad_log_format_stops_the_start_naming_the_variable() {
    let err = Settings::from_toml_str(
        BASE,
        &env(&[SECRETS[0], SECRETS[1], ("RESTOREWATCH_LOG_FORMAT", "xml")]),
    )
    .unwrap_err();
    assert_eq!(err.key(), Some("RESTOREWATCH_LOG_FORMAT"), "{err}");
    assert!(
        err.to_string().contains("\"xml\" is not a log format"),
        "{err}"
    );
    for fine in ["json", "TEXT", " text "] {
        let vars = [SECRETS[0], SECRETS[1], ("RESTOREWATCH_LOG_FORMAT", fine)];
        assert!(Settings::from_toml_str(BASE, &env(&vars)).is_ok(), "{fine}");
    }
}

#[test]
fn secrets_come_from_files_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let pwd = dir.path().join("pwd");
    let token = dir.path().join("token");
    std::fs::write(&pwd, "from-file\n").unwrap();
    std::fs::write(&token, "  token-from-file  \n").unwrap();
    let text = BASE
        .replace(
            "[cbs]\n",
            &format!("[cbs]\nsys_pwd_file = {:?}\nsys_pwd = \"inline\"\n", pwd),
        )
        .replace(
            "[discord]\n",
            &format!("[discord]\ntoken_file = {:?}\n", token),
        );
    let s = Settings::from_toml_str(&text, &env(&[])).unwrap();
    assert_eq!(
        s.cbs.sys_pwd.expose_secret(),
        "from-file",
        "the file beats the key"
    );
    assert_eq!(s.discord.unwrap().token.expose_secret(), "token-from-file");
    // The environment beats the file, trimmed the same way (a `.env` line's `\r`).
    let s = Settings::from_toml_str(&text, &env(&[(PASSWORD_ENV, "from-env\r")])).unwrap();
    assert_eq!(s.cbs.sys_pwd.expose_secret(), "from-env");
    // A blank variable is a mistake, named, not an empty password sent to the server.
    let err = Settings::from_toml_str(&text, &env(&[(PASSWORD_ENV, "  ")])).unwrap_err();
    assert_eq!(err.key(), Some("cbs.sys_pwd"), "{err}");
    assert!(err.to_string().contains("set but empty"), "{err}");
}

#[test]
fn secrets_never_show_in_debug_or_errors() {
    const PASSWORD: &str = "hunter2-Xq9!zz";
    let s = Settings::from_toml_str(
        BASE,
        &env(&[(PASSWORD_ENV, PASSWORD), (TOKEN_ENV, "tok-Zr7Yk")]),
    )
    .unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(!debug.contains("tok-Zr7Yk"), "{debug}");

    // A secret file that cannot be used: the error names the key and the path, not the content.
    let dir = tempfile::tempdir().unwrap();
    let not_utf8 = dir.path().join("pwd");
    let mut content = PASSWORD.as_bytes().to_vec();
    content.push(0xff);
    std::fs::write(&not_utf8, content).unwrap();
    for path in [not_utf8, dir.path().join("missing")] {
        let text = BASE.replace("[cbs]\n", &format!("[cbs]\nsys_pwd_file = {:?}\n", path));
        let err = Settings::from_toml_str(&text, &env(&[(TOKEN_ENV, "t")])).unwrap_err();
        assert_eq!(err.key(), Some("cbs.sys_pwd_file"));
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }

    // A password of the wrong type is not quoted back.
    let text = BASE.replace("[cbs]\n", "[cbs]\nsys_pwd = 987654321\n");
    let err = Settings::from_toml_str(&text, &env(&[(TOKEN_ENV, "t")])).unwrap_err();
    assert_eq!(err.key(), Some("cbs.sys_pwd"));
    assert!(!err.to_string().contains("987654321"), "{err}");

    // Nor is a password inside the URL.
    let text = BASE.replace("https://cbs", "https://u:s3cr3t-pw@cbs");
    let err = load(&text).unwrap_err();
    assert_eq!(err.key(), Some("cbs.url"));
    assert!(!err.to_string().contains("s3cr3t-pw"), "{err}");
}

#[test]
fn a_section_of_the_wrong_type_is_named() {
    let message = fails_naming("cbs = 5\n", "cbs");
    assert!(message.contains("expected the [cbs] table"), "{message}");
}

#[test]
fn discover_and_rate_keys_are_checked() {
    let s = load(&format!(
        "{BASE}[discover]\nenabled = true\nowners = [\"r1\"]\nexclude = [\"test-*\"]\nrefresh = \"2h\"\n"
    ))
    .unwrap();
    assert!(s.discover.enabled);
    assert_eq!(s.discover.owners, ["r1"]);
    assert!(s.discover.exclude.is_match("test-9") && !s.discover.exclude.is_match("prod"));
    // CBS logins are case-insensitive, and so are the globs.
    assert!(s.discover.exclude.is_match("TEST-2") && s.discover.exclude.is_match("Test-3"));
    assert_eq!(s.discover.refresh, std::time::Duration::from_secs(7200));
    assert!(!load(BASE).unwrap().discover.enabled, "off by default");
    let message = fails_naming(
        &format!("{BASE}[discover]\nexclude = [\"ok\", \"a[\"]\n"),
        "discover.exclude[1]",
    );
    assert!(message.contains("a["), "{message}");
    fails_naming(
        &format!("{BASE}[discover]\nrefresh = \"0s\"\n"),
        "discover.refresh",
    );
    fails_naming(
        &format!("{BASE}[discover]\nenable = true\n"),
        "discover.enable",
    );
    let rate = |n: &str| {
        BASE.replace(
            "[cbs]\n",
            &format!("[cbs]\nmax_requests_per_second = {n}\n"),
        )
    };
    assert_eq!(
        load(&rate("20"))
            .unwrap()
            .cbs
            .max_requests_per_second
            .map(|n| n.get()),
        Some(20)
    );
    assert_eq!(load(BASE).unwrap().cbs.max_requests_per_second, None);
    fails_naming(&rate("0"), "cbs.max_requests_per_second");
}

/// Two `[[cbs]]` servers, each with its password from its own variable.
const TWO_SERVERS: &str = r#"
[[cbs]]
name = "eu-1"
url = "https://eu.example.com"
sys_user = "api"
timezone = "Europe/Berlin"
max_concurrency = 4

[[cbs]]
name = "us.east"
url = "https://us.example.com"
sys_user = "api2"
timezone = "America/New_York"
[cbs.discover]
enabled = true
exclude = ["test-*"]

[[watch]]
login = "alice"
server = "eu-1"

[[watch]]
login = "alice"
server = "us.east"
"#;

const TWO_PASSWORDS: [(&str, &str); 2] = [
    ("RESTOREWATCH_CBS_EU_1_SYS_PWD", "pw-eu"),
    ("RESTOREWATCH_CBS_US_EAST_SYS_PWD", "pw-us"),
];

#[test]
fn several_servers_each_have_their_settings_password_and_users() {
    let s = Settings::from_toml_str(TWO_SERVERS, &env(&TWO_PASSWORDS)).unwrap();
    assert!(s.several_servers());
    let servers = s.servers();
    assert_eq!(servers.len(), 2);
    let (eu, us) = (servers[0], servers[1]);
    assert_eq!(eu.cbs.server_name, "eu-1");
    assert_eq!(eu.cbs.sys_pwd.expose_secret(), "pw-eu");
    assert_eq!(
        eu.cbs.timezone,
        "Europe/Berlin".parse::<restorewatch::tz::Tz>().unwrap()
    );
    assert_eq!(eu.cbs.max_concurrency, 4);
    assert!(
        !eu.discover.enabled,
        "the top-level [discover] (off) applies"
    );
    assert_eq!(us.cbs.server_name, "us.east");
    assert_eq!(us.cbs.url.as_str(), "https://us.example.com/");
    assert_eq!(us.cbs.sys_pwd.expose_secret(), "pw-us");
    assert_eq!(
        us.cbs.timezone,
        "America/New_York".parse::<restorewatch::tz::Tz>().unwrap()
    );
    assert!(us.discover.enabled, "its own discover table");
    assert!(us.discover.exclude.is_match("test-1"));
    let logins = |w: &[restorewatch::config::WatchEntry]| -> Vec<String> {
        w.iter().map(|w| w.login.clone()).collect()
    };
    assert_eq!(logins(eu.watch), ["alice"]);
    assert_eq!(logins(us.watch), ["alice"]);
    // The effective config names each server's keys, the passwords redacted.
    let described = s.describe();
    let value = |key: &str| {
        described
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{key} missing from {described:?}"))
    };
    assert_eq!(value("cbs[1].name"), "\"us.east\"");
    assert_eq!(value("cbs[1].sys_pwd"), "\"<redacted>\"");
    assert_eq!(value("cbs[1].discover.enabled"), "true");
    assert_eq!(value("watch[1].server"), "\"us.east\"");
    assert!(!format!("{described:?}").contains("pw-"), "{described:?}");
}

#[test]
fn one_cbs_array_entry_is_a_single_server_with_the_plain_password_variable() {
    let text = BASE.replace("[cbs]", "[[cbs]]");
    let s = load(&text).unwrap();
    assert!(!s.several_servers());
    assert_eq!(s.cbs.sys_pwd.expose_secret(), "pw");
    assert_eq!(s.cbs.server_name, "cbs.example.com");
}

#[test]
fn several_server_mistakes_name_their_key() {
    let load2 = |text: &str| Settings::from_toml_str(text, &env(&TWO_PASSWORDS));
    let key_of = |text: &str| {
        let err = load2(text).expect_err("config should be rejected");
        assert!(!err.to_string().contains('\n'), "{err}");
        (err.key().map(str::to_owned), err.to_string())
    };
    let (key, _) = key_of(&TWO_SERVERS.replace("name = \"us.east\"\n", ""));
    assert_eq!(key.as_deref(), Some("cbs[1].name"));
    let (key, msg) = key_of(&TWO_SERVERS.replace("name = \"us.east\"", "name = \"EU-1\""));
    assert_eq!(key.as_deref(), Some("cbs[1].name"), "{msg}");
    // Two names whose password variables would be the same.
    let (key, msg) = key_of(&TWO_SERVERS.replace("name = \"us.east\"", "name = \"eu_1\""));
    assert_eq!(key.as_deref(), Some("cbs[1].name"));
    assert!(msg.contains("RESTOREWATCH_CBS_EU_1_SYS_PWD"), "{msg}");
    let (key, _) = key_of(&TWO_SERVERS.replace("https://us.example.com", "ftp://x"));
    assert_eq!(key.as_deref(), Some("cbs[1].url"));
    // One server and account twice (another spelling of its URL): every alert twice.
    let twice = TWO_SERVERS
        .replace("https://us.example.com", "https://EU.example.com:443/")
        .replace("\"api2\"", "\"API\"");
    let (key, msg) = key_of(&twice);
    assert_eq!(key.as_deref(), Some("cbs[1].url"), "{msg}");
    assert!(
        msg.contains("is cbs[0]'s server and account already"),
        "{msg}"
    );
    // The same server with another system user is another account: allowed.
    let other_user = TWO_SERVERS.replace("https://us.example.com", "https://eu.example.com/");
    assert!(load2(&other_user).is_ok());
    let (key, _) = key_of(&TWO_SERVERS.replace("America/New_York", "Mars/Base"));
    assert_eq!(key.as_deref(), Some("cbs[1].timezone"));
    let (key, _) = key_of(&TWO_SERVERS.replace("exclude = [\"test-*\"]", "exclude = [\"[\"]"));
    assert_eq!(key.as_deref(), Some("cbs[1].discover.exclude[0]"));
    let (key, msg) = key_of(&TWO_SERVERS.replace("server = \"eu-1\"\n", ""));
    assert_eq!(key.as_deref(), Some("watch[0].server"));
    assert!(msg.contains("eu-1, us.east"), "{msg}");
    let (key, _) = key_of(&TWO_SERVERS.replace("server = \"eu-1\"", "server = \"nope\""));
    assert_eq!(key.as_deref(), Some("watch[0].server"));
    let (key, _) = key_of(&TWO_SERVERS.replace("max_concurrency = 4", "max_concurrency = 0"));
    assert_eq!(key.as_deref(), Some("cbs[0].max_concurrency"));
    let (key, _) = key_of(&TWO_SERVERS.replace(
        "[[cbs]]\nname = \"us.east\"",
        "[[cbs]]\nbogus = 1\nname = \"us.east\"",
    ));
    assert_eq!(key.as_deref(), Some("cbs[1].bogus"));
    // A missing password names the entry's key and its own variable.
    let err = Settings::from_toml_str(TWO_SERVERS, &env(&TWO_PASSWORDS[..1])).unwrap_err();
    assert_eq!(err.key(), Some("cbs[1].sys_pwd"));
    assert!(
        err.to_string().contains("RESTOREWATCH_CBS_US_EAST_SYS_PWD"),
        "{err}"
    );
    // A plain RESTOREWATCH_CBS_* key cannot say which server it is for.
    let mut vars = TWO_PASSWORDS.to_vec();
    vars.push(("RESTOREWATCH_CBS_URL", "https://x.example.com"));
    let err = Settings::from_toml_str(TWO_SERVERS, &env(&vars)).unwrap_err();
    assert_eq!(err.key(), Some("cbs.url"));
}

#[test]
fn server_password_variables_are_known_only_for_configured_servers() {
    use restorewatch::config::{check_env_names, server_password_envs};
    let servers = server_password_envs(TWO_SERVERS);
    assert_eq!(
        servers,
        [
            "RESTOREWATCH_CBS_EU_1_SYS_PWD",
            "RESTOREWATCH_CBS_US_EAST_SYS_PWD"
        ]
    );
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert!(check_env_names(names(&["RESTOREWATCH_CBS_US_EAST_SYS_PWD"]), &servers).is_ok());
    let err = check_env_names(names(&["RESTOREWATCH_CBS_US_WEST_SYS_PWD"]), &servers).unwrap_err();
    assert_eq!(err.key(), Some("RESTOREWATCH_CBS_US_WEST_SYS_PWD"));
    assert!(err.to_string().contains("US_EAST"), "{err}");
    // A single server has no per-name variable.
    assert!(server_password_envs(BASE).is_empty());
}

#[test]
fn the_several_servers_example_loads_with_its_values() {
    let vars = [
        ("RESTOREWATCH_CBS_EU_1_SYS_PWD", "pw-eu"),
        ("RESTOREWATCH_CBS_US_EAST_SYS_PWD", "pw-us"),
    ];
    let text = repo_file("config/restorewatch.multi.example.toml");
    let s = Settings::from_toml_str(&text, &env(&vars)).unwrap();
    let servers = s.servers();
    let names: Vec<&str> = servers.iter().map(|s| s.cbs.server_name.as_str()).collect();
    assert_eq!(names, ["eu-1", "us-east"]);
    assert_eq!(servers[1].cbs.sys_pwd.expose_secret(), "pw-us");
    assert_eq!(servers[1].cbs.max_concurrency, 16);
    assert!(servers[1].discover.enabled && !servers[0].discover.enabled);
    assert_eq!(servers[1].watch[0].owner, "reseller-a");
    assert_eq!(
        restorewatch::config::server_password_envs(&text),
        vars.map(|(k, _)| k)
    );
}

#[test]
fn a_server_name_entry_reads_its_password_variable_and_names_are_trimmed() {
    use restorewatch::config::server_password_envs;
    // `server_name` is a synonym of `name`; its variable is known and read.
    let text = TWO_SERVERS.replace("name = \"us.east\"", "server_name = \" us.east \"");
    assert_eq!(
        server_password_envs(&text),
        TWO_PASSWORDS.map(|(k, _)| k.to_owned())
    );
    let s = Settings::from_toml_str(&text, &env(&TWO_PASSWORDS)).unwrap();
    assert_eq!(s.servers()[1].cbs.sys_pwd.expose_secret(), "pw-us");
    assert_eq!(s.servers()[1].cbs.server_name, "us.east");
}

#[test]
fn a_single_named_server_reads_its_own_password_variable_then_the_plain_one() {
    use restorewatch::config::server_password_envs;
    let own = "RESTOREWATCH_CBS_EU_1_SYS_PWD";
    let one_entry =
        "[[cbs]]\nname = \"eu-1\"\nurl = \"https://eu.example.com\"\nsys_user = \"api\"\n";
    let one_table =
        "[cbs]\nname = \"eu-1\"\nurl = \"https://eu.example.com\"\nsys_user = \"api\"\n";
    for text in [one_entry, one_table] {
        assert_eq!(server_password_envs(text), [own], "{text}");
        let pwd = |vars: &[(&str, &str)]| {
            let s = Settings::from_toml_str(text, &env(vars)).unwrap();
            s.cbs.sys_pwd.expose_secret().to_owned()
        };
        assert_eq!(pwd(&[(own, "mine")]), "mine", "{text}");
        assert_eq!(pwd(&[(PASSWORD_ENV, "plain")]), "plain", "{text}");
        assert_eq!(pwd(&[(PASSWORD_ENV, "plain"), (own, "mine")]), "mine");
        let err = Settings::from_toml_str(text, &env(&[])).unwrap_err();
        assert!(err.to_string().contains(PASSWORD_ENV), "{err}");
    }
}

#[test]
fn the_plain_password_variable_is_refused_with_several_servers() {
    let mut vars = TWO_PASSWORDS.to_vec();
    vars.push((PASSWORD_ENV, "which-one"));
    let err = Settings::from_toml_str(TWO_SERVERS, &env(&vars)).unwrap_err();
    assert_eq!(err.key(), Some(PASSWORD_ENV));
    let msg = err.to_string();
    assert!(
        msg.contains("RESTOREWATCH_CBS_EU_1_SYS_PWD")
            && msg.contains("RESTOREWATCH_CBS_US_EAST_SYS_PWD"),
        "{msg}"
    );
}
