//! `/restores user [date]`: one user's restore jobs of one day, asked live from the CBS
//! (`ListRestoreJobStatus`). When the CBS cannot be reached, the answer comes from the
//! store, and says so.
//!
//! Split in two so the bot can answer a bad argument at once and ephemerally, and defer
//! only before the slow part: [`RestoresArgs::parse`] checks, [`restores`] looks up.

use super::watch::owner_of;
use super::{job_line, list_embed, parse_date, parse_login, quote};
use super::{CommandError, CommandResult, Reply};
use crate::cbs::model::{RestoreJob, StatusClass};
use crate::cbs::CbsClient;
use crate::config::WatchEntry;
use crate::render::class_colour;
use crate::store::Store;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

/// Neutral blue for lists that are not about one outcome.
pub const LIST_COLOUR: u32 = 0x5865F2;

/// The checked arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoresArgs {
    pub login: String,
    /// From the watch list; empty for a user without owner or not watched.
    pub owner: String,
    pub date: NaiveDate,
}

impl RestoresArgs {
    /// Checks the arguments; the date defaults to today in the server zone `tz`.
    pub fn parse(
        login: &str,
        date: Option<&str>,
        now: DateTime<Utc>,
        tz: Tz,
        store: &Store,
        config_watch: &[WatchEntry],
    ) -> Result<RestoresArgs, CommandError> {
        let today = now.with_timezone(&tz).date_naive();
        let login = parse_login(login)?;
        let date = parse_date(date, today)?;
        let owner = owner_of(store, config_watch, &login)?.unwrap_or_default();
        Ok(RestoresArgs { login, owner, date })
    }
}

/// Looks the jobs up live, falling back to the store when the CBS is unreachable.
/// `public`: answer visibly to the channel (`discord.public_lookups`).
pub async fn restores(
    client: &CbsClient,
    store: &Store,
    args: &RestoresArgs,
    public: bool,
) -> CommandResult {
    let title = format!("Restores of {} on {}", quote(&args.login), args.date);
    let live = client
        .list_restore_jobs(&args.login, &args.owner, args.date)
        .await;
    let (mut jobs, footer) = match live {
        Ok(list) => (list.jobs, format!("live from {}", client.server_name())),
        Err(error) if error.outage_reason().is_some() => {
            tracing::warn!(user = %args.login, date = %args.date, %error, "/restores: CBS unreachable, answering from the store");
            let known: Vec<RestoreJob> = store
                .jobs_on(args.date)?
                .into_iter()
                .map(|r| r.job)
                .filter(|j| j.login_name == args.login)
                .collect();
            let footer = format!(
                "{} is unreachable ({}); from the bot's store, which may be out of date",
                client.server_name(),
                quote(&error.to_string())
            );
            (known, footer)
        }
        Err(error) => {
            return Err(CommandError::Usage(format!(
                "user: the backup server refused `{}`: {}. Expected a login name it knows.",
                quote(&args.login),
                quote(&error.to_string())
            )))
        }
    };
    // Newest first: the one people ask about is usually the last.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.start_time));
    let lines: Vec<String> = jobs.iter().map(job_line).collect();
    let mut embed = list_embed(title, &lines, LIST_COLOUR, Some(footer));
    if jobs.is_empty() {
        embed.description = "No restore jobs.".into();
    } else if let Some(worst) = jobs.iter().map(|j| j.class).max_by_key(|c| severity(*c)) {
        embed.colour = class_colour(worst);
    }
    Ok(Reply::embed(embed, !public))
}

/// Which class colours a list: the worst outcome in it.
fn severity(class: StatusClass) -> u8 {
    match class {
        StatusClass::Success => 0,
        StatusClass::Running => 1,
        StatusClass::Cancelled => 2,
        StatusClass::Warning => 3,
        StatusClass::PartialFailure => 4,
        StatusClass::Unknown => 5,
        StatusClass::Failure => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn live_answer_then_the_store_when_the_cbs_is_down() {
        let (sim, client) = simulator().await;
        let (_dir, store) = store();
        let args = RestoresArgs::parse(
            " obm",
            Some("2024-06-25"),
            at(26, 12),
            chrono_tz::UTC,
            &store,
            &[],
        )
        .unwrap();
        assert_eq!(args.date, day(25));
        let live = restores(&client, &store, &args, false).await.unwrap();
        assert!(live.ephemeral);
        let embed = &live.embeds[0];
        assert_eq!(embed.footer.as_deref(), Some("live from cbs"));
        assert_eq!(embed.colour, class_colour(StatusClass::Failure));
        let lines: Vec<&str> = embed.description.lines().collect();
        assert!(lines[0].starts_with("**Set 2** · success · 11:00–12:00 · 2 KiB"));
        assert!(lines[1].starts_with("**Set 1** · failure"));

        record(&store, &sim.expected("cbs", "obm", day(25))[..1]);
        sim.set_down(true).await.unwrap();
        let stored = restores(&client, &store, &args, true).await.unwrap();
        assert!(!stored.ephemeral);
        let footer = stored.embeds[0].footer.clone().unwrap();
        assert!(footer.starts_with("cbs is unreachable"), "{footer}");
        assert_eq!(stored.embeds[0].description.lines().count(), 1);
    }

    #[tokio::test]
    async fn an_unknown_user_is_a_usage_error() {
        let (_sim, client) = simulator().await;
        let (_dir, store) = store();
        let args =
            RestoresArgs::parse("ghost", None, at(26, 12), chrono_tz::UTC, &store, &[]).unwrap();
        assert_eq!(args.date, day(26), "today by default");
        let e = restores(&client, &store, &args, false).await.unwrap_err();
        assert!(matches!(e, CommandError::Usage(_)));
        assert!(e.to_string().contains("refused `ghost`"), "{e}");
    }
}
