//! `/failures [days] [user]`: the failed restores the store knows of (failure, partial
//! failure, unknown), newest first; in a `[[route]]` channel, only its owner's.

use super::{code, job_line, not_watched, parse_days, parse_login, quote};
use super::{CommandError, CommandResult, ListPages, Scope, Visible};
use crate::cbs::model::StatusClass;
use crate::render::class_colour;
use crate::store::Store;
use chrono::{Days, NaiveDate};

/// The classes `/failures` lists.
pub const FAILED_CLASSES: [StatusClass; 3] = [
    StatusClass::Failure,
    StatusClass::PartialFailure,
    StatusClass::Unknown,
];

/// The arguments of `/failures` as Discord delivered them, unchecked.
#[derive(Clone, Copy, Debug, Default)]
pub struct FailuresArgs<'a> {
    /// How many dates back, today included (default 1).
    pub days: Option<i64>,
    /// Only this login.
    pub user: Option<&'a str>,
    /// Which page of a long list (default 1).
    pub page: Option<i64>,
    /// Whether each line names its backup server (when there are several).
    pub servers_named: bool,
    /// Today in each backup server's own zone, for servers whose today may differ from
    /// the `today` [`failures`] is given (empty with one server): each server's days are
    /// its own dates (`RestoreDate`).
    pub todays: &'a [(String, NaiveDate)],
}

impl FailuresArgs<'_> {
    /// Checks the arguments that need no store read but `visible` (see
    /// [`super::visible_users`]), so a bad one is refused before the answer is deferred.
    pub fn check(&self, visible: &Visible) -> Result<(), CommandError> {
        parse_days(self.days)?;
        if let Some(user) = self.user.map(parse_login).transpose()? {
            if !visible.users.contains_key(&user) {
                return Err(not_watched(&user));
            }
        }
        Ok(())
    }
}

