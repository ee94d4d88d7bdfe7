//! What the slash commands do, as plain functions over plain data: the store, the CBS
//! client, "now", and the arguments as Discord delivered them. Each returns a [`Reply`]
//! (text and embeds, ephemeral or not) or a [`CommandError`] whose `Display` is what the
//! Discord user reads. The poise wiring in [`crate::bot`] only parses, calls and sends,
//! so everything here is unit-tested without a gateway.
//!
//! Argument checks live here too ([`parse_login`], [`parse_date`], [`parse_days`],
//! [`parse_mute_duration`]) so a bad argument always gets the same short message saying
//! what is expected, and nothing changes.
//!
//! - [`access`] decides who may see and do what (server, admin, lookup scope).
//! - [`restores`] answers `/restores`, live from the CBS with the store as fallback.
//! - [`failures`] answers `/failures` from the store.
//! - [`watch`] answers `/watch add|remove|list`.
//! - [`mute`] answers `/mute` and `/unmute`.
//! - [`digest`] answers `/digest` with the daily digest of a day ([`crate::digest`]).
//! - [`status`] answers `/status`.

pub mod access;
pub mod digest;
pub mod failures;
pub mod mute;
pub mod restores;
pub mod status;
pub mod watch;

pub use access::{
    guild_allowed, known_users, may_change_state, not_watched, require_admin, visible_users,
    visible_users_on, Scope, Visible, OUTSIDE_GUILD_REFUSAL, RECENT_USER_DAYS,
};

use crate::cbs::model::RestoreJob;
use crate::render::{
    code_span, cut, escape_markdown, format_size, Embed, EMBED_DESCRIPTION_MAX_CHARS,
    ENDED_BEFORE_START,
};
use crate::store::StoreError;
use chrono::NaiveDate;

/// What a command answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Plain text above the embeds; may be empty when there are embeds.
    pub content: String,
    pub embeds: Vec<Embed>,
    /// Further messages of embeds, for answers longer than one message may be.
    pub followups: Vec<Vec<Embed>>,
    /// Shown only to the invoking user.
    pub ephemeral: bool,
}

impl Reply {
    pub fn text(content: impl Into<String>, ephemeral: bool) -> Reply {
        Reply {
            content: content.into(),
            embeds: Vec::new(),
            followups: Vec::new(),
            ephemeral,
        }
    }

    pub fn embed(embed: Embed, ephemeral: bool) -> Reply {
        Reply {
            content: String::new(),
            embeds: vec![embed],
            followups: Vec::new(),
            ephemeral,
        }
    }
}

/// Why a command did nothing; the `Display` is the message the user gets (ephemerally).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A bad argument: says what is expected.
    #[error("{0}")]
    Usage(String),
    /// The invoking member may not do this.
    #[error("{0}")]
    Refused(String),
    /// Our own store failed; the details go to the log, not to the chat.
    #[error("The bot's state store failed; the error was logged.")]
    Store(#[from] StoreError),
}

impl CommandError {
    /// The ephemeral answer for this error.
    pub fn to_reply(&self) -> Reply {
        Reply::text(self.to_string(), true)
    }
}

pub type CommandResult = Result<Reply, CommandError>;

/// The longest login name accepted.
pub use crate::cbs::model::LOGIN_MAX_CHARS;
/// How far back `/failures` may look, in days (defined beside the cards that point to it).
pub use crate::render::FAILURES_MAX_DAYS;
/// Discord shows at most this many autocomplete choices.
pub const AUTOCOMPLETE_MAX_CHOICES: usize = 25;
/// Discord's limit on an autocomplete choice's name and value; longer logins are left out
/// of the choices (they can still be typed).
pub const AUTOCOMPLETE_CHOICE_MAX_CHARS: usize = 100;
/// How much of a user's text is quoted back.
const QUOTE_MAX_CHARS: usize = 64;
/// How much of an error's text is quoted back: the server's name and its whole message
/// (a CBS message such as `User "x" not found` names the user before it says why).
const ERROR_QUOTE_MAX_CHARS: usize = 300;

