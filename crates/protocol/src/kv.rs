//! Channel storage: a key-value store per channel, with a version per key for compare-and-set,
//! optional expiry, and change events for the agents that ask for them.

use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Most bytes of a key.
pub const MAX_KEY_LEN: usize = 256;
/// Most entries one `kv_list` returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Checks a key: 1–256 bytes, no control characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && !key.chars().any(char::is_control)
}

/// `kv_put`: write a value. With `version`, only if the key is at that version (0: only if
/// absent); else `version_conflict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvPut {
    /// The key.
    pub key: String,
    /// Any JSON value.
    pub value: Box<RawValue>,
    /// Compare-and-set: the version the key must have now (0: must not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Remove the entry this many seconds after the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// `kv_get` and `kv_delete` payload (`version` only for `kv_delete`: compare-and-delete).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvKey {
    /// The key.
    pub key: String,
    /// `kv_delete` only: the version the key must have now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// `kv_list`: keys in order, by prefix, a page at a time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KvList {
    /// Only keys starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Only keys after this one (the `next` of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A stored entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Box<RawValue>,
    /// Starts at 1; every write adds 1.
    pub version: u64,
    /// When it was written, ms.
    pub updated_at: Millis,
    /// The agent (or `http`) that wrote it.
    pub updated_by: String,
    /// When it expires, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}

/// A page of `kv_list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KvPage {
    /// Entries in key order.
    pub entries: Vec<KvEntry>,
    /// The `after` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `kv_change` event: sent to the channel's agents that joined with `kv_events: true`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KvChange {
    /// The key.
    pub key: String,
    /// The new version (for a delete: the version deleted).
    pub version: u64,
    /// The new value; absent for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Box<RawValue>>,
    /// Who wrote it.
    pub updated_by: String,
    /// `put` or `delete`.
    pub op: KvOp,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvOp {
    /// Written.
    Put,
    /// Deleted.
    Delete,
}

impl PartialEq for KvChange {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
            && self.version == o.version
            && self.value.as_ref().map(|v| v.get()) == o.value.as_ref().map(|v| v.get())
            && self.updated_by == o.updated_by
            && self.op == o.op
    }
}
