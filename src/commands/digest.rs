//! `/digest [date]`: the day's restores at a glance, on demand.
//!
//! Until the real digest (`src/digest.rs`, written in parallel) is merged, the answer is a
//! per-class count of the day's jobs from [`day_class_counts`]; swapping in the real
//! digest means replacing that one call in [`digest`].

use super::restores::LIST_COLOUR;
use super::{parse_date, CommandResult, Reply};
use crate::cbs::model::StatusClass;
use crate::event::ClassCounts;
use crate::render::{Embed, EmbedField};
use crate::store::{JobRecord, Store};
use chrono::NaiveDate;

/// How many of the day's jobs ended in each class (running ones count as running).
pub fn day_class_counts(jobs: &[JobRecord]) -> ClassCounts {
    let mut counts = ClassCounts::new();
    for r in jobs {
        *counts.entry(r.job.class).or_default() += 1;
    }
    counts
}

/// The digest of `date` (default `today`, server zone).
pub fn digest(store: &Store, date: Option<&str>, today: NaiveDate, public: bool) -> CommandResult {
    let date = parse_date(date, today)?;
    let jobs = store.jobs_on(date)?;
    let counts = day_class_counts(&jobs);
    let total: u32 = counts.values().sum();
    let fields = StatusClass::ALL
        .into_iter()
        .filter_map(|c| {
            counts
                .get(&c)
                .map(|n| EmbedField::new(c.label(), n.to_string(), true))
        })
        .collect();
    let description = if total == 0 {
        "No restore jobs recorded.".to_owned()
    } else {
        format!("{total} restore jobs recorded.")
    };
    let embed = Embed {
        title: format!("Restores on {date}"),
        description,
        colour: LIST_COLOUR,
        fields,
        footer: None,
        timestamp: None,
    }
    .fit();
    Ok(Reply::embed(embed, !public))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn counts_the_days_jobs_per_class() {
        let (_dir, store) = store();
        record(
            &store,
            &[
                job("obm", "1", 26, 8, "RESTORE_STOP_SUCCESS"),
                job("obm", "2", 26, 9, "RESTORE_STOP_SUCCESS"),
                job("shop", "1", 26, 9, "RESTORE_STOP_BY_ERROR"),
                job("shop", "1", 25, 9, "RESTORE_STOP_BY_ERROR"),
            ],
        );
        let reply = digest(&store, None, day(26), false).unwrap();
        let embed = &reply.embeds[0];
        assert_eq!(embed.title, "Restores on 2024-06-26");
        assert_eq!(embed.description, "3 restore jobs recorded.");
        let fields: Vec<_> = embed
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(fields, [("success", "2"), ("failure", "1")]);
        let empty = digest(&store, Some("2024-06-01"), day(26), false).unwrap();
        assert_eq!(empty.embeds[0].description, "No restore jobs recorded.");
        assert!(digest(&store, Some("yesterday"), day(26), false).is_err());
    }
}