/// User text quoted back in a message: escaped and cut (with `…`), so it can neither
/// format nor flood the reply.
fn quote(text: &str) -> String {
    escape_markdown(&cut(text, QUOTE_MAX_CHARS))
}

/// An error's text quoted back, as [`quote`] but long enough for a whole CBS message:
/// cutting it at a user's text's length lost the words that say what went wrong.
fn quote_error(text: &str) -> String {
    escape_markdown(&cut(text, ERROR_QUOTE_MAX_CHARS))
}

/// A login (or other name) in a code span: shown as typed, without escapes; whole up to
/// the longest login a command takes, else cut with `…` (two long logins that differ only
/// at the end must not read alike).
pub fn code(text: &str) -> String {
    code_span(&cut(text, LOGIN_MAX_CHARS))
}

/// A login name argument: trimmed, not empty, no control characters, not absurdly long.
pub fn parse_login(arg: &str) -> Result<String, CommandError> {
    crate::cbs::model::checked_login(arg)
        .map(str::to_owned)
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "user: expected a backup user's login name (1 to {LOGIN_MAX_CHARS} characters, \
                 no control or invisible characters)."
            ))
        })
}

/// A `YYYY-MM-DD` argument, `today` (in the server zone) when absent; not in the future.
pub fn parse_date(arg: Option<&str>, today: NaiveDate) -> Result<NaiveDate, CommandError> {
    let Some(text) = arg.map(str::trim) else {
        return Ok(today);
    };
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        CommandError::Usage(format!(
            "date: expected YYYY-MM-DD, e.g. {today}; got `{}`.",
            quote(text)
        ))
    })?;
    if date > today {
        return Err(CommandError::Usage(format!(
            "date: {date} is in the future; expected {today} or earlier."
        )));
    }
    Ok(date)
}

/// [`parse_date`] for a lookup in the store, which keeps `kept_days` days of records
/// (`state.retention_days`): an older date is refused, saying its records were pruned,
/// rather than answered "no restore jobs".
pub fn parse_kept_date(
    arg: Option<&str>,
    today: NaiveDate,
    kept_days: u32,
) -> Result<NaiveDate, CommandError> {
    let date = parse_date(arg, today)?;
    let earliest = crate::config::earliest_kept(today, kept_days);
    if date < earliest {
        return Err(CommandError::Usage(format!(
            "date: {date} is past the store's retention (`state.retention_days`, {kept_days} \
             days): its records were pruned. Expected {earliest} or later."
        )));
    }
    Ok(date)
}

/// The `days` argument of `/failures`: 1 to [`FAILURES_MAX_DAYS`], 1 when absent.
pub fn parse_days(arg: Option<i64>) -> Result<u32, CommandError> {
    match arg.unwrap_or(1) {
        // Within 1..=30, so the cast is exact.
        days @ 1..=FAILURES_MAX_DAYS => Ok(days as u32),
        _ => Err(CommandError::Usage(format!(
            "days: expected a whole number from 1 to {FAILURES_MAX_DAYS}."
        ))),
    }
}

