//! Decoding a `2/ListUsers.do` reply: the backup users to poll, with their owners.

use super::envelope::{as_text, get, open_envelope, snippet, ReplyError, SNIPPET_MAX_CHARS};
use serde_json::Value;

/// One backup user as `2/ListUsers.do` lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedUser {
    pub login: String,
    /// Sub-admin/reseller; empty when none.
    pub owner: String,
}

/// A decoded `2/ListUsers.do` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserList {
    pub users: Vec<ListedUser>,
    /// Items without a readable `LoginName`, left out.
    pub skipped: usize,
}

/// Decodes a `2/ListUsers.do` reply: the list is under `User` (not `Data`). Items without a
/// readable `LoginName` are skipped and counted (there is nothing to poll for them);
/// unknown fields are ignored.
pub fn decode_users(body: &str) -> Result<UserList, ReplyError> {
    let malformed = |reason: String| ReplyError::Malformed {
        reason,
        snippet: snippet(body, SNIPPET_MAX_CHARS),
    };
    let envelope = open_envelope(body)?;
    let items: Vec<&Value> = match get(&envelope, &["User"]) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return Err(malformed("User is not a list".into())),
    };
    let listed = items.len();
    let users: Vec<ListedUser> = items
        .into_iter()
        .filter_map(|item| {
            let Value::Object(item) = item else {
                return None;
            };
            let login = get(item, &["LoginName"]).and_then(as_text)?;
            let login = login.trim();
            (!login.is_empty()).then(|| ListedUser {
                login: login.to_owned(),
                owner: get(item, &["Owner"]).and_then(as_text).unwrap_or_default(),
            })
        })
        .collect();
    Ok(UserList {
        skipped: listed - users.len(),
        users,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_read_from_the_user_key() {
        let body = r#"{"Status":"OK","User":[{"ID":"1","LoginName":"alice","Owner":"res1","X":1},
            {"ID":"2","LoginName":"bob"},{"ID":"3"},{"LoginName":"  "},7]}"#;
        let list = decode_users(body).unwrap();
        assert_eq!(list.skipped, 3, "no login, a blank one, not an object");
        assert_eq!(
            list.users,
            vec![
                ListedUser {
                    login: "alice".into(),
                    owner: "res1".into()
                },
                ListedUser {
                    login: "bob".into(),
                    owner: String::new()
                },
            ]
        );
        assert!(matches!(
            decode_users(r#"{"Status":"Error","Message":"no role"}"#),
            Err(ReplyError::Api { message, .. }) if message == "no role"
        ));
        assert!(matches!(
            decode_users(r#"{"Status":"OK","User":"x"}"#),
            Err(ReplyError::Malformed { .. })
        ));
        assert_eq!(
            decode_users(r#"{"Status":"OK"}"#).unwrap(),
            UserList::default()
        );
    }
}
