//! Decoding a `2/ListUsers.do` reply: the backup users to poll, with their owners.

use super::envelope::{as_text, snippet, ReplyError, BYTE_ORDER_MARK, SNIPPET_MAX_CHARS};
use super::login::checked_login;
use serde::de::{self, Deserialize};
use serde_json::Value;
use std::io::Read;

/// `reader` from its first byte, or from its fourth when the first three are a UTF-8
/// [`BYTE_ORDER_MARK`].
fn skip_byte_order_mark(mut reader: impl Read) -> std::io::Result<impl Read> {
    let mut buf = [0u8; 4];
    let mark = BYTE_ORDER_MARK.encode_utf8(&mut buf).as_bytes();
    let mut head = Vec::with_capacity(mark.len());
    (&mut reader)
        .take(mark.len() as u64)
        .read_to_end(&mut head)?;
    if head == mark {
        head.clear();
    }
    Ok(std::io::Cursor::new(head).chain(reader))
}

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
    /// Items whose `LoginName` is no login the bot takes ([`checked_login`]: too long,
    /// control or invisible characters), left out.
    pub refused: usize,
    /// The first of those, for the log: quoted with its escapes, cut to
    /// 64 characters, with its length.
    pub refused_example: Option<String>,
}

/// How much of a refused login the log shows.
const REFUSED_EXAMPLE_MAX_CHARS: usize = 64;

impl UserList {
    fn add(&mut self, item: Item) {
        match item {
            Item::User(user) => self.users.push(user),
            Item::NoLogin => self.skipped += 1,
            Item::Refused(example) => {
                self.refused += 1;
                self.refused_example.get_or_insert(example);
            }
        }
    }
}

/// Decodes a `2/ListUsers.do` reply: the list is under `User` (not `Data`). Items without a
/// readable `LoginName` are skipped and counted (there is nothing to poll for them);
/// unknown fields are ignored.
pub fn decode_users(body: &str) -> Result<UserList, ReplyError> {
    decode_users_from(body.as_bytes()).map_err(|e| match e {
        ReplyError::Malformed { reason, .. } => ReplyError::Malformed {
            reason,
            snippet: snippet(body, SNIPPET_MAX_CHARS),
        },
        api => api,
    })
}

/// [`decode_users`] reading the reply as it arrives, keeping only each user's `LoginName`
/// and `Owner`: a real listing carries many more fields per user (kilobytes), and ten
/// thousand users make a reply of tens of MiB that is never held whole, nor as a
/// `serde_json::Value`. A malformed reply's snippet is left empty for the caller to fill
/// in from the head of the reply it read.
pub fn decode_users_from(reader: impl Read) -> Result<UserList, ReplyError> {
    let malformed = |reason: String| ReplyError::Malformed {
        reason,
        snippet: String::new(),
    };
    let reader = skip_byte_order_mark(reader)
        .map_err(|e| malformed(format!("reading the reply failed: {e}")))?;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let envelope = de::Deserializer::deserialize_any(&mut de, EnvelopeVisitor)
        .and_then(|envelope| de.end().map(|()| envelope))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => malformed(e.to_string()),
            _ => malformed(format!("not JSON: {e}")),
        })?;
    let status = envelope.status.unwrap_or_default();
    if status.eq_ignore_ascii_case("error") {
        return Err(ReplyError::Api {
            message: envelope.message.unwrap_or_else(|| "(no message)".into()),
            expt_type: envelope.expt_type,
        });
    }
    if !status.eq_ignore_ascii_case("ok") {
        return Err(malformed(format!(
            "envelope Status is {status:?}, not OK or Error"
        )));
    }
    envelope
        .users
        .unwrap_or_else(|| Ok(UserList::default()))
        .map_err(|reason| malformed(reason.into()))
}

/// The envelope's fields that matter, read in one pass; `users` is `Err` when `User` is
/// neither a list, an object nor null.
#[derive(Default)]
struct Envelope {
    status: Option<String>,
    message: Option<String>,
    expt_type: Option<String>,
    users: Option<Result<UserList, &'static str>>,
}

