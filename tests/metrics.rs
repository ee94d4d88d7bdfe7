//! `restorewatch_last_success_timestamp_seconds` over cycles against the CBS simulator on
//! loopback. The gauge is process-wide, so this binary holds the one test that runs cycles:
//! no other test's cycle can move it in between.

use chrono::{Duration, TimeZone, Utc};
use restorewatch::app::App;
use restorewatch::clock::{ManualClock, SharedClock};
use restorewatch::config::Settings;
use restorewatch::simulator::{LoginFault, SimConfig, SimUser, Simulator};
use std::sync::Arc;
use support::world::console;

mod support;

/// The value of the sample `name` (no labels) in the process's metrics.
fn sample(name: &str) -> f64 {
    let text = restorewatch::metrics::install().render();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

const LAST_SUCCESS: &str = "restorewatch_last_success_timestamp_seconds";

#[tokio::test]
async fn last_success_advances_while_one_login_is_unknown_and_stays_while_the_server_is_down() {
    // Midday, so no midnight-grace request for yesterday.
    let t0 = Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap();
    let clock = ManualClock::new(t0);
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::new(SimConfig::with_clock(shared.clone()))
        .start()
        .await
        .unwrap();
    for login in ["alice", "bob"] {
        sim.add_user(SimUser {
            login: login.into(),
            owner: String::new(),
            user_id: login.into(),
        });
    }
    // bob was deleted on the backup server: "User "bob" not found", every request.
    sim.set_login_fault("bob", Some(LoginFault::NotFound));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [cbs]
        url = "{url}"
        server_name = "sim"
        sys_user = "{user}"
        [[watch]]
        login = "alice"
        [[watch]]
        login = "bob"
        [poll]
        schedule = "0 * * * * *"
        [state]
        path = "{state}"
        "#,
        url = sim.url(),
        user = sim.sys_user(),
        state = dir.path().display(),
    );
    let pwd = sim.sys_pwd().to_owned();
    let settings = Settings::from_toml_str(&text, &move |name| {
        (name == "RESTOREWATCH_CBS_SYS_PWD").then(|| pwd.clone())
    })
    .unwrap();
    let app = App::build(settings, shared).await.unwrap();
    assert_eq!(sample(LAST_SUCCESS), 0.0, "never, before the first cycle");

    let (report, _) = app.cycle_and_deliver(&console()).await.unwrap();
    assert_eq!(report.summary.errors.len(), 1, "{report:?}");
    assert!(report.summary.errors[0].message.contains("not found"));
    assert_eq!(
        sample(LAST_SUCCESS),
        t0.timestamp() as f64,
        "the server answered; bob's refusal is about bob"
    );
    assert_eq!(sample("restorewatch_cycles_total{result=\"partial\"}"), 1.0);

    let t1 = t0 + Duration::minutes(1);
    clock.set(t1);
    app.cycle_and_deliver(&console()).await.unwrap();
    assert_eq!(sample(LAST_SUCCESS), t1.timestamp() as f64);

    // The server goes away: the gauge stays at the last cycle it answered.
    sim.set_down(true).await.unwrap();
    clock.set(t1 + Duration::minutes(1));
    let (report, _) = app.cycle_and_deliver(&console()).await.unwrap();
    assert!(!report.summary.errors.is_empty(), "{report:?}");
    assert_eq!(sample(LAST_SUCCESS), t1.timestamp() as f64);
    assert_eq!(sample("restorewatch_cycles_total{result=\"error\"}"), 1.0);

    // Back, bob still unknown: it moves again.
    sim.set_down(false).await.unwrap();
    let t3 = t1 + Duration::minutes(2);
    clock.set(t3);
    app.cycle_and_deliver(&console()).await.unwrap();
    assert_eq!(sample(LAST_SUCCESS), t3.timestamp() as f64);
}
