//! Storms collapse: when one cycle queues more failure alerts for one channel than
//! `alerts.group_after`, they are replaced in the outbox by one "N restores failed" card
//! listing them all, followed by the individual alerts of the first few.
//!
//! The poller calls [`collapse`] after a cycle's sightings are recorded and before anything
//! is delivered. The card goes in with the list of the alerts it replaces, in one store
//! transaction; the alerts then leave in small batches (see [`Store::replace_events`]). A
//! crash before the card leaves the individual alerts queued, so nothing is lost, the
//! storm is only louder; a crash after it is finished when the store next opens.

use crate::cbs::model::{JobKey, RestoreJob};
use crate::event::{EventKind, StormJob};
use crate::store::{Store, StoreError, OUTBOX_PAGE};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Individual alerts that still follow a storm card: the first few, in the card's order.
pub const STORM_INDIVIDUAL_ALERTS: usize = 3;

/// Replaces this cycle's failure alerts (`alerted`) by storm cards where a channel got more
/// than `group_after`. `routed_owners`: owners with their own channel (`[[route]]`); the
/// failures of every other owner share the alert channel and are counted together.
/// Returns the jobs whose alerts now live only in a card (not among the few that follow
/// it): their details (`GetRestoreJobReport`) would show nowhere.
pub fn collapse(
    store: &Store,
    alerted: &[RestoreJob],
    group_after: u32,
    routed_owners: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<BTreeSet<JobKey>, StoreError> {
    let mut by_channel: BTreeMap<Option<&str>, BTreeSet<_>> = BTreeMap::new();
    for job in alerted {
        let channel = routed_owners
            .contains(&job.owner)
            .then_some(job.owner.as_str());
        by_channel.entry(channel).or_default().insert(job.key());
    }
    by_channel.retain(|_, keys| keys.len() > group_after as usize);
    if by_channel.is_empty() {
        return Ok(BTreeSet::new());
    }
    // The queued failures of those channels, found a page at a time: the outbox is never
    // read whole (50,000 queued alerts are about 40 MiB decoded).
    let mut found: BTreeMap<Option<&str>, Vec<(StormJob, u64, JobKey)>> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.pending_events_after(after, OUTBOX_PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for event in &page {
            let EventKind::JobFinished { job, .. } = &event.kind else {
                continue;
            };
            let key = job.key();
            if let Some((channel, _)) = by_channel.iter().find(|(_, keys)| keys.contains(&key)) {
                (found.entry(*channel).or_default()).push((StormJob::from_job(job), event.id, key));
            }
        }
    }
    let mut card_only = BTreeSet::new();
    for (owner, mut events) in found {
        events.sort();
        let remove: Vec<u64> = events.iter().map(|(_, id, _)| *id).collect();
        let few = STORM_INDIVIDUAL_ALERTS.min(group_after as usize);
        card_only.extend(events.iter().skip(few).map(|(_, _, key)| key.clone()));
        let mut add = vec![EventKind::FailureStorm {
            owner: owner.map(str::to_owned),
            jobs: events.into_iter().map(|(line, _, _)| line).collect(),
        }];
        add.extend(
            store
                .events_by_id(&remove[..few.min(remove.len())])?
                .into_iter()
                .map(|e| e.kind),
        );
        tracing::info!(
            failures = remove.len(),
            owner = owner.unwrap_or(""),
            "failure storm: one card instead of an alert each"
        );
        store.replace_events(&remove, &add, now)?;
    }
    Ok(card_only)
}