/// The longest mute accepted: longer than this and it is forgotten, not muted.
pub const MUTE_MAX: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The shortest mute: a shorter one would end before anyone read its confirmation (and
/// most likely meant minutes, not seconds).
pub const MUTE_MIN: std::time::Duration = std::time::Duration::from_secs(60);

/// A mute duration such as `2h`, `3d` or `1h 30m`: from [`MUTE_MIN`] to [`MUTE_MAX`].
pub fn parse_mute_duration(arg: &str) -> Result<chrono::Duration, CommandError> {
    let usage = || {
        CommandError::Usage(format!(
            "duration: expected a time span such as 30m, 2h or 3d (1m to {}d); got `{}`.",
            MUTE_MAX.as_secs() / 86_400,
            quote(arg.trim())
        ))
    };
    let duration = humantime::parse_duration(arg.trim()).map_err(|_| usage())?;
    if duration < MUTE_MIN || duration > MUTE_MAX {
        return Err(usage());
    }
    chrono::Duration::from_std(duration).map_err(|_| usage())
}

/// The autocomplete choices for `partial`: case-insensitive, names starting with it first,
/// then names containing it, each group sorted, at most [`AUTOCOMPLETE_MAX_CHOICES`].
/// Names longer than Discord allows a choice ([`AUTOCOMPLETE_CHOICE_MAX_CHARS`]) are left
/// out: one of them would make Discord refuse the whole list.
pub fn matching_users<'a>(
    candidates: impl IntoIterator<Item = &'a String>,
    partial: &str,
) -> Vec<String> {
    let needle = partial.trim().to_lowercase();
    let (mut starts, mut contains) = (Vec::new(), Vec::new());
    for user in candidates {
        if user.chars().count() > AUTOCOMPLETE_CHOICE_MAX_CHARS {
            continue;
        }
        let lower = user.to_lowercase();
        if lower.starts_with(&needle) {
            starts.push(user.clone());
        } else if lower.contains(&needle) {
            contains.push(user.clone());
        }
    }
    starts.extend(contains);
    starts.truncate(AUTOCOMPLETE_MAX_CHOICES);
    starts
}

/// One job as a line of a list: set, class, times, size, and the raw code when the class
/// is unknown. Backup-server text is escaped, and the set's name cut short, so a long one
/// leaves the rest of the line (and the page) readable. The times are Discord's tags, which each
/// reader sees in their own zone: the start with its date, the end as a time of day.
pub fn job_line(job: &RestoreJob) -> String {
    use crate::cbs::model::{END_TIME_FIELD, RESTORE_SIZE_FIELD, START_TIME_FIELD};
    let time = |t: Option<crate::cbs::model::ServerTime>, field, style: char| {
        crate::render::value_or_raw(
            t,
            job.unreadable_field(field),
            |t| format!("<t:{}:{style}>", t.timestamp()),
            "…",
        )
    };
    let size = crate::render::value_or_raw(
        job.restore_size_bytes,
        job.unreadable_field(RESTORE_SIZE_FIELD),
        format_size,
        "size unknown",
    );
    let mut line = format!(
        "**{}** · {} · {}–{} · {size}",
        crate::render::list_name(job.backup_set_label()),
        job.class.label(),
        time(job.start_time, START_TIME_FIELD, 'f'),
        time(job.end_time, END_TIME_FIELD, 't'),
    );
    if job.ends_before_start() {
        line.push_str(&format!(" · {ENDED_BEFORE_START}"));
    }
    if job.class == crate::cbs::model::StatusClass::Unknown {
        line.push_str(&format!(" · code {}", code(&job.raw_status)));
    }
    line
}

/// Messages one list reply sends at most: the answer and its follow-ups. A longer list
/// ends its last message saying which `page:` argument shows the next lines.
pub const LIST_MESSAGES_MAX: usize = 10;

/// Neutral blue for lists that are not about one outcome (`/restores`, `/watch list`,
/// `/status`).
pub const LIST_COLOUR: u32 = 0x5865F2;

/// Characters of lines in one message: the description's limit, less room for the note
/// pointing to the next page.
const PAGE_LINES_MAX_CHARS: usize = EMBED_DESCRIPTION_MAX_CHARS - 400;

/// A list for a command reply, however long: one embed per message, every line in
/// exactly one message (never "… and N more"), at most [`LIST_MESSAGES_MAX`] messages per
/// reply.
pub struct ListPages<'a> {
    pub title: String,
    pub lines: &'a [String],
    pub colour: u32,
    pub footer: Option<String>,
    /// The command as typed, with its other arguments (e.g. `/failures days:3`), raw text:
    /// the note that points to the next page appends `page:N` and shows it as code.
    pub command: String,
    /// The `page` argument; `None` is the first page.
    pub page: Option<i64>,
}

