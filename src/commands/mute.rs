//! `/mute user [backup_set] duration` and `/unmute user [backup_set]`: hold back the alerts
//! of a user (or one backup set) for a while. The alerts are still recorded and appear in
//! the digest; see [`crate::mutes`].

use super::{code, parse_login, parse_mute_duration, CommandError, CommandResult, Reply};
use crate::mutes::{Mute, Mutes};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// The scope a mute names: the user (in the watch list's spelling: logins are matched
/// without regard to case, as the watch list and the CBS match them), and maybe one backup
/// set ID.
fn parse_scope(
    login: &str,
    backup_set: Option<&str>,
    watched: &BTreeSet<String>,
) -> Result<(String, Option<String>), CommandError> {
    let login = parse_login(login)?;
    let lower = login.to_lowercase();
    let Some(login) = watched.iter().find(|w| w.to_lowercase() == lower).cloned() else {
        return Err(CommandError::Usage(format!(
            "user: {} is not watched; expected a user from `/watch list`.",
            code(&login)
        )));
    };
    let set = backup_set.map(str::trim).filter(|s| !s.is_empty());
    if let Some(set) = set {
        if set.chars().any(char::is_control) || set.chars().count() > super::LOGIN_MAX_CHARS {
            return Err(CommandError::Usage(
                "backup_set: expected a backup set ID, or leave it out to mute every set.".into(),
            ));
        }
    }
    Ok((login, set.map(str::to_owned)))
}

/// `` `obm` (every backup set) `` or `` `obm` (backup set `5`) ``: what a mute covers.
pub fn scope_text(login: &str, set: Option<&str>) -> String {
    match set {
        Some(set) => format!("{} (backup set {})", code(login), code(set)),
        None => format!("{} (every backup set)", code(login)),
    }
}

/// Mutes `login` (or one set) for `duration` from `now`; `watched` is the merged watch list.
/// ` on server `eu`` for a mute of one backup server; nothing for one of every server.
pub fn on_server(server: Option<&str>) -> String {
    server
        .map(|s| format!(" on server {}", code(s)))
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
pub fn mute(
    mutes: &Mutes,
    watched: &BTreeSet<String>,
    server: Option<&str>,
    login: &str,
    backup_set: Option<&str>,
    duration: &str,
    muted_by: &str,
    now: DateTime<Utc>,
) -> CommandResult {
    let (login, set) = parse_scope(login, backup_set, watched)?;
    let duration = parse_mute_duration(duration)?;
    let until = now + duration;
    mutes.mute(&Mute {
        server: server.map(str::to_owned),
        login: login.clone(),
        backup_set_id: set.clone(),
        until,
        muted_by: muted_by.to_owned(),
        muted_at: now,
    })?;
    Ok(Reply::text(
        format!(
            "Muted alerts of {}{} until <t:{}:f> (<t:{}:R>). They are still recorded and \
             shown in the digest.",
            scope_text(&login, set.as_deref()),
            on_server(server),
            until.timestamp(),
            until.timestamp()
        ),
        false,
    ))
}

/// Lifts the mute of exactly this scope.
pub fn unmute(
    mutes: &Mutes,
    watched: &BTreeSet<String>,
    server: Option<&str>,
    login: &str,
    backup_set: Option<&str>,
) -> CommandResult {
    let (login, set) = parse_scope(login, backup_set, watched)?;
    if !mutes.unmute_on(server, &login, set.as_deref())? {
        return Err(CommandError::Usage(format!(
            "There is no mute for {}{}; nothing was changed.",
            scope_text(&login, set.as_deref()),
            on_server(server)
        )));
    }
    Ok(Reply::text(
        format!(
            "Alerts of {}{} are posted again.",
            scope_text(&login, set.as_deref()),
            on_server(server)
        ),
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use chrono::Duration;

    fn watched() -> BTreeSet<String> {
        ["obm".to_owned()].into()
    }

    #[test]
    fn a_login_in_another_case_mutes_the_watched_user_under_its_spelling() {
        let (_dir, store) = store();
        let mutes = Mutes::open(&store).unwrap();
        let now = at(26, 9);
        let reply = mute(
            &mutes,
            &watched(),
            None,
            "OBM",
            Some("5"),
            "24h",
            "op (1)",
            now,
        )
        .unwrap();
        assert!(reply
            .content
            .starts_with("Muted alerts of `obm` (backup set `5`)"));
        let active = mutes.active(now).unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].login, "obm");
        assert!(
            active[0].covers("cbs", "OBM", "5"),
            "as the poller matches alerts"
        );
        unmute(&mutes, &watched(), None, "Obm", Some("5")).unwrap();
        assert!(mutes.active(now).unwrap().is_empty());
    }

    #[test]
    fn mute_holds_until_it_expires_and_unmute_lifts_it() {
        let (_dir, store) = store();
        let mutes = Mutes::open(&store).unwrap();
        let now = at(26, 9);
        let reply = mute(&mutes, &watched(), None, "obm", None, "2h", "op (1)", now).unwrap();
        assert!(!reply.ephemeral);
        let until = (now + Duration::hours(2)).timestamp();
        assert!(
            reply.content.contains(&format!("until <t:{until}:f>")),
            "{}",
            reply.content
        );
        assert!(mutes.is_muted("obm", "5", now + Duration::minutes(119)));
        assert!(!mutes.is_muted("obm", "5", now + Duration::hours(2)));

        mute(
            &mutes,
            &watched(),
            None,
            "obm",
            Some("5"),
            "1d",
            "op (1)",
            now,
        )
        .unwrap();
        assert!(mutes.is_muted("obm", "5", now + Duration::hours(3)));
        assert!(!mutes.is_muted("obm", "6", now + Duration::hours(3)));
        unmute(&mutes, &watched(), None, "obm", Some("5")).unwrap();
        assert!(!mutes.is_muted("obm", "5", now + Duration::hours(3)));
        let again = unmute(&mutes, &watched(), None, "obm", Some("5")).unwrap_err();
        assert!(again.to_string().starts_with("There is no mute"));
    }

    #[test]
    fn bad_mutes_change_nothing() {
        let (_dir, store) = store();
        let mutes = Mutes::open(&store).unwrap();
        let now = at(26, 9);
        let bad = mute(&mutes, &watched(), None, "obm", None, "forever", "op", now).unwrap_err();
        assert!(bad.to_string().starts_with("duration: expected"));
        let unknown = mute(&mutes, &watched(), None, "ghost", None, "2h", "op", now).unwrap_err();
        assert!(unknown.to_string().contains("not watched"));
        assert!(mutes.active(now).unwrap().is_empty());
    }
}
