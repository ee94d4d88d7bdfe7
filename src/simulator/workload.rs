//! Workloads: the users and jobs a simulator starts with, and a deterministic generator.
//!
//! The generator turns `(users, seed, anchor, pace)` into the same jobs every time, so a
//! test or a demo can be repeated. [`Pace::Realistic`] spreads minutes-long restores over
//! yesterday and today in the server zone (some still running at the anchor);
//! [`Pace::Compressed`] starts every job within [`COMPRESSED_START_WINDOW_SECS`] after the
//! anchor and ends it a few seconds later, so a poller every few seconds watches jobs go
//! from running to finished within a minute.

use super::job::{Quirks, SimJob, SimUser};
use crate::cbs::model::local_in;
use crate::tz::Tz;
use chrono::{DateTime, Duration, NaiveTime, SubsecRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

/// Compressed jobs start within this many seconds after the anchor.
pub const COMPRESSED_START_WINDOW_SECS: i64 = 30;
/// Shortest compressed job, in seconds.
pub const COMPRESSED_MIN_DURATION_SECS: i64 = 3;
/// Longest compressed job, in seconds.
pub const COMPRESSED_MAX_DURATION_SECS: i64 = 20;
/// Shortest realistic job, in seconds.
const REALISTIC_MIN_DURATION_SECS: i64 = 60;
/// Longest realistic job, in seconds.
const REALISTIC_MAX_DURATION_SECS: i64 = 45 * 60;
/// Realistic restores per backup set and day: 0 up to this many.
const REALISTIC_MAX_JOBS_PER_SET_AND_DAY: u32 = 2;
/// One user in this many gets a restore that is running at the anchor.
const REALISTIC_RUNNING_EVERY_NTH_USER: usize = 5;

/// The client version the generated jobs report.
const CLIENT_VERSION: &str = "10.1.4.0";

/// Users and jobs for a simulator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workload {
    pub users: Vec<SimUser>,
    pub jobs: Vec<SimJob>,
}

/// How fast generated jobs happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Yesterday and today, minutes-long jobs, some running at the anchor.
    Realistic,
    /// Every job starts within 30 s after the anchor and lasts 3–20 s.
    Compressed,
}

impl std::str::FromStr for Pace {
    type Err = String;

    /// `realistic` or `compressed` (for the command line).
    fn from_str(s: &str) -> Result<Pace, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "realistic" => Ok(Pace::Realistic),
            "compressed" => Ok(Pace::Compressed),
            other => Err(format!(
                "pace {other:?} is neither \"realistic\" nor \"compressed\""
            )),
        }
    }
}

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenParams {
    pub users: usize,
    pub seed: u64,
    /// "Now" for the workload: realistic jobs surround it, compressed ones follow it.
    pub anchor: DateTime<Utc>,
    pub pace: Pace,
    /// The server zone: "yesterday" and "today" are its dates.
    pub timezone: Tz,
}

/// Backup-set kinds: a name and which item lists its restores report.
#[derive(Clone, Copy)]
enum SetKind {
    Files,
    Database,
    VirtualMachine,
    Mail,
}

const SET_KINDS: [(SetKind, &str); 8] = [
    (SetKind::Files, "Documents"),
    (SetKind::Files, "File Share"),
    (SetKind::Files, "Photos"),
    (SetKind::Database, "SQL Server"),
    (SetKind::Database, "MySQL"),
    (SetKind::VirtualMachine, "Hyper-V"),
    (SetKind::VirtualMachine, "VMware"),
    (SetKind::Mail, "Exchange"),
];

/// Codes for jobs that ended in an unknown way: real servers send codes no doc lists.
const UNKNOWN_CODES: [&str; 2] = [
    "RESTORE_STOP_BY_QUOTA_EXCEEDED",
    "RESTORE_STOP_SYSTEM_ERROR",
];

struct GenSet {
    user: usize,
    id: String,
    name: &'static str,
    kind: SetKind,
    destination_id: String,
}

