//! The records the database tier stores, as every backend reads and writes them.

use std::sync::Arc;
use switchboard_protocol::{CacheRetention, LogRetention, StoragePolicy};

/// A stored channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRow {
    /// Row id.
    pub id: i64,
    /// Owning tenant, `""` for public channels.
    pub tenant_id: String,
    /// Channel name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    /// The tiers the channel keeps messages in.
    pub storage: StoragePolicy,
    /// The cache tier's bounds, where the channel sets its own.
    pub cache_retention: Option<CacheRetention>,
    /// The log tier's retention, where the channel sets its own.
    pub log_retention: Option<LogRetention>,
    /// Retention by count (0 = unlimited).
    pub max_messages: u64,
    /// Retention by age in seconds (0 = unlimited).
    pub max_age_secs: u64,
    /// Changes whenever the channel's history starts over.
    pub epoch: String,
    /// Team channels: the agent names that may join.
    pub members: Option<Vec<String>>,
    /// Team channels: when the channel completes itself, ms.
    pub expires_at: Option<i64>,
    /// Creation time, ms.
    pub created_at: i64,
}

/// A stored API key (the secret itself is never stored).
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// Public key id (part of the key string).
    pub id: String,
    /// Owning tenant; `None` for an admin key.
    pub tenant_id: Option<String>,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
    /// Creation time, ms.
    pub created_at: i64,
    /// Revocation time, ms.
    pub revoked_at: Option<i64>,
}

/// A temporary key's record (the key itself is a signed token the server does not keep).
#[derive(Debug, Clone)]
pub struct TemporaryRow {
    /// Key id (stated in the token).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The original key it was minted from.
    pub parent: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// Expiry, ms.
    pub expires_at: i64,
    /// Revocation time, ms.
    pub revoked_at: Option<i64>,
}

/// Usage of one key in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    /// Tenant.
    pub tenant_id: String,
    /// Key (original keys; temporary keys count for their parent).
    pub key_id: String,
    /// The hour, ms.
    pub period_start: i64,
    /// Messages accepted.
    pub messages_in: u64,
    /// Messages delivered.
    pub messages_out: u64,
    /// Bytes accepted.
    pub bytes_in: u64,
    /// Bytes delivered.
    pub bytes_out: u64,
    /// Most connections at once.
    pub peak_connections: u64,
}

/// A stored tenant.
#[derive(Debug, Clone)]
pub struct TenantRow {
    /// Tenant id (a name).
    pub id: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// Revocation time, ms: every key of a revoked tenant is refused.
    pub revoked_at: Option<i64>,
}

/// What the first and last stored offsets of a channel are.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    /// The first offset still stored (`last + 1` when none is).
    pub first: u64,
    /// The channel's head: the highest offset ever stored (0 when none).
    pub last: u64,
    /// Newest stored timestamp (0 when none).
    pub last_ts: i64,
    /// The highest offset retention ever removed (0: none).
    pub pruned: u64,
}

/// A direct message that also goes to its recipient's inbox.
#[derive(Debug, Clone)]
pub struct InboxWrite {
    /// The sender's tenant (who may read it once dead-lettered).
    pub sender_tenant: Arc<str>,
    /// Whether the sender wants receipts.
    pub receipt: bool,
}

/// A stored channel-storage entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRow {
    /// The key.
    pub key: String,
    /// The JSON value, as text.
    pub value: String,
    /// Its version.
    pub version: u64,
    /// Written at, ms.
    pub updated_at: i64,
    /// Written by.
    pub updated_by: String,
    /// Expires at, ms.
    pub expires_at: Option<i64>,
}

/// Why a channel-storage write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvRefused {
    /// The key is at another version (0: absent).
    Conflict(u64),
    /// The channel holds its maximum of keys.
    Full,
}

/// An inbox message as delivered.
#[derive(Debug, Clone)]
pub struct InboxRow {
    /// The message's offset.
    pub offset: u64,
    /// The message id.
    pub id: String,
    /// The sending agent.
    pub sender: String,
    /// Whether the sender wants receipts.
    pub receipt: bool,
    /// The message as JSON.
    pub message: String,
    /// Deliveries, this one included.
    pub deliveries: u32,
    /// When it comes back unless acknowledged, ms.
    pub visible_at: i64,
}

