//! The quarantine: records that do not decode are moved, raw bytes kept, to a tree of their
//! own, logged once and counted, so that a bad record never stops the loop.

use super::record::decode;
use super::{Result, Store};
use serde::de::DeserializeOwned;

/// A record moved to the quarantine tree: where it was and its bytes as they were.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub tree: String,
    pub key: Vec<u8>,
    pub raw: Vec<u8>,
}

/// The tree records that do not decode are moved to.
pub const QUARANTINE_TREE: &str = "quarantine";

impl Store {
    /// Decodes a record, or moves it to the quarantine tree and answers `None`.
    pub(super) fn decode_or_quarantine<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<Option<T>> {
        match decode(key, bytes) {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                self.quarantine(tree, key, bytes, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Moves a record that cannot be used out of `tree` into the quarantine tree, raw
    /// bytes kept under `tree \0 key`, and logs it once at error. The caller carries on
    /// without it.
    pub fn quarantine(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        bytes: &[u8],
        reason: &str,
    ) -> Result<()> {
        let mut qkey = tree.name().to_vec();
        qkey.push(0);
        qkey.extend_from_slice(key);
        self.t()?.quarantine.insert(qkey, bytes)?;
        tree.remove(key)?;
        crate::metrics::quarantined();
        tracing::error!(
            tree = %String::from_utf8_lossy(&tree.name()),
            key = %String::from_utf8_lossy(key).replace('\0', "/"),
            bytes = bytes.len(),
            %reason,
            "a stored record does not decode; moved it to the quarantine tree and carrying on"
        );
        Ok(())
    }

    /// How many records have been quarantined (see [`Store::quarantine`]).
    pub fn quarantined(&self) -> Result<usize> {
        Ok(self.t()?.quarantine.len())
    }

    /// The quarantined records.
    pub fn quarantined_records(&self) -> Result<Vec<Quarantined>> {
        self.t()?
            .quarantine
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let sep = k.iter().position(|b| *b == 0).unwrap_or(k.len());
                Ok(Quarantined {
                    tree: String::from_utf8_lossy(&k[..sep]).into_owned(),
                    key: k.get(sep + 1..).unwrap_or_default().to_vec(),
                    raw: v.to_vec(),
                })
            })
            .collect()
    }
}
