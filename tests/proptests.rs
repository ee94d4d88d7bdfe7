//! Hostile input (STYLE.md 14): every decoder is fed arbitrary input and must answer with a
//! value or a clear error, never a panic. Regression cases found by these properties are
//! kept as plain tests at the end.

use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use restorewatch::cbs::model::{
    checked_login, decode_reply, decode_users, DecodeContext, ReplyError,
};
use restorewatch::config::Settings;
use restorewatch::render::{escape_markdown, plain_times};
use restorewatch::schedule::CronSchedule;
use restorewatch::store::Store;
use serde_json::{json, Value};

fn cx() -> DecodeContext<'static> {
    DecodeContext {
        server: "cbs",
        tz: "Europe/Berlin".parse::<restorewatch::tz::Tz>().unwrap(),
        login_name: "obm",
        owner: "",
        date: chrono::NaiveDate::from_ymd_opt(2024, 6, 26).unwrap(),
    }
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        // Strings that look like the fields the decoder reads.
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[ -][0-9]{2}[:-][0-9]{2}[:-][0-9]{2}".prop_map(Value::from),
        "RESTORE_[A-Z_]{0,20}".prop_map(Value::from),
        "-?[0-9]{1,25}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A job item whose documented keys hold arbitrary values.
fn job_item() -> impl Strategy<Value = Value> {
    let keys = [
        "ID",
        "BackupSetID",
        "BackupSetName",
        "LoginName",
        "Owner",
        "RestoreDate",
        "StartTime",
        "EndTime",
        "Status",
        "TotalFiles",
        "TotalSize",
        "DestinationID",
        "RestoreTo",
    ];
    prop::collection::vec((prop::sample::select(keys.to_vec()), any_json()), 0..14).prop_map(
        |pairs| {
            let mut m = serde_json::Map::new();
            for (k, v) in pairs {
                m.insert(k.to_owned(), v);
            }
            Value::Object(m)
        },
    )
}

fn assert_clear(result: &Result<restorewatch::cbs::model::JobList, ReplyError>) {
    if let Err(ReplyError::Malformed { reason, .. }) = result {
        assert!(!reason.trim().is_empty(), "an error says what is wrong");
    }
}

