//! The CBS client against the simulator on loopback: decoding, every error kind, the
//! timeout bound, and that the system password never leaks into messages.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use restorewatch::cbs::client::POOL_IDLE_TIMEOUT;
use restorewatch::cbs::model::StatusClass;
use restorewatch::cbs::{CbsClient, CbsClientConfig, CbsError};
use restorewatch::clock::ManualClock;
use restorewatch::event::OutageReason;
use restorewatch::simulator::faults::MALFORMED_BODIES;
use restorewatch::simulator::{
    Faults, LoginFault, Quirks, SimConfig, SimHandle, SimJob, Simulator,
    INCORRECT_CREDENTIALS_MESSAGE, PASSWORD_EXPIRED_MESSAGE,
};
use restorewatch::tz::Tz;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// Distinctive, so a leak anywhere in a message is found by a substring search.
const PASSWORD: &str = "Pw-q7Zx3-NEVER-PRINT-ME-81kd";
fn berlin() -> Tz {
    "Europe/Berlin".parse().unwrap()
}
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn now() -> DateTime<Utc> {
    // 2024-06-26 14:00 in Berlin.
    Utc.with_ymd_and_hms(2024, 6, 26, 12, 0, 0).unwrap()
}

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 6, 26).unwrap()
}

async fn sim() -> SimHandle {
    let config = SimConfig {
        sys_pwd: PASSWORD.to_owned(),
        timezone: berlin(),
        ..SimConfig::with_clock(Arc::new(ManualClock::new(now())))
    };
    Simulator::new(config)
        .start()
        .await
        .expect("simulator starts")
}

fn config(url: reqwest::Url, pwd: &str) -> CbsClientConfig {
    CbsClientConfig {
        url,
        server_name: "cbs-test".to_owned(),
        sys_user: "api".to_owned(),
        sys_pwd: pwd.to_owned().into(),
        timezone: berlin(),
        request_timeout: TIMEOUT,
        ca_cert: None,
    }
}

fn client(sim: &SimHandle) -> CbsClient {
    CbsClient::new(config(sim.url(), PASSWORD)).expect("client builds")
}

/// A finished job of `obm` on 2024-06-26, 13:25:13 to 13:25:21 Berlin time.
fn job() -> SimJob {
    SimJob {
        user_id: "1687755000001".into(),
        backup_set_name: "default-backup-set-name-1".into(),
        size_bytes: 7_340_032,
        client_version: "9.11.0.0".into(),
        destination_id: Some("1687755083984".into()),
        success_databases: vec!["master".into()],
        missed_databases: vec!["sales".into(), "crm".into()],
        ..SimJob::new(
            "obm",
            "1687755057644",
            Utc.with_ymd_and_hms(2024, 6, 26, 11, 25, 13).unwrap(),
            Some(Utc.with_ymd_and_hms(2024, 6, 26, 11, 25, 21).unwrap()),
            "RESTORE_STOP_SUCCESS_WITH_ERROR",
        )
    }
}

/// Every message and debug form of an error, to search for the password.
fn all_forms<T: std::fmt::Debug>(value: &T) -> String {
    format!("{value:?}\n{value:#?}")
}

fn assert_no_password(text: &str) {
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    assert!(!text.contains("NEVER-PRINT"), "password leaked: {text}");
}

#[tokio::test]
async fn success_decodes_every_field() {
    let sim = sim().await;
    sim.add_job(job());
    let list = client(&sim)
        .list_restore_jobs("obm", "", date())
        .await
        .expect("request succeeds");
    assert!(list.skipped.is_empty(), "{:?}", list.skipped);
    assert_eq!(list.jobs, sim.expected("cbs-test", "obm", date()));
    let got = &list.jobs[0];
    assert_eq!(got.server, "cbs-test");
    assert_eq!(got.login_name, "obm");
    assert_eq!(got.user_id, "1687755000001");
    assert_eq!(got.backup_set_id, "1687755057644");
    assert_eq!(got.backup_set_name, "default-backup-set-name-1");
    assert_eq!(got.job_id, "2024-06-26-13-25-13");
    assert_eq!(
        got.start_time.unwrap().to_rfc3339(),
        "2024-06-26T13:25:13+02:00"
    );
    assert_eq!(got.duration_secs(), Some(8));
    assert_eq!(got.restore_size_bytes, Some(7_340_032));
    assert_eq!(got.raw_status, "RESTORE_STOP_SUCCESS_WITH_ERROR");
    assert_eq!(got.class, StatusClass::PartialFailure);
    assert_eq!(got.client_version.as_deref(), Some("9.11.0.0"));
    assert_eq!(got.destination_id.as_deref(), Some("1687755083984"));
    assert_eq!(got.success_databases, ["master"]);
    assert_eq!(got.missed_databases, ["sales", "crm"]);
    // Another date lists nothing.
    let other = client(&sim)
        .list_restore_jobs("obm", "", date().succ_opt().unwrap())
        .await
        .unwrap();
    assert!(other.jobs.is_empty());
}