/// Generates a workload; the same parameters always give the same workload.
pub fn generate(p: &GenParams) -> Workload {
    let mut rng = StdRng::seed_from_u64(p.seed);
    let anchor = p.anchor.trunc_subsecs(0);
    let users: Vec<SimUser> = (1..=p.users)
        .map(|i| SimUser {
            login: format!("user{i:03}"),
            // Most users have no sub-admin; some belong to a reseller.
            owner: match i % 5 {
                3 => "reseller-a",
                4 => "reseller-b",
                _ => "",
            }
            .to_owned(),
            user_id: epoch_ms_id(&mut rng),
        })
        .collect();
    let mut sets = Vec::new();
    for (u, _) in users.iter().enumerate() {
        for _ in 0..rng.gen_range(1..=3) {
            let (kind, name) = SET_KINDS[rng.gen_range(0..SET_KINDS.len())];
            sets.push(GenSet {
                user: u,
                id: epoch_ms_id(&mut rng),
                name,
                kind,
                destination_id: epoch_ms_id(&mut rng),
            });
        }
    }
    let mut jobs = Vec::new();
    match p.pace {
        Pace::Realistic => {
            let today = anchor.with_timezone(&p.timezone).date_naive();
            for set in &sets {
                for date in [today - Duration::days(1), today] {
                    let Some(midnight) = local_in(p.timezone, date.and_time(NaiveTime::MIN)) else {
                        continue;
                    };
                    for _ in 0..rng.gen_range(0..=REALISTIC_MAX_JOBS_PER_SET_AND_DAY) {
                        let start = midnight.with_timezone(&Utc)
                            + Duration::seconds(rng.gen_range(0..24 * 3600));
                        let duration = rng
                            .gen_range(REALISTIC_MIN_DURATION_SECS..=REALISTIC_MAX_DURATION_SECS);
                        jobs.push(job(&mut rng, &users, set, start, duration));
                    }
                }
            }
            // Make sure the anchor finds work in progress.
            for set in sets
                .iter()
                .filter(|s| s.user % REALISTIC_RUNNING_EVERY_NTH_USER == 0)
            {
                let start = anchor - Duration::seconds(rng.gen_range(60..20 * 60));
                let duration = rng.gen_range(30 * 60..90 * 60);
                jobs.push(job(&mut rng, &users, set, start, duration));
            }
        }
        Pace::Compressed => {
            for set in &sets {
                let start =
                    anchor + Duration::seconds(rng.gen_range(0..COMPRESSED_START_WINDOW_SECS));
                let duration =
                    rng.gen_range(COMPRESSED_MIN_DURATION_SECS..=COMPRESSED_MAX_DURATION_SECS);
                jobs.push(job(&mut rng, &users, set, start, duration));
            }
            // A demo should always have something to alert on.
            if let Some(first) = jobs.first_mut() {
                first.final_status = "RESTORE_STOP_BY_ERROR".to_owned();
            }
        }
    }
    // The job ID is the local start second: two jobs of one set may not share it (not
    // even across a daylight-saving fold), so later duplicates are dropped.
    let mut ids = HashSet::new();
    jobs.retain(|j| {
        ids.insert((
            j.login.clone(),
            j.backup_set_id.clone(),
            j.job_id(p.timezone),
        ))
    });
    jobs.sort_by(|a, b| {
        (a.start, &a.login, &a.backup_set_id).cmp(&(b.start, &b.login, &b.backup_set_id))
    });
    Workload { users, jobs }
}

/// A 13-digit id like the CBS's (creation time in epoch milliseconds).
fn epoch_ms_id(rng: &mut StdRng) -> String {
    rng.gen_range(1_500_000_000_000u64..1_750_000_000_000)
        .to_string()
}

fn job(
    rng: &mut StdRng,
    users: &[SimUser],
    set: &GenSet,
    start: DateTime<Utc>,
    duration_secs: i64,
) -> SimJob {
    let user = &users[set.user];
    let final_status = match rng.gen_range(0..100) {
        0..80 => "RESTORE_STOP_SUCCESS",
        80..88 => "RESTORE_STOP_SUCCESS_WITH_WARNING",
        88..92 => "RESTORE_STOP_SUCCESS_WITH_ERROR",
        92..96 => "RESTORE_STOP_BY_ERROR",
        96..98 => "RESTORE_STOP_BY_USER",
        _ => UNKNOWN_CODES[rng.gen_range(0..UNKNOWN_CODES.len())],
    }
    .to_owned();
    let partial = final_status != "RESTORE_STOP_SUCCESS";
    // Item lists: what was restored, and (for anything but a clean success) what was not.
    let mut lists = (Vec::new(), Vec::new());
    let names: &[&str] = match set.kind {
        SetKind::Files => &[],
        SetKind::Database => &["master", "sales", "crm"],
        SetKind::VirtualMachine => &["vm-web", "vm-db", "vm-mail"],
        SetKind::Mail => &["Public Folders", "Projects"],
    };
    for name in names {
        if partial && rng.gen_bool(0.3) {
            lists.1.push((*name).to_owned());
        } else {
            lists.0.push((*name).to_owned());
        }
    }
    let (success, missed) = lists;
    let empty = || Vec::new();
    let (sdb, mdb, svm, mvm, spf, mpf) = match set.kind {
        SetKind::Files => (empty(), empty(), empty(), empty(), empty(), empty()),
        SetKind::Database => (success, missed, empty(), empty(), empty(), empty()),
        SetKind::VirtualMachine => (empty(), empty(), success, missed, empty(), empty()),
        SetKind::Mail => (empty(), empty(), empty(), empty(), success, missed),
    };
    SimJob {
        login: user.login.clone(),
        owner: user.owner.clone(),
        user_id: user.user_id.clone(),
        backup_set_id: set.id.clone(),
        backup_set_name: set.name.to_owned(),
        start,
        end: Some(start + Duration::seconds(duration_secs)),
        final_status,
        size_bytes: rng.gen_range(0..50_000_000_000),
        client_version: CLIENT_VERSION.to_owned(),
        destination_id: Some(set.destination_id.clone()),
        success_databases: sdb,
        missed_databases: mdb,
        success_virtual_machines: svm,
        missed_virtual_machines: mvm,
        success_public_folders: spf,
        missed_public_folders: mpf,
        quirks: random_quirks(rng),
        listed_under: None,
    }
}