proptest! {
    #[test]
    fn the_user_list_decoder_takes_arbitrary_input(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        status in prop_oneof![Just(json!("OK")), Just(json!("Error")), any_json()],
        users in any_json(),
    ) {
        for body in [
            String::from_utf8_lossy(&bytes).into_owned(),
            json!({"Status": status, "User": users}).to_string(),
        ] {
            match decode_users(&body) {
                Ok(listed) => {
                    // Every login listed is one a slash command would take.
                    prop_assert!(listed
                        .users
                        .iter()
                        .all(|u| checked_login(&u.login) == Some(u.login.as_str())));
                    // A byte order mark before the reply changes nothing (RFC 8259).
                    prop_assert_eq!(decode_users(&format!("\u{feff}{body}")), Ok(listed));
                }
                Err(ReplyError::Malformed { reason, .. }) => prop_assert!(!reason.trim().is_empty()),
                Err(ReplyError::Api { .. }) => {}
            }
        }
    }

    #[test]
    fn the_reply_decoder_takes_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        assert_clear(&decode_reply(&text, &cx()));
    }

    #[test]
    fn the_reply_decoder_takes_arbitrary_json(value in any_json()) {
        assert_clear(&decode_reply(&value.to_string(), &cx()));
    }

    #[test]
    fn the_reply_decoder_takes_envelopes_of_odd_jobs(
        status in prop_oneof![Just(json!("OK")), Just(json!("Error")), any_json()],
        items in prop::collection::vec(job_item(), 0..8),
    ) {
        let body = json!({"Status": status, "Data": items}).to_string();
        let result = decode_reply(&body, &cx());
        assert_clear(&result);
        if let Ok(list) = result {
            // Nothing with an identity is dropped: each item is a job or a skipped item.
            prop_assert_eq!(list.jobs.len() + list.skipped.len(), items.len());
            // A byte order mark before the reply changes nothing (RFC 8259).
            prop_assert_eq!(decode_reply(&format!("\u{feff}{body}"), &cx()), Ok(list));
        }
    }

    #[test]
    fn the_config_loader_takes_arbitrary_text(text in ".{0,300}") {
        let _ = Settings::from_toml_str(&text, &|_| None);
    }

    #[test]
    fn the_config_loader_takes_odd_values_for_every_key(
        section in prop::sample::select(vec!["cbs", "poll", "state", "digest", "server", "heartbeat", "discord"]),
        key in prop::sample::select(vec![
            "url", "timezone", "request_timeout", "max_concurrency", "schedule",
            "midnight_grace", "max_catch_up_days", "stuck_after", "alert_classes",
            "retention_days", "listen", "alert_channel", "api_base", "path",
        ]),
        value in prop_oneof![
            ".{0,30}".prop_map(|s| toml::Value::String(s).to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[0-9]{1,30}[a-z]{0,3}".prop_map(|s| format!("{s:?}")),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
        ],
    ) {
        let text = format!(
            "[cbs]\nurl = \"https://cbs.example.com\"\nsys_user = \"api\"\n\
             [discord]\nalert_channel = \"1\"\n[{section}]\n{key} = {value}\n"
        );
        let env = |name: &str| match name {
            "RESTOREWATCH_CBS_SYS_PWD" | "RESTOREWATCH_DISCORD_TOKEN" => Some("x".to_owned()),
            _ => None,
        };
        if let Err(e) = Settings::from_toml_str(&text, &env) {
            // Either the file is not TOML (a duplicate table) or a key is named.
            let shown = e.to_string();
            prop_assert!(shown.starts_with("config error:"), "{}", shown);
            prop_assert!(!shown.contains('\n'), "{}", shown);
        }
    }

    #[test]
    fn durations_parse_or_fail_with_the_key(text in "[0-9]{0,25}(ns|us|ms|s|m|h|d|w|y|M|)[ 0-9a-z]{0,6}") {
        let toml = format!(
            "[cbs]\nurl = \"https://cbs.example.com\"\nsys_user = \"api\"\nrequest_timeout = {text:?}\n\
             [poll]\nstuck_after = {text:?}\nmidnight_grace = {text:?}\n"
        );
        let env = |name: &str| (name == "RESTOREWATCH_CBS_SYS_PWD").then(|| "x".to_owned());
        match Settings::from_toml_str(&toml, &env) {
            Ok(s) => prop_assert!(s.poll.midnight_grace <= std::time::Duration::from_secs(86_400)),
            Err(e) => prop_assert!(e.key().is_some_and(|k| k.starts_with("cbs.") || k.starts_with("poll.")), "{}", e),
        }
    }

    #[test]
    fn cron_lines_parse_or_fail_and_never_panic_when_asked(
        fields in prop::collection::vec("[0-9*/,\\-A-Za-z?LW#]{1,8}", 0..8),
        secs in 0i64..4_000_000_000,
    ) {
        let line = fields.join(" ");
        if let Ok(schedule) = CronSchedule::parse(&line, "Europe/Berlin".parse::<restorewatch::tz::Tz>().unwrap()) {
            let t = Utc.timestamp_opt(secs, 0).unwrap();
            if let Some(next) = schedule.next_after(t) {
                prop_assert!(next > t);
            }
        }
    }

    #[test]
    fn escaped_text_holds_no_live_mention_or_link(text in ".{0,80}|(@everyone|@here|<@&1>|<#2>|\\[a\\]\\(https://x\\.io\\)|https?://[a-z.]{1,10}|[\\\\*_`|>\\[\\]()<:/ @]){0,12}") {
        let out = escape_markdown(&text);
        if let Some(why) = live(&out) {
            prop_assert!(false, "{:?} escaped to {:?}: {}", text, out, why);
        }
    }

    /// The console's reading of Discord time tags takes any text; escaped server text is
    /// never read as a tag.
    #[test]
    fn time_tags_are_read_from_any_text(text in ".{0,60}|(<t:|-?[0-9]{1,22}|:[a-zA-Z]{0,2}|>|\\\\| \\(|\\)|.){0,10}") {
        let _ = plain_times(&text, "Europe/Berlin".parse::<restorewatch::tz::Tz>().unwrap());
        let escaped = escape_markdown(&text);
        prop_assert_eq!(plain_times(&escaped, restorewatch::tz::Tz::UTC), escaped);
    }

    /// A zone name (from the config, the simulator's arguments or a stored job time) is a
    /// zone or a clear error, never a panic; a zone's own name names it again, and every
    /// local time in it has an answer (a gap none, a fold two).
    #[test]
    fn zone_names_parse_or_fail_and_every_local_time_has_an_answer(
        name in "[A-Za-z_/+0-9-]{0,30}|(Europe|America|Asia|Etc|Australia)/[A-Za-z_+0-9-]{0,14}",
        known in prop::sample::select(vec![
            "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
            "Pacific/Chatham", "America/St_Johns", "Etc/GMT+5", "UTC",
        ]),
        upper in any::<u64>(),
        secs in -10_000_000_000_000i64..10_000_000_000_000,
    ) {
        use restorewatch::tz::Tz;
        let _ = name.parse::<Tz>();
        // A zone of the database, in any case.
        let spelled: String = known
            .chars()
            .enumerate()
            .map(|(i, c)| if upper >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect();
        let zone = spelled.parse::<Tz>().unwrap();
        prop_assert_eq!(zone.name(), known);
        prop_assert_eq!(zone.name().parse::<Tz>().unwrap(), zone);
        let Some(at) = chrono::DateTime::from_timestamp(secs, 0) else {
            return Ok(());
        };
        let local = at.with_timezone(&zone);
        let _ = local.format("%Y-%m-%d %H:%M %Z").to_string();
        let _ = zone.from_local_datetime(&at.naive_utc());
    }
}

/// Why `text` would render a mention or a link in Discord, if it would.
fn live(text: &str) -> Option<&'static str> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1, // the next character is literal
            '@' if chars.get(i + 1) != Some(&'\u{200B}') => return Some("a bare @"),
            '<' => return Some("an unescaped <"),
            '[' | '(' => return Some("an unescaped link bracket"),
            ':' if chars.get(i + 1) == Some(&'/') && chars.get(i + 2) == Some(&'/') => {
                return Some("a bare URL")
            }
            c if c.is_control() => return Some("a control character"),
            _ => {}
        }
        i += 1;
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Garbage under any key of the store's trees is reported as a corrupt record by every
    /// reader, never a panic.
    #[test]
    fn store_records_that_do_not_decode_are_errors_not_panics(
        writes in prop::collection::vec(
            (
                prop::sample::select(vec!["jobs", "outbox", "users", "watch", "meta", "running", "by_day"]),
                prop::collection::vec(any::<u8>(), 0..24),
                prop::collection::vec(any::<u8>(), 0..64),
            ),
            1..8,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (tree, key, value) in &writes {
            store.tree(tree).unwrap().insert(key, value.clone()).unwrap();
        }
        let day = NaiveDate::from_ymd_opt(2024, 6, 26).unwrap();
        let _ = store.pending_events(100);
        let _ = store.jobs_between(day.pred_opt().unwrap(), day);
        let _ = store.running_dates("cbs", "obm");
        let _ = store.dynamic_watches();
        let _ = store.watch_list(&[]);
        let _ = store.last_cycle();
        let _ = store.outage();
        let _ = store.user_state("obm");
        let _ = store.refused_destinations();
        let _ = store.prune_before(day);
        for (tree, key, _) in &writes {
            if *tree == "users" {
                let _ = store.user_state(&String::from_utf8_lossy(key));
            }
        }
    }
}

// ----- regressions found by the properties above ----------------------------------------

#[test]
fn a_bare_url_in_a_backup_set_name_does_not_become_a_link() {
    let out = escape_markdown("see https://evil.example/login now");
    assert_eq!(live(&out), None, "{out:?}");
    assert_eq!(
        restorewatch::render::unescape_markdown(&out),
        "see https://evil.example/login now"
    );
}