/// The `page` argument of a list with `pages` pages: 1 to `pages`, 1 when absent.
pub fn parse_page(arg: Option<i64>, pages: usize) -> Result<usize, CommandError> {
    match arg {
        None => Ok(1),
        Some(page) if page >= 1 && page as u64 <= pages as u64 => Ok(page as usize),
        Some(_) => Err(CommandError::Usage(format!(
            "page: expected a whole number from 1 to {pages}; this list has {}.",
            crate::render::plural(pages as u64, "page", "pages")
        ))),
    }
}

impl ListPages<'_> {
    /// The messages of the requested page: the first for the reply itself, the rest as
    /// its follow-ups. Titles count the messages (`(2/7)`), footers say which lines each
    /// holds, and a page that is not the last ends with the command for the next one.
    pub fn reply(self, ephemeral: bool) -> CommandResult {
        let chunks = chunk_lines(self.lines);
        let pages = chunks.len().div_ceil(LIST_MESSAGES_MAX);
        let page = parse_page(self.page, pages)?;
        let total = self.lines.len();
        let messages = chunks.len();
        let first = (page - 1) * LIST_MESSAGES_MAX;
        let shown = &chunks[first..(first + LIST_MESSAGES_MAX).min(messages)];
        let mut embeds: Vec<Embed> = shown
            .iter()
            .enumerate()
            .map(|(i, range)| {
                let number = first + i + 1;
                let title = if messages > 1 {
                    format!("{} ({number}/{messages})", self.title)
                } else {
                    self.title.clone()
                };
                let description = self.lines[range.clone()]
                    .iter()
                    .map(|l| crate::render::cut(l, PAGE_LINES_MAX_CHARS))
                    .collect::<Vec<_>>()
                    .join("\n");
                let which = (messages > 1)
                    .then(|| format!("lines {}–{} of {total}", range.start + 1, range.end));
                let footer = match (self.footer.clone(), which) {
                    (Some(f), Some(w)) => Some(format!("{f} · {w}")),
                    (f, w) => f.or(w),
                };
                Embed {
                    title,
                    description,
                    colour: self.colour,
                    fields: Vec::new(),
                    footer,
                    timestamp: None,
                }
            })
            .collect();
        if page < pages {
            let last_shown = shown.last().map_or(0, |r| r.end);
            let note = format!(
                "\n\nPage {page} of {pages}: lines {}–{last_shown} of {total}. \
                 The next lines: {}",
                shown.first().map_or(1, |r| r.start + 1),
                code_span(&format!("{} page:{}", self.command, page + 1)),
            );
            if let Some(last) = embeds.last_mut() {
                last.description.push_str(&note);
            }
        }
        let mut embeds = embeds.into_iter().map(Embed::fit);
        Ok(Reply {
            content: String::new(),
            embeds: embeds.next().into_iter().collect(),
            followups: embeds.map(|e| vec![e]).collect(),
            ephemeral,
        })
    }
}

