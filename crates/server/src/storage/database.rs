//! The database tier and metadata store, behind one trait.
//!
//! Everything durable that is not the log goes through [`Database`]: tenants and keys,
//! channels, the messages the database writer copies from the log, inboxes, channel storage,
//! the agent directory, streams, webhooks and usage. Implementations: `SqliteStore` (one
//! SQLite file in the data directory, the default) and `PostgresStore` (a PostgreSQL
//! database several nodes can share). Both pass the conformance suite in `conformance.rs`.
//!
//! Every operation takes owned arguments and returns a `'static` future, so callers can
//! hold it across awaits and implementations can run it on their own threads or pools.
//! Writes a caller awaits one after another apply in that order. (SQLite also orders writes
//! by when they were issued, since it queues each at once; PostgreSQL starts a write when
//! its future is first polled, so two futures awaited together may apply in either order.)

use super::log::Record;
use super::rows::*;
use crate::error::Result;
use futures_util::future::BoxFuture;
use switchboard_protocol::{HistoryQuery, Message};

/// The future every [`Database`] operation returns.
pub type DbFuture<T> = BoxFuture<'static, Result<T>>;

/// A channel-storage write (`kv_put`).
#[derive(Debug, Clone)]
pub struct KvWrite {
    /// The channel's row id.
    pub channel_id: i64,
    /// The key.
    pub key: String,
    /// The JSON value, as text.
    pub value: String,
    /// Compare-and-set: the version the key must be at (0: absent).
    pub expected: Option<u64>,
    /// When the entry expires, ms.
    pub expires_at: Option<i64>,
    /// The writing agent.
    pub by: String,
    /// Now, ms (entries expired by then count as absent).
    pub now: i64,
    /// The most live keys the channel may hold (0: no limit).
    pub max_keys: usize,
}