/// Failures listed on the last `days` dates up to `today` (server zone), of `user` if
/// given, of the users `scope` sees; `visible` (see [`super::visible_users`]) tells an
/// unknown user from a quiet one. A long list continues in follow-ups; `page` picks the
/// follow-ups past [`super::LIST_MESSAGES_MAX`] messages.
pub fn failures(
    store: &Store,
    args: FailuresArgs<'_>,
    visible: &Visible,
    scope: &Scope,
    today: NaiveDate,
    public: bool,
) -> CommandResult {
    args.check(visible)?;
    let FailuresArgs {
        days,
        user,
        page,
        servers_named,
        todays,
    } = args;
    let days_arg = days;
    let days = parse_days(days)?;
    let user = user.map(parse_login).transpose()?;
    let first_day = |today: NaiveDate| {
        today
            .checked_sub_days(Days::new(u64::from(days) - 1))
            .unwrap_or(today)
    };
    let from = first_day(today);
    // Each server's window ends on its own today.
    let today_of = |server: &str| {
        (todays.iter())
            .find(|(name, _)| name == server)
            .map_or(today, |(_, day)| *day)
    };
    let zones_differ = todays.iter().any(|(_, day)| *day != today);
    let earliest = (todays.iter())
        .map(|(_, day)| first_day(*day))
        .fold(from, NaiveDate::min);
    let latest = (todays.iter())
        .map(|(_, day)| *day)
        .fold(today, NaiveDate::max);
    let mut records: Vec<_> = store
        .jobs_between(earliest, latest)?
        .into_iter()
        .filter(|r| {
            let today = today_of(&r.job.server);
            (first_day(today)..=today).contains(&r.date)
        })
        .filter(|r| FAILED_CLASSES.contains(&r.job.class))
        .filter(|r| user.as_ref().is_none_or(|u| &r.job.login_name == u))
        .filter(|r| scope.shows_job_of(&r.job.server, &r.job.login_name, visible))
        .collect();
    records.sort_by_key(|r| std::cmp::Reverse((r.date, r.job.start_time)));
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            let server = if servers_named {
                format!("{} · ", code(&r.job.server))
            } else {
                String::new()
            };
            format!(
                "{} · {server}{} · {}",
                r.date,
                code(&r.job.login_name),
                job_line(&r.job)
            )
        })
        .collect();
    let span = match (days, zones_differ) {
        (1, false) => format!("on {today}"),
        (_, false) => format!("from {from} to {today}"),
        (1, true) => "today (each server's own date)".to_owned(),
        (_, true) => format!("of the last {days} days (each server's own dates)"),
    };
    let whose = user
        .as_ref()
        .map(|u| format!(" of {}", quote(u)))
        .unwrap_or_default();
    let mut command = "/failures".to_owned();
    if let Some(days) = days_arg {
        command.push_str(&format!(" days:{days}"));
    }
    if let Some(user) = &user {
        command.push_str(&format!(" user:{user}"));
    }
    let mut reply = ListPages {
        title: format!("Failed restores{whose} {span}"),
        lines: &lines,
        colour: class_colour(StatusClass::Failure),
        footer: None,
        command,
        page,
    }
    .reply(!public)?;
    if records.is_empty() {
        if let Some(embed) = reply.embeds.first_mut() {
            embed.description = "None.".into();
            embed.colour = class_colour(StatusClass::Success);
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use std::collections::BTreeMap;

    fn users() -> BTreeMap<String, String> {
        ["obm", "shop"]
            .map(|u| (u.to_owned(), String::new()))
            .into()
    }

    fn all() -> Scope {
        Scope::default()
    }

    #[test]
    fn lists_failures_newest_first_within_the_window() {
        let (_dir, store) = store();
        record(
            &store,
            &[
                job("obm", "1", 24, 9, "RESTORE_STOP_BY_ERROR"),
                job("obm", "1", 26, 8, "RESTORE_STOP_SUCCESS_WITH_ERROR"),
                job("obm", "2", 26, 10, "SOMETHING_NEW"),
                job("shop", "1", 26, 9, "RESTORE_STOP_SUCCESS"),
                job("shop", "1", 20, 9, "RESTORE_STOP_BY_ERROR"),
            ],
        );
        let reply = failures(
            &store,
            FailuresArgs {
                days: Some(3),
                ..Default::default()
            },
            &Visible::on_server("cbs", users()),
            &all(),
            day(26),
            false,
        )
        .unwrap();
        assert!(reply.ephemeral);
        let embed = &reply.embeds[0];
        assert_eq!(embed.title, "Failed restores from 2024-06-24 to 2024-06-26");
        let lines: Vec<&str> = embed.description.lines().collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with(&format!(
            "2024-06-26 · `obm` · **Set 2** · unknown · <t:{}:f>–<t:{}:t>",
            at(26, 10).timestamp(),
            at(26, 11).timestamp()
        )));
        assert!(lines[0].ends_with("code `SOMETHING_NEW`"), "{}", lines[0]);
        assert!(lines[1].contains(&format!(
            "partial failure · <t:{}:f>–<t:{}:t>",
            at(26, 8).timestamp(),
            at(26, 9).timestamp()
        )));
        assert!(lines[2].starts_with("2024-06-24"));

        let today = failures(
            &store,
            FailuresArgs {
                user: Some("shop"),
                ..Default::default()
            },
            &Visible::on_server("cbs", users()),
            &all(),
            day(26),
            true,
        )
        .unwrap();
        assert!(!today.ephemeral);
        assert_eq!(
            today.embeds[0].title,
            "Failed restores of shop on 2024-06-26"
        );
        assert_eq!(today.embeds[0].description, "None.");
    }

    #[test]
    fn a_routed_channel_lists_only_its_owners_failures_with_logins_as_typed() {
        let (_dir, store) = store();
        let mut ours = job("john_doe", "1", 26, 8, "RESTORE_STOP_BY_ERROR");
        ours.owner = "reseller-a".into();
        let theirs = job("shop", "1", 26, 9, "RESTORE_STOP_BY_ERROR");
        record(&store, &[ours, theirs]);
        let routed = Scope {
            admin: false,
            owner: Some("reseller-a".into()),
        };
        // What visible_users gives that channel: its owner's users only.
        let visible: BTreeMap<String, String> =
            [("john_doe".to_owned(), "reseller-a".to_owned())].into();
        let reply = failures(
            &store,
            FailuresArgs::default(),
            &Visible::on_server("cbs", visible.clone()),
            &routed,
            day(26),
            false,
        )
        .unwrap();
        let text = &reply.embeds[0].description;
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("2024-06-26 · `john_doe` · "), "{text}");
        let admin = Scope {
            admin: true,
            ..routed
        };
        let reply = failures(
            &store,
            FailuresArgs::default(),
            &Visible::on_server("cbs", users()),
            &admin,
            day(26),
            false,
        )
        .unwrap();
        assert_eq!(reply.embeds[0].description.lines().count(), 2);
    }

    /// With a second server in a zone a day behind, "today" is each server's own today:
    /// the second server's failure of its today (the 25th) is listed, its 24th is not,
    /// and the first server's 25th is not either.
    #[test]
    fn each_server_counts_its_days_in_its_own_zone() {
        let (_dir, store) = store();
        let on = |server: &str, job: crate::cbs::model::RestoreJob| crate::cbs::model::RestoreJob {
            server: server.into(),
            ..job
        };
        record(
            &store,
            &[
                job("obm", "1", 26, 9, "RESTORE_STOP_BY_ERROR"),
                job("obm", "2", 25, 9, "RESTORE_STOP_BY_ERROR"),
                on("us", job("obm", "3", 25, 9, "RESTORE_STOP_BY_ERROR")),
                on("us", job("obm", "4", 24, 9, "RESTORE_STOP_BY_ERROR")),
            ],
        );
        let mut visible = Visible::on_server("cbs", users());
        visible.add(Visible::on_server("us", users()));
        let todays = [("us".to_owned(), day(25))];
        let listed = |days: i64| {
            let reply = failures(
                &store,
                FailuresArgs {
                    days: Some(days),
                    servers_named: true,
                    todays: &todays,
                    ..Default::default()
                },
                &visible,
                &all(),
                day(26),
                false,
            )
            .unwrap();
            let embed = reply.embeds[0].clone();
            let mut sets: Vec<String> = (embed.description.lines())
                .filter_map(|l| {
                    l.split("**Set ")
                        .nth(1)?
                        .split("**")
                        .next()
                        .map(str::to_owned)
                })
                .collect();
            sets.sort();
            (embed.title, sets)
        };
        assert_eq!(
            listed(1),
            (
                "Failed restores today (each server's own date)".to_owned(),
                vec!["1".to_owned(), "3".to_owned()]
            )
        );
        let (_, two_days) = listed(2);
        assert_eq!(two_days, ["1", "2", "3", "4"]);
    }

    #[test]
    fn bad_days_and_unknown_users_are_refused() {
        let (_dir, store) = store();
        let zero = failures(
            &store,
            FailuresArgs {
                days: Some(0),
                ..Default::default()
            },
            &Visible::on_server("cbs", users()),
            &all(),
            day(26),
            false,
        )
        .unwrap_err();
        assert_eq!(
            zero.to_string(),
            "days: expected a whole number from 1 to 30."
        );
        let unknown = failures(
            &store,
            FailuresArgs {
                user: Some("ghost"),
                ..Default::default()
            },
            &Visible::on_server("cbs", users()),
            &all(),
            day(26),
            false,
        );
        assert!(unknown.unwrap_err().to_string().contains("neither watched"));
    }
}
