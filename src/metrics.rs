//! Metrics: the names restorewatch exports on `GET /metrics` and one small function per
//! thing worth counting, so that instrumenting a module is one line there.
//!
//! Recording goes through the `metrics` facade into a process-wide Prometheus recorder
//! (`metrics-exporter-prometheus`), installed once by [`install`]; before that every call
//! here is a no-op, so library code and tests that do not serve metrics pay nothing.
//! Gauges that describe the store (outbox depth and age, size on disk) are not recorded
//! here: [`crate::server`] reads them from the store when it is scraped.

use crate::cbs::model::StatusClass;
use crate::cbs::CbsError;
use crate::event::EventKind;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub const CYCLES_TOTAL: &str = "restorewatch_cycles_total";
pub const CYCLE_DURATION_SECONDS: &str = "restorewatch_cycle_duration_seconds";
pub const CBS_REQUESTS_TOTAL: &str = "restorewatch_cbs_requests_total";
pub const CBS_UP: &str = "restorewatch_cbs_up";
pub const JOBS_OBSERVED_TOTAL: &str = "restorewatch_jobs_observed_total";
pub const ALERTS_TOTAL: &str = "restorewatch_alerts_total";
pub const EVENTS_DELIVERED_TOTAL: &str = "restorewatch_events_delivered_total";
pub const EVENTS_DROPPED_TOTAL: &str = "restorewatch_events_dropped_total";
pub const DELIVERY_FAILURES_TOTAL: &str = "restorewatch_delivery_failures_total";
pub const OUTBOX_EVENTS: &str = "restorewatch_outbox_events";
pub const OUTBOX_OLDEST_AGE_SECONDS: &str = "restorewatch_outbox_oldest_age_seconds";
pub const STORE_BYTES: &str = "restorewatch_store_bytes";
pub const LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "restorewatch_last_success_timestamp_seconds";
pub const QUARANTINED_TOTAL: &str = "restorewatch_quarantined_total";
pub const COMMANDS_TOTAL: &str = "restorewatch_commands_total";
pub const BUILD_INFO: &str = "restorewatch_build_info";
pub const TICKS_SKIPPED_TOTAL: &str = "restorewatch_ticks_skipped_total";
pub const HEARTBEATS_TOTAL: &str = "restorewatch_heartbeats_total";

/// Histogram buckets of a cycle's duration (seconds): a cycle is one round of HTTP calls,
/// from well under a second to the request timeout and beyond.
const CYCLE_DURATION_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle) and
/// records `restorewatch_build_info`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(CYCLE_DURATION_SECONDS.into()),
                    &CYCLE_DURATION_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            ::metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            // Counters that exist from the start, so a scrape shows them at zero.
            ::metrics::counter!(QUARANTINED_TOTAL).absolute(0);
            ::metrics::counter!(TICKS_SKIPPED_TOTAL).absolute(0);
            ::metrics::counter!(EVENTS_DELIVERED_TOTAL).absolute(0);
            ::metrics::counter!(EVENTS_DROPPED_TOTAL).absolute(0);
            // 0 ("never") until the first cycle the servers answered, so an alert on `time() - x` fires
            // when the bot starts during an outage instead of finding no series at all.
            ::metrics::gauge!(LAST_SUCCESS_TIMESTAMP_SECONDS).set(0.0);
            handle
        })
        .clone()
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        CYCLES_TOTAL,
        "Poll cycles run, by result: success (every CBS request succeeded), partial (some \
         failed), error (none succeeded, or the cycle itself failed)."
    );
    describe_histogram!(
        CYCLE_DURATION_SECONDS,
        Unit::Seconds,
        "How long a poll cycle took."
    );
    describe_counter!(
        CBS_REQUESTS_TOTAL,
        "Requests to the backup servers, by outcome and server."
    );
    describe_gauge!(
        CBS_UP,
        "1 while the backup server answers, 0 while its outage is open, by server."
    );
    describe_counter!(
        JOBS_OBSERVED_TOTAL,
        "Restore jobs seen in CBS replies, by status class."
    );
    describe_counter!(ALERTS_TOTAL, "Events queued for the chat, by kind.");
    describe_counter!(EVENTS_DELIVERED_TOTAL, "Events the chat accepted.");
    describe_counter!(
        EVENTS_DROPPED_TOTAL,
        "Events dropped undelivered because the chat rejects their message (HTTP 400)."
    );
    describe_counter!(
        DELIVERY_FAILURES_TOTAL,
        "Posts the chat did not accept, by reason."
    );
    describe_gauge!(OUTBOX_EVENTS, "Events waiting in the outbox.");
    describe_gauge!(
        OUTBOX_OLDEST_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest undelivered event (0: none)."
    );
    describe_gauge!(STORE_BYTES, Unit::Bytes, "Size of the state store on disk.");
    describe_gauge!(
        LAST_SUCCESS_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "When the last poll cycle in which every backup server answered ended: no \
         connection, timeout, 5xx or credentials error; a request refused for one user (an \
         unknown login) still counts as answered (Unix time; 0 until the first)."
    );
    describe_counter!(
        QUARANTINED_TOTAL,
        "Store records set aside because they do not decode."
    );
    describe_counter!(
        COMMANDS_TOTAL,
        "Slash commands answered, by command and result (ok, error, refused)."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is in the label.");
    describe_counter!(
        TICKS_SKIPPED_TOTAL,
        "Poll ticks skipped because a cycle was still running."
    );
    describe_counter!(
        HEARTBEATS_TOTAL,
        "Heartbeat calls, by kind (ok, fail) and result."
    );
}

