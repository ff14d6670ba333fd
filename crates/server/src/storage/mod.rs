//! Durable storage: the message tiers, and tenants, keys, channels and every other record.
//!
//! Messages live in up to three tiers sharing one offset space per channel: the cache (the
//! channel's in-memory ring, in `channel.rs`), the log (`log/`, durable and ordered: the
//! point of acknowledgement) and the database (permanent and queryable, written from the log
//! by `materializer`). The embedded default is a segment-file log under the data directory
//! and one SQLite database in WAL mode beside it, which also holds all metadata. SQLite
//! writes go through one writer thread; reads use a pool of read-only connections and never
//! wait for the writer.

mod directory;
mod inbox;
pub mod log;
pub mod materializer;
mod sqlite;
mod streams;
mod webhooks;

pub use directory::AgentRow;
pub use inbox::{DeadRow, InboxRow, Outcome, Settle, Settled};
pub use sqlite::{
    ChannelRow, InboxWrite, KeyRow, KvRefused, KvRow, SqliteStore, StoreStats, TemporaryRow,
    TenantRow, UsageRow,
};
pub use streams::StreamRow;
pub use webhooks::{AttemptRow, WebhookRow};

/// The SQL behind each store operation, run through `SqliteStore::read` / `write`.
pub(crate) mod sqlite_queries {
    pub(crate) use super::directory::{delete_agent, load_agents, put_agent};
    pub(crate) use super::inbox::{
        dead_letters, delete_dead_letter, inbox_counts, inbox_lease, inbox_next_visible,
        inbox_prune, inbox_release, inbox_settle,
    };
    pub(crate) use super::sqlite::{
        LOG_APPLIED, LOG_IDENTITY, add_usage, apply_log, bounds, create_channel, delete_channel,
        durable_log_applied, expired_channels, get_channel, get_setting, history, insert_key,
        insert_temporary, insert_tenant, kv_delete, kv_get, kv_list, kv_prune, kv_put, load_keys,
        load_temporary, log_dropped, new_log_epochs, prune, prune_temporary, put_setting, recent,
        recent_ids, revoke_key, revoke_tenant, set_epoch, set_pruned_through, storage_of,
        usage_rows,
    };
    pub(crate) use super::streams::{delete_stream, load_streams, put_stream};
    pub(crate) use super::webhooks::{
        attempts, delete_webhook, insert_attempts, insert_webhook, load_webhooks,
    };
}

use crate::error::Error;
use switchboard_protocol::ErrorCode;

/// A storage failure as the client sees it.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> Error {
    tracing::error!(error = %e, "storage failure");
    Error::new(
        ErrorCode::StorageUnavailable,
        format!("durable storage failed ({e}); nothing was acknowledged, retry later"),
    )
}
