//! Channel management over HTTP: creating a channel and describing one.

use crate::{Millis, Scope};
use serde::{Deserialize, Serialize};

/// The storage tiers a channel keeps its messages in. Each policy adds a tier to the one
/// before it: `ephemeral` (none), `cache` (memory), `log` (memory and the durable log),
/// `persistent` (memory, log and database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoragePolicy {
    /// Cache, log and database (default): messages are acknowledged once in the log and
    /// kept permanently (or per retention) in the database.
    #[default]
    #[serde(alias = "all")]
    Persistent,
    /// Messages reach connected agents only; nothing is stored, nothing has an offset.
    Ephemeral,
    /// Messages get offsets and live in the in-memory cache only: fast resume, no
    /// durability (a restart starts a new epoch).
    Cache,
    /// Cache and durable log: acknowledged once in the log, kept for the log's retention,
    /// never written to the database.
    Log,
}

impl StoragePolicy {
    /// Whether messages get offsets and can be read back (every policy but `ephemeral`).
    pub fn keeps_messages(self) -> bool {
        self != StoragePolicy::Ephemeral
    }

    /// Whether messages go to the durable log (and are acknowledged only once there).
    pub fn uses_log(self) -> bool {
        matches!(self, StoragePolicy::Log | StoragePolicy::Persistent)
    }

    /// Whether messages are written to the database tier.
    pub fn uses_database(self) -> bool {
        self == StoragePolicy::Persistent
    }

    /// The policy's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoragePolicy::Persistent => "persistent",
            StoragePolicy::Ephemeral => "ephemeral",
            StoragePolicy::Cache => "cache",
            StoragePolicy::Log => "log",
        }
    }
}

/// How long a channel keeps its messages; absent or 0 means unlimited (or, for the tier
/// limits, the server's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Most messages kept (every tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// Oldest message age, in seconds (every tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// The in-memory cache's bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheRetention>,
    /// The durable log's retention for this channel (older messages are then read from the
    /// database, if the channel keeps one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogRetention>,
}

/// The cache tier's bounds for one channel; each absent or 0 takes the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRetention {
    /// Most messages held in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// Most bytes (encoded frames) held in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Messages older than this many seconds leave the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// The log tier's retention for one channel; absent or 0: the log's own (server-wide)
/// retention only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRetention {
    /// Messages older than this many seconds are no longer read from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
}

/// The body of `POST /v1/channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    /// The channel name.
    pub name: String,
    /// `private` (default) or `public`.
    #[serde(default)]
    pub scope: Scope,
    /// Password agents must give to join (stored Argon2id-hashed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Storage policy (default persistent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StoragePolicy>,
    /// Retention (default: the server's `[storage]` defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// A team channel: only these agent names may join (at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// The channel completes itself at this time (ms): members are told, connections leave,
    /// messages and storage are purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}

impl CreateChannel {
    /// A private, persistent channel with the server's default retention and no password.
    pub fn new(name: impl Into<String>) -> Self {
        CreateChannel {
            name: name.into(),
            scope: Scope::Private,
            password: None,
            storage: None,
            retention: None,
            members: None,
            expires_at: None,
        }
    }
}

/// A channel as the HTTP API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The channel name.
    pub name: String,
    /// The channel's scope.
    pub scope: Scope,
    /// Offsets are comparable only within one epoch.
    pub epoch: String,
    /// The last persisted offset (0 when none).
    pub head: u64,
    /// The oldest offset still stored (`head + 1` when none is).
    pub first_available: u64,
    /// Storage policy.
    pub storage: StoragePolicy,
    /// Retention in force (0 = unlimited).
    pub retention: Retention,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_at: Millis,
    /// Agents present now.
    pub agents: u64,
    /// A team channel's members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// When a team channel completes itself, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}
