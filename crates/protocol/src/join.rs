//! Joining a channel: the `phx_join` payload and its reply.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a channel name lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The tenant's own namespace (default): other tenants' channels of the same name are others.
    #[default]
    Private,
    /// One namespace shared by every tenant (demos, lobbies).
    Public,
}

impl Scope {
    /// The scope as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Private => "private",
            Scope::Public => "public",
        }
    }
}

fn yes() -> bool {
    true
}

/// The `phx_join` payload of a `channel:<name>` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinParams {
    /// This agent's name, unique in the channel at a time.
    pub agent_name: String,
    /// The channel password; sets it when this join creates the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `private` (default) or `public`.
    #[serde(default)]
    pub scope: Scope,
    /// Replay every persisted message after this offset before live delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The epoch `since` refers to; a different current epoch is reported as a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Deliver only messages of these types (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// Deliver this agent's own messages back to it (default true).
    #[serde(default = "yes")]
    pub echo: bool,
    /// Receive `presence_state` and `presence_diff` (default true). Agents that do not need
    /// presence, in big channels especially, set false: the state sent on join grows with
    /// the channel. The agent is tracked and visible to others either way.
    #[serde(default = "yes")]
    pub presence: bool,
    /// Custom presence metadata (a JSON object, at most 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    /// The session id of an earlier join of this agent: takes its name over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Take part in the WebRTC signaling relay: send and receive `signal` pushes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_webrtc_relay: bool,
    /// Receive `kv_change` events when the channel's storage changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kv_events: bool,
    /// Consume this agent's inbox: persisted direct messages to it arrive as `new_message`
    /// and wait for `ack` or `reject`, instead of arriving as `message`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inbox: bool,
    /// The tier this connection's history reads on the channel use when they name none
    /// (absent: `AUTO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_source: Option<crate::history::PollSource>,
}

impl JoinParams {
    /// Join parameters for `agent_name` with every other field at its default.
    pub fn new(agent_name: impl Into<String>) -> Self {
        JoinParams {
            agent_name: agent_name.into(),
            password: None,
            scope: Scope::Private,
            enable_webrtc_relay: false,
            kv_events: false,
            inbox: false,
            poll_source: None,
            since: None,
            epoch: None,
            event_types: None,
            echo: true,
            presence: true,
            meta: None,
            session_id: None,
        }
    }
}

/// Why a resume could not replay everything after `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// Retention removed messages after `since`.
    Retention,
    /// The channel's history was reset (new epoch): offsets restarted.
    EpochChanged,
}

/// An explicit hole in a resume: replay starts at `first_available`, not at `since + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Why the gap exists.
    pub reason: GapReason,
    /// The first offset the channel still has (replay starts here).
    pub first_available: u64,
}

/// The `response` of a successful join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinReply {
    /// The channel name.
    pub channel: String,
    /// The channel's scope.
    pub scope: Scope,
    /// The agent name now held by this session.
    pub agent_name: String,
    /// Present this id in a later join to take the agent name over (reconnect).
    pub session_id: String,
    /// The channel's epoch: offsets are comparable only within one epoch.
    pub epoch: String,
    /// The channel's last persisted offset at join time (0 when empty); with `since`, every
    /// message up to here is replayed before live ones.
    pub head: u64,
    /// Whether the channel stores messages (false for ephemeral-only channels).
    pub persistent: bool,
    /// Set when `since` reaches behind what the channel still has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let p: JoinParams = serde_json::from_str(r#"{"agent_name":"a"}"#).unwrap();
        assert_eq!(p, JoinParams::new("a"));
        let p: JoinParams =
            serde_json::from_str(r#"{"agent_name":"a","scope":"public","echo":false,"since":3}"#)
                .unwrap();
        assert_eq!(p.scope, Scope::Public);
        assert!(!p.echo);
        assert_eq!(p.since, Some(3));
        assert!(serde_json::from_str::<JoinParams>(r#"{"agent_name":"a","scope":"x"}"#).is_err());
    }
}