/// A server (or a proxy) that starts every reply with a UTF-8 byte order mark: each call
/// reads its reply as without one (RFC 8259 lets a parser ignore it).
#[tokio::test]
async fn replies_that_start_with_a_byte_order_mark_are_read() {
    let sim = sim().await;
    sim.add_job(job());
    let client = client(&sim);
    let plain = client.list_restore_jobs("obm", "", date()).await.unwrap();
    let users = client.list_users("").await.unwrap();
    let job = &plain.jobs[0];
    let report = (client.restore_job_report("obm", "", &job.backup_set_id, &job.job_id))
        .await
        .unwrap();
    sim.set_byte_order_mark(true);
    let marked = client.list_restore_jobs("obm", "", date()).await;
    assert_eq!(marked.unwrap(), plain);
    assert_eq!(client.list_users("").await.unwrap(), users);
    let marked_report = (client.restore_job_report("obm", "", &job.backup_set_id, &job.job_id))
        .await
        .unwrap();
    assert_eq!(marked_report, report);
    // The error replies too: still the API's own refusal, not an unreadable reply.
    let unknown = client.list_restore_jobs("nobody", "", date()).await;
    assert!(matches!(unknown, Err(CbsError::Api { .. })), "{unknown:?}");
}

/// The client's class of every documented code, and of an undocumented one, agrees with the
/// simulator's own table (which does not use the client's classifier).
#[tokio::test]
async fn every_status_code_gets_the_class_the_vendor_doc_gives_it() {
    let sim = sim().await;
    let codes = [
        ("RESTORE_STOP_SUCCESS", StatusClass::Success),
        ("RESTORE_STOP_SUCCESS_WITH_WARNING", StatusClass::Warning),
        (
            "RESTORE_STOP_SUCCESS_WITH_ERROR",
            StatusClass::PartialFailure,
        ),
        ("RESTORE_STOP_BY_USER", StatusClass::Cancelled),
        ("RESTORE_STOP_BY_ERROR", StatusClass::Failure),
        ("RESTORE_STOP_BY_DISK_FULL", StatusClass::Unknown),
    ];
    let first = job();
    for (i, (code, _)) in codes.iter().enumerate() {
        let start = first.start + Duration::minutes(i as i64);
        sim.add_job(SimJob {
            start,
            end: Some(start + Duration::seconds(5)),
            final_status: (*code).into(),
            ..job()
        });
    }
    let list = client(&sim)
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap();
    assert_eq!(list.jobs, sim.expected("cbs-test", "obm", date()));
    let got: Vec<(&str, StatusClass)> = list
        .jobs
        .iter()
        .map(|j| (j.raw_status.as_str(), j.class))
        .collect();
    assert_eq!(got, codes);
}

#[tokio::test]
async fn wrong_password_is_an_api_error_with_the_vendor_message() {
    let sim = sim().await;
    sim.add_job(job());
    let wrong = CbsClient::new(config(sim.url(), "not-the-password")).unwrap();
    let err = wrong
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    let CbsError::Api {
        message, expt_type, ..
    } = &err
    else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(message, INCORRECT_CREDENTIALS_MESSAGE);
    assert_eq!(expt_type.as_deref(), Some("com.ahsay.obs.core.dbs.c"));
    assert_eq!(err.outage_reason(), Some(OutageReason::AuthFailed));
    assert!(err
        .to_string()
        .contains("Incorrect system username/password"));
}