/// Mostly the vendor example's spelling, with every documented variant showing up.
fn random_quirks(rng: &mut StdRng) -> Quirks {
    Quirks {
        status_key_restore_job_status: rng.gen_bool(0.25),
        user_id_upper: rng.gen_bool(0.25),
        size_as_string: rng.gen_bool(0.25),
        dashed_times: rng.gen_bool(0.25),
        // Rare: it hides the set's name from the chat.
        set_name_as_bool: rng.gen_bool(0.03),
        omit_empty: rng.gen_bool(0.5),
        duplicate_status: rng.gen_bool(0.05),
        // The odd fields (unreadable sizes and times, items without an identity) only
        // where a test or scenario asks for them: a workload draws the same jobs as before.
        ..Quirks::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::job::Phase;
    use chrono::TimeZone;

    fn params(pace: Pace) -> GenParams {
        GenParams {
            users: 50,
            seed: 1,
            anchor: Utc.with_ymd_and_hms(2025, 3, 14, 10, 30, 0).unwrap(),
            pace,
            timezone: crate::test_data::berlin(),
        }
    }

    #[test]
    fn pace_from_the_command_line() {
        assert_eq!("compressed".parse(), Ok(Pace::Compressed));
        assert_eq!("Realistic".parse(), Ok(Pace::Realistic));
        assert!("fast".parse::<Pace>().unwrap_err().contains("\"fast\""));
    }

    #[test]
    fn users_and_owners() {
        let w = generate(&params(Pace::Realistic));
        assert_eq!(w.users.len(), 50);
        assert_eq!(w.users[0].login, "user001");
        assert_eq!(w.users[49].login, "user050");
        for owner in ["", "reseller-a", "reseller-b"] {
            assert!(w.users.iter().any(|u| u.owner == owner), "{owner:?}");
        }
    }

    #[test]
    fn realistic_covers_yesterday_and_today_with_running_jobs() {
        let p = params(Pace::Realistic);
        let w = generate(&p);
        let today = p.anchor.with_timezone(&p.timezone).date_naive();
        let dates: std::collections::BTreeSet<_> =
            w.jobs.iter().map(|j| j.listed_on(p.timezone)).collect();
        assert!(dates.contains(&today) && dates.contains(&(today - Duration::days(1))));
        assert!(dates
            .iter()
            .all(|d| *d >= today - Duration::days(1) && *d <= today));
        let running = w
            .jobs
            .iter()
            .filter(|j| j.phase(p.anchor) == Phase::Running);
        assert!(running.count() >= 5);
        let codes: std::collections::BTreeSet<_> =
            w.jobs.iter().map(|j| j.final_status.as_str()).collect();
        assert!(codes.contains("RESTORE_STOP_SUCCESS"));
        assert!(codes.contains("RESTORE_STOP_BY_ERROR"));
        assert!(codes.iter().any(|c| UNKNOWN_CODES.contains(c)));
    }

    #[test]
    fn compressed_jobs_start_soon_and_end_quickly() {
        let p = params(Pace::Compressed);
        let w = generate(&p);
        assert!(!w.jobs.is_empty());
        for j in &w.jobs {
            let after = (j.start - p.anchor).num_seconds();
            assert!(
                (0..COMPRESSED_START_WINDOW_SECS).contains(&after),
                "{after}"
            );
            let took = (j.end.unwrap() - j.start).num_seconds();
            assert!((COMPRESSED_MIN_DURATION_SECS..=COMPRESSED_MAX_DURATION_SECS).contains(&took));
        }
        assert!(w
            .jobs
            .iter()
            .any(|j| j.final_status == "RESTORE_STOP_BY_ERROR"));
    }

    #[test]
    fn job_ids_are_unique_per_backup_set() {
        for pace in [Pace::Realistic, Pace::Compressed] {
            let p = GenParams {
                users: 200,
                ..params(pace)
            };
            let w = generate(&p);
            let mut keys: Vec<_> = w
                .jobs
                .iter()
                .map(|j| (&j.login, &j.backup_set_id, j.job_id(p.timezone)))
                .collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), n);
        }
    }

    #[test]
    fn same_seed_same_workload_other_seed_other_workload() {
        let p = params(Pace::Realistic);
        assert_eq!(generate(&p), generate(&p));
        assert_ne!(generate(&p), generate(&GenParams { seed: 2, ..p }));
    }
}
