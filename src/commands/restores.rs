//! `/restores user [date]`: one user's restore jobs of one day, asked live from the CBS
//! (`ListRestoreJobStatus`). When the CBS cannot be reached, the answer comes from the
//! store, and says so.
//!
//! Split in two so the bot can answer a bad argument at once and ephemerally, and defer
//! only before the slow part: [`RestoresArgs::parse`] checks, [`restores`] looks up.
//!
//! Only users the member may see are looked up ([`super::visible_users`]: watched or seen,
//! and the channel owner's in a `[[route]]` channel); an admin may ask for any login. A
//! login outside that, one the backup server does not know and one it refuses all get the
//! same answer ([`super::not_watched`]), so nobody can probe which logins exist, and the
//! first two never reach the backup server.

use super::{code, job_line, not_watched, parse_date, parse_login, quote, LIST_COLOUR};
use super::{CommandError, CommandResult, ListPages};
use crate::cbs::model::{RestoreJob, StatusClass};
use crate::cbs::CbsClient;
use crate::render::{class_colour, cut};
use crate::store::Store;
use crate::tz::Tz;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

/// How much of the backup server's error a footer quotes.
const ERROR_MAX_CHARS: usize = 200;

/// The checked arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoresArgs {
    pub login: String,
    /// From the watch list or the store; empty for a user without owner or not known.
    pub owner: String,
    pub date: NaiveDate,
    /// The bot has several backup servers: the next page's command names the one asked.
    pub several_servers: bool,
}

impl RestoresArgs {
    /// Checks the arguments; the date defaults to today in the server zone `tz`. `visible`
    /// holds the users the member may look up, with their owners; `admin` may look up any.
    pub fn parse(
        login: &str,
        date: Option<&str>,
        now: DateTime<Utc>,
        tz: Tz,
        visible: &BTreeMap<String, String>,
        admin: bool,
    ) -> Result<RestoresArgs, CommandError> {
        let today = now.with_timezone(&tz).date_naive();
        let login = parse_login(login)?;
        let date = parse_date(date, today)?;
        let owner = match visible.get(&login) {
            Some(owner) => owner.clone(),
            None if admin => String::new(),
            None => return Err(not_watched(&login)),
        };
        Ok(RestoresArgs {
            login,
            owner,
            date,
            several_servers: false,
        })
    }
}

/// Which backup server `/restores` asks, as an index into `servers` (the configured
/// names, in order). `wanted`: the `server:` argument; `has_user[i]`: whether `login` is
/// one the member may look up on server `i`. With one server, it is asked. With several
/// and no `server:`, the one server the user is on; a user on several (or, for an admin
/// who may ask for any login, on none) gets a short answer asking for `server:`. A user
/// on none is answered as not watched, like with one server.
pub fn pick_server(
    servers: &[String],
    wanted: Option<&str>,
    has_user: &[bool],
    login: &str,
    admin: bool,
) -> Result<usize, CommandError> {
    if wanted.is_some_and(|w| !w.trim().is_empty()) || servers.len() <= 1 {
        return named_server(servers, wanted);
    }
    let on: Vec<usize> = (0..servers.len())
        .filter(|i| has_user.get(*i).copied().unwrap_or(false))
        .collect();
    match on[..] {
        [one] => Ok(one),
        [] if !admin => Err(not_watched(login)),
        [] => Err(CommandError::Usage(format!(
            "server: say which backup server to ask for {}: one of {}.",
            code(login),
            server_list(servers)
        ))),
        _ => {
            let names: Vec<String> = on.iter().map(|i| code(&servers[*i])).collect();
            Err(CommandError::Usage(format!(
                "user: {} is on several backup servers ({}); say which with server:.",
                code(login),
                names.join(", ")
            )))
        }
    }
}

/// The backup server a `server:` argument names, as an index into `servers`; none given:
/// the first. Names are matched without regard to case.
pub fn named_server(servers: &[String], wanted: Option<&str>) -> Result<usize, CommandError> {
    let Some(wanted) = wanted.map(str::trim).filter(|w| !w.is_empty()) else {
        return Ok(0);
    };
    (servers.iter())
        .position(|s| s.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "server: {} is not a backup server of this bot; expected one of {}.",
                code(wanted),
                server_list(servers)
            ))
        })
}

