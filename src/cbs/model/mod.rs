//! The restore-job model and its tolerant decoder.
//!
//! `ListRestoreJobStatus.do` replies differ from the vendor's table in many small ways (see
//! `shared/reference/ahsay-api.md`): alternative key spellings, numbers as strings, two time
//! formats, `Data` as an array, one object or nothing, duplicate keys. The decoder therefore
//! reads the reply as a loose JSON tree first (where a duplicate key simply keeps its last
//! value) and then picks each field out by any of its known spellings, case-insensitively.
//! A job needs only its identity (LoginName, BackupSetID, ID): a time or size no reader
//! understands is kept as the text the server sent (see [`RestoreJob::unreadable`]) and the
//! job is still classified, recorded and alerted. Only an item without an identity is
//! skipped; the poller counts and reports it. The rest of the reply still counts.
//!
//! Times are read in every spelling seen in the wild (see [`parse_time_value`]); a year
//! outside [`MIN_YEAR`]..=[`MAX_YEAR`] counts as unreadable, so an absurd date can neither
//! break the store's records nor be rendered.
//!
//! The model lives by seam: `job` (the job, its key and status classes, as stored),
//! `envelope` (the reply envelope and reading a field by any spelling), `reply` (decoding a
//! `ListRestoreJobStatus` reply into jobs), `time` (job times in every spelling),
//! `report` (`GetRestoreJobReport`), `users` (`ListUsers`) and `login` (what a login name
//! may be).

mod envelope;
mod job;
mod login;
mod reply;
mod report;
#[cfg(test)]
mod test_support;
mod time;
mod users;

pub use envelope::{snippet, ReplyError, SNIPPET_MAX_CHARS};
pub use job::{
    JobKey, RestoreJob, ServerTime, StatusClass, END_TIME_FIELD, RAW_FIELD_MAX_CHARS,
    RESTORE_SIZE_FIELD, START_TIME_FIELD,
};
pub use login::{checked_login, is_format_char, LOGIN_MAX_CHARS};
pub use reply::{decode_reply, DecodeContext, JobList, SkippedItem};
pub use report::{decode_report, JobReport, REPORT_LINES_MAX, REPORT_LINE_MAX_CHARS};
pub use time::{local_in, parse_server_time, parse_time_value, MAX_YEAR, MIN_YEAR};
pub use users::{decode_users, decode_users_from, ListedUser, UserList};
