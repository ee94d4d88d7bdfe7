//! One store, several backup servers: a handle's scope (whose user states, watches and
//! single values it reads and writes), and the check at start-up that the store belongs to
//! the servers the configuration names.

use super::{Result, Store, StoreError};
use std::collections::BTreeSet;

const META_SERVER_NAME: &str = "server_name";
/// Every backup server the store has been used with.
const META_SERVER_NAMES: &str = "server_names";
/// The backup servers of the running configuration, in its order.
const META_SERVERS_CONFIGURED: &str = "servers_configured";

/// A backup server the store has job records of that the running configuration does not
/// name: removed, or renamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnconfiguredServer {
    pub name: String,
    /// Its jobs recorded as running: no poll asks for their end any more.
    pub running: usize,
}

impl UnconfiguredServer {
    /// What becomes of its jobs recorded as running, as a clause.
    pub fn running_text(&self) -> String {
        match self.running {
            0 => "none of its restores is recorded as running".to_owned(),
            1 => "its 1 restore recorded as running is no longer followed (its end is not \
                  alerted)"
                .to_owned(),
            n => format!(
                "its {n} restores recorded as running are no longer followed (their ends are \
                 not alerted)"
            ),
        }
    }
}

impl Store {
    /// A handle on the same database whose per-server poll state (user states, chat-added
    /// users, discovered users, the last cycle, the outage, the watched and erroring logins)
    /// is that of the backup server `name`, kept apart from the other servers'. Job
    /// records, the outbox and everything shared are the same. `None` (and the server that
    /// owns the plain names, see [`Store::check_server_names`]) keeps the plain names, so a
    /// single-server store is never re-keyed.
    pub fn for_server(&self, name: Option<&str>) -> Result<Store> {
        Ok(Store {
            scope: name.map(Into::into),
            shared: self.shared.clone(),
        })
    }

    /// [`Store::for_server`] for the backup server `name`: the plain names when it owns
    /// them (it is the store's first server, see [`Store::check_server_names`]). Call it
    /// after that check: before it, the store has no owner and every name gets the plain
    /// names.
    pub fn server_view(&self, name: &str) -> Result<Store> {
        let owner: Option<String> = self.meta_get(META_SERVER_NAME)?;
        if owner.as_deref().is_none_or(|owner| owner == name) {
            self.for_server(None)
        } else {
            self.for_server(Some(name))
        }
    }

    /// A single value's key in `meta` for this handle's server.
    pub(super) fn meta_key(&self, key: &str) -> String {
        match &self.scope {
            Some(server) => format!("server@{server}:{key}"),
            None => key.to_owned(),
        }
    }

    /// A tree of this handle's server: `name` itself for the plain names, `name@server`
    /// for another server (user states, chat-added users, discovery's list and status).
    pub fn server_tree(&self, name: &str) -> Result<sled::Tree> {
        match &self.scope {
            Some(server) => self.tree(&format!("{name}@{server}")),
            None => self.tree(name),
        }
    }

    /// [`Store::check_server_names`] for a single backup server.
    pub fn check_server_name(&self, name: &str) -> Result<(), String> {
        self.check_server_names(&[name]).map(|_| ())
    }

