//! Switchboard's wire protocol, as pure data and codecs.
//!
//! The socket speaks the Phoenix Channels V2 serializer (`frame`), so any Phoenix client
//! connects unmodified; Switchboard's own payloads (joins, publishes, messages, history,
//! presence) and its stable error codes live beside it, over RFC 6455 framing (`websocket`). Nothing here does I/O, so the
//! server, the Rust SDK and property tests all share one definition of every byte.

pub mod channel;
pub mod codes;
pub mod discovery;
pub mod frame;
pub mod history;
pub mod inbox;
pub mod join;
pub mod keys;
pub mod kv;
pub mod limits;
pub mod message;
pub mod presence;
pub mod signal;
pub mod stream;
pub mod usage;
pub mod webhooks;
pub mod websocket;

pub use channel::{
    CacheRetention, ChannelInfo, CreateChannel, LogRetention, Retention, StoragePolicy,
};
pub use codes::{CloseCode, ErrorCode, ErrorReply};
pub use frame::{Frame, FrameError, Payload};
pub use history::{Direction, HistoryPage, HistoryQuery, PollSource, Tier, TierRange};
pub use inbox::{Ack, DeadLetter, DeadLetterPage, InboxMessage, Receipt, ReceiptStatus, Reject};
pub use join::{Gap, GapReason, JoinParams, JoinReply, Scope};
pub use keys::{
    Capability, CreateKey, CreateTemporaryKey, CreateTenant, CreatedKey, CreatedTenant, KeyInfo,
    KeyKind, TemporaryKey, TenantInfo,
};
pub use message::{Message, Publish, PublishAck};
pub use presence::{PresenceDiff, PresenceEntry, PresenceMeta, PresenceState};
pub use signal::{Signal, SignalEvent, SignalKind};
pub use usage::{StorageUsage, UsageCounts, UsageEntry, UsagePeriod, UsageReport};

/// Topic of the socket-level control channel (heartbeats, late authentication).
pub const PHOENIX_TOPIC: &str = "phoenix";
/// Prefix of every channel topic: `channel:<name>`.
pub const CHANNEL_TOPIC_PREFIX: &str = "channel:";