/// The backup server a stored job's button asks, as an index into `servers` (the
/// configured names): the job's own (a record without one: the first). A server the config
/// no longer names is said so; asking another server would show another server's jobs.
pub fn job_server(servers: &[String], job_server: &str) -> Result<usize, CommandError> {
    if job_server.is_empty() {
        return Ok(0);
    }
    (servers.iter())
        .position(|s| s == job_server)
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "This job's backup server {} is no longer configured; nothing was looked up.",
                code(job_server)
            ))
        })
}

/// `` `eu-1`, `us-east` ``
fn server_list(servers: &[String]) -> String {
    let names: Vec<String> = servers.iter().map(|s| code(s)).collect();
    names.join(", ")
}

/// Looks the jobs up live, falling back to the store when the CBS is unreachable.
/// `public`: answer visibly to the channel (`discord.public_lookups`). A long list
/// continues in follow-ups; `page` picks the follow-ups past
/// [`super::LIST_MESSAGES_MAX`] messages.
pub async fn restores(
    client: &CbsClient,
    store: &Store,
    args: &RestoresArgs,
    page: Option<i64>,
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
                .filter(|j| j.login_name == args.login && j.server == client.server_name())
                .collect();
            // A footer is plain text: no escapes (Embed::fit cleans it).
            let footer = format!(
                "{} is unreachable ({}); from the bot's store, which may be out of date",
                client.server_name(),
                cut(&error.to_string(), ERROR_MAX_CHARS)
            );
            (known, footer)
        }
        Err(error) => {
            // The reason goes to the log only: told apart in the chat, it would show which
            // logins exist.
            tracing::warn!(user = %args.login, date = %args.date, %error, "/restores: the backup server refused the lookup");
            return Err(not_watched(&args.login));
        }
    };
    // Newest first: the one people ask about is usually the last.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.start_time));
    let lines: Vec<String> = jobs.iter().map(job_line).collect();
    let colour = jobs
        .iter()
        .map(|j| j.class)
        .max_by_key(|c| severity(*c))
        .map_or(LIST_COLOUR, class_colour);
    let mut reply = ListPages {
        title,
        lines: &lines,
        colour,
        footer: Some(footer),
        command: if args.several_servers {
            format!(
                "/restores user:{} date:{} server:{}",
                args.login,
                args.date,
                client.server_name()
            )
        } else {
            format!("/restores user:{} date:{}", args.login, args.date)
        },
        page,
    }
    .reply(!public)?;
    if jobs.is_empty() {
        if let Some(embed) = reply.embeds.first_mut() {
            embed.description = "No restore jobs.".into();
        }
    }
    Ok(reply)
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

    #[test]
    fn the_server_is_the_named_one_the_users_only_one_or_asked_for() {
        let servers = vec!["eu".to_owned(), "us".to_owned()];
        let pick = |wanted, on: &[bool], admin| pick_server(&servers, wanted, on, "obm", admin);
        assert_eq!(pick(Some(" US "), &[true, true], false).unwrap(), 1);
        assert_eq!(pick(None, &[false, true], false).unwrap(), 1);
        let usage = |r: Result<usize, CommandError>| match r {
            Err(CommandError::Usage(text)) => text,
            other => panic!("{other:?}"),
        };
        assert!(usage(pick(Some("mars"), &[true, true], true)).starts_with("server: `mars`"));
        assert!(usage(pick(None, &[true, true], false)).contains("several backup servers"));
        assert!(usage(pick(None, &[false, false], false)).contains("neither watched"));
        assert!(usage(pick(None, &[false, false], true)).starts_with("server: say which"));
        // One server: asked whatever the lists say.
        let one = vec!["eu".to_owned()];
        assert_eq!(pick_server(&one, None, &[false], "obm", false).unwrap(), 0);
    }

    #[test]
    fn a_jobs_button_asks_its_own_server_or_says_it_is_gone() {
        let servers = vec!["eu".to_owned(), "us".to_owned()];
        assert_eq!(job_server(&servers, "us").unwrap(), 1);
        assert_eq!(job_server(&servers, "").unwrap(), 0, "an older record");
        let gone = job_server(&servers, "asia").unwrap_err().to_string();
        assert_eq!(
            gone,
            "This job's backup server `asia` is no longer configured; nothing was looked up."
        );
    }

    #[tokio::test]
    async fn live_answer_then_the_store_when_the_cbs_is_down() {
        let (sim, client) = simulator().await;
        let (_dir, store) = store();
        let visible = [("obm".to_owned(), String::new())].into();
        let args = RestoresArgs::parse(
            " obm",
            Some("2024-06-25"),
            at(26, 12),
            crate::tz::Tz::UTC,
            &visible,
            false,
        )
        .unwrap();
        assert_eq!(args.date, day(25));
        let live = restores(&client, &store, &args, None, false).await.unwrap();
        assert!(live.ephemeral);
        let embed = &live.embeds[0];
        assert_eq!(embed.footer.as_deref(), Some("live from cbs"));
        assert_eq!(embed.colour, class_colour(StatusClass::Failure));
        let lines: Vec<&str> = embed.description.lines().collect();
        let (start, end) = (at(25, 11).timestamp(), at(25, 12).timestamp());
        let first = format!("**Set 2** · success · <t:{start}:f>–<t:{end}:t> · 2 KiB");
        assert!(lines[0].starts_with(&first), "{}", lines[0]);
        assert!(lines[1].starts_with("**Set 1** · failure"));

        record(&store, &sim.expected("cbs", "obm", day(25))[..1]);
        sim.set_down(true).await.unwrap();
        let stored = restores(&client, &store, &args, None, true).await.unwrap();
        assert!(!stored.ephemeral);
        let footer = stored.embeds[0].footer.clone().unwrap();
        assert!(footer.starts_with("cbs is unreachable"), "{footer}");
        assert_eq!(stored.embeds[0].description.lines().count(), 1);
    }

    #[tokio::test]
    async fn unknown_refused_and_unwatched_logins_get_one_answer() {
        let (sim, client) = simulator().await;
        let (_dir, store) = store();
        let visible: BTreeMap<String, String> = [("ghost".to_owned(), String::new())].into();
        let parse = |login: &str, admin: bool| {
            RestoresArgs::parse(login, None, at(26, 12), crate::tz::Tz::UTC, &visible, admin)
        };
        // Not visible to a member: refused before any backup-server call.
        let before = sim.requests_for("obm", day(26));
        let unwatched = parse("obm", false).unwrap_err().to_string();
        assert_eq!(sim.requests_for("obm", day(26)), before);
        // Visible (say, seen once) but unknown to the backup server now.
        let args = parse("ghost", false).unwrap();
        assert_eq!(args.date, day(26), "today by default");
        let unknown = restores(&client, &store, &args, None, false)
            .await
            .unwrap_err();
        assert!(matches!(unknown, CommandError::Usage(_)));
        assert_eq!(unknown.to_string(), unwatched.replace("`obm`", "`ghost`"));
        // An admin may ask for any login; an unknown one reads the same.
        let admin = parse("nobody", true).unwrap();
        let e = restores(&client, &store, &admin, None, false)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), unwatched.replace("`obm`", "`nobody`"));
        assert!(!unwatched.contains("refused"), "{unwatched}");
    }

    #[tokio::test]
    async fn with_several_servers_the_next_page_names_the_server() {
        let (sim, client) = simulator().await;
        let (_dir, store) = store();
        for i in 0..600 {
            let start = at(25, 0) + chrono::Duration::seconds(i * 10);
            sim.add_job(crate::simulator::SimJob::new(
                "obm",
                &(1000 + i).to_string(),
                start,
                Some(start + chrono::Duration::seconds(5)),
                "RESTORE_STOP_SUCCESS",
            ));
        }
        let visible = [("obm".to_owned(), String::new())].into();
        let args = RestoresArgs::parse(
            "obm",
            Some("2024-06-25"),
            at(26, 12),
            crate::tz::Tz::UTC,
            &visible,
            false,
        )
        .unwrap();
        let last = |reply: crate::commands::Reply| {
            reply.followups.last().expect("a long list")[0]
                .description
                .clone()
        };
        let one = last(restores(&client, &store, &args, None, false).await.unwrap());
        assert!(one.ends_with("date:2024-06-25 page:2`"), "{one}");
        let several = RestoresArgs {
            several_servers: true,
            ..args
        };
        let named = last(
            restores(&client, &store, &several, None, false)
                .await
                .unwrap(),
        );
        assert!(
            named.ends_with("date:2024-06-25 server:cbs page:2`"),
            "{named}"
        );
    }
}
