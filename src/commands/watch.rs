//! `/watch add|remove|list`: the users added from chat (kept in the store) next to those
//! of the config file. Config entries are listed but can only be changed in the file.
//!
//! A user added here is polled from the next cycle on; the poller records their first
//! cycle as a baseline, so old failures are not re-alerted.

use super::{
    code, parse_login, quote, quote_error, CommandError, CommandResult, ListPages, Reply, Scope,
    LIST_COLOUR,
};
use crate::cbs::CbsClient;
use crate::config::WatchEntry;
use crate::mutes::Mute;
use crate::store::{DynamicWatch, Store, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// How long `/watch add` waits for the CBS to confirm the user exists. It stays well
/// inside Discord's 3 s to answer, so the command needs no deferral.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// The owner of a watched `login`: the config's, else the one added from chat.
pub fn owner_of(
    store: &Store,
    config_watch: &[WatchEntry],
    login: &str,
) -> Result<Option<String>, StoreError> {
    Ok(watched_as(store, config_watch, login)?.map(|w| w.owner))
}

/// The watch list's entry for `login`, matched without regard to case as the CBS and the
/// watch list do ("OBM" is the configured "obm").
fn watched_as(
    store: &Store,
    config_watch: &[WatchEntry],
    login: &str,
) -> Result<Option<WatchEntry>, StoreError> {
    let login = login.to_lowercase();
    let watched = store.watch_list(config_watch)?;
    Ok(watched
        .into_iter()
        .find(|w| w.login.to_lowercase() == login))
}

/// Who ran a command, for the record: `name (id)`.
pub fn invoker_label(name: &str, id: u64) -> String {
    format!("{name} ({id})")
}

/// Adds `login` (owned by `owner`) to the chat watch list, after asking the CBS whether it
/// knows the user. An unreachable CBS does not block the add (the poller will tell).
pub async fn add(
    store: &Store,
    client: &CbsClient,
    config_watch: &[WatchEntry],
    login: &str,
    owner: Option<&str>,
    added_by: &str,
    now: DateTime<Utc>,
) -> CommandResult {
    let login = parse_login(login)?;
    let owner = match owner.map(str::trim).filter(|o| !o.is_empty()) {
        Some(o) => parse_login(o).map_err(|_| {
            CommandError::Usage("owner: expected the owner's login name, or leave it out.".into())
        })?,
        None => String::new(),
    };
    if let Some(watched) = watched_as(store, config_watch, &login)? {
        let spelled = if watched.login == login {
            String::new()
        } else {
            format!(
                " (as {}: logins are matched without regard to case)",
                code(&watched.login)
            )
        };
        return Err(CommandError::Usage(format!(
            "user: {} is already watched{spelled}; expected a user not on the watch list.",
            code(&login)
        )));
    }
    let today = now.with_timezone(&client.timezone()).date_naive();
    let check = tokio::time::timeout(
        VERIFY_TIMEOUT,
        client.list_restore_jobs(&login, &owner, today),
    )
    .await;
    let note = match check {
        Ok(Ok(_)) => "",
        Ok(Err(error)) if error.outage_reason().is_none() => {
            return Err(CommandError::Usage(format!(
                "user: the backup server does not accept {}: {}. Expected a login name \
                 (and owner) it knows; nothing was changed.",
                code(&login),
                quote_error(&error.to_string())
            )))
        }
        Ok(Err(_)) | Err(_) => " (the backup server did not answer, so the name is unchecked)",
    };
    let watch = DynamicWatch {
        login: login.clone(),
        owner: owner.clone(),
        added_by: added_by.to_owned(),
        added_at: now,
    };
    if !store.add_watch(&watch)? {
        // Another `/watch add` of the same user won the race.
        return Err(CommandError::Usage(format!(
            "user: {} is already watched.",
            code(&login)
        )));
    }
    let owned = if owner.is_empty() {
        String::new()
    } else {
        format!(" (owner {})", code(&owner))
    };
    Ok(Reply::text(
        format!(
            "Now watching {}{owned}{note}. Its first cycle records a baseline; alerts start after that.",
            code(&login)
        ),
        false,
    ))
}

/// Removes `login` from the chat watch list; config entries stay and say so.
pub fn remove(store: &Store, config_watch: &[WatchEntry], login: &str) -> CommandResult {
    let login = parse_login(login)?;
    // Matched without regard to case, as the watch list and the CBS match logins.
    let lower = login.to_lowercase();
    if let Some(w) = config_watch
        .iter()
        .find(|w| w.login.to_lowercase() == lower)
    {
        return Err(CommandError::Usage(format!(
            "user: {} is watched by the config file and can only be removed there; \
             nothing was changed.",
            code(&w.login)
        )));
    }
    let mut removed = None;
    for w in store.dynamic_watches()? {
        if w.login.to_lowercase() == lower && store.remove_watch(&w.login)? {
            removed.get_or_insert(w.login);
        }
    }
    let Some(removed) = removed else {
        return Err(CommandError::Usage(format!(
            "user: {} is not on the watch list; expected one of `/watch list`.",
            code(&login)
        )));
    };
    Ok(Reply::text(
        format!("Stopped watching {}.", code(&removed)),
        false,
    ))
}

/// The merged watch list as `scope` sees it: config entries marked as such, chat entries
/// with who added them and when, discovered users, and for each user the mutes in force
/// with who set them; the footer counts the users by source. A long list continues in
/// follow-ups; `page` picks the follow-ups past [`super::LIST_MESSAGES_MAX`] messages.
pub fn list(
    store: &Store,
    config_watch: &[WatchEntry],
    mutes: &[Mute],
    scope: &Scope,
    page: Option<i64>,
    public: bool,
) -> CommandResult {
    let owner = |o: &str| {
        if o.is_empty() {
            String::new()
        } else {
            format!(" (owner {})", code(o))
        }
    };
    let muted = |login: &str| -> String {
        mutes
            .iter()
            .filter(|m| m.login == login)
            .map(|m| {
                let set = m
                    .backup_set_id
                    .as_deref()
                    .map(|s| format!(" set {}", code(s)))
                    .unwrap_or_default();
                let on = crate::commands::mute::on_server(m.server.as_deref());
                format!(
                    " · muted{set}{on} until <t:{}:f> by {}",
                    m.until.timestamp(),
                    quote(&m.muted_by)
                )
            })
            .collect()
    };
    let mut lines: Vec<String> = config_watch
        .iter()
        .filter(|w| scope.sees_owner(&w.owner))
        .map(|w| {
            format!(
                "{}{} · config file{}",
                code(&w.login),
                owner(&w.owner),
                muted(&w.login)
            )
        })
        .collect();
    let from_config = lines.len();
    for w in store.dynamic_watches()? {
        if config_watch.iter().any(|c| c.login == w.login) || !scope.sees_owner(&w.owner) {
            continue;
        }
        lines.push(format!(
            "{}{} · added by {} on {}{}",
            code(&w.login),
            owner(&w.owner),
            quote(&w.added_by),
            w.added_at.format("%Y-%m-%d"),
            muted(&w.login)
        ));
    }
    let from_chat = lines.len() - from_config;
    let listed: std::collections::BTreeSet<String> = config_watch
        .iter()
        .map(|w| w.login.clone())
        .chain(store.dynamic_watches()?.into_iter().map(|w| w.login))
        .collect();
    for w in store.discovered_users()? {
        if !listed.contains(&w.login) && scope.sees_owner(&w.owner) {
            lines.push(format!(
                "{}{} · discovered{}",
                code(&w.login),
                owner(&w.owner),
                muted(&w.login)
            ));
        }
    }
    // In a route channel, a member who is not an admin sees one owner's users: the counts
    // are of those too, not of every owner's (which they may not see).
    let counts = match (&scope.owner, scope.admin) {
        (Some(_), false) => format!(
            "{} watched here · config file {from_config} · chat {from_chat} · discovered {}",
            lines.len(),
            lines.len() - from_config - from_chat
        ),
        _ => {
            let c = crate::discover::source_counts(store, config_watch)?;
            format!(
                "{} watched · config file {} · chat {} · discovered {}",
                c.total, c.config, c.chat, c.discovered
            )
        }
    };
    let mut reply = ListPages {
        title: "Watched users".into(),
        lines: &lines,
        colour: LIST_COLOUR,
        footer: Some(counts),
        command: "/watch list".into(),
        page,
    }
    .reply(!public)?;
    if lines.is_empty() {
        if let Some(embed) = reply.embeds.first_mut() {
            embed.description = match (&scope.owner, scope.admin) {
                (Some(owner), false) => format!(
                    "No watched user of owner {} (this channel's route).",
                    code(owner)
                ),
                _ => "Nobody is watched yet; add a user with `/watch add`.".into(),
            };
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::render::Embed;

    fn config() -> Vec<WatchEntry> {
        vec![WatchEntry {
            login: "cfg".into(),
            owner: "reseller".into(),
        }]
    }

    fn chat_watch(store: &Store, login: &str) {
        let w = DynamicWatch {
            login: login.into(),
            owner: String::new(),
            added_by: "op (1)".into(),
            added_at: at(26, 9),
        };
        assert!(store.add_watch(&w).unwrap());
    }

    #[tokio::test]
    async fn add_checks_the_user_with_the_cbs_and_refuses_duplicates() {
        let (sim, client) = simulator().await;
        let (_dir, store) = store();
        let now = at(26, 12);
        let added = add(&store, &client, &config(), "obm", None, "op (1)", now).await;
        assert!(added.unwrap().content.starts_with("Now watching `obm`."));
        let again = add(&store, &client, &config(), "obm", None, "op (1)", now).await;
        assert!(again.unwrap_err().to_string().contains("already watched"));
        let cfg = add(&store, &client, &config(), "cfg", None, "op (1)", now).await;
        assert!(cfg.unwrap_err().to_string().contains("already watched"));
        // Another spelling of a watched login is the same user at the CBS.
        let shout = add(&store, &client, &config(), "CFG", None, "op (1)", now).await;
        assert_eq!(
            shout.unwrap_err().to_string(),
            "user: `CFG` is already watched (as `cfg`: logins are matched without regard to \
             case); expected a user not on the watch list."
        );
        let shout = add(&store, &client, &config(), "Obm", None, "op (1)", now).await;
        assert!(shout.unwrap_err().to_string().contains("(as `obm`"));
        let ghost = add(&store, &client, &config(), "ghost", None, "op (1)", now).await;
        assert!(ghost
            .unwrap_err()
            .to_string()
            .contains("does not accept `ghost`"));
        // The server's whole message is quoted, however long the login (it used to be cut
        // at 64 characters: "…' not .").
        const LONG: &str = "customer-with-a-rather-long-login-name";
        let long = add(&store, &client, &config(), LONG, None, "op (1)", now).await;
        let text = long.unwrap_err().to_string();
        assert!(
            text.contains(&format!("User \"{LONG}\" not found")),
            "{text}"
        );
        assert_eq!(store.dynamic_watches().unwrap().len(), 1);

        sim.set_down(true).await.unwrap();
        let unchecked = add(&store, &client, &config(), "later", Some("res"), "op", now).await;
        let text = unchecked.unwrap().content;
        assert!(
            text.contains("(owner `res`) (the backup server did not answer"),
            "{text}"
        );
        assert_eq!(
            owner_of(&store, &[], "later").unwrap().as_deref(),
            Some("res")
        );
    }

    #[test]
    fn remove_refuses_config_entries_and_unknown_users() {
        let (_dir, store) = store();
        chat_watch(&store, "chat");
        let cfg = remove(&store, &config(), "cfg").unwrap_err();
        assert!(cfg.to_string().contains("config file"), "{cfg}");
        let unknown = remove(&store, &config(), "nobody").unwrap_err();
        assert!(unknown.to_string().contains("not on the watch list"));
        let done = remove(&store, &config(), " chat ").unwrap();
        assert_eq!(done.content, "Stopped watching `chat`.");
        assert!(!done.ephemeral, "the team sees changes");
        assert!(store.dynamic_watches().unwrap().is_empty());
        // Another spelling names the same user, in the config file or the chat list.
        let cfg = remove(&store, &config(), "CFG").unwrap_err();
        assert!(
            cfg.to_string()
                .contains("`cfg` is watched by the config file"),
            "{cfg}"
        );
        chat_watch(&store, "Shop");
        let done = remove(&store, &config(), "shop").unwrap();
        assert_eq!(done.content, "Stopped watching `Shop`.");
        assert!(store.dynamic_watches().unwrap().is_empty());
    }

    #[test]
    fn list_merges_and_marks_config_entries() {
        let (_dir, store) = store();
        chat_watch(&store, "chat");
        chat_watch(&store, "john_doe");
        let mute = Mute {
            server: None,
            login: "chat".into(),
            backup_set_id: None,
            until: at(27, 9),
            muted_by: "op (1)".into(),
            muted_at: at(26, 9),
        };
        let all = Scope::default();
        let reply = list(&store, &config(), &[mute], &all, None, false).unwrap();
        assert!(reply.ephemeral);
        let text = &reply.embeds[0].description;
        assert!(
            text.contains("`cfg` (owner `reseller`) · config file"),
            "{text}"
        );
        let until = at(27, 9).timestamp();
        assert!(
            text.contains(&format!(
                "`chat` · added by op \\(1\\) on 2024-06-26 · muted until <t:{until}:f> by op \\(1\\)"
            )),
            "{text}"
        );
        assert!(
            text.contains("`john_doe` · added by"),
            "no backslash: {text}"
        );
        assert!(!list(&store, &[], &[], &all, None, true).unwrap().ephemeral);
        let routed = Scope {
            admin: false,
            owner: Some("reseller".into()),
        };
        let reply = list(&store, &config(), &[], &routed, None, false).unwrap();
        assert_eq!(reply.embeds[0].description.lines().count(), 1);
        // The counts are of what the channel's owner sees, not of every owner's users.
        let footer = reply.embeds[0].footer.as_deref().unwrap();
        assert!(
            footer.starts_with("1 watched here · config file 1 · chat 0 · discovered 0"),
            "{footer}"
        );
        let elsewhere = Scope {
            admin: false,
            owner: Some("nobody-here".into()),
        };
        let reply = list(&store, &config(), &[], &elsewhere, None, false).unwrap();
        let embed = &reply.embeds[0];
        assert!(
            embed
                .description
                .contains("No watched user of owner `nobody-here`"),
            "{}",
            embed.description
        );
        let footer = embed.footer.as_deref().unwrap();
        assert!(footer.starts_with("0 watched here"), "{footer}");
    }

    #[test]
    fn a_long_list_pages_through_every_user_with_counts_by_source() {
        let (_dir, store) = store();
        for i in 0..400 {
            chat_watch(&store, &format!("user{i:03}"));
        }
        let all = Scope::default();
        let reply = list(&store, &config(), &[], &all, None, false).unwrap();
        let messages: Vec<&Embed> = reply
            .embeds
            .iter()
            .chain(reply.followups.iter().flatten())
            .collect();
        assert!(messages.len() > 1, "400 users need follow-ups");
        let text: String = messages.iter().map(|e| e.description.as_str()).collect();
        for i in 0..400 {
            assert_eq!(
                text.matches(&format!("`user{i:03}`")).count(),
                1,
                "user{i:03}"
            );
        }
        assert_eq!(text.matches("`cfg`").count(), 1);
        for e in &messages {
            let footer = e.footer.as_deref().unwrap();
            assert!(
                footer
                    .starts_with("401 watched · config file 1 · chat 400 · discovered 0 · lines "),
                "{footer}"
            );
        }
    }

    #[test]
    fn owners_come_from_the_config_first() {
        let (_dir, store) = store();
        chat_watch(&store, "chat");
        assert_eq!(
            owner_of(&store, &config(), "cfg").unwrap().as_deref(),
            Some("reseller")
        );
        assert_eq!(
            owner_of(&store, &config(), "chat").unwrap().as_deref(),
            Some("")
        );
        assert_eq!(owner_of(&store, &config(), "x").unwrap(), None);
    }
}