#[tokio::test]
async fn expired_password_is_its_own_error() {
    let sim = sim().await;
    sim.add_job(job());
    sim.set_password_expired(true);
    let err = client(&sim)
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    let CbsError::PasswordExpired { message, .. } = &err else {
        panic!("expected PasswordExpired, got {err:?}");
    };
    assert_eq!(message, PASSWORD_EXPIRED_MESSAGE);
    assert_eq!(err.outage_reason(), Some(OutageReason::PasswordExpired));
    sim.set_password_expired(false);
    assert!(client(&sim)
        .list_restore_jobs("obm", "", date())
        .await
        .is_ok());
}

#[tokio::test]
async fn http_500_is_an_http_error() {
    let sim = sim().await;
    sim.add_job(job());
    sim.set_faults(Faults {
        http_500_ratio: 1.0,
        ..Faults::default()
    });
    let err = client(&sim)
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    let CbsError::Http {
        status, snippet, ..
    } = &err
    else {
        panic!("expected Http, got {err:?}");
    };
    assert_eq!(status.as_u16(), 500);
    assert!(snippet.contains("Internal Server Error"), "{snippet}");
    assert_eq!(err.outage_reason(), Some(OutageReason::Unreachable));
}

#[tokio::test]
async fn malformed_body_is_a_decode_error_with_a_snippet() {
    let sim = sim().await;
    sim.add_job(job());
    sim.set_faults(Faults {
        malformed_ratio: 1.0,
        seed: 3,
        ..Faults::default()
    });
    let client = client(&sim);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let err = client
            .list_restore_jobs("obm", "", date())
            .await
            .unwrap_err();
        let CbsError::Decode {
            reason, snippet, ..
        } = &err
        else {
            panic!("expected Decode, got {err:?}");
        };
        assert!(!reason.is_empty());
        assert!(MALFORMED_BODIES.contains(&snippet.as_str()), "{snippet:?}");
        seen.insert(snippet.clone());
        assert_eq!(err.outage_reason(), Some(OutageReason::Unreachable));
    }
    assert!(seen.len() >= 2, "the bad bodies should vary: {seen:?}");
}

#[tokio::test]
async fn unknown_user_is_a_per_user_error_not_an_outage() {
    let sim = sim().await;
    sim.add_job(job());
    let client = client(&sim);
    let err = client
        .list_restore_jobs("nobody", "", date())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CbsError::Api { message, .. } if message.contains("not found")),
        "{err:?}"
    );
    assert_eq!(err.outage_reason(), None);
    // The wrong owner is "not found" too; the right one works.
    assert!(client
        .list_restore_jobs("obm", "reseller-x", date())
        .await
        .is_err());
    sim.set_login_fault(
        "obm",
        Some(LoginFault::ApiError("Backup user is suspended".into())),
    );
    let err = client
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Backup user is suspended"),
        "{err}"
    );
    assert_eq!(err.outage_reason(), None);
}

