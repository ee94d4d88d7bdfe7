//! [`World`], the simulated server's data and knobs: its users and jobs, a per-login index
//! of the jobs kept in step with every change, and the faults it is told to show.

use super::super::faults::{FaultDice, Faults, LoginFault};
use super::super::job::{SimJob, SimUser};
use super::ReportFault;
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap};

/// The simulated server's data and knobs.
pub(crate) struct World {
    pub users: BTreeMap<String, SimUser>,
    /// Every job; read through [`World::jobs`], changed through the methods below, which
    /// keep `by_login` in step.
    jobs: Vec<SimJob>,
    /// Indices into `jobs` by lowercased login: a request reads its user's jobs, not every
    /// job of a 10,000-user server under the lock.
    by_login: HashMap<String, Vec<usize>>,
    pub login_faults: HashMap<String, LoginFault>,
    /// Faults of one login on one `RestoreDate`.
    pub login_date_faults: HashMap<(String, NaiveDate), LoginFault>,
    pub dice: FaultDice,
    pub password_expired: bool,
    /// `2/ListUsers.do` answers as to a Read-Only API system user.
    pub list_users_denied: bool,
    /// Resellers `2/ListUsers.do` answers "not found" for (deleted or renamed).
    pub missing_resellers: std::collections::BTreeSet<String>,
    /// Characters of filler each `2/ListUsers.do` item carries, standing in for the many
    /// fields a real listing has per user.
    pub list_users_padding: usize,
    /// Every JSON reply starts with a UTF-8 byte order mark (as some servers and proxies
    /// send it).
    pub byte_order_mark: bool,
    /// Set: `GetRestoreJobReport.do` fails this way.
    pub report_fault: Option<ReportFault>,
    /// `GetRestoreJobReport.do` requests received.
    pub report_requests: u64,
}

impl World {
    pub fn new(faults: Faults) -> Self {
        Self {
            users: BTreeMap::new(),
            jobs: Vec::new(),
            by_login: HashMap::new(),
            login_faults: HashMap::new(),
            login_date_faults: HashMap::new(),
            dice: FaultDice::new(faults),
            password_expired: false,
            list_users_denied: false,
            missing_resellers: Default::default(),
            list_users_padding: 0,
            byte_order_mark: false,
            report_fault: None,
            report_requests: 0,
        }
    }

    /// Adds a job, registering its user when the server does not know it yet.
    pub fn add_job(&mut self, job: SimJob) {
        self.users
            .entry(job.login.clone())
            .or_insert_with(|| SimUser {
                login: job.login.clone(),
                owner: job.owner.clone(),
                user_id: job.user_id.clone(),
            });
        self.by_login
            .entry(job.login.to_ascii_lowercase())
            .or_default()
            .push(self.jobs.len());
        self.jobs.push(job);
    }

    pub fn jobs(&self) -> &[SimJob] {
        &self.jobs
    }

    /// The jobs of `login`, its case ignored (as AhsayCBS does).
    pub fn jobs_of(&self, login: &str) -> impl Iterator<Item = &SimJob> {
        (self.by_login.get(&login.to_ascii_lowercase()).into_iter())
            .flatten()
            .map(|&i| &self.jobs[i])
    }

    /// Changes the jobs in place (any change: the index is built again after).
    pub fn edit_jobs(&mut self, edit: impl FnOnce(&mut Vec<SimJob>)) {
        edit(&mut self.jobs);
        let mut by_login: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, job) in self.jobs.iter().enumerate() {
            by_login
                .entry(job.login.to_ascii_lowercase())
                .or_default()
                .push(i);
        }
        self.by_login = by_login;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn job(login: &str, set: &str) -> SimJob {
        let start = Utc.with_ymd_and_hms(2024, 6, 26, 9, 0, 0).unwrap();
        SimJob::new(login, set, start, None, "RESTORE_STOP_SUCCESS")
    }

    fn sets(world: &World, login: &str) -> Vec<String> {
        let jobs = world.jobs_of(login);
        jobs.map(|j| j.backup_set_id.clone()).collect()
    }

    /// The per-login index follows every change of the jobs, and ignores case.
    #[test]
    fn jobs_of_a_login_follow_adds_and_edits() {
        let mut world = World::new(Faults::default());
        world.add_job(job("Alice", "1"));
        world.add_job(job("bob", "2"));
        world.add_job(job("alice", "3"));
        assert_eq!(sets(&world, "ALICE"), ["1", "3"]);
        assert_eq!(sets(&world, "bob"), ["2"]);
        assert!(sets(&world, "carol").is_empty());
        world.edit_jobs(|jobs| jobs.retain(|j| j.backup_set_id != "1"));
        assert_eq!(sets(&world, "alice"), ["3"]);
        assert_eq!(sets(&world, "bob"), ["2"]);
        world.edit_jobs(Vec::clear);
        assert!(sets(&world, "bob").is_empty());
    }
}
