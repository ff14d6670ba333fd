//! Default limits. The server enforces configurable values; these are the defaults the
//! spec documents and the SDKs check before sending.

/// Longest channel or agent name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest message `type`, in bytes.
pub const MAX_TYPE_LEN: usize = 128;
/// Longest client-chosen message id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Default largest WebSocket frame the server accepts, in bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Default largest message (data plus attachments), in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 512 * 1024;
/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 16;
/// Largest `limit` of one history read.
pub const MAX_HISTORY_LIMIT: u32 = 1000;
/// Default `limit` of a history read.
pub const DEFAULT_HISTORY_LIMIT: u32 = 100;
/// Most event types in a join's `event_types` filter.
pub const MAX_EVENT_TYPES: usize = 64;
/// Largest presence `meta` object, in serialized bytes.
pub const MAX_META_BYTES: usize = 4096;
