//! Refusals: channels that do not let us post (403/404, or messages arriving without their
//! embeds) rest for a while with their reason kept; a rejected bot token (401) stops
//! posting to every channel until a retry proves it works. Both are logged once and
//! written to the store for `/status` and the digest.

use super::{DiscordSink, Refusal};
use serenity::all::ChannelId;
use tokio::time::Instant;

/// The refusal reason of a channel where messages arrive without their embeds.
pub const MISSING_EMBED_LINKS: &str = "missing Embed Links permission";

/// What delivery says while Discord rejects the bot token: the log line, the drain's error
/// (which `once` prints before exiting 1) and `/status`.
pub const TOKEN_REJECTED: &str = "Discord rejected the bot token (401 Unauthorized), so nothing \
    is posted to any channel. Set a valid token in RESTOREWATCH_DISCORD_TOKEN (or \
    discord.token_file / discord.token); if it was reset, copy the new one from the Developer \
    Portal (Bot → Reset Token). Events stay queued and are posted once the token works";

impl DiscordSink {
    /// Writes the channels that refuse us to the store, where `/status` and the digest
    /// read them.
    pub(super) fn publish_refusals(&self) {
        let token = self
            .token_rejected()
            .then(|| format!("every channel: {TOKEN_REJECTED}"));
        let channels = self.refused_channels().into_iter();
        let channels = channels.map(|(channel, reason)| format!("channel {channel}: {reason}"));
        let refused: Vec<String> = token.into_iter().chain(channels).collect();
        if let Err(e) = self.store.set_refused_destinations(&refused) {
            tracing::warn!(error = %e, "cannot record the refusing channels");
        }
    }
    /// Whether Discord rejects the bot token (a 401 not followed by an accepted post yet).
    pub fn token_rejected(&self) -> bool {
        self.state().token_rejected.is_some()
    }

    /// Stops posting until the token retry is due; logs at error only the first time, so a
    /// bad token costs one log line, not one per cycle.
    pub(super) fn reject_token(&self, reason: &str) {
        let retry_at = Instant::now() + self.timing.token_retry;
        let was = self.state().token_rejected.replace(retry_at);
        if was.is_none() {
            tracing::error!(%reason, retry_in = ?self.timing.token_retry, "{TOKEN_REJECTED}");
        } else {
            tracing::debug!(%reason, "the bot token is still rejected");
        }
    }

    /// Whether `channel` is resting after refusing us for `reason`.
    pub(super) fn refused_for(&self, channel: ChannelId, reason: &str) -> bool {
        (self.state().refused.get(&channel)).is_some_and(|r| r.reason == reason)
    }

    /// Notes a channel's refusal; logs only when it is new or its reason changed.
    pub(super) fn refuse(&self, channel: ChannelId, reason: String) {
        let retry_at = Instant::now() + self.timing.refused_retry;
        let mut state = self.state();
        let known = state
            .refused
            .get(&channel)
            .is_some_and(|r| r.reason == reason);
        if !known {
            tracing::warn!(
                channel = channel.get(),
                %reason,
                retry_in = ?self.timing.refused_retry,
                "channel refuses our messages; its events stay queued"
            );
        }
        state.refused.insert(channel, Refusal { reason, retry_at });
    }
}