/// What a recipient does with a delivered message.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Handled: it leaves the inbox.
    Ack {
        /// The message id.
        id: String,
    },
    /// Not handled.
    Reject {
        /// The message id.
        id: String,
        /// Why.
        reason: Option<String>,
        /// Deliver it again (until the rejection limit); false: dead-letter it now.
        requeue: bool,
    },
}

impl Settle {
    /// The message id.
    pub fn id(&self) -> &str {
        match self {
            Settle::Ack { id } | Settle::Reject { id, .. } => id,
        }
    }
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged and gone.
    Acknowledged,
    /// Rejected; it will be delivered again.
    Rejected(Option<String>),
    /// Moved to the dead letters, for this reason.
    DeadLettered(String),
}

/// A message that was acknowledged, rejected or dead-lettered.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The message id.
    pub id: String,
    /// The sending agent.
    pub sender: String,
    /// Whether the sender wants receipts.
    pub receipt: bool,
    /// Deliveries so far.
    pub deliveries: u32,
    /// What became of it.
    pub outcome: Outcome,
}

impl Settled {
    /// Whether it left the pending messages (acknowledged or dead-lettered).
    pub fn removed(&self) -> bool {
        !matches!(self.outcome, Outcome::Rejected(_))
    }
}

/// A dead letter as stored.
#[derive(Debug, Clone)]
pub struct DeadRow {
    /// The message as JSON.
    pub message: String,
    /// Its offset.
    pub offset: u64,
    /// Who it was for.
    pub recipient: String,
    /// Deliveries.
    pub deliveries: u32,
    /// Rejections.
    pub rejections: u32,
    /// Why.
    pub reason: String,
    /// When, ms.
    pub dead_at: i64,
}

/// An announced agent as stored.
#[derive(Debug, Clone)]
pub struct AgentRow {
    /// Its tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Its capabilities, as a JSON array.
    pub capabilities: String,
    /// Its metadata, as a JSON object.
    pub metadata: String,
    /// When it last changed, ms.
    pub updated_at: i64,
}

/// A stream as stored.
#[derive(Debug, Clone)]
pub struct StreamRow {
    /// Its id.
    pub id: String,
    /// Its channel.
    pub channel_id: i64,
    /// The `stream_offer` JSON.
    pub offer: String,
    /// The recipient.
    pub recipient: String,
    /// The first chunk past the durable position.
    pub next_seq: u64,
    /// Bytes durable in the spool file.
    pub offset: u64,
    /// The recipient's checkpoint.
    pub acked: u64,
    /// Set once closed.
    pub checksum: Option<String>,
    /// Set once closed.
    pub total_size: Option<u64>,
    /// Last change, ms.
    pub updated_at: i64,
}

/// A registered webhook as stored.
#[derive(Debug, Clone)]
pub struct WebhookRow {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Where it POSTs.
    pub url: String,
    /// Its HMAC key.
    pub secret: String,
    /// JSON array of event names.
    pub events: String,
    /// Channel filter.
    pub channel: Option<String>,
    /// JSON array of message types.
    pub types: Option<String>,
    /// When it was registered, ms.
    pub created_at: i64,
}

/// One delivery attempt as stored.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    /// The webhook.
    pub webhook_id: String,
    /// The delivery id.
    pub delivery_id: String,
    /// The event name.
    pub event: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When, ms.
    pub ts: i64,
    /// The receiver's status.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// Whether another attempt follows.
    pub will_retry: bool,
}

/// What one store transaction does to one inbox.
#[derive(Debug, Default)]
pub struct InboxBatch {
    /// Acks and rejects, in order.
    pub settle: Vec<Settle>,
    /// Lease up to this many visible messages for this many milliseconds.
    pub lease: Option<(u32, i64)>,
}

/// What a [`InboxBatch`] did.
#[derive(Debug, Default)]
pub struct InboxBatchResult {
    /// Per settlement: what became of the message (`None`: no such pending message).
    pub settled: Vec<Option<Settled>>,
    /// The leased messages, oldest first.
    pub leased: Vec<InboxRow>,
    /// Messages dead-lettered instead of leased (delivered too often).
    pub dead: Vec<Settled>,
    /// When the next leased message becomes visible again.
    pub next_visible: Option<i64>,
}

/// How often an inbox message may be delivered and rejected before it is dead-lettered.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    /// Deliveries (at least 1).
    pub max_deliveries: u32,
    /// Rejections (at least 1).
    pub max_rejections: u32,
}