/// How a poll cycle ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CycleResult {
    /// Every CBS request succeeded.
    Success,
    /// The cycle ran, some CBS requests failed and at least one succeeded.
    Partial,
    /// No CBS request succeeded (every backup server unreachable or refusing), or the
    /// cycle itself failed (the store).
    Error,
}

impl CycleResult {
    fn as_str(self) -> &'static str {
        match self {
            CycleResult::Success => "success",
            CycleResult::Partial => "partial",
            CycleResult::Error => "error",
        }
    }
}

/// A poll cycle ended after `took`; `now` is when. `servers_answered`: the cycle ran and
/// every backup server answered (a request refused for one user, such as an unknown
/// login, still counts as an answer), which is what moves
/// `restorewatch_last_success_timestamp_seconds`.
pub fn cycle_finished(
    result: CycleResult,
    servers_answered: bool,
    took: Duration,
    now: chrono::DateTime<chrono::Utc>,
) {
    ::metrics::counter!(CYCLES_TOTAL, "result" => result.as_str()).increment(1);
    ::metrics::histogram!(CYCLE_DURATION_SECONDS).record(took.as_secs_f64());
    if servers_answered {
        ::metrics::gauge!(LAST_SUCCESS_TIMESTAMP_SECONDS).set(now.timestamp() as f64);
    }
}

/// One CBS request ended.
pub fn cbs_request<T>(server: &str, result: &Result<T, CbsError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(CbsError::Connect { .. }) => "connect_error",
        Err(CbsError::Timeout { .. }) => "timeout",
        Err(CbsError::Http { status, .. }) if status.is_server_error() => "http_5xx",
        Err(CbsError::Http { .. }) => "http_error",
        Err(CbsError::Api { .. }) => "api_error",
        Err(CbsError::PasswordExpired { .. }) => "password_expired",
        Err(CbsError::Decode { .. }) => "malformed",
        Err(CbsError::TooLarge { .. }) => "too_large",
        Err(CbsError::Setup(_)) => "setup_error",
    };
    ::metrics::counter!(CBS_REQUESTS_TOTAL, "outcome" => outcome, "server" => server.to_owned())
        .increment(1);
}

/// Whether backup server `server` is up (no outage open) after its cycle.
pub fn cbs_up(server: &str, up: bool) {
    ::metrics::gauge!(CBS_UP, "server" => server.to_owned()).set(if up { 1.0 } else { 0.0 });
}

/// A job was seen in a CBS reply.
pub fn job_observed(class: StatusClass) {
    ::metrics::counter!(JOBS_OBSERVED_TOTAL, "class" => class.as_str()).increment(1);
}

/// An event was queued in the outbox.
pub fn event_queued(kind: &EventKind) {
    ::metrics::counter!(ALERTS_TOTAL, "kind" => kind_name(kind)).increment(1);
}

