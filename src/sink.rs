//! Sinks deliver events; the delivery step drains the outbox into one.
//!
//! An event leaves the outbox only after the sink accepted it, so a crash or a failing
//! sink loses nothing: the next drain offers the same events again, in the same order.

use crate::event::{Event, EventKind};
use crate::render::{pack, render_event, to_text, RenderOptions};
use crate::store::{Store, StoreError};
use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::io::Write;
use std::sync::Mutex;

/// How many outbox events one drain offers a sink at a time.
pub const DRAIN_BATCH_EVENTS: usize = 256;

/// Why a sink could not take (all of) the events it was offered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Something that shows events to people.
pub trait Sink: Send + Sync {
    /// Delivers `events` (oldest first) and says which it accepted and which it dropped.
    /// Events it did neither with stay queued; an `Err` means it took none of them.
    fn deliver(
        &self,
        events: &[Event],
    ) -> impl Future<Output = Result<Delivered, SinkError>> + Send;
}

/// What a sink did with the events it was offered. Both lists leave the outbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Shown to people.
    pub accepted: Vec<u64>,
    /// Refused for good (Discord rejects the message itself, so a resend would fail the
    /// same way): removed so they cannot block the queue, but shown to nobody.
    pub dropped: Vec<u64>,
}

impl From<Vec<u64>> for Delivered {
    fn from(accepted: Vec<u64>) -> Self {
        Delivered {
            accepted,
            dropped: Vec::new(),
        }
    }
}

/// What one drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Events the sink accepted (shown to people).
    pub delivered: usize,
    /// Events the sink dropped for good (see [`Delivered::dropped`]); they left the outbox
    /// but nobody saw them.
    pub dropped: usize,
    /// Events still queued after the drain.
    pub pending: usize,
    /// The sink's last error, if it refused something.
    pub error: Option<String>,
}

/// Offers every queued event to `sink`, removing each one it accepts.
///
/// The outbox is read window by window, each starting after the last event offered, so a
/// backlog that waits (a channel that refuses us) costs one pass, not a re-read per window.
/// A sink may accept ids past the window it was offered (the rest of a message it had
/// started before a restart); they are acknowledged like the others.
pub async fn drain<S: Sink>(store: &Store, sink: &S) -> Result<DrainReport, StoreError> {
    drain_except(store, sink, &BTreeSet::new()).await
}

/// [`drain`], holding back the job alerts of the backup servers in `polling`: their cycles
/// are still under way, and the end of a cycle may still fold its alerts into one storm
/// message or attach their reports. Everything else goes out as usual.
pub async fn drain_except<S: Sink>(
    store: &Store,
    sink: &S,
    polling: &BTreeSet<String>,
) -> Result<DrainReport, StoreError> {
    let mut report = DrainReport::default();
    let mut after = None;
    loop {
        let mut batch = store.pending_events_after(after, DRAIN_BATCH_EVENTS)?;
        let Some(last) = batch.last() else {
            break;
        };
        after = Some(last.id);
        if !polling.is_empty() {
            batch.retain(|e| !job_of_server_in(e, polling));
            if batch.is_empty() {
                continue;
            }
        }
        match sink.deliver(&batch).await {
            Ok(Delivered { accepted, dropped }) => {
                if !accepted.is_empty() || !dropped.is_empty() {
                    store.ack(&[accepted.as_slice(), &dropped].concat())?;
                    // On disk before the next batch is offered: a crash during it must not
                    // offer these (already delivered) events again. Once per window, not
                    // per event; a window nobody took has nothing to write.
                    store.flush()?;
                }
                report.delivered += accepted.len();
                report.dropped += dropped.len();
                crate::metrics::events_dropped(dropped.len());
                let accepted: HashSet<u64> = accepted.into_iter().collect();
                log_delivered(&batch, &accepted);
                let taken = |id: &u64| accepted.contains(id) || dropped.contains(id);
                if batch.iter().any(|e| !taken(&e.id)) {
                    // Some events wait (say, a channel that refuses us): leave them queued
                    // and look at the events behind them, which may go elsewhere.
                    report
                        .error
                        .get_or_insert_with(|| "some events were not accepted".into());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "delivery failed; events stay queued");
                report.error = Some(e.0);
                break;
            }
        }
    }
    report.pending = store.outbox_len()?;
    Ok(report)
}

/// Whether `event` is a job alert of one of `servers`.
fn job_of_server_in(event: &Event, servers: &BTreeSet<String>) -> bool {
    match &event.kind {
        EventKind::JobFinished { job, .. }
        | EventKind::JobStuck { job, .. }
        | EventKind::JobVanished { job, .. } => servers.contains(&job.server),
        _ => false,
    }
}