    /// Checks that the store belongs to the backup servers `names` (the config's order),
    /// stamping a store that has no names yet, and returns the server that owns the plain
    /// (unscoped) poll state: the store's first server, so a single-server store that gains
    /// a second server keeps its state and never re-keys a job. Every job key starts with
    /// its server's name: a configuration naming none of the servers the store knows would
    /// see every job as new and alert it again, so it is refused with the names and the key
    /// to set. A server the store knows that the config no longer names is kept known; one
    /// that leaves with jobs recorded as running while a new name joins is refused as a
    /// rename (see `check_no_rename`).
    pub fn check_server_names(&self, names: &[&str]) -> Result<String, String> {
        let err = |e: StoreError| e.to_string();
        let stamped: Option<String> = self.meta_get(META_SERVER_NAME).map_err(err)?;
        let owner = match stamped {
            Some(owner) => Some(owner),
            // A store from before the stamp (or whose stamp was unreadable): its job keys
            // say whose it is. Any record of ours will do; else the first other server's.
            None => {
                let jobs = self.t().map_err(err)?.jobs.clone();
                let ours = names.iter().find(|name| {
                    let prefix = format!("{name}\0");
                    jobs.scan_prefix(prefix.as_bytes()).next().is_some()
                });
                match ours {
                    Some(name) => Some(name.to_string()),
                    None => jobs.iter().keys().find_map(|k| {
                        let k = k.ok()?;
                        let sep = k.iter().position(|b| *b == 0)?;
                        Some(String::from_utf8_lossy(&k[..sep]).into_owned())
                    }),
                }
            }
        };
        let mut known: BTreeSet<String> = self
            .meta_get(META_SERVER_NAMES)
            .map_err(err)?
            .unwrap_or_default();
        known.extend(owner.clone());
        if !known.is_empty() && !names.iter().any(|n| known.contains(*n)) {
            let known: Vec<&String> = known.iter().collect();
            return Err(match (known.as_slice(), names) {
                ([known], [name]) => format!(
                    "the state store was made for the backup server named {known:?}, but this \
                     configuration names it {name:?}; every job would be seen as new and \
                     alerted again. If it is the same server (say cbs.url moved from an IP \
                     address to a DNS name), set cbs.server_name = {known:?}; if it is another \
                     server, use another state.path"
                ),
                _ => format!(
                    "the state store was made for the backup servers named {known:?}, but this \
                     configuration names {names:?}, none of them; every job would be seen as \
                     new and alerted again. If they are the same servers, set their cbs.name \
                     (or cbs.server_name) to the names above; if not, use another state.path"
                ),
            });
        }
        self.check_no_rename(names, &known)?;
        let owner =
            owner.unwrap_or_else(|| names.first().map_or_else(String::new, |n| n.to_string()));
        known.extend(names.iter().map(|n| n.to_string()));
        self.meta_put(META_SERVER_NAME, &owner).map_err(err)?;
        self.meta_put(META_SERVER_NAMES, &known).map_err(err)?;
        let names: Vec<&str> = names.to_vec();
        self.meta_put(META_SERVERS_CONFIGURED, &names)
            .map_err(err)?;
        Ok(owner)
    }

