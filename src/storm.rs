//! Storms collapse: when one cycle queues more failure alerts for one channel than
//! `alerts.group_after`, they are replaced in the outbox by one "N restores failed" card
//! listing them all, followed by the individual alerts of the first few.
//!
//! The poller calls [`collapse`] after a cycle's sightings are recorded and before anything
//! is delivered. The replacement is one store transaction; a crash before it leaves the
//! individual alerts queued, so nothing is lost, the storm is only louder.

use crate::cbs::model::RestoreJob;
use crate::event::{EventKind, StormJob};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Individual alerts that still follow a storm card: the first few, in the card's order.
pub const STORM_INDIVIDUAL_ALERTS: usize = 3;

/// Replaces this cycle's failure alerts (`alerted`) by storm cards where a channel got more
/// than `group_after`. `routed_owners`: owners with their own channel (`[[route]]`); the
/// failures of every other owner share the alert channel and are counted together.
/// Returns the alerts folded into cards.
pub fn collapse(
    store: &Store,
    alerted: &[RestoreJob],
    group_after: u32,
    routed_owners: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut by_channel: BTreeMap<Option<&str>, BTreeSet<_>> = BTreeMap::new();
    for job in alerted {
        let channel = routed_owners
            .contains(&job.owner)
            .then_some(job.owner.as_str());
        by_channel.entry(channel).or_default().insert(job.key());
    }
    by_channel.retain(|_, keys| keys.len() > group_after as usize);
    if by_channel.is_empty() {
        return Ok(0);
    }
    let pending = store.pending_events(usize::MAX)?;
    let mut folded = 0;
    for (owner, keys) in by_channel {
        let mut events: Vec<(StormJob, u64, EventKind)> = pending
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::JobFinished { job, .. } if keys.contains(&job.key()) => {
                    Some((StormJob::from_job(job), e.id, e.kind.clone()))
                }
                _ => None,
            })
            .collect();
        events.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let remove: Vec<u64> = events.iter().map(|(_, id, _)| *id).collect();
        let few = STORM_INDIVIDUAL_ALERTS.min(group_after as usize);
        let mut add = vec![EventKind::FailureStorm {
            owner: owner.map(str::to_owned),
            jobs: events.iter().map(|(line, _, _)| line.clone()).collect(),
        }];
        add.extend(events.into_iter().take(few).map(|(_, _, kind)| kind));
        tracing::info!(
            failures = remove.len(),
            owner = owner.unwrap_or(""),
            "failure storm: one card instead of an alert each"
        );
        folded += remove.len();
        store.replace_events(&remove, &add, now)?;
    }
    Ok(folded)
}
