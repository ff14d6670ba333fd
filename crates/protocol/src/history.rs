//! Reading history: the `history` event's payload and reply (also the HTTP history query).

use crate::{Message, Millis};
use serde::{Deserialize, Serialize};

/// Which end of the range a history read starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Oldest first from the lower bound (default).
    #[default]
    Forward,
    /// Newest first from the upper bound: "the last N messages".
    Backward,
}

/// A history read. Every bound is inclusive; absent bounds are open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// Lowest offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_offset: Option<u64>,
    /// Highest offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_offset: Option<u64>,
    /// Earliest timestamp (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ts: Option<Millis>,
    /// Latest timestamp (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ts: Option<Millis>,
    /// Only messages from this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Only messages of this type.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub kind: Option<String>,
    /// At most this many messages (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `forward` (default) or `backward`.
    #[serde(default)]
    pub direction: Direction,
}

/// The reply to a history read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Matching messages in the requested direction. Messages sent directly to other agents
    /// are visible only to their sender and recipient (and to the tenant's HTTP key).
    pub messages: Vec<Message>,
    /// The channel's epoch.
    pub epoch: String,
    /// The channel's last persisted offset.
    pub head: u64,
    /// The oldest offset the channel still has (head + 1 when empty).
    pub first_available: u64,
    /// Set when `limit` cut the read short: repeat with this as the next bound
    /// (`from_offset` going forward, `to_offset` going backward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}