/// Event names used on the wire, client → server and server → client.
pub mod events {
    /// Phoenix: join a topic.
    pub const JOIN: &str = "phx_join";
    /// Phoenix: leave a topic.
    pub const LEAVE: &str = "phx_leave";
    /// Phoenix: reply to a client push (`{status, response}`).
    pub const REPLY: &str = "phx_reply";
    /// Phoenix: the server closed the topic for this client.
    pub const CLOSE: &str = "phx_close";
    /// Phoenix: the topic crashed on the server.
    pub const ERROR: &str = "phx_error";
    /// Phoenix: keep-alive on the `phoenix` topic.
    pub const HEARTBEAT: &str = "heartbeat";
    /// Switchboard: authenticate after the upgrade (on the `phoenix` topic).
    pub const AUTH: &str = "auth";
    /// Switchboard: publish a message to the channel.
    pub const PUBLISH: &str = "publish";
    /// Switchboard: read the channel's history.
    pub const HISTORY: &str = "history";
    /// Switchboard: channel storage, write a key.
    pub const KV_PUT: &str = "kv_put";
    /// Switchboard: channel storage, read a key.
    pub const KV_GET: &str = "kv_get";
    /// Switchboard: channel storage, delete a key.
    pub const KV_DELETE: &str = "kv_delete";
    /// Switchboard: channel storage, list keys by prefix.
    pub const KV_LIST: &str = "kv_list";
    /// Switchboard: channel storage changed (server → agents that joined with `kv_events`).
    pub const KV_CHANGE: &str = "kv_change";
    /// Switchboard: complete a team channel (a member asks; everyone is told and it is purged).
    pub const COMPLETE: &str = "complete";
    /// Switchboard: a WebRTC signal for one agent (client → server → that agent).
    pub const SIGNAL: &str = "signal";
    /// Switchboard: an inbox message for the agent (server → the agent that joined with `inbox`).
    pub const NEW_MESSAGE: &str = "new_message";
    /// Switchboard: acknowledge an inbox message (it leaves the inbox).
    pub const ACK: &str = "ack";
    /// Switchboard: the design documents' name of [`ACK`], accepted as an alias.
    pub const ACKNOWLEDGE: &str = "acknowledge";
    /// Switchboard: reject an inbox message (redelivered, or dead-lettered).
    pub const REJECT: &str = "reject";
    /// Switchboard: what happened to a message sent with `receipt: true` (server → its sender).
    pub const RECEIPT: &str = "receipt";
    /// Switchboard: publish this agent's capabilities and metadata to the tenant's directory.
    pub const ANNOUNCE: &str = "announce";
    /// Switchboard: replace this announced agent's metadata.
    pub const UPDATE_METADATA: &str = "update_metadata";
    /// Switchboard: find the tenant's agents by capability and metadata.
    pub const DISCOVER: &str = "discover";
    /// Switchboard streams (sender): open or resume a stream.
    pub const STREAM_OPEN: &str = "stream_open";
    /// Switchboard streams (sender): one chunk (binary push).
    pub const STREAM_CHUNK: &str = "stream_chunk";
    /// Switchboard streams (sender): the last chunk was sent; checksum and size.
    pub const STREAM_CLOSE: &str = "stream_close";
    /// Switchboard streams (either side): give up a stream.
    pub const STREAM_CANCEL: &str = "stream_cancel";
    /// Switchboard streams (recipient): send me the bytes from an offset on.
    pub const STREAM_ACCEPT: &str = "stream_accept";
    /// Switchboard streams (recipient): bytes received so far (window and checkpoint).
    pub const STREAM_ACK: &str = "stream_ack";
    /// Switchboard streams (server → recipient): a stream for it.
    pub const STREAM_OFFER: &str = "stream_offer";
    /// Switchboard streams (server → recipient): bytes (binary push).
    pub const STREAM_DATA: &str = "stream_data";
    /// Switchboard streams (server → recipient): every byte was sent.
    pub const STREAM_END: &str = "stream_end";
    /// Switchboard streams (server → sender): how far the recipient got.
    pub const STREAM_PROGRESS: &str = "stream_progress";
    /// Switchboard streams (server → sender): a durable resume point.
    pub const STREAM_CHECKPOINT: &str = "stream_checkpoint";
    /// Switchboard streams (server → both): the stream failed.
    pub const STREAM_ERROR: &str = "stream_error";
    /// Switchboard streams (server → both): the stream was cancelled.
    pub const STREAM_CANCELLED: &str = "stream_cancelled";
    /// Switchboard streams (server → sender): the recipient has every byte.
    pub const STREAM_COMPLETE: &str = "stream_complete";
    /// Switchboard: list the agents present.
    pub const PRESENCE: &str = "presence";
    /// Switchboard: a message delivered to the agent.
    pub const MESSAGE: &str = "message";
    /// Switchboard: the server removed this agent from the channel (`{code, message}`).
    pub const KICKED: &str = "kicked";
    /// Switchboard: the connection's temporary key expires soon (`{expires_at}`, on the
    /// `phoenix` topic): send an `auth` with a fresh key to keep the connection.
    pub const KEY_EXPIRING: &str = "key_expiring";
    /// Switchboard: a socket-level error (`{code, message}`) on the `phoenix` topic.
    pub const SOCKET_ERROR: &str = "error";
    /// Phoenix Presence: the full presence map, sent after a join.
    pub const PRESENCE_STATE: &str = "presence_state";
    /// Phoenix Presence: joins and leaves since the last state or diff.
    pub const PRESENCE_DIFF: &str = "presence_diff";
}

/// Milliseconds since the Unix epoch, the unit of every timestamp on the wire.
pub type Millis = i64;

/// Returns the channel name of a `channel:<name>` topic.
pub fn channel_of_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix(CHANNEL_TOPIC_PREFIX)
}

/// Checks a channel or agent name: 1–128 bytes of `[A-Za-z0-9_.:@-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("room-1.a_b:c@d"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("é"));
        assert!(!valid_name(&"x".repeat(129)));
        assert_eq!(channel_of_topic("channel:lobby"), Some("lobby"));
        assert_eq!(channel_of_topic("room:lobby"), None);
    }
}