    /// Refuses the one change of servers that loses an alert without a word: in the same
    /// start, a server of the last configuration with jobs recorded as running leaves it
    /// and a server the store has never seen joins it. That is how a rename looks (job
    /// keys start with the server's name): the new name would start with a baseline, the
    /// running jobs would no longer be followed, and their failures would be recorded
    /// under the new name without an alert. A server removed on its own is only warned
    /// about (see [`Store::unconfigured_servers`]), so the way out when it really is
    /// another server is a start without the new one, then one with it. `known`: the
    /// servers the store knows, before this start's.
    fn check_no_rename(&self, names: &[&str], known: &BTreeSet<String>) -> Result<(), String> {
        let appeared: Vec<&str> = (names.iter().copied())
            .filter(|n| !known.contains(*n))
            .collect();
        if appeared.is_empty() {
            return Ok(());
        }
        let err = |e: StoreError| e.to_string();
        // A store from before the configured list was kept: any server it knows.
        let mut previous = self.configured_servers().map_err(err)?;
        if previous.is_empty() {
            previous = known.iter().cloned().collect();
        }
        let left: Vec<UnconfiguredServer> = (self.unconfigured_among(known, names))
            .map_err(err)?
            .into_iter()
            .filter(|s| s.running > 0 && previous.contains(&s.name))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        let quoted = |names: &mut dyn Iterator<Item = &str>| {
            names
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let left_text: Vec<String> = left
            .iter()
            .map(|s| {
                format!(
                    "{:?} ({} recorded as running)",
                    s.name,
                    crate::render::plural(s.running as u64, "restore", "restores")
                )
            })
            .collect();
        let old = quoted(&mut left.iter().map(|s| s.name.as_str()));
        let new = quoted(&mut appeared.iter().copied());
        Err(format!(
            "backup server {} left the configuration and {new} joined it, new to the state \
             store: if a server was renamed, its running restores would no longer be followed \
             and their failures would be recorded under the new name without an alert. If it \
             is the same server, put its old name back ({old}, in cbs.name or \
             cbs.server_name); if {old} is gone for good and {new} is another server, start \
             once without {new} (a warning then names {old}), then add it",
            left_text.join(", "),
        ))
    }

    /// The servers the store has job records of that `names` (the running configuration)
    /// leaves out, removed or renamed, with their jobs recorded as running, which nobody
    /// polls for any more. A server whose records have all been pruned is not listed.
    pub fn unconfigured_servers(&self, names: &[&str]) -> Result<Vec<UnconfiguredServer>> {
        let mut known: BTreeSet<String> = self.meta_get(META_SERVER_NAMES)?.unwrap_or_default();
        known.extend(self.meta_get::<String>(META_SERVER_NAME)?);
        self.unconfigured_among(&known, names)
    }

    /// [`Store::unconfigured_servers`] among the servers `known`.
    fn unconfigured_among(
        &self,
        known: &BTreeSet<String>,
        names: &[&str],
    ) -> Result<Vec<UnconfiguredServer>> {
        let mut left = Vec::new();
        let t = self.t()?;
        for name in known.iter().filter(|k| !names.contains(&k.as_str())) {
            let prefix = format!("{name}\0");
            if t.jobs.scan_prefix(prefix.as_bytes()).next().is_none() {
                continue;
            }
            let running = t.running.scan_prefix(prefix.as_bytes()).count();
            left.push(UnconfiguredServer {
                name: name.clone(),
                running,
            });
        }
        Ok(left)
    }

    /// The backup servers the running configuration names, in its order (as the last
    /// [`Store::check_server_names`] was told; empty before it ran). The digest and
    /// `/status` name the server when there are several.
    pub fn configured_servers(&self) -> Result<Vec<String>> {
        Ok(self.meta_get(META_SERVERS_CONFIGURED)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{classes, day, job, policy};
    use super::*;
    use crate::cbs::model::RestoreJob;

    /// Records a job of `server`, running (`end` `None`) or ended.
    fn record(store: &Store, server: &str, id: &str, end: Option<&str>) {
        let raw = if end.is_some() {
            "RESTORE_STOP_BY_ERROR"
        } else {
            "RESTORE_RUNNING"
        };
        let job = RestoreJob {
            server: server.into(),
            ..job(id, raw, end)
        };
        store
            .observe(&job, day(), &policy(&classes(), 14, false))
            .unwrap();
    }

    fn left(store: &Store, names: &[&str]) -> Vec<(String, usize)> {
        (store.unconfigured_servers(names).unwrap().into_iter())
            .map(|s| (s.name, s.running))
            .collect()
    }

    #[test]
    fn a_server_left_out_of_the_config_is_listed_with_its_running_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.check_server_names(&["a", "b", "c"]).unwrap();
        record(&store, "a", "2024-06-26-09-00-00", None);
        record(&store, "b", "2024-06-26-10-00-00", None);
        record(
            &store,
            "b",
            "2024-06-26-11-00-00",
            Some("2024-06-26 11:30:00"),
        );
        assert_eq!(left(&store, &["a", "b", "c"]), []);
        // c has no records: nothing to say about it.
        store.check_server_names(&["a"]).unwrap();
        assert_eq!(left(&store, &["a"]), [("b".to_owned(), 1)]);
        // The store's first server (the plain poll state) is listed as any other.
        store.check_server_names(&["b"]).unwrap();
        assert_eq!(left(&store, &["b"]), [("a".to_owned(), 1)]);
    }

    #[test]
    fn a_rename_of_a_server_with_a_running_job_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.check_server_names(&["a", "b"]).unwrap();
        record(&store, "b", "2024-06-26-10-00-00", None);
        let err = store.check_server_names(&["a", "b2"]).unwrap_err();
        assert!(
            err.contains("\"b\" (1 restore recorded as running)")
                && err.contains("and \"b2\" joined"),
            "{err}"
        );
        assert_eq!(
            store.configured_servers().unwrap(),
            ["a", "b"],
            "a refused start changes nothing"
        );
        // A server that only joins, or one that only leaves, is no rename.
        store.check_server_names(&["a", "b", "c"]).unwrap();
        store.check_server_names(&["a", "c"]).unwrap();
        // b left in an earlier start: a new name now is another server.
        store.check_server_names(&["a", "c", "b2"]).unwrap();
    }

    #[test]
    fn a_rename_of_a_server_with_no_running_job_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.check_server_names(&["a", "b"]).unwrap();
        record(
            &store,
            "b",
            "2024-06-26-10-00-00",
            Some("2024-06-26 10:30:00"),
        );
        store.check_server_names(&["a", "b2"]).unwrap();
        assert_eq!(left(&store, &["a", "b2"]), [("b".to_owned(), 0)]);
    }
}