/// The name of an event's kind, as in logs and the `kind` label.
pub fn kind_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::JobFinished { .. } => "job_finished",
        EventKind::JobStuck { .. } => "job_stuck",
        EventKind::FailureStorm { .. } => "failure_storm",
        EventKind::JobVanished { .. } => "job_vanished",
        EventKind::Baseline { .. } => "baseline",
        EventKind::CycleSummary(_) => "cycle_summary",
        EventKind::CbsUnreachable { .. } => "cbs_unreachable",
        EventKind::CbsRecovered { .. } => "cbs_recovered",
        EventKind::Digest(_) => "digest",
    }
}

/// `n` events were accepted by the chat.
pub fn events_delivered(n: usize) {
    ::metrics::counter!(EVENTS_DELIVERED_TOTAL).increment(n as u64);
}

/// `n` events were dropped undelivered: the chat rejects their message for good.
pub fn events_dropped(n: usize) {
    ::metrics::counter!(EVENTS_DROPPED_TOTAL).increment(n as u64);
}

/// Discord answered a post with `status` (`None`: no answer at all); counts failures by
/// reason.
pub fn discord_reply(status: Option<u16>) {
    let reason = match status {
        Some(200..=299) => return,
        Some(401) => "unauthorized",
        Some(429) => "rate_limited",
        Some(400 | 413) => "rejected",
        Some(403 | 404) => "refused",
        Some(500..=599) => "server_error",
        Some(_) => "other_status",
        None => "transport",
    };
    ::metrics::counter!(DELIVERY_FAILURES_TOTAL, "reason" => reason).increment(1);
}

/// A store record was quarantined.
pub fn quarantined() {
    ::metrics::counter!(QUARANTINED_TOTAL).increment(1);
}

/// A slash command was answered: `result` is `ok`, `error` or `refused` (a check such as
/// "from our server" or "admin only" failed).
pub fn command(name: &str, result: &'static str) {
    ::metrics::counter!(COMMANDS_TOTAL, "command" => name.to_owned(), "result" => result)
        .increment(1);
}

/// `n` poll ticks passed while a cycle was still running.
pub fn ticks_skipped(n: u64) {
    ::metrics::counter!(TICKS_SKIPPED_TOTAL).increment(n);
}

/// A heartbeat was sent: `kind` is `ok` or `fail`, `delivered` whether it got a 2xx.
pub fn heartbeat(kind: &'static str, delivered: bool) {
    let result = if delivered { "sent" } else { "error" };
    ::metrics::counter!(HEARTBEATS_TOTAL, "kind" => kind, "result" => result).increment(1);
}

/// Sets the gauges that describe the store.
pub fn store_gauges(outbox_events: usize, oldest_age: Option<Duration>, store_bytes: u64) {
    ::metrics::gauge!(OUTBOX_EVENTS).set(outbox_events as f64);
    ::metrics::gauge!(OUTBOX_OLDEST_AGE_SECONDS).set(oldest_age.map_or(0.0, |a| a.as_secs_f64()));
    ::metrics::gauge!(STORE_BYTES).set(store_bytes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No lib test runs a poll cycle, so what a scrape shows here is what it shows
    /// before the first cycle: series an alert needs exist from the start.
    #[test]
    fn a_scrape_before_any_cycle_shows_last_success_at_0_and_no_drops() {
        let text = install().render();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map(str::to_owned)
        };
        assert_eq!(
            value(LAST_SUCCESS_TIMESTAMP_SECONDS).as_deref(),
            Some("0"),
            "{text}"
        );
        assert_eq!(value(EVENTS_DROPPED_TOTAL).as_deref(), Some("0"), "{text}");
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let counters = [
            CYCLES_TOTAL,
            CBS_REQUESTS_TOTAL,
            JOBS_OBSERVED_TOTAL,
            ALERTS_TOTAL,
            EVENTS_DELIVERED_TOTAL,
            EVENTS_DROPPED_TOTAL,
            DELIVERY_FAILURES_TOTAL,
            QUARANTINED_TOTAL,
            COMMANDS_TOTAL,
            TICKS_SKIPPED_TOTAL,
            HEARTBEATS_TOTAL,
        ];
        for name in counters {
            assert!(
                name.starts_with("restorewatch_") && name.ends_with("_total"),
                "{name}"
            );
        }
        for name in [
            CYCLE_DURATION_SECONDS,
            OUTBOX_OLDEST_AGE_SECONDS,
            LAST_SUCCESS_TIMESTAMP_SECONDS,
        ] {
            assert!(name.ends_with("_seconds"), "{name}");
        }
        assert!(STORE_BYTES.ends_with("_bytes"));
    }
}