/// Keeps the first spelling of a field seen, unless the exact one comes later.
fn take(slot: &mut Option<(bool, Option<String>)>, exact: bool, value: Option<String>) {
    if slot
        .as_ref()
        .is_none_or(|(was_exact, _)| exact && !was_exact)
    {
        *slot = Some((exact, value));
    }
}

struct EnvelopeVisitor;

impl<'de> de::Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the reply as a JSON object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let (mut status, mut message, mut expt_type) = (None, None, None);
        let mut envelope = Envelope::default();
        while let Some(key) = map.next_key::<String>()? {
            let text = |v: Value| as_text(&v);
            match key.to_ascii_lowercase().as_str() {
                "status" => take(&mut status, key == "Status", text(map.next_value()?)),
                "message" => take(&mut message, key == "Message", text(map.next_value()?)),
                "expttype" => take(&mut expt_type, key == "ExptType", text(map.next_value()?)),
                "user" if envelope.users.is_none() || key == "User" => {
                    envelope.users = Some(map.next_value_seed(UsersSeed)?);
                }
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        envelope.status = status.and_then(|(_, v)| v);
        envelope.message = message.and_then(|(_, v)| v);
        envelope.expt_type = expt_type.and_then(|(_, v)| v);
        Ok(envelope)
    }
}

/// The `User` value: a list of items, one item, or null.
struct UsersSeed;

impl<'de> de::DeserializeSeed<'de> for UsersSeed {
    type Value = Result<UserList, &'static str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

const NOT_A_LIST: &str = "User is not a list";

impl<'de> de::Visitor<'de> for UsersSeed {
    type Value = Result<UserList, &'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of users")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Ok(UserList::default()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(NOT_A_LIST))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(NOT_A_LIST))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(NOT_A_LIST))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(NOT_A_LIST))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(NOT_A_LIST))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = UserList::default();
        while let Some(item) = seq.next_element::<Item>()? {
            list.add(item);
        }
        Ok(Ok(list))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut list = UserList::default();
        list.add(ItemVisitor.visit_map(map)?);
        Ok(Ok(list))
    }
}

/// One item of the list. Every field but `LoginName` and `Owner` is skipped unread.
enum Item {
    User(ListedUser),
    /// No readable `LoginName`, or not an object.
    NoLogin,
    /// A `LoginName` [`checked_login`] refuses, as the log shows it.
    Refused(String),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> de::Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a user")
    }

    fn visit_unit<E>(self) -> Result<Item, E> {
        Ok(Item::NoLogin)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
        Ok(Item::NoLogin)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Item, E> {
        Ok(Item::NoLogin)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Item, E> {
        Ok(Item::NoLogin)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Item, E> {
        Ok(Item::NoLogin)
    }

    fn visit_str<E>(self, _: &str) -> Result<Item, E> {
        Ok(Item::NoLogin)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Item::NoLogin)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let (mut login, mut owner) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.to_ascii_lowercase().as_str() {
                "loginname" => {
                    let v: Value = map.next_value()?;
                    take(&mut login, key == "LoginName", as_text(&v));
                }
                "owner" => {
                    let v: Value = map.next_value()?;
                    take(&mut owner, key == "Owner", as_text(&v));
                }
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let login = login.and_then(|(_, v)| v).unwrap_or_default();
        let login = login.trim();
        if login.is_empty() {
            return Ok(Item::NoLogin);
        }
        let Some(login) = checked_login(login) else {
            let cut: String = login.chars().take(REFUSED_EXAMPLE_MAX_CHARS).collect();
            let length = login.chars().count();
            return Ok(Item::Refused(format!("{cut:?} ({length} characters)")));
        };
        Ok(Item::User(ListedUser {
            login: login.to_owned(),
            owner: owner.and_then(|(_, v)| v).unwrap_or_default(),
        }))
    }
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