/// On tokio's paused clock, which reqwest's timeout runs on: the wait is exactly the bound.
#[tokio::test(start_paused = true)]
async fn timeout_ends_within_the_configured_bound() {
    let sim = sim().await;
    sim.add_job(job());
    sim.set_faults(Faults {
        latency: std::time::Duration::from_secs(60),
        ..Faults::default()
    });
    let bound = std::time::Duration::from_millis(300);
    let client = CbsClient::new(CbsClientConfig {
        request_timeout: bound,
        ..config(sim.url(), PASSWORD)
    })
    .unwrap();
    let started = Instant::now();
    let err = client
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, CbsError::Timeout { .. }), "{err:?}");
    assert_eq!(elapsed, bound);
    assert_eq!(err.outage_reason(), Some(OutageReason::Unreachable));
    assert!(err.to_string().contains("0.3s"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = reqwest::Url::parse(&format!("http://{addr}")).unwrap();
    let err = CbsClient::new(config(url, PASSWORD))
        .unwrap()
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    assert!(matches!(err, CbsError::Connect { .. }), "{err:?}");
    assert_eq!(err.outage_reason(), Some(OutageReason::Unreachable));
    assert!(
        err.to_string().starts_with("cannot reach cbs-test"),
        "{err}"
    );
}

#[tokio::test]
async fn base_url_may_carry_the_api_path_or_a_wrong_prefix_shows_as_404() {
    let sim = sim().await;
    sim.add_job(job());
    let with_api_path = sim.url().join("obs/api/json/").unwrap();
    let list = CbsClient::new(config(with_api_path, PASSWORD))
        .unwrap()
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap();
    assert_eq!(list.jobs.len(), 1);
    let wrong_prefix = sim.url().join("cbs/").unwrap();
    let err = CbsClient::new(config(wrong_prefix, PASSWORD))
        .unwrap()
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CbsError::Http { status, .. } if status.as_u16() == 404),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_ca_file_is_a_setup_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let garbage = dir.path().join("garbage-ca.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    for path in [missing, garbage] {
        let url = reqwest::Url::parse("https://cbs.example.com").unwrap();
        let err = CbsClient::new(CbsClientConfig {
            ca_cert: Some(path.clone()),
            ..config(url, PASSWORD)
        })
        .unwrap_err();
        assert!(matches!(err, CbsError::Setup(_)), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_no_password(&all_forms(&err));
    }
}

#[tokio::test]
async fn the_password_never_shows_in_debug_or_display() {
    let sim = sim().await;
    sim.add_job(job());
    let cfg = config(sim.url(), PASSWORD);
    assert_no_password(&all_forms(&cfg));
    let client = CbsClient::new(cfg).unwrap();
    assert_no_password(&all_forms(&client));

    let mut errors = Vec::new();
    let ask = |c: CbsClient| async move { c.list_restore_jobs("obm", "", date()).await };
    // Api: a simulator with another password refuses ours.
    let other = Simulator::new(SimConfig::with_clock(Arc::new(ManualClock::new(now()))))
        .start()
        .await
        .unwrap();
    errors.push(
        ask(CbsClient::new(config(other.url(), PASSWORD)).unwrap())
            .await
            .unwrap_err(),
    );
    sim.set_password_expired(true);
    errors.push(ask(client.clone()).await.unwrap_err());
    sim.set_password_expired(false);
    for faults in [
        Faults {
            http_500_ratio: 1.0,
            ..Faults::default()
        },
        Faults {
            malformed_ratio: 1.0,
            ..Faults::default()
        },
    ] {
        sim.set_faults(faults);
        errors.push(ask(client.clone()).await.unwrap_err());
    }
    sim.set_faults(Faults {
        latency: std::time::Duration::from_secs(60),
        ..Faults::default()
    });
    let impatient = CbsClient::new(CbsClientConfig {
        request_timeout: std::time::Duration::from_millis(100),
        ..config(sim.url(), PASSWORD)
    })
    .unwrap();
    errors.push(ask(impatient).await.unwrap_err());
    sim.set_faults(Faults::default());
    sim.set_down(true).await.unwrap();
    errors.push(ask(client.clone()).await.unwrap_err());
    errors.push(
        CbsClient::new(CbsClientConfig {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..config(sim.url(), PASSWORD)
        })
        .unwrap_err(),
    );

    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            CbsError::Connect { .. } => "connect",
            CbsError::Timeout { .. } => "timeout",
            CbsError::Http { .. } => "http",
            CbsError::Api { .. } => "api",
            CbsError::PasswordExpired { .. } => "expired",
            CbsError::Decode { .. } => "decode",
            CbsError::TooLarge { .. } => "too large",
            CbsError::Setup(_) => "setup",
        })
        .collect();
    assert_eq!(
        kinds,
        ["api", "expired", "http", "decode", "timeout", "connect", "setup"]
    );
    for e in &errors {
        assert_no_password(&format!("{e}\n{e:#}"));
        assert_no_password(&all_forms(e));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn every_quirk_spelling_decodes_back_to_the_same_job() {
    let sim = sim().await;
    let day_start = Utc.with_ymd_and_hms(2024, 6, 26, 4, 0, 0).unwrap();
    // Each quirk combination twice: once finished at "now", once still running.
    for bits in 0..(1u32 << Quirks::COUNT) {
        for running in [false, true] {
            let start = day_start + Duration::seconds(i64::from(bits * 2 + u32::from(running)));
            assert!(start < now());
            let end = if running {
                now() + Duration::hours(1)
            } else {
                start + Duration::seconds(30)
            };
            sim.add_job(SimJob {
                start,
                end: Some(end),
                quirks: Quirks::from_bits(bits),
                destination_id: (bits % 3 != 0).then(|| format!("dest-{bits}")),
                client_version: if bits % 5 == 0 {
                    String::new()
                } else {
                    "10.1.0.0".into()
                },
                size_bytes: u64::from(bits) * 1_000_003,
                ..job()
            });
        }
    }
    let list = client(&sim)
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap();
    // Half the combinations leave out the job ID: those items are skipped, the rest kept.
    assert_eq!(list.skipped.len(), 1 << Quirks::COUNT);
    let expected = sim.expected("cbs-test", "obm", date());
    assert_eq!(expected.len(), 1 << Quirks::COUNT);
    assert_eq!(list.jobs.len(), expected.len());
    for (got, want) in list.jobs.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    let running = list
        .jobs
        .iter()
        .filter(|j| j.class == StatusClass::Running)
        .count();
    assert_eq!(running, 1 << (Quirks::COUNT - 1));
}

#[tokio::test]
async fn a_reply_that_echoes_the_password_is_redacted() {
    let sim = sim().await;
    sim.add_job(job());
    sim.set_login_fault(
        "obm",
        Some(LoginFault::ApiError(format!(
            "bad request SysPwd={PASSWORD}"
        ))),
    );
    let client = CbsClient::new(config(sim.url(), PASSWORD)).unwrap();
    let err = client
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("SysPwd=[REDACTED]"), "{shown}");
}

