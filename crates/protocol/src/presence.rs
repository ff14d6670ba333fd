//! Phoenix Presence shapes: `presence_state` and `presence_diff`, keyed by agent name.

use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One presence of an agent (Phoenix's "meta").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceMeta {
    /// Unique per presence; Phoenix's `Presence` helper tells joins and leaves apart by it.
    pub phx_ref: String,
    /// The agent name (also the map key).
    pub agent_name: String,
    /// When the agent joined, ms since the Unix epoch.
    pub joined_at: Millis,
    /// Custom metadata given at join.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
}

/// All presences of one key: `{"metas": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// The presences, oldest first.
    pub metas: Vec<PresenceMeta>,
}

/// `presence_state`: agent name → its presences.
pub type PresenceState = BTreeMap<String, PresenceEntry>;

/// `presence_diff`: what joined and what left since the last state or diff.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// New presences.
    pub joins: PresenceState,
    /// Presences that ended.
    pub leaves: PresenceState,
}

impl PresenceDiff {
    /// A diff with one join.
    pub fn join(meta: PresenceMeta) -> Self {
        let mut diff = PresenceDiff::default();
        diff.joins
            .insert(meta.agent_name.clone(), PresenceEntry { metas: vec![meta] });
        diff
    }

    /// A diff with one leave.
    pub fn leave(meta: PresenceMeta) -> Self {
        let mut diff = PresenceDiff::default();
        diff.leaves
            .insert(meta.agent_name.clone(), PresenceEntry { metas: vec![meta] });
        diff
    }
}
