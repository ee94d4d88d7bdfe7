//! Which channel an event goes to: the channel of its owner's `[[route]]`, else the alert
//! channel. Pure, so the rules are unit-tested without a network.

use crate::config::DiscordSettings;
use crate::event::{Event, EventKind};
use serenity::all::ChannelId;
use std::collections::HashMap;

/// The channels of the `[discord]` section, by purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    /// Alerts and notices without an owner route.
    pub alert: ChannelId,
    /// The daily digest.
    pub digest: ChannelId,
    /// Cycle summaries and roll-ups (`summary.channel`, default the alert channel).
    pub summary: ChannelId,
    /// `[[route]]`: an owner's (sub-admin/reseller's) own channel.
    pub by_owner: HashMap<String, ChannelId>,
}

impl Routes {
    pub fn from_settings(settings: &DiscordSettings) -> Routes {
        Routes {
            alert: settings.alert_channel,
            digest: settings.digest_channel,
            summary: settings.alert_channel,
            by_owner: settings
                .routes
                .iter()
                .map(|r| (r.owner.clone(), r.channel))
                .collect(),
        }
    }

    /// The channel `event` is posted to.
    pub fn channel_for(&self, event: &Event) -> ChannelId {
        match event.kind {
            EventKind::Digest(_) => return self.digest,
            EventKind::CycleSummary(_) => return self.summary,
            _ => {}
        }
        event
            .owner()
            .and_then(|owner| self.by_owner.get(owner))
            .copied()
            .unwrap_or(self.alert)
    }

    /// `events` split per channel, each list in the given (outbox) order; channels in the
    /// order of their first event.
    pub fn split<'e>(&self, events: &'e [Event]) -> Vec<(ChannelId, Vec<&'e Event>)> {
        let mut out: Vec<(ChannelId, Vec<&Event>)> = Vec::new();
        for event in events {
            let channel = self.channel_for(event);
            match out.iter_mut().find(|(c, _)| *c == channel) {
                Some((_, list)) => list.push(event),
                None => out.push((channel, vec![event])),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CycleSummary, EventKind};
    use chrono::Utc;

    fn routes() -> Routes {
        Routes {
            alert: ChannelId::new(1),
            digest: ChannelId::new(2),
            summary: ChannelId::new(1),
            by_owner: [("reseller-a".to_owned(), ChannelId::new(3))].into(),
        }
    }

    fn baseline(id: u64, owner: &str) -> Event {
        Event {
            id,
            created_at: Utc::now(),
            kind: EventKind::Baseline {
                owner: owner.into(),
                users: Vec::new(),
                would_alert: Vec::new(),
                would_alert_total: 0,
                server: String::new(),
            },
        }
    }

    fn summary(id: u64) -> Event {
        Event {
            id,
            created_at: Utc::now(),
            kind: EventKind::CycleSummary(CycleSummary::default()),
        }
    }

    #[test]
    fn owners_with_a_route_get_their_channel_everything_else_the_alert_channel() {
        let r = routes();
        assert_eq!(r.channel_for(&baseline(1, "reseller-a")), ChannelId::new(3));
        assert_eq!(r.channel_for(&baseline(2, "reseller-b")), ChannelId::new(1));
        assert_eq!(r.channel_for(&baseline(3, "")), ChannelId::new(1));
        assert_eq!(r.channel_for(&summary(4)), ChannelId::new(1));
    }

    #[test]
    fn split_keeps_the_order_within_each_channel() {
        let events = [
            summary(1),
            baseline(2, "reseller-a"),
            baseline(3, ""),
            baseline(4, "reseller-a"),
        ];
        let ids: Vec<(u64, Vec<u64>)> = routes()
            .split(&events)
            .into_iter()
            .map(|(c, list)| (c.get(), list.iter().map(|e| e.id).collect()))
            .collect();
        assert_eq!(ids, [(1, vec![1, 3]), (3, vec![2, 4])]);
    }
}
