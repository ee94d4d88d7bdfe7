//! Reply items without a job identity, remembered across cycles: a server that sends the
//! same unreadable item in every reply is told about once (one summary, one WARN line), as
//! a user whose requests keep failing the same way is, and a new item is told about again.
//!
//! An item is known by a stable hash of its raw text, per (user, date). A successful read
//! of a (user, date) replaces what was remembered for it; one not read this cycle (a failed
//! request, a date not asked) keeps its items until the retention cutoff, so a failed
//! request in between does not make a known item new again.

use crate::cbs::model::SkippedItem;
use crate::store::{Store, StoreError, UnreadableSeen};
use chrono::NaiveDate;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher as _;

/// Items remembered per (user, date). Once a (user, date) has this many, items it does not
/// know count as seen: a reply full of distinct garbage is told about once, and the store
/// stays small whatever the reply holds.
const REMEMBERED_PER_DATE_MAX: usize = 100;

type Pair = (String, NaiveDate);

/// The unreadable items of the last cycles and of this one.
pub(super) struct Unreadable {
    before: BTreeMap<Pair, BTreeSet<u64>>,
    now: BTreeMap<Pair, BTreeSet<u64>>,
    new_items: u32,
}

impl Unreadable {
    pub(super) fn load(store: &Store) -> Result<Self, StoreError> {
        let before = store
            .unreadable_seen()?
            .into_iter()
            .map(|s| ((s.login, s.date), s.items))
            .collect();
        Ok(Unreadable {
            before,
            now: BTreeMap::new(),
            new_items: 0,
        })
    }

    /// Notes a successful read of `login` on `date`: its items from now on are this read's.
    pub(super) fn read(&mut self, login: &str, date: NaiveDate) {
        // Only a pair with items remembered needs its read noted (its items are replaced);
        // a pair without any stays without, so a 10,000-user cycle copies no login here.
        if self.before.is_empty() {
            return;
        }
        let pair = (login.to_owned(), date);
        if self.before.contains_key(&pair) {
            self.now.entry(pair).or_default();
        }
    }

    /// Notes a skipped item of `login`'s reply for `date`; true when it was not seen before.
    pub(super) fn note(&mut self, login: &str, date: NaiveDate, item: &SkippedItem) -> bool {
        let pair = (login.to_owned(), date);
        let hash = item_hash(item);
        let known = self
            .before
            .get(&pair)
            .is_some_and(|s| s.contains(&hash) || s.len() >= REMEMBERED_PER_DATE_MAX);
        let now = self.now.entry(pair).or_default();
        // The same item twice in one reply is one item; past the bound, items are not
        // remembered and not new (the first ones told about this reply already).
        let inserted = now.len() < REMEMBERED_PER_DATE_MAX && now.insert(hash);
        let new = !known && inserted;
        if new {
            self.new_items += 1;
        }
        new
    }

    /// Whether this cycle saw an item for the first time.
    pub(super) fn any_new(&self) -> bool {
        self.new_items > 0
    }

    /// Saves what is remembered; dates before `cutoff` are forgotten, with their records.
    pub(super) fn save(self, store: &Store, cutoff: NaiveDate) -> Result<(), StoreError> {
        let Unreadable { before, now, .. } = self;
        let mut merged = before.clone();
        for (pair, items) in now {
            merged.insert(pair, items);
        }
        merged.retain(|(_, date), items| *date >= cutoff && !items.is_empty());
        if merged != before {
            let seen: Vec<UnreadableSeen> = merged
                .into_iter()
                .map(|((login, date), items)| UnreadableSeen { login, date, items })
                .collect();
            store.set_unreadable_seen(&seen)?;
        }
        Ok(())
    }
}

/// A stable hash of an item's reason and raw text (the same across restarts and builds).
fn item_hash(item: &SkippedItem) -> u64 {
    let mut hasher = siphasher::sip::SipHasher13::new();
    for part in [&item.reason, &item.raw] {
        hasher.write_u64(part.len() as u64);
        hasher.write(part.as_bytes());
    }
    hasher.finish()
}