/// The database tier and metadata store (see the module docs).
pub trait Database: Send + Sync + 'static {
    /// The backend's name, for logs and errors: `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Finishes queued writes and releases the database (and its locks).
    fn close(&self) -> BoxFuture<'static, ()>;

    // Settings and the database writer's position in the log.

    /// A server setting.
    fn get_setting(&self, name: &str) -> DbFuture<Option<String>>;
    /// Stores a server setting.
    fn put_setting(&self, name: &str, value: &str) -> DbFuture<()>;
    /// Stores a setting unless it is set already; returns the value it holds after (so
    /// nodes starting at once agree on one).
    fn init_setting(&self, name: &str, value: &str) -> DbFuture<String>;
    /// Records which log the database follows and the position it holds everything up to;
    /// `new_epochs`: the log changed, so channels keeping their history only in the log
    /// start a new epoch (their old offsets are gone).
    fn set_log(&self, identity: &str, applied: u64, new_epochs: bool) -> DbFuture<()>;
    /// Copies a batch of log records (ascending positions, the last being `last`) into the
    /// database and records `last` as applied, atomically. Messages of channels that are
    /// gone, or below what retention removed, are skipped; so are records at or below the
    /// position already applied (applying a batch twice changes nothing, also when several
    /// nodes apply one log), and the applied position never moves back.
    fn apply_log(&self, batch: Vec<(u64, Record)>, last: u64) -> DbFuture<()>;
    /// Makes every applied batch durable and returns the log position the database holds
    /// for sure (the log may drop what is below it).
    fn durable_log_applied(&self) -> DbFuture<u64>;

    // Tenants and keys.

    /// Every tenant and key (admin keys have no tenant).
    fn load_keys(&self) -> DbFuture<(Vec<TenantRow>, Vec<KeyRow>)>;
    /// Inserts a tenant; false if the id exists.
    fn insert_tenant(&self, tenant: TenantRow) -> DbFuture<bool>;
    /// Inserts a key (the tenant of a tenant key must exist).
    fn insert_key(&self, key: KeyRow) -> DbFuture<()>;
    /// Marks a key of any kind revoked (once).
    fn revoke_key(&self, id: &str, now: i64) -> DbFuture<()>;
    /// Marks a tenant and its keys revoked.
    fn revoke_tenant(&self, id: &str, now: i64) -> DbFuture<()>;
    /// Temporary keys that have not expired.
    fn load_temporary(&self, now: i64) -> DbFuture<Vec<TemporaryRow>>;
    /// Records a minted temporary key.
    fn insert_temporary(&self, row: TemporaryRow) -> DbFuture<()>;
    /// Deletes the records of expired temporary keys.
    fn prune_temporary(&self, now: i64) -> DbFuture<()>;

    // Usage.

    /// Adds usage deltas to their hourly rows (peaks take the maximum).
    fn add_usage(&self, rows: Vec<UsageRow>) -> DbFuture<()>;
    /// A tenant's hourly rows in `[from, to)`, by hour then key.
    fn usage_rows(&self, tenant: &str, from: i64, to: i64) -> DbFuture<Vec<UsageRow>>;
    /// Messages a tenant stores in its channels, and their bytes.
    fn storage_of(&self, tenant: &str) -> DbFuture<(u64, u64)>;

    // Channels and their messages.

    /// Finds a channel.
    fn get_channel(&self, tenant: &str, name: &str) -> DbFuture<Option<ChannelRow>>;
    /// Creates a channel unless it exists: the stored row and whether it was created;
    /// `None` when the tenant already holds `max` channels (0: no limit).
    fn create_channel(&self, row: ChannelRow, max: usize) -> DbFuture<Option<(ChannelRow, bool)>>;
    /// Deletes a channel with its messages, channel storage and inboxes.
    fn delete_channel(&self, id: i64) -> DbFuture<()>;
    /// Team channels whose `expires_at` has come: (tenant, name).
    fn expired_channels(&self, now: i64) -> DbFuture<Vec<(String, String)>>;
    /// Gives a channel a new epoch.
    fn set_epoch(&self, id: i64, epoch: &str) -> DbFuture<()>;
    /// Records that a channel's offsets up to `through` were removed (never lowers it).
    fn set_pruned_through(&self, id: i64, through: u64) -> DbFuture<()>;
    /// Records what log retention dropped (channel, highest offset), for channels the
    /// database does not keep messages of.
    fn log_dropped(&self, dropped: Vec<(i64, u64)>) -> DbFuture<()>;
    /// The first and last stored offsets, or past what retention removed.
    fn bounds(&self, channel_id: i64) -> DbFuture<StoreStats>;
    /// The newest `n` messages, oldest first (`channel` names them).
    fn recent(&self, channel_id: i64, channel: &str, n: usize) -> DbFuture<Vec<Message>>;
    /// Ids and offsets of the newest `n` messages below offset `below`, oldest first.
    fn recent_ids(&self, channel_id: i64, below: u64, n: usize) -> DbFuture<Vec<(String, u64)>>;
    /// A history read: up to `limit + 1` messages matching `q` (so the caller knows whether
    /// the page was cut short), and the channel's stored head. `visible_to` limits direct
    /// messages to those the agent sent or receives.
    fn history(
        &self,
        channel_id: i64,
        channel: &str,
        q: &HistoryQuery,
        limit: u32,
        visible_to: Option<&str>,
    ) -> DbFuture<(Vec<Message>, u64)>;
    /// Deletes messages below offset `below` or older than `before_ts`, records the highest
    /// offset deleted, and returns the channel's bounds after.
    fn prune(&self, channel_id: i64, below: u64, before_ts: i64) -> DbFuture<StoreStats>;

    // Inboxes.

    /// Pending (not dead-lettered) messages per recipient of a channel.
    fn inbox_counts(&self, channel_id: i64) -> DbFuture<Vec<(String, u32)>>;
    /// Settles and leases in one transaction (see [`InboxBatch`]).
    fn inbox_batch(
        &self,
        channel_id: i64,
        recipient: &str,
        batch: InboxBatch,
        limits: InboxLimits,
        now: i64,
    ) -> DbFuture<InboxBatchResult>;
    /// Makes leased messages visible again at once (their consumer went away).
    fn inbox_release(
        &self,
        channel_id: i64,
        recipient: &str,
        ids: Vec<String>,
        now: i64,
    ) -> DbFuture<()>;
    /// A page of a channel's dead letters sent by `tenant`'s agents, oldest first, after
    /// the cursor `(dead_at, offset)`.
    fn dead_letters(
        &self,
        channel_id: i64,
        tenant: &str,
        recipient: Option<&str>,
        after: (i64, u64),
        limit: u32,
    ) -> DbFuture<Vec<DeadRow>>;
    /// Deletes one of `tenant`'s dead letters; false if there is none with this id.
    fn delete_dead_letter(&self, channel_id: i64, tenant: &str, id: &str) -> DbFuture<bool>;
    /// Dead-letters messages that waited longer than `retention_ms` and deletes dead
    /// letters older than that; returns how many messages expired.
    fn inbox_prune(&self, now: i64, retention_ms: i64) -> DbFuture<usize>;

    // Channel storage.

    /// A live (unexpired) entry.
    fn kv_get(&self, channel_id: i64, key: &str, now: i64) -> DbFuture<Option<KvRow>>;
    /// Writes an entry (compare-and-set when `expected` is given); the new row.
    fn kv_put(&self, write: KvWrite) -> DbFuture<std::result::Result<KvRow, KvRefused>>;
    /// Deletes an entry (compare-and-delete when `expected` is given); the version deleted,
    /// `None` when there was none.
    fn kv_delete(
        &self,
        channel_id: i64,
        key: &str,
        expected: Option<u64>,
        now: i64,
    ) -> DbFuture<std::result::Result<Option<u64>, KvRefused>>;
    /// Live entries in key order: after `after`, starting with `prefix`, at most `limit`.
    fn kv_list(
        &self,
        channel_id: i64,
        prefix: &str,
        after: &str,
        limit: u32,
        now: i64,
    ) -> DbFuture<Vec<KvRow>>;
    /// Deletes expired entries.
    fn kv_prune(&self, now: i64) -> DbFuture<()>;

    // The agent directory.

    /// Every announced agent.
    fn load_agents(&self) -> DbFuture<Vec<AgentRow>>;
    /// Inserts or replaces an agent's card.
    fn put_agent(&self, row: AgentRow) -> DbFuture<()>;
    /// Deletes an agent's card; false if there was none.
    fn delete_agent(&self, tenant: &str, name: &str) -> DbFuture<bool>;

    // Streams.

    /// Every stream.
    fn load_streams(&self) -> DbFuture<Vec<StreamRow>>;
    /// Inserts or replaces a stream's row.
    fn put_stream(&self, row: StreamRow) -> DbFuture<()>;
    /// Deletes a stream's row.
    fn delete_stream(&self, id: &str) -> DbFuture<()>;

    // Webhooks.

    /// Every registered webhook.
    fn load_webhooks(&self) -> DbFuture<Vec<WebhookRow>>;
    /// Registers a webhook.
    fn insert_webhook(&self, row: WebhookRow) -> DbFuture<()>;
    /// Deletes a tenant's webhook and its attempts; false if it has none with this id.
    fn delete_webhook(&self, tenant: &str, id: &str) -> DbFuture<bool>;
    /// Appends attempts, keeping the newest `keep` per webhook.
    fn insert_attempts(&self, rows: Vec<AttemptRow>, keep: u64) -> DbFuture<()>;
    /// The newest `limit` attempts of a webhook, newest first.
    fn attempts(&self, webhook_id: &str, limit: u32) -> DbFuture<Vec<AttemptRow>>;
}
