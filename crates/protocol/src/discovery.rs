//! Discovery: agents `announce` what they can do (capabilities) and metadata about themselves;
//! `discover` finds the tenant's agents by capability and metadata, with their online status.
//! Changes go out as ephemeral `agent` messages on the tenant's [`DISCOVERY_CHANNEL`].

use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The channel whose members receive every change of the tenant's agent directory, as
/// ephemeral messages of type [`AGENT_MESSAGE_TYPE`] with an [`AgentUpdate`] as data. Only the
/// server publishes there.
pub const DISCOVERY_CHANNEL: &str = "sys.discovery";
/// Channel names with this prefix are the server's: agents may join them, not publish.
pub const SYSTEM_CHANNEL_PREFIX: &str = "sys.";
/// The message type of directory changes on [`DISCOVERY_CHANNEL`].
pub const AGENT_MESSAGE_TYPE: &str = "agent";
/// Most capabilities one agent announces.
pub const MAX_CAPABILITIES: usize = 32;
/// Longest capability, in bytes.
pub const MAX_CAPABILITY_LEN: usize = 64;
/// Largest metadata object, in serialized bytes.
pub const MAX_AGENT_METADATA_BYTES: usize = 4096;
/// Most filters in one `discover`.
pub const MAX_FILTERS: usize = 16;
/// Largest `limit` of one `discover`.
pub const MAX_DISCOVER_LIMIT: u32 = 1000;

/// `announce` push (and the body of `PUT /v1/agents/{name}`): replaces the agent's card.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// What the agent can do, e.g. `["translate", "summarize"]`.
    pub capabilities: Vec<String>,
    /// Anything else: status, price, reputation… (a JSON object).
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// `update_metadata` push: replaces the metadata of an announced agent, keeps its
/// capabilities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMetadata {
    /// The new metadata.
    pub metadata: Map<String, Value>,
}

/// `discover` push (and the body of `POST /v1/agents/discover`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    /// Only agents with this capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// Metadata conditions, all of which must hold: `{"field": value}` (equal to the value)
    /// or `{"field": {"min"?: n, "max"?: n}}` (a number within the bounds, inclusive).
    /// `field` may be a dotted path into nested objects.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub filters: Map<String, Value>,
    /// Only agents online (true) or offline (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// At most this many, by name (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// An announced agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCard {
    /// Its agent name.
    pub name: String,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// Its metadata.
    pub metadata: Map<String, Value>,
    /// Whether it is present in one of the tenant's channels now.
    pub online: bool,
    /// When it last announced or updated its metadata (ms).
    pub updated_at: Millis,
}

/// The reply of `discover`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovered {
    /// The matching agents, by name.
    pub agents: Vec<AgentCard>,
}

/// What changed about an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentChange {
    /// It announced itself (again).
    Announced,
    /// Its metadata changed.
    Updated,
    /// It came online.
    Online,
    /// It went offline.
    Offline,
    /// Its card was deleted.
    Removed,
}

/// The data of an `agent` message on [`DISCOVERY_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUpdate {
    /// What changed.
    pub change: AgentChange,
    /// The agent as it is now.
    pub agent: AgentCard,
}

/// Whether `card` passes `query`'s capability, online and metadata conditions.
pub fn matches(query: &Discover, card: &AgentCard) -> bool {
    if let Some(capability) = &query.capability
        && !card.capabilities.contains(capability)
    {
        return false;
    }
    if query.online.is_some_and(|online| online != card.online) {
        return false;
    }
    query.filters.iter().all(|(path, condition)| {
        let Some(value) = lookup(&card.metadata, path) else {
            return false;
        };
        match range(condition) {
            Some((min, max)) => value
                .as_f64()
                .is_some_and(|v| min.is_none_or(|min| v >= min) && max.is_none_or(|max| v <= max)),
            None => value == condition,
        }
    })
}

/// `{"min"?: n, "max"?: n}` with at least one bound: a numeric range.
fn range(condition: &Value) -> Option<(Option<f64>, Option<f64>)> {
    let object = condition.as_object()?;
    if object.is_empty() || object.keys().any(|k| k != "min" && k != "max") {
        return None;
    }
    let bound = |k: &str| object.get(k).map(Value::as_f64);
    match (bound("min"), bound("max")) {
        (Some(None), _) | (_, Some(None)) => None,
        (min, max) => Some((min.flatten(), max.flatten())),
    }
}

fn lookup<'a>(metadata: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = metadata.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = metadata.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card(capabilities: &[&str], metadata: Value, online: bool) -> AgentCard {
        AgentCard {
            name: "a".into(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            metadata: metadata.as_object().unwrap().clone(),
            online,
            updated_at: 0,
        }
    }

    fn query(v: Value) -> Discover {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn filters_by_capability_online_equality_and_range() {
        let c = card(
            &["translate", "summarize"],
            json!({"status": "idle", "price": 5, "stats": {"reputation": 4.5}, "tier": {"max": 1}}),
            true,
        );
        assert!(matches(&query(json!({})), &c));
        assert!(matches(&query(json!({"capability": "translate"})), &c));
        assert!(!matches(&query(json!({"capability": "draw"})), &c));
        assert!(!matches(&query(json!({"online": false})), &c));
        assert!(matches(&query(json!({"filters": {"status": "idle"}})), &c));
        assert!(!matches(&query(json!({"filters": {"status": "busy"}})), &c));
        assert!(matches(
            &query(json!({"filters": {"price": {"max": 5}}})),
            &c
        ));
        assert!(!matches(
            &query(json!({"filters": {"price": {"min": 6}}})),
            &c
        ));
        assert!(matches(
            &query(json!({"filters": {"stats.reputation": {"min": 4}}})),
            &c
        ));
        assert!(!matches(&query(json!({"filters": {"missing": 1}})), &c));
        // A non-numeric value never satisfies a range, and an object of numeric min/max is
        // always a range; with a bound that is not a number it is an equality.
        assert!(!matches(
            &query(json!({"filters": {"status": {"min": 1}}})),
            &c
        ));
        assert!(!matches(
            &query(json!({"filters": {"tier": {"max": 1}}})),
            &c
        ));
        assert!(!matches(
            &query(json!({"filters": {"tier": {"max": "x"}}})),
            &c
        ));
        let odd = card(&[], json!({"tier": {"max": "x"}}), true);
        assert!(matches(
            &query(json!({"filters": {"tier": {"max": "x"}}})),
            &odd
        ));
    }
}
