//! The buttons on failure alerts ("act from the alert"): what a button's `custom_id` says,
//! and how it is written and read.
//!
//! A `custom_id` is all Discord gives back when a button is pressed, possibly long after a
//! restart, so it carries everything needed to find the job again, and nothing the bot
//! would have to remember per message:
//!
//! `alert:<action>:<date>:<job hash>:<embed>`, e.g. `alert:ack:2024-06-26:0f1e2d3c4b5a6978:0`
//!
//! - `action`: `ack` (Acknowledge), `mute` (Mute set 24h) or `jobs` (Show jobs).
//! - `date`: the `RestoreDate` the job was listed under, by which the store keeps it.
//!   Buttons posted before it was kept name the day the job started in the backup
//!   server's zone (`-` when the server sent no readable start). The store looks the job
//!   up among that day's records and the days either side, then (for an old button of a
//!   restore that ran for days) the later days up to today, so no extra index is kept and
//!   the lookup ends with the job records' retention.
//! - `job hash`: 64 bits of SipHash-1-3 (fixed keys, stable across releases) over the job's
//!   identity (server, login, backup set, job id): compact and the same after a restart.
//! - `embed`: which embed of the message the row belongs to, so an acknowledgement edits
//!   the right one when a message carries several alerts.
//!
//! At most 42 characters, well inside Discord's 100. [`ActionId::parse`] reads what
//! Discord sends back as hostile input: anything else is an error, never a panic.

use crate::cbs::model::{JobKey, RestoreJob};
use chrono::NaiveDate;

/// What every alert-button `custom_id` starts with; other components are not ours.
pub const CUSTOM_ID_PREFIX: &str = "alert:";
/// Discord's limit on a `custom_id` (characters).
pub const CUSTOM_ID_MAX_CHARS: usize = 100;
/// How long "Mute set 24h" mutes, as `/mute`'s `duration` argument.
pub const MUTE_BUTTON_DURATION: &str = "24h";

/// What a button does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertAction {
    /// Records who acknowledged the failure, and shows it on the message.
    Acknowledge,
    /// `/mute user backup_set 24h`, with `/mute`'s rules.
    MuteSet,
    /// An ephemeral `/restores user date`.
    ShowJobs,
}

impl AlertAction {
    /// Every action, in the order the buttons appear.
    pub const ALL: [AlertAction; 3] = [
        AlertAction::Acknowledge,
        AlertAction::MuteSet,
        AlertAction::ShowJobs,
    ];

    fn code(self) -> &'static str {
        match self {
            AlertAction::Acknowledge => "ack",
            AlertAction::MuteSet => "mute",
            AlertAction::ShowJobs => "jobs",
        }
    }

    fn from_code(code: &str) -> Option<AlertAction> {
        AlertAction::ALL.into_iter().find(|a| a.code() == code)
    }

    /// The button's text.
    pub fn label(self) -> &'static str {
        match self {
            AlertAction::Acknowledge => "Acknowledge",
            AlertAction::MuteSet => "Mute set 24h",
            AlertAction::ShowJobs => "Show jobs",
        }
    }
}

/// A job as a button names it: a day to look it up by and the hash of its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobRef {
    /// The day the job was listed under; in buttons posted before it was known, the day
    /// it started.
    pub date: Option<NaiveDate>,
    pub hash: u64,
}

impl JobRef {
    /// The reference of `job`, listed under `listed_on` (when not known: its start day).
    pub fn of(job: &RestoreJob, listed_on: Option<NaiveDate>) -> JobRef {
        JobRef {
            date: listed_on.or_else(|| job.start_time.map(|t| t.date_naive())),
            hash: job_hash(&job.key()),
        }
    }
}

/// The stable 64-bit hash of a job's identity.
pub fn job_hash(key: &JobKey) -> u64 {
    use std::hash::Hasher as _;
    let mut hasher = siphasher::sip::SipHasher13::new();
    for part in [
        &key.server,
        &key.login_name,
        &key.backup_set_id,
        &key.job_id,
    ] {
        // Length first, so ("ab", "c") and ("a", "bc") differ.
        hasher.write_u64(part.len() as u64);
        hasher.write(part.as_bytes());
    }
    hasher.finish()
}

/// One button: what to do to which job, and where its alert is in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActionId {
    pub action: AlertAction,
    pub job: JobRef,
    /// The index of the alert's embed in its message.
    pub embed: u8,
}