/// Splits `lines` into runs that fit [`PAGE_LINES_MAX_CHARS`] (a line longer than that is
/// cut and goes alone); at least one run, empty for no lines.
fn chunk_lines(lines: &[String]) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let len = line.chars().count().min(PAGE_LINES_MAX_CHARS) + usize::from(i > start);
        if i > start && used + len > PAGE_LINES_MAX_CHARS {
            chunks.push(start..i);
            start = i;
            used = line.chars().count().min(PAGE_LINES_MAX_CHARS);
        } else {
            used += len;
        }
    }
    if start < lines.len() || chunks.is_empty() {
        chunks.push(start..lines.len());
    }
    chunks
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders for job records and a store in a temporary directory.

    use crate::cbs::model::RestoreJob;
    use crate::cbs::{CbsClient, CbsClientConfig};
    use crate::simulator::{SimConfig, SimHandle, SimJob, SimUser, Simulator};
    use crate::store::{Policy, Store};
    use crate::test_data;
    use chrono::{DateTime, NaiveDate, TimeZone, Utc};
    use std::collections::BTreeSet;

    pub fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, d, h, 0, 0).unwrap()
    }

    pub fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 6, d).unwrap()
    }

    /// A job of `login`, set `set`, started at 2024-06-`d` `h`:00 UTC, ended an hour later
    /// with `raw` (empty: still running).
    pub fn job(login: &str, set: &str, d: u32, h: u32, raw: &str) -> RestoreJob {
        let start = format!("2024-06-{d:02}-{h:02}-00-00");
        let end = format!("2024-06-{d:02} {:02}:00:00", h + 1);
        let end = (!raw.is_empty()).then_some(end.as_str());
        RestoreJob {
            restore_size_bytes: Some(2048),
            ..test_data::job(login, set, crate::tz::Tz::UTC, &start, end, raw)
        }
    }

    /// Records `jobs` in `store` as seen (not baseline) at the end of their day.
    pub fn record(store: &Store, jobs: &[RestoreJob]) {
        let classes = BTreeSet::new();
        for j in jobs {
            let date = j.start_time.unwrap().date_naive();
            let now = at(date.format("%d").to_string().parse().unwrap(), 23);
            let policy = Policy {
                stuck_after: chrono::Duration::days(1),
                ..test_data::policy(now, &classes)
            };
            store.observe(j, date, &policy).unwrap();
        }
    }

    pub fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// The CBS simulator at 2024-06-26 12:00 UTC with user `obm` and a failed and a
    /// successful restore on the 25th, and a client for it (server name `cbs`).
    pub async fn simulator() -> (SimHandle, CbsClient) {
        let clock = crate::clock::ManualClock::new(at(26, 12));
        let sim = Simulator::new(SimConfig::with_clock(std::sync::Arc::new(clock)))
            .start()
            .await
            .unwrap();
        sim.add_user(SimUser {
            login: "obm".into(),
            owner: String::new(),
            user_id: "obm".into(),
        });
        for (set, hour, status) in [
            (1, 9, "RESTORE_STOP_BY_ERROR"),
            (2, 11, "RESTORE_STOP_SUCCESS"),
        ] {
            sim.add_job(SimJob {
                size_bytes: 2048,
                ..SimJob::new(
                    "obm",
                    &set.to_string(),
                    at(25, hour),
                    Some(at(25, hour + 1)),
                    status,
                )
            });
        }
        let client = CbsClient::new(CbsClientConfig {
            url: sim.url(),
            server_name: "cbs".into(),
            sys_user: sim.sys_user().into(),
            sys_pwd: sim.sys_pwd().to_owned().into(),
            timezone: sim.timezone(),
            request_timeout: std::time::Duration::from_secs(5),
            ca_cert: None,
        })
        .unwrap();
        (sim, client)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn dates_default_to_today_and_refuse_junk_and_the_future() {
        assert_eq!(parse_date(None, day(26)).unwrap(), day(26));
        assert_eq!(parse_date(Some(" 2024-06-20 "), day(26)).unwrap(), day(20));
        let junk = parse_date(Some("20/06/2024"), day(26)).unwrap_err();
        assert_eq!(
            junk.to_string(),
            "date: expected YYYY-MM-DD, e.g. 2024-06-26; got `20/06/2024`."
        );
        let future = parse_date(Some("2024-06-27"), day(26)).unwrap_err();
        assert!(future.to_string().contains("in the future"), "{future}");
        assert!(matches!(
            parse_date(Some("2024-02-30"), day(26)),
            Err(CommandError::Usage(_))
        ));
    }

    #[test]
    fn a_date_past_the_retention_is_refused_as_pruned() {
        assert_eq!(
            parse_kept_date(Some("2024-06-16"), day(26), 10).unwrap(),
            day(16)
        );
        let pruned = parse_kept_date(Some("2024-06-15"), day(26), 10).unwrap_err();
        assert_eq!(
            pruned.to_string(),
            "date: 2024-06-15 is past the store's retention (`state.retention_days`, 10 days): \
             its records were pruned. Expected 2024-06-16 or later."
        );
        assert!(parse_kept_date(Some("2024-06-27"), day(26), 10).is_err());
        assert_eq!(parse_kept_date(None, day(26), 10).unwrap(), day(26));
    }

    #[test]
    fn quoted_input_cannot_format_or_mention() {
        let e = parse_date(Some("**@everyone**"), day(26)).unwrap_err();
        assert!(
            e.to_string().contains("\\*\\*@\u{200B}everyone\\*\\*"),
            "{e}"
        );
    }

    /// A 5,000-character set name is cut short: the line keeps its class, times and size,
    /// and a page of such lines still lists many jobs, not one cut line each.
    #[test]
    fn a_long_set_name_is_cut_in_a_job_line() {
        let mut long = job("obm", "1", 26, 9, "RESTORE_STOP_BY_ERROR");
        long.backup_set_name = "x".repeat(5000);
        let line = job_line(&long);
        assert!(
            line.starts_with("**xxx") && line.contains("…** · failure · <t:"),
            "{line}"
        );
        assert!(line.ends_with("2 KiB"), "{line}");
        assert!(line.chars().count() < 200, "{line}");
    }

    #[test]
    fn a_job_that_ends_before_it_starts_says_so() {
        let mut back = job("obm", "1", 26, 9, "RESTORE_STOP_BY_ERROR");
        back.end_time = back.start_time.map(|t| t - chrono::Duration::hours(2));
        assert!(job_line(&back).contains(" · ended before it started"));
        let fine = job("obm", "1", 26, 9, "RESTORE_STOP_BY_ERROR");
        assert!(!job_line(&fine).contains("ended before"));
    }

    #[test]
    fn days_are_one_to_thirty() {
        assert_eq!(parse_days(None).unwrap(), 1);
        assert_eq!(parse_days(Some(30)).unwrap(), 30);
        for bad in [0, -1, 31] {
            let e = parse_days(Some(bad)).unwrap_err();
            assert_eq!(e.to_string(), "days: expected a whole number from 1 to 30.");
        }
    }

    #[test]
    fn logins_are_trimmed_and_checked() {
        assert_eq!(parse_login("  obm ").unwrap(), "obm");
        // A right-to-left override or a zero-width space would show as another login.
        for bad in [
            "",
            "   ",
            "a\nb",
            "bob\u{202E}",
            "b\u{200B}ob",
            &"x".repeat(LOGIN_MAX_CHARS + 1),
        ] {
            assert!(matches!(parse_login(bad), Err(CommandError::Usage(_))));
        }
    }

    #[test]
    fn mute_durations() {
        assert_eq!(
            parse_mute_duration("2h").unwrap(),
            chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_mute_duration("1h 30m").unwrap(),
            chrono::Duration::minutes(90)
        );
        assert_eq!(
            parse_mute_duration("3d").unwrap(),
            chrono::Duration::days(3)
        );
        assert_eq!(
            parse_mute_duration("1m").unwrap(),
            chrono::Duration::minutes(1)
        );
        // Over before anyone read the confirmation.
        for bad in ["", "0s", "1s", "59s", "soon", "31d", "-2h"] {
            let e = parse_mute_duration(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("duration: expected a time span"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_login_in_a_code_span_is_whole_up_to_the_longest_login_then_cut_visibly() {
        let long = format!("{}_01", "a".repeat(89));
        assert_eq!(code(&long), format!("`{long}`"));
        let longer = "b".repeat(LOGIN_MAX_CHARS + 10);
        let shown = code(&longer);
        assert!(shown.ends_with("…`"), "{shown}");
        assert_eq!(shown.chars().count(), LOGIN_MAX_CHARS + 2);
    }

    #[test]
    fn autocomplete_prefers_prefixes_ignores_case_and_caps_the_list() {
        let users: BTreeSet<String> = ["obm", "Office-Backup", "shop-backup", "db01"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            matching_users(&users, "ob"),
            ["obm"].map(String::from).to_vec()
        );
        assert_eq!(
            matching_users(&users, "BACK"),
            ["Office-Backup", "shop-backup"].map(String::from).to_vec()
        );
        assert_eq!(
            matching_users(&users, "o"),
            ["Office-Backup", "obm", "shop-backup"]
                .map(String::from)
                .to_vec()
        );
        assert_eq!(matching_users(&users, "").len(), 4);
        let many: BTreeSet<String> = (0..40).map(|i| format!("user{i:02}")).collect();
        assert_eq!(
            matching_users(&many, "user").len(),
            AUTOCOMPLETE_MAX_CHOICES
        );
    }

    #[test]
    fn autocomplete_leaves_out_names_discord_would_refuse() {
        let long = "a".repeat(AUTOCOMPLETE_CHOICE_MAX_CHARS + 1);
        let fits = "a".repeat(AUTOCOMPLETE_CHOICE_MAX_CHARS);
        let users: BTreeSet<String> = [long, fits.clone()].into();
        assert_eq!(matching_users(&users, "a"), [fits]);
    }

    fn list(lines: &[String], page: Option<i64>) -> CommandResult {
        ListPages {
            title: "Things".into(),
            lines,
            colour: 0,
            footer: Some("from here".into()),
            command: "/things user:a_b".into(),
            page,
        }
        .reply(true)
    }

    fn messages(reply: &Reply) -> Vec<&Vec<Embed>> {
        std::iter::once(&reply.embeds)
            .chain(&reply.followups)
            .collect()
    }

    #[test]
    fn a_long_list_continues_in_followups_and_pages_reach_every_line() {
        let lines: Vec<String> = (0..2000)
            .map(|i| format!("line {i:04} {}", "x".repeat(60)))
            .collect();
        let mut seen = vec![0; lines.len()];
        let mut page = 1;
        loop {
            let reply = list(&lines, Some(page)).unwrap();
            assert!(reply.ephemeral);
            let messages = messages(&reply);
            assert!(messages.len() <= LIST_MESSAGES_MAX);
            for embeds in &messages {
                assert_eq!(embeds.len(), 1);
                let e = &embeds[0];
                assert!(e.description.chars().count() <= EMBED_DESCRIPTION_MAX_CHARS);
                assert!(e.char_count() <= crate::render::MESSAGE_EMBED_TOTAL_MAX_CHARS);
                assert!(e.title.starts_with("Things ("), "{}", e.title);
                assert!(e.footer.as_ref().unwrap().starts_with("from here · lines "));
                assert!(!e.description.contains("more"), "{}", e.description);
                for line in e.description.lines().filter(|l| l.starts_with("line ")) {
                    seen[line[5..9].parse::<usize>().unwrap()] += 1;
                }
            }
            let last = &messages.last().unwrap()[0].description;
            let next = format!("`/things user:a_b page:{}`", page + 1);
            if !last.contains(&next) {
                break;
            }
            assert!(last.contains(&format!("Page {page} of ")), "{last}");
            page += 1;
        }
        assert!(page > 1, "2,000 lines need more than one page");
        assert!(seen.iter().all(|n| *n == 1), "every line exactly once");
        let past = list(&lines, Some(page + 1)).unwrap_err();
        assert_eq!(
            past.to_string(),
            format!("page: expected a whole number from 1 to {page}; this list has {page} pages.")
        );
    }

    #[test]
    fn a_short_list_is_one_plain_message() {
        let lines = ["a".to_owned(), "b".to_owned()];
        let reply = list(&lines, None).unwrap();
        assert!(reply.followups.is_empty());
        assert_eq!(reply.embeds[0].title, "Things");
        assert_eq!(reply.embeds[0].description, "a\nb");
        assert_eq!(reply.embeds[0].footer.as_deref(), Some("from here"));
        let empty = list(&[], None).unwrap();
        assert_eq!(empty.embeds.len(), 1);
        assert!(list(&lines, Some(2)).is_err());
        assert!(list(&lines, Some(0)).is_err());
    }
}