/// Logs each delivered event at info, a job's with its identity, and counts them.
fn log_delivered(offered: &[Event], accepted: &HashSet<u64>) {
    crate::metrics::events_delivered(accepted.len());
    for event in offered.iter().filter(|e| accepted.contains(&e.id)) {
        let kind = crate::metrics::kind_name(&event.kind);
        match &event.kind {
            EventKind::JobFinished { job, .. }
            | EventKind::JobStuck { job, .. }
            | EventKind::JobVanished { job, .. } => tracing::info!(
                event = event.id,
                kind,
                server = %job.server,
                login = %job.login_name,
                backup_set = %job.backup_set_id,
                job = %job.job_id,
                class = %job.class,
                "alert delivered"
            ),
            _ => tracing::info!(event = event.id, kind, "event delivered"),
        }
    }
}

/// Prints each event as a plain-text card: what a person would see in Discord.
pub struct ConsoleSink {
    options: RenderOptions,
    out: Mutex<Box<dyn Write + Send>>,
}

impl ConsoleSink {
    /// A console sink writing to standard output.
    pub fn stdout(options: RenderOptions) -> Self {
        Self::new(options, Box::new(std::io::stdout()))
    }

    pub fn new(options: RenderOptions, out: Box<dyn Write + Send>) -> Self {
        ConsoleSink {
            options,
            out: Mutex::new(out),
        }
    }
}

impl Sink for ConsoleSink {
    async fn deliver(&self, events: &[Event]) -> Result<Delivered, SinkError> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut accepted = Vec::with_capacity(events.len());
        for event in events {
            let item = (false, render_event(event, &self.options));
            for packed in pack(vec![item], &self.options) {
                writeln!(out, "{}", to_text(&packed.message, self.options.timezone))
                    .map_err(|e| SinkError(format!("writing to the console: {e}")))?;
            }
            accepted.push(event.id);
        }
        out.flush()
            .map_err(|e| SinkError(format!("writing to the console: {e}")))?;
        Ok(accepted.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    /// Takes every event it is offered, or none (a channel that refuses us), and remembers
    /// the windows it was offered.
    struct Counting {
        accept: bool,
        offered: Mutex<Vec<Vec<u64>>>,
    }

    impl Sink for Counting {
        async fn deliver(&self, events: &[Event]) -> Result<Delivered, SinkError> {
            let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
            self.offered.lock().unwrap().push(ids.clone());
            Ok(if self.accept { ids } else { Vec::new() }.into())
        }
    }

    fn backlog(events: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        for _ in 0..events {
            let kind = EventKind::CbsRecovered {
                server: None,
                down_since: now,
                recovered_at: now,
                caught_up: vec![],
                reason: None,
            };
            store.push_event(kind, now).unwrap();
        }
        (dir, store)
    }

    const EVENTS: usize = 2 * DRAIN_BATCH_EVENTS + 10;

    #[tokio::test]
    async fn a_drain_reads_each_event_once_and_flushes_once_per_window() {
        let (_dir, store) = backlog(EVENTS);
        let sink = Counting {
            accept: true,
            offered: Mutex::default(),
        };
        let before = store.work();
        let report = drain(&store, &sink).await.unwrap();
        let work = store.work();
        assert_eq!(report.delivered, EVENTS);
        assert_eq!(report.pending, 0);
        assert_eq!(work.outbox_reads - before.outbox_reads, EVENTS as u64);
        assert_eq!(
            work.flushes - before.flushes,
            3,
            "one flush per window of 256"
        );
        assert_eq!(sink.offered.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_refused_backlog_is_read_once_not_once_per_window() {
        let (_dir, store) = backlog(EVENTS);
        let sink = Counting {
            accept: false,
            offered: Mutex::default(),
        };
        let before = store.work();
        let report = drain(&store, &sink).await.unwrap();
        let work = store.work();
        assert_eq!(report.delivered, 0);
        assert_eq!(report.pending, EVENTS);
        // Re-reading `skip + 256` events per window would read 256 + 512 + 522 here.
        assert_eq!(work.outbox_reads - before.outbox_reads, EVENTS as u64);
        assert_eq!(
            work.flushes, before.flushes,
            "nothing accepted, nothing to flush"
        );
        let offered: Vec<u64> = sink.offered.lock().unwrap().concat();
        let mut unique = offered.clone();
        unique.dedup();
        assert_eq!(offered.len(), EVENTS);
        assert_eq!(unique.len(), EVENTS, "each event offered once, in order");
    }
}
