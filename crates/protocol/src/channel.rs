//! Channel management over HTTP: creating a channel and describing one.

use crate::{Millis, Scope};
use serde::{Deserialize, Serialize};

/// Whether a channel stores its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoragePolicy {
    /// Messages get offsets and are stored (default).
    #[default]
    Persistent,
    /// Messages reach connected agents only; nothing is stored.
    Ephemeral,
}

/// How long a channel keeps its messages; absent or 0 means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Most messages kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// Oldest message age, in seconds.
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