/// A TLS front for the simulator: a CA and a certificate for `localhost` it signs, both
/// made here, and a listener that terminates TLS and passes the bytes on to `sim`.
/// Returns the `https` URL and the CA's PEM.
async fn tls_front(sim: &SimHandle) -> (reqwest::Url, String) {
    use tokio_rustls::rustls;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "restorewatch test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = sim.addr();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the CA ends the handshake: nothing to pass on.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    let url = format!("https://localhost:{port}/").parse().unwrap();
    (url, ca.pem())
}

#[tokio::test]
async fn tls_with_a_custom_ca_works_end_to_end_and_only_with_that_ca() {
    let sim = sim().await;
    sim.add_job(job());
    let (url, ca_pem) = tls_front(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let trusting = CbsClient::new(CbsClientConfig {
        ca_cert: Some(ca_file),
        ..config(url.clone(), PASSWORD)
    })
    .unwrap();
    let list = trusting
        .list_restore_jobs("obm", "", date())
        .await
        .expect("the request goes through TLS");
    assert_eq!(list.jobs, sim.expected("cbs-test", "obm", date()));
    assert_eq!(sim.requests_served(), 1);

    // Without the CA the same server is refused: the TLS is real.
    let err = CbsClient::new(config(url, PASSWORD))
        .unwrap()
        .list_restore_jobs("obm", "", date())
        .await
        .unwrap_err();
    assert!(matches!(err, CbsError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(sim.requests_served(), 1);
}

/// A server (or a proxy in front of it) that redirects the API elsewhere: the call fails
/// naming where it pointed, and the other address never sees the request (a 307 or 308
/// would otherwise carry the body, password and all).
#[tokio::test]
async fn a_redirect_is_not_followed_and_the_password_goes_nowhere_else() {
    let elsewhere_hits = Arc::new(AtomicUsize::new(0));
    let hits = elsewhere_hits.clone();
    let elsewhere = axum::Router::new().fallback(move || {
        hits.fetch_add(1, Ordering::SeqCst);
        async { "{}" }
    });
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_url = format!("http://{}/steal", other.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(other, elsewhere).await });
    for code in [301u16, 302, 307, 308] {
        let to = other_url.clone();
        let redirecting = axum::Router::new().fallback(move || async move {
            (
                axum::http::StatusCode::from_u16(code).unwrap(),
                [(axum::http::header::LOCATION, to)],
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, redirecting).await });
        let client = CbsClient::new(config(url.parse().unwrap(), PASSWORD)).unwrap();
        let err = client
            .list_restore_jobs("obm", "", date())
            .await
            .unwrap_err();
        let CbsError::Http {
            status, snippet, ..
        } = &err
        else {
            panic!("{code}: expected Http, got {err:?}");
        };
        assert_eq!(status.as_u16(), code);
        assert!(snippet.contains(&other_url), "{code}: {snippet}");
        assert!(snippet.contains("not followed"), "{code}: {snippet}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");
        // Every request would be sent the same way: the server as a whole is unreachable.
        assert_eq!(err.outage_reason(), Some(OutageReason::Unreachable));
    }
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
}

/// A TCP relay to the simulator that counts the connections made through it and those
/// still open: answers its URL and (made, open).
async fn counting_relay(sim: &SimHandle) -> (reqwest::Url, Arc<(AtomicUsize, AtomicUsize)>) {
    let target = sim.addr();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            seen.0.fetch_add(1, Ordering::SeqCst);
            seen.1.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                seen.1.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (url.parse().unwrap(), counts)
}

/// Within a cycle a kept-alive connection is taken again; idle for
/// [`POOL_IDLE_TIMEOUT`] (between cycles) it is closed, with the memory it holds.
#[tokio::test(start_paused = true)]
async fn a_connection_is_reused_at_once_and_closed_once_idle() {
    let sim = sim().await;
    sim.add_job(job());
    let (url, counts) = counting_relay(&sim).await;
    let client = CbsClient::new(config(url, PASSWORD)).unwrap();
    client.list_restore_jobs("obm", "", date()).await.unwrap();
    tokio::time::sleep(POOL_IDLE_TIMEOUT / 2).await;
    client.list_restore_jobs("obm", "", date()).await.unwrap();
    let last_used = Instant::now();
    assert_eq!(
        counts.0.load(Ordering::SeqCst),
        1,
        "one connection for both"
    );
    assert_eq!(counts.1.load(Ordering::SeqCst), 1, "kept open after use");
    while counts.1.load(Ordering::SeqCst) > 0 {
        assert!(
            last_used.elapsed() <= POOL_IDLE_TIMEOUT * 2,
            "still open {:?} after its last use",
            last_used.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        last_used.elapsed() >= POOL_IDLE_TIMEOUT,
        "closed while in use"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_job_across_the_fall_back_hour_ends_after_it_started() {
    // 2024-10-27 in Berlin: 02:00–03:00 happens twice (CEST, then CET). The job runs
    // 02:50 CEST → 02:10 CET; the simulator writes both as wall times without an offset.
    let start = Utc.with_ymd_and_hms(2024, 10, 27, 0, 50, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2024, 10, 27, 1, 10, 0).unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 10, 27, 9, 0, 0).unwrap());
    let config = SimConfig {
        sys_pwd: PASSWORD.to_owned(),
        timezone: berlin(),
        ..SimConfig::with_clock(Arc::new(clock))
    };
    let sim = Simulator::new(config).start().await.unwrap();
    // And one that runs wholly in the second 02:xx: read as the first, its times stay in
    // order, so they are kept as read.
    let second = (
        Utc.with_ymd_and_hms(2024, 10, 27, 1, 5, 0).unwrap(),
        Utc.with_ymd_and_hms(2024, 10, 27, 1, 25, 0).unwrap(),
    );
    sim.add_job(SimJob::new(
        "obm",
        "1",
        start,
        Some(end),
        "RESTORE_STOP_BY_ERROR",
    ));
    sim.add_job(SimJob::new(
        "obm",
        "2",
        second.0,
        Some(second.1),
        "RESTORE_STOP_SUCCESS",
    ));
    let day = NaiveDate::from_ymd_opt(2024, 10, 27).unwrap();
    let list = client(&sim)
        .list_restore_jobs("obm", "", day)
        .await
        .expect("request succeeds");
    let across = list.jobs.iter().find(|j| j.backup_set_id == "1").unwrap();
    assert_eq!(across.start_time.unwrap().to_utc(), start);
    assert_eq!(across.end_time.unwrap().to_utc(), end, "the second 02:10");
    assert_eq!(
        across.end_time.unwrap().to_rfc3339(),
        "2024-10-27T02:10:00+01:00"
    );
    assert_eq!(across.duration_secs(), Some(20 * 60));
    assert!(!across.ends_before_start());
    let within = list.jobs.iter().find(|j| j.backup_set_id == "2").unwrap();
    assert_eq!(within.duration_secs(), Some(20 * 60));
    assert_eq!(
        within.end_time.unwrap().to_rfc3339(),
        "2024-10-27T02:25:00+02:00",
        "in order as read: the first reading stays"
    );
}
