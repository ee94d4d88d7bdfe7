//! `/digest [date]`: the daily digest of a day, on demand.
//!
//! The same digest the schedule posts ([`crate::digest`]), built from the store now. A
//! digest longer than one message continues in follow-up messages. In a `[[route]]`
//! channel a member sees the digest of that owner's users only.

use super::{parse_date, CommandResult, Reply, Scope, Visible};
use crate::digest::Digest;
use crate::render::render_digest;
use crate::render::{pack, RenderOptions};
use crate::store::Store;
use crate::tz::Tz;
use chrono::NaiveDate;

/// The digest of `date` (default `today`, server zone), of the users `scope` sees
/// (`visible`, see [`super::visible_users`]); `servers_named`: each job says its backup
/// server (there are several).
#[allow(clippy::too_many_arguments)]
pub fn digest(
    store: &Store,
    date: Option<&str>,
    today: NaiveDate,
    tz: Tz,
    scope: &Scope,
    visible: &Visible,
    servers_named: bool,
    public: bool,
) -> CommandResult {
    let date = parse_date(date, today)?;
    let mut records = store.jobs_on(date)?;
    records.retain(|r| scope.shows_job_of(&r.job.server, &r.job.login_name, visible));
    let (health, servers) = crate::digest::day_health(store, date)?;
    let mut digest = Digest::compute_naming(
        date,
        tz,
        &records,
        &health,
        store.outbox_len()?,
        store.refused_destinations()?,
        &crate::acks::Acks::open(store)?.on(date)?,
        servers_named,
    );
    digest.health.servers = servers;
    let options = RenderOptions {
        mention_role: None,
        timezone: tz,
        servers_named,
    };
    // On demand there is room for more than the scheduled digest shows.
    let cards = render_digest(&digest, today, super::LIST_MESSAGES_MAX);
    let mut messages = pack(vec![(false, cards)], &options)
        .into_iter()
        .map(|packed| packed.message.embeds);
    Ok(Reply {
        content: String::new(),
        embeds: messages.next().unwrap_or_default(),
        followups: messages.collect(),
        ephemeral: !public,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_days_digest_with_its_failures() {
        let (_dir, store) = store();
        record(
            &store,
            &[
                job("obm", "1", 26, 8, "RESTORE_STOP_SUCCESS"),
                job("obm", "2", 26, 9, "RESTORE_STOP_SUCCESS"),
                job("shop", "1", 26, 9, "RESTORE_STOP_BY_ERROR"),
                // The day before, and the day after: neither belongs in the 26th's digest.
                job("eve", "1", 25, 23, "RESTORE_STOP_BY_ERROR"),
                job("morrow", "1", 27, 0, "RESTORE_STOP_BY_ERROR"),
            ],
        );
        let reply = digest(
            &store,
            None,
            day(26),
            crate::tz::Tz::UTC,
            &Scope::default(),
            &Visible::default(),
            false,
            false,
        )
        .unwrap();
        assert!(reply.ephemeral);
        let title = &reply.embeds[0].title;
        assert_eq!(title, "Restore digest for 2024-06-26 (UTC)");
        let all: String = reply
            .embeds
            .iter()
            .flat_map(|e| {
                e.fields
                    .iter()
                    .map(|f| f.value.clone())
                    .chain([e.description.clone()])
            })
            .collect();
        assert!(all.contains("shop"), "{all}");
        assert!(all.contains("RESTORE_STOP_BY_ERROR"), "{all}");
        assert!(!all.contains("eve") && !all.contains("morrow"), "{all}");
        assert_eq!(all.matches("RESTORE_STOP_BY_ERROR").count(), 1, "{all}");
        assert!(
            all.contains("3 restore jobs on 2024-06-26: 2 success, 1 failure"),
            "{all}"
        );
    }

    #[test]
    fn a_routed_channel_gets_its_owners_digest() {
        let (_dir, store) = store();
        let mut ours = job("ours", "1", 26, 8, "RESTORE_STOP_BY_ERROR");
        ours.owner = "reseller-a".into();
        record(
            &store,
            &[ours, job("theirs", "1", 26, 9, "RESTORE_STOP_BY_ERROR")],
        );
        let routed = Scope {
            admin: false,
            owner: Some("reseller-a".into()),
        };
        let visible: BTreeMap<String, String> =
            [("ours".to_owned(), "reseller-a".to_owned())].into();
        let reply = digest(
            &store,
            None,
            day(26),
            crate::tz::Tz::UTC,
            &routed,
            &Visible::on_server("cbs", visible.clone()),
            false,
            false,
        );
        let reply = reply.unwrap();
        let all = format!("{:?}", reply.embeds);
        assert!(all.contains("ours"), "{all}");
        assert!(!all.contains("theirs"), "{all}");
    }

    #[test]
    fn a_long_digest_continues_in_followups() {
        let (_dir, store) = store();
        let jobs: Vec<_> = (0..400)
            .map(|i| job(&format!("user{i:03}"), "1", 26, 9, "RESTORE_STOP_BY_ERROR"))
            .collect();
        record(&store, &jobs);
        let reply = digest(
            &store,
            Some("2024-06-26"),
            day(27),
            crate::tz::Tz::UTC,
            &Scope::default(),
            &Visible::default(),
            false,
            true,
        )
        .unwrap();
        assert!(!reply.ephemeral);
        assert!(!reply.followups.is_empty());
        for embeds in std::iter::once(&reply.embeds).chain(&reply.followups) {
            assert!(embeds.len() <= 10);
            assert!(embeds.iter().map(|e| e.char_count()).sum::<usize>() <= 6000);
        }
    }

    #[test]
    fn a_bad_date_says_what_is_expected() {
        let (_dir, store) = store();
        let err = digest(
            &store,
            Some("26/06/2024"),
            day(26),
            crate::tz::Tz::UTC,
            &Scope::default(),
            &Visible::default(),
            false,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("YYYY-MM-DD"), "{err}");
    }

    #[test]
    fn with_several_servers_each_job_names_its_server() {
        let (_dir, store) = store();
        let failed = crate::cbs::model::RestoreJob {
            server: "eu-west".into(),
            ..job("obm", "1", 26, 9, "RESTORE_STOP_BY_ERROR")
        };
        record(&store, &[failed]);
        let shown = |servers_named: bool| {
            let reply = digest(
                &store,
                Some("2024-06-26"),
                day(27),
                crate::tz::Tz::UTC,
                &Scope::default(),
                &Visible::default(),
                servers_named,
                false,
            )
            .unwrap();
            format!("{:?}", reply.embeds)
        };
        assert!(shown(true).contains("eu-west"), "{}", shown(true));
        assert!(!shown(false).contains("eu-west"), "{}", shown(false));
    }
}
