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

impl Store {
    /// A handle on the same database whose per-server poll state (user states, chat-added
    /// users, discovered users, the last cycle, the outage, the watched and erroring logins)
    /// is that of the backup server `name`, kept apart from the other servers'. Job
    /// records, the outbox and everything shared are the same. `None` (and the server that
    /// owns the plain names, see [`Store::check_server_names`]) keeps the plain names, so a
    /// single-server store is never re-keyed.
    pub fn for_server(&self, name: Option<&str>) -> Result<Store> {
        let Some(name) = name else {
            return Ok(Store {
                scope: None,
                users: self.db.open_tree("users")?,
                watch: self.db.open_tree("watch")?,
                ..self.clone()
            });
        };
        Ok(Store {
            scope: Some(name.into()),
            users: self.db.open_tree(format!("users@{name}"))?,
            watch: self.db.open_tree(format!("watch@{name}"))?,
            ..self.clone()
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
    /// for another server (discovery's list and status).
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
    /// to set. A server the store knows that the config no longer names is kept known.
    pub fn check_server_names(&self, names: &[&str]) -> Result<String, String> {
        let err = |e: StoreError| e.to_string();
        let stamped: Option<String> = self.meta_get(META_SERVER_NAME).map_err(err)?;
        let owner = match stamped {
            Some(owner) => Some(owner),
            // A store from before the stamp (or whose stamp was unreadable): its job keys
            // say whose it is. Any record of ours will do; else the first other server's.
            None => {
                let ours = names.iter().find(|name| {
                    let prefix = format!("{name}\0");
                    self.jobs.scan_prefix(prefix.as_bytes()).next().is_some()
                });
                match ours {
                    Some(name) => Some(name.to_string()),
                    None => self.jobs.iter().keys().find_map(|k| {
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

    /// The backup servers the running configuration names, in its order (as the last
    /// [`Store::check_server_names`] was told; empty before it ran). The digest and
    /// `/status` name the server when there are several.
    pub fn configured_servers(&self) -> Result<Vec<String>> {
        Ok(self.meta_get(META_SERVERS_CONFIGURED)?.unwrap_or_default())
    }
}
