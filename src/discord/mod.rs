//! Discord: where events go ([`routing`]) and how they get there ([`delivery`]).
//!
//! Delivery is a [`crate::sink::Sink`]: the outbox drain offers it events, it posts them
//! through serenity's request routing and reports which ones Discord accepted.

pub mod delivery;
pub mod routing;

pub use delivery::{DeliveryTiming, DiscordSink};
pub use routing::Routes;