/// Why a `custom_id` is not one of ours.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an alert button: {0}")]
pub struct NotAnAction(&'static str);

impl ActionId {
    /// The `custom_id` (see the module docs).
    pub fn to_custom_id(&self) -> String {
        let date = self
            .job
            .date
            .map_or_else(|| "-".to_owned(), |d| d.format("%Y-%m-%d").to_string());
        format!(
            "{CUSTOM_ID_PREFIX}{}:{date}:{:016x}:{}",
            self.action.code(),
            self.job.hash,
            self.embed
        )
    }

    /// Reads a `custom_id` Discord sent back.
    pub fn parse(custom_id: &str) -> Result<ActionId, NotAnAction> {
        if custom_id.len() > CUSTOM_ID_MAX_CHARS {
            return Err(NotAnAction("too long"));
        }
        let rest = custom_id
            .strip_prefix(CUSTOM_ID_PREFIX)
            .ok_or(NotAnAction("another prefix"))?;
        let mut parts = rest.split(':');
        let (Some(action), Some(date), Some(hash), Some(embed), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(NotAnAction("not five parts"));
        };
        let action = AlertAction::from_code(action).ok_or(NotAnAction("unknown action"))?;
        let date = match date {
            "-" => None,
            d => Some(
                NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| NotAnAction("bad date"))?,
            ),
        };
        if hash.len() != 16 {
            return Err(NotAnAction("bad job hash"));
        }
        let hash = u64::from_str_radix(hash, 16).map_err(|_| NotAnAction("bad job hash"))?;
        let embed = embed.parse().map_err(|_| NotAnAction("bad embed index"))?;
        Ok(ActionId {
            action,
            job: JobRef { date, hash },
            embed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(login: &str, set: &str) -> JobKey {
        JobKey {
            server: "cbs".into(),
            login_name: login.into(),
            backup_set_id: set.into(),
            job_id: "2024-06-26-09-00-00".into(),
        }
    }

    #[test]
    fn custom_ids_round_trip_and_fit() {
        let id = ActionId {
            action: AlertAction::MuteSet,
            job: JobRef {
                date: NaiveDate::from_ymd_opt(2024, 6, 26),
                hash: job_hash(&key("obm", "1")),
            },
            embed: 9,
        };
        let text = id.to_custom_id();
        assert!(text.starts_with("alert:mute:2024-06-26:"), "{text}");
        assert_eq!(ActionId::parse(&text), Ok(id));
        let worst = ActionId {
            action: AlertAction::ShowJobs,
            job: JobRef {
                date: NaiveDate::from_ymd_opt(9999, 12, 31),
                hash: u64::MAX,
            },
            embed: u8::MAX,
        };
        assert!(worst.to_custom_id().len() <= 42, "{}", worst.to_custom_id());
        assert_eq!(ActionId::parse(&worst.to_custom_id()), Ok(worst));
        let undated = ActionId {
            job: JobRef {
                date: None,
                hash: 1,
            },
            ..id
        };
        assert_eq!(ActionId::parse(&undated.to_custom_id()), Ok(undated));
    }

    #[test]
    fn the_hash_is_stable_and_tells_jobs_apart() {
        // Fixed keys: this value must never change, or old buttons stop working.
        assert_eq!(job_hash(&key("obm", "1")), job_hash(&key("obm", "1")));
        assert_ne!(job_hash(&key("obm", "1")), job_hash(&key("obm", "2")));
        assert_ne!(job_hash(&key("ob", "m1")), job_hash(&key("obm", "1")));
    }

    #[test]
    fn other_ids_are_refused() {
        for bad in [
            "",
            "page:next:1",
            "alert:ack",
            "alert:nope:2024-06-26:0000000000000001:0",
            "alert:ack:2024-13-01:0000000000000001:0",
            "alert:ack:2024-06-26:1:0",
            "alert:ack:2024-06-26:000000000000000g:0",
            "alert:ack:2024-06-26:0000000000000001:256",
            "alert:ack:2024-06-26:0000000000000001:0:extra",
        ] {
            assert!(ActionId::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_custom_id_parses_or_errs_without_panic(text in "\\PC{0,120}") {
            let _ = ActionId::parse(&text);
        }

        #[test]
        fn near_misses_never_panic(
            action in "(ack|mute|jobs|x)",
            date in "[-0-9]{0,12}",
            hash in "[0-9a-fA-F+-]{0,20}",
            embed in "[-+0-9]{0,5}",
        ) {
            let text = format!("alert:{action}:{date}:{hash}:{embed}");
            if let Ok(id) = ActionId::parse(&text) {
                prop_assert_eq!(ActionId::parse(&id.to_custom_id()), Ok(id));
            }
        }
    }
}
