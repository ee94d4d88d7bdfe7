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
use crate::store::{Store, StoreError};
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
    let mut found: BTreeMap<Option<&str>, Queued> = BTreeMap::new();
    store.each_pending(|event| {
        if let EventKind::JobFinished { job, .. } = &event.kind {
            let key = job.key();
            if let Some((channel, _)) = by_channel.iter().find(|(_, keys)| keys.contains(&key)) {
                (found.entry(*channel).or_default()).push((StormJob::from_job(job), event.id, key));
            }
        }
        Ok(true)
    })?;
    let mut card_only = BTreeSet::new();
    for (owner, events) in found {
        card_only.extend(fold(store, owner, events, group_after, now)?);
    }
    Ok(card_only)
}

/// Folds the failure alerts waiting in the outbox into cards where more than
/// `group_after` of one channel wait at once, whichever cycles queued them. That is what a
/// stop between a storm's sightings and its card leaves (the sightings are recorded, so no
/// later cycle sees them as new and folds them), or a backlog Discord refused for hours.
/// An alert whose job a queued card already lists (one of the few that follow a card) is
/// left as it is. Called before a round's cycles start, when no cycle is queueing alerts.
/// Returns the alerts folded.
pub fn collapse_backlog(
    store: &Store,
    group_after: u32,
    routed_owners: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut carded: BTreeSet<StormJob> = BTreeSet::new();
    let mut found: BTreeMap<Option<String>, Queued> = BTreeMap::new();
    store.each_pending(|event| {
        match event.kind {
            EventKind::FailureStorm { jobs, .. } => carded.extend(jobs),
            EventKind::JobFinished { job, .. } => {
                let channel = routed_owners
                    .contains(&job.owner)
                    .then(|| job.owner.clone());
                let line = StormJob::from_job(&job);
                (found.entry(channel).or_default()).push((line, event.id, job.key()));
            }
            _ => {}
        }
        Ok(true)
    })?;
    let mut folded = 0;
    for (owner, mut events) in found {
        events.retain(|(line, _, _)| !carded.contains(line));
        if events.len() <= group_after as usize {
            continue;
        }
        tracing::info!(
            failures = events.len(),
            owner = owner.as_deref().unwrap_or(""),
            "failure alerts left queued by a stop or a delivery outage are folded into a card"
        );
        folded += events.len();
        fold(store, owner.as_deref(), events, group_after, now)?;
    }
    Ok(folded)
}

/// A channel's queued failure alerts: the line each shows on a card, its event's id, its job.
type Queued = Vec<(StormJob, u64, JobKey)>;

/// Replaces `events` (one channel's, `owner`'s when routed) by one card listing them all
/// and the alerts of the first few, in the card's order. Returns the jobs now only on the
/// card.
fn fold(
    store: &Store,
    owner: Option<&str>,
    mut events: Queued,
    group_after: u32,
    now: DateTime<Utc>,
) -> Result<Vec<JobKey>, StoreError> {
    events.sort();
    let remove: Vec<u64> = events.iter().map(|(_, id, _)| *id).collect();
    let few = STORM_INDIVIDUAL_ALERTS.min(group_after as usize);
    let card_only = events
        .iter()
        .skip(few)
        .map(|(_, _, key)| key.clone())
        .collect();
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
    Ok(card_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn failure(set: &str) -> EventKind {
        EventKind::JobFinished {
            job: crate::test_data::job(
                "obm",
                set,
                crate::tz::Tz::UTC,
                "2024-06-26 09:00:00",
                Some("2024-06-26 09:10:00"),
                "RESTORE_STOP_BY_ERROR",
            ),
            repeat: None,
            report: None,
            listed_on: None,
            was_vanished: false,
        }
    }

    fn queued(store: &Store) -> Vec<Event> {
        store.pending_events(usize::MAX).unwrap()
    }

    #[test]
    fn a_backlog_over_the_threshold_becomes_a_card_and_the_alerts_after_a_card_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let none = BTreeSet::new();
        for set in ["1", "2", "3"] {
            store.push_event(failure(set), now).unwrap();
        }
        assert_eq!(
            collapse_backlog(&store, 3, &none, now).unwrap(),
            0,
            "not over"
        );
        store.push_event(failure("4"), now).unwrap();
        assert_eq!(collapse_backlog(&store, 3, &none, now).unwrap(), 4);
        let events = queued(&store);
        assert!(
            matches!(&events[0].kind, EventKind::FailureStorm { jobs, .. } if jobs.len() == 4),
            "{events:?}"
        );
        assert_eq!(events.len(), 1 + STORM_INDIVIDUAL_ALERTS);
        // The alerts that follow the card are on it: with one more failure they are not
        // counted again, so the backlog (one alert) is under the threshold.
        store.push_event(failure("5"), now).unwrap();
        assert_eq!(collapse_backlog(&store, 3, &none, now).unwrap(), 0);
        assert_eq!(queued(&store).len(), 2 + STORM_INDIVIDUAL_ALERTS);
    }
}
