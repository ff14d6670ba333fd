//! Stable error codes and WebSocket close codes, shared by the server and every SDK.
//!
//! A code is an identifier forever: a retired code stays reserved, it is never reused for
//! something else. Close codes fall in two ranges so a client knows what to do without
//! understanding the code: 4000–4499 means "reconnect (with backoff) and resume", 4500–4999
//! means "do not reconnect until the cause is fixed".

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal ),+ $(,)?) => {
        /// A stable, machine-readable error identifier (`snake_case` on the wire).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $text,)+ }
            }

            /// Parses a wire code; `None` for codes this version does not know.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(ErrorCode::$variant),)+ _ => None }
            }
        }
    };
}

error_codes! {
    /// The API key is unknown, malformed or revoked.
    InvalidKey = "invalid_key",
    /// The request needs an authenticated connection or a bearer key.
    Unauthenticated = "unauthenticated",
    /// No `auth` arrived within the auth timeout after the upgrade.
    AuthTimeout = "auth_timeout",
    /// The key lacks the capability for this operation.
    Forbidden = "forbidden",
    /// The key was revoked while this connection used it: do not reconnect with it.
    KeyRevoked = "key_revoked",
    /// The temporary key expired: refresh it (an `auth` with a fresh key keeps the connection).
    KeyExpired = "key_expired",
    /// A tenant with this id exists already.
    TenantExists = "tenant_exists",
    /// The channel password does not match.
    BadPassword = "bad_password",
    /// Another live session holds this agent name in the channel.
    AgentNameTaken = "agent_name_taken",
    /// Agent names are 1–128 bytes of `[A-Za-z0-9_.:@-]`.
    InvalidAgentName = "invalid_agent_name",
    /// Channel names are 1–128 bytes of `[A-Za-z0-9_.:@-]`.
    InvalidChannelName = "invalid_channel_name",
    /// The topic is neither `phoenix` nor `channel:<name>`.
    InvalidTopic = "invalid_topic",
    /// The event is not known on this topic.
    UnknownEvent = "unknown_event",
    /// The frame could not be decoded.
    MalformedFrame = "malformed_frame",
    /// The payload does not have the documented shape.
    InvalidPayload = "invalid_payload",
    /// The frame exceeds the server's `max_frame_bytes`.
    FrameTooLarge = "frame_too_large",
    /// The message exceeds the server's `max_message_bytes`.
    MessageTooLarge = "message_too_large",
    /// The connection already joined `max_channels_per_connection` channels.
    TooManyChannels = "too_many_channels",
    /// The server holds `max_connections` connections already.
    TooManyConnections = "too_many_connections",
    /// The topic must be joined first.
    NotJoined = "not_joined",
    /// This connection already joined the topic.
    AlreadyJoined = "already_joined",
    /// The channel does not exist.
    ChannelNotFound = "channel_not_found",
    /// The channel exists already.
    ChannelExists = "channel_exists",
    /// The channel was deleted while the agent was in it.
    ChannelDeleted = "channel_deleted",
    /// The team channel was completed (or reached its `expires_at`) and purged.
    ChannelCompleted = "channel_completed",
    /// The agent name is not on the team channel's member list.
    NotAMember = "not_a_member",
    /// A direct ephemeral message names an agent that is not present.
    AgentNotPresent = "agent_not_present",
    /// The WebRTC signaling relay is off for this agent or its target (`enable_webrtc_relay`).
    RelayDisabled = "relay_disabled",
    /// A compare-and-set found the key at another version.
    VersionConflict = "version_conflict",
    /// The channel's storage holds `max_kv_keys_per_channel` keys already.
    TooManyKeys = "too_many_keys",
    /// The recipient's inbox holds `max_messages_per_agent` unacknowledged messages already.
    InboxFull = "inbox_full",
    /// A stream's bytes do not match the checksum or size its sender closed it with.
    ChecksumMismatch = "checksum_mismatch",
    /// The channel keeps no history (ephemeral-only storage policy).
    NoHistory = "no_history",
    /// The connection's outbound queue overflowed; reconnect and resume by offset.
    SlowConsumer = "slow_consumer",
    /// No heartbeat arrived within the heartbeat timeout.
    HeartbeatTimeout = "heartbeat_timeout",
    /// Another session took over this agent name with its session id.
    SessionTakenOver = "session_taken_over",
    /// The server is shutting down; reconnect to it or another node.
    ServerShutdown = "server_shutdown",
    /// Too many requests in flight or per second; retry after the hint.
    RateLimited = "rate_limited",
    /// Durable storage failed; the message was not acknowledged.
    StorageUnavailable = "storage_unavailable",
    /// An unexpected server error; the message says what happened.
    Internal = "internal",
    /// The resource does not exist.
    NotFound = "not_found",
    /// The HTTP method is not supported on this route.
    MethodNotAllowed = "method_not_allowed",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `response` of an error reply, and the body of every HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened and what to do, for people.
    pub message: String,
    /// When set, retry after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorReply {
    /// An error reply with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorReply {}

/// WebSocket close codes the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// Server shutdown (standard 1001 "going away"): reconnect, resume by offset.
    GoingAway = 1001,
    /// The outbound queue overflowed: reconnect and resume by offset.
    SlowConsumer = 4000,
    /// No heartbeat within the timeout: reconnect.
    HeartbeatTimeout = 4001,
    /// The API key is invalid or revoked: do not reconnect with it.
    InvalidKey = 4500,
    /// No authentication in time: fix the client before reconnecting.
    AuthTimeout = 4501,
    /// A frame exceeded `max_frame_bytes`: do not resend it.
    FrameTooLarge = 4502,
    /// The connection's key (or its tenant) was revoked: do not reconnect with it.
    KeyRevoked = 4503,
    /// The connection's temporary key expired: reconnect only with a fresh key.
    KeyExpired = 4504,
}

impl CloseCode {
    /// The numeric close code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The close code with this number, if the server sends it.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        [
            CloseCode::GoingAway,
            CloseCode::SlowConsumer,
            CloseCode::HeartbeatTimeout,
            CloseCode::InvalidKey,
            CloseCode::AuthTimeout,
            CloseCode::FrameTooLarge,
            CloseCode::KeyRevoked,
            CloseCode::KeyExpired,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }

    /// Whether a client should reconnect after this close.
    pub fn should_reconnect(code: u16) -> bool {
        code < 4500
    }

    /// The error code this close carries.
    pub fn error_code(self) -> ErrorCode {
        match self {
            CloseCode::GoingAway => ErrorCode::ServerShutdown,
            CloseCode::SlowConsumer => ErrorCode::SlowConsumer,
            CloseCode::HeartbeatTimeout => ErrorCode::HeartbeatTimeout,
            CloseCode::InvalidKey => ErrorCode::InvalidKey,
            CloseCode::AuthTimeout => ErrorCode::AuthTimeout,
            CloseCode::FrameTooLarge => ErrorCode::FrameTooLarge,
            CloseCode::KeyRevoked => ErrorCode::KeyRevoked,
            CloseCode::KeyExpired => ErrorCode::KeyExpired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *code);
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn close_ranges() {
        assert!(CloseCode::should_reconnect(CloseCode::SlowConsumer.code()));
        assert!(CloseCode::should_reconnect(CloseCode::GoingAway.code()));
        assert!(!CloseCode::should_reconnect(CloseCode::InvalidKey.code()));
        assert_eq!(CloseCode::from_code(4500), Some(CloseCode::InvalidKey));
        assert_eq!(CloseCode::from_code(4999), None);
    }
}
