//! PostgreSQL implementation of the database tier: one database that several server nodes
//! share.
//!
//! Where SQLite relies on its single writer thread, this backend relies on transactions and
//! row locks, so every operation is safe when nodes run it at once:
//!
//! - Applying the log (`apply_log`) locks the `log_applied` setting first, so appliers take
//!   turns; records at or below the position already applied are skipped (an acknowledged
//!   inbox entry is never written again by a node that lags behind) and the position never
//!   moves back. The channels a batch writes to are locked `FOR SHARE`, and `prune` locks its
//!   channel `FOR UPDATE` before it deletes, so no message lands below `pruned_through`.
//! - An inbox batch locks the messages it settles (in offset order) and leases with
//!   `FOR UPDATE SKIP LOCKED`: two consumers never lease the same message.
//! - A channel-storage write locks the key's row (or inserts it with `ON CONFLICT DO
//!   NOTHING` and starts over if another writer got there first), so a compare-and-set has
//!   exactly one winner. Writes that add a key to a channel with a key limit take the
//!   channel's transaction-scoped advisory lock before counting, so the limit is exact.
//! - Creating a channel under a per-tenant limit takes the tenant's advisory lock before
//!   counting, so the limit is exact too; the insert is `ON CONFLICT DO NOTHING` and reads
//!   the row back, so nodes creating one channel at once agree on it.
//! - Schema creation runs under an advisory lock, so nodes starting at once do not race.
//!
//! A transaction that fails on a deadlock or serialization failure (which only an
//! unforeseen interleaving can cause) is run again, a few times at most. Commits are
//! durable when they return, so `durable_log_applied` is the stored position.
//!
//! Operations start when their future is first polled: writes a caller awaits one after
//! another apply in that order, but two futures awaited together may run in either order.
//! Several nodes sharing one database must also share one log (JetStream): the database's
//! log positions are positions in that log. Connections use TLS when the server is built
//! with the `tls` feature and `postgres_url` asks for it (`sslmode`); plain TCP otherwise.

mod database;
mod directory;
mod inbox;
mod streams;
mod webhooks;

use super::columns::*;
use super::log::{MessageRecord, Record};
use super::rows::*;
use super::{LOG_APPLIED, LOG_IDENTITY, stopped, unavailable};
use crate::error::{Error, Result};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
use switchboard_protocol::history::Direction;
use switchboard_protocol::{HistoryQuery, Message};

/// The schema: the SQLite schema's tables with PostgreSQL types. `"offset"` is quoted (a
/// reserved word), and the text keys that are compared and sorted use the `C` collation so
/// they order by code point, as SQLite's do.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS temporary_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    parent TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS usage (
    tenant_id TEXT NOT NULL,
    key_id TEXT COLLATE "C" NOT NULL,
    period_start BIGINT NOT NULL,       -- the hour, ms
    messages_in BIGINT NOT NULL,
    messages_out BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    peak_connections BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, period_start, key_id)
);
CREATE TABLE IF NOT EXISTS kv (
    channel_id BIGINT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (channel_id, key)
);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_keys (
    id TEXT PRIMARY KEY,
    secret_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    secret_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS channels (
    id BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,            -- '' for public scope
    name TEXT NOT NULL,
    password_hash TEXT,
    persistent INTEGER NOT NULL,        -- storage policy: 0 ephemeral, 1 persistent, 2 cache, 3 log
    max_messages BIGINT NOT NULL,       -- 0 = unlimited
    max_age_secs BIGINT NOT NULL,       -- 0 = unlimited
    epoch TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    pruned_through BIGINT NOT NULL DEFAULT 0,  -- highest offset retention ever deleted
    members TEXT,                       -- team channels: JSON array of agent names
    expires_at BIGINT,                  -- team channels: completes itself then, ms
    tier_retention TEXT,                -- JSON: the cache and log tiers' own limits
    UNIQUE (tenant_id, name)
);
CREATE INDEX IF NOT EXISTS channels_expiring ON channels (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS messages (
    channel_id BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT,
    type TEXT NOT NULL,
    ts BIGINT NOT NULL,
    data TEXT NOT NULL,
    attachments BYTEA,
    PRIMARY KEY (channel_id, "offset")
);
CREATE INDEX IF NOT EXISTS messages_ts ON messages (channel_id, ts);
CREATE TABLE IF NOT EXISTS inbox (
    channel_id BIGINT NOT NULL,
    recipient TEXT NOT NULL,
    "offset" BIGINT NOT NULL,
    id TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_tenant TEXT NOT NULL,
    receipt BOOLEAN NOT NULL,           -- the sender asked for receipts
    message TEXT NOT NULL,              -- the message as JSON
    created_at BIGINT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    rejections INTEGER NOT NULL DEFAULT 0,
    visible_at BIGINT NOT NULL,         -- delivered again from then on unless acknowledged
    dead_at BIGINT,                     -- set once dead-lettered
    reason TEXT,                        -- the last rejection's, or why it was dead-lettered
    PRIMARY KEY (channel_id, recipient, "offset")
);
CREATE INDEX IF NOT EXISTS inbox_id ON inbox (channel_id, recipient, id);
CREATE INDEX IF NOT EXISTS inbox_dead ON inbox (channel_id, dead_at, "offset") WHERE dead_at IS NOT NULL;
-- Retention's sweeps (every retention_interval_ms) read these instead of the whole table.
CREATE INDEX IF NOT EXISTS inbox_waiting_since ON inbox (created_at) WHERE dead_at IS NULL;
CREATE INDEX IF NOT EXISTS inbox_dead_since ON inbox (dead_at) WHERE dead_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,               -- the HMAC key (needed to sign, so not hashed)
    events TEXT NOT NULL,               -- JSON array of event names
    channel TEXT,                       -- name, or prefix*
    types TEXT,                         -- JSON array of message types
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    seq BIGSERIAL PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    will_retry BOOLEAN NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_hook ON webhook_attempts (webhook_id, seq);
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    channel_id BIGINT NOT NULL,
    offer TEXT NOT NULL,                -- the stream_offer JSON (sender, recipient, name, size…)
    recipient TEXT NOT NULL,
    next_seq BIGINT NOT NULL,           -- durable position: the spool file holds `offset` bytes
    "offset" BIGINT NOT NULL,
    acked BIGINT NOT NULL,              -- the recipient's checkpoint
    checksum TEXT,                      -- set once closed
    total_size BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    capabilities TEXT NOT NULL,         -- JSON array
    metadata TEXT NOT NULL,             -- JSON object
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
"#;

/// The advisory lock schema creation runs under ("sb:schema").
const SCHEMA_LOCK: i64 = 0x7362_3a73_6368_656d;

/// Times a transaction is run again after a deadlock or serialization failure.
const RETRIES: u32 = 4;

/// The PostgreSQL store (see the module docs).
pub struct PostgresStore {
    pool: PgPool,
    /// The node's data directory lock, held until `close` (see [`holding`](Self::holding)).
    dir_lock: parking_lot::Mutex<Option<std::fs::File>>,
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user:password@host:port/database`)
    /// with a pool of at most `max_connections`, and creates the schema if needed.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| unavailable(format!("the PostgreSQL URL is not valid: {e}")))?;
        Self::connect_with(options, max_connections).await
    }

    /// [`connect`](Self::connect) with parsed options.
    pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let place = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| unavailable(format!("cannot connect to PostgreSQL at {place}: {e}")))?;
        create_schema(&pool)
            .await
            .map_err(|e| unavailable(format!("creating the schema in {place}: {e}")))?;
        Ok(PostgresStore {
            pool,
            dir_lock: parking_lot::Mutex::new(None),
        })
    }

    /// Keeps `lock` (the node's data directory lock) until the store is closed, as
    /// `SqliteStore` keeps its own.
    pub(crate) fn holding(self, lock: std::fs::File) -> Self {
        *self.dir_lock.lock() = Some(lock);
        self
    }

    /// The connection pool (for `migrate`, which copies whole tables).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn create_schema(pool: &PgPool) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    // Not one "already exists, skipping" notice per table at every start.
    sqlx::raw_sql("SET LOCAL client_min_messages = warning")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    tx.commit().await
}

/// Runs `op` (one transaction, or one statement) again while it fails on a deadlock or a
/// serialization failure, which roll the transaction back whole; maps errors to the
/// client's.
async fn retry<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Err(e) if transient(&e) && tries < RETRIES => {
                tries += 1;
                tracing::debug!(error = %e, tries, "PostgreSQL transaction retried");
                tokio::time::sleep(Duration::from_millis(5 << tries)).await;
            }
            Ok(v) => return Ok(v),
            Err(e) => return Err(db_error(e)),
        }
    }
}

fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => matches!(d.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

fn db_error(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::PoolClosed => stopped(),
        e => unavailable(e),
    }
}

/// A stored count or offset (BIGINT) as the unsigned value it is.
fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

/// An unsigned value as BIGINT (saturating: offsets beyond it mean "no bound").
fn signed(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// A string as PostgreSQL can store it: TEXT cannot hold NUL, which a client-chosen message
/// id or type may contain, so NUL becomes U+FFFD rather than fail (and stop) the database
/// writer. Every other character is kept.
fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

fn decode_error(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

// Settings and the log position.

/// A server setting.
pub(crate) async fn get_setting(
    conn: &mut PgConnection,
    name: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// Stores a server setting.
pub(crate) async fn put_setting(
    conn: &mut PgConnection,
    name: &str,
    value: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(name)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a setting unless it is set; the value it holds after.
pub(crate) async fn init_setting(pool: &PgPool, name: &str, value: &str) -> sqlx::Result<String> {
    let mut conn = pool.acquire().await?;
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    Ok(get_setting(&mut conn, name)
        .await?
        .unwrap_or_else(|| value.to_owned()))
}

/// Locks the `log_applied` setting (creating it at 0) until the transaction ends, and
/// returns it: whoever applies the log or moves the position takes this lock first.
async fn lock_log_applied(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let value: String = sqlx::query_scalar(
        "INSERT INTO settings (name, value) VALUES ($1, '0')
         ON CONFLICT (name) DO UPDATE SET value = settings.value
         RETURNING value",
    )
    .bind(LOG_APPLIED)
    .fetch_one(conn)
    .await?;
    Ok(value.parse().unwrap_or(0))
}

/// Records the log the database follows and the position it holds (`new_epochs`: channels
/// keeping their history only in the old log start a new epoch).
pub(crate) async fn set_log(
    pool: &PgPool,
    identity: &str,
    applied: u64,
    new_epochs: bool,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    lock_log_applied(&mut tx).await?;
    if new_epochs {
        new_log_epochs(&mut tx).await?;
    }
    put_setting(&mut tx, LOG_IDENTITY, identity).await?;
    put_setting(&mut tx, LOG_APPLIED, &applied.to_string()).await?;
    tx.commit().await
}

/// Gives every channel with the `log` storage policy a new epoch (16 random hex digits, as
/// SQLite's) and forgets what retention removed of its old history.
async fn new_log_epochs(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE channels SET pruned_through = 0,
             epoch = substr(md5(random()::text || clock_timestamp()::text || id::text), 1, 16)
         WHERE persistent = 3",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The log position the database holds (PostgreSQL commits are durable when they return).
pub(crate) async fn durable_log_applied(pool: &PgPool) -> sqlx::Result<u64> {
    let mut conn = pool.acquire().await?;
    Ok(get_setting(&mut conn, LOG_APPLIED)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Copies a batch of log records into the database and records the position reached, in
/// one transaction. Appliers take turns on the `log_applied` row; records at or below the
/// position already applied are skipped, and the position never moves back. Messages of
/// channels that no longer exist, or at or below what retention removed, are not inserted;
/// inbox entries are written for every record that has one. Each run of message records
/// between channel deletions is written with one statement per table.
pub(crate) async fn apply_log(
    pool: &PgPool,
    batch: &[(u64, Record)],
    last: u64,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let applied = lock_log_applied(&mut tx).await?;
    let mut run: Vec<&MessageRecord> = Vec::new();
    for (_, record) in batch.iter().filter(|(position, _)| *position > applied) {
        match record {
            Record::Message(r) => run.push(r),
            Record::ChannelDeleted { channel_id } => {
                write_messages(&mut tx, &run).await?;
                run.clear();
                sqlx::query(
                    "WITH m AS (DELETE FROM messages WHERE channel_id = $1)
                     DELETE FROM inbox WHERE channel_id = $1",
                )
                .bind(channel_id)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    write_messages(&mut tx, &run).await?;
    sqlx::query("UPDATE settings SET value = $2 WHERE name = $1")
        .bind(LOG_APPLIED)
        .bind(last.max(applied).to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Writes a run of message records: their inbox entries, and the messages the database
/// keeps (channel exists, offset above what retention removed).
async fn write_messages(conn: &mut PgConnection, run: &[&MessageRecord]) -> sqlx::Result<()> {
    if run.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<i64> = run.iter().map(|r| r.channel_id).collect();
    ids.sort_unstable();
    ids.dedup();
    // FOR SHARE: a concurrent prune (FOR UPDATE) either finishes first, and its
    // pruned_through is read here, or waits for this transaction and deletes what it adds.
    let pruned: HashMap<i64, u64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT id, pruned_through FROM channels WHERE id = ANY($1) ORDER BY id FOR SHARE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(id, through)| (id, unsigned(through)))
    .collect();

    let mut inbox = InboxColumns::default();
    let mut messages = MessageColumns::default();
    for r in run {
        let m = &r.message;
        let offset = m.offset.unwrap_or(0);
        if let (Some(write), Some(to)) = (&r.inbox, &m.to) {
            let json = serde_json::to_string(&**m).map_err(|e| sqlx::Error::Encode(e.into()))?;
            inbox.push(r.channel_id, to, offset, m, write, json);
        }
        let wanted = pruned.get(&r.channel_id).is_some_and(|t| offset > *t);
        if r.to_database && wanted {
            messages.push(r.channel_id, m);
        }
    }
    if !inbox.channel.is_empty() {
        inbox.insert(&mut *conn).await?;
    }
    if !messages.channel.is_empty() {
        messages.insert(&mut *conn).await?;
    }
    Ok(())
}

/// Message rows as column arrays, for one `INSERT … SELECT FROM UNNEST`.
#[derive(Default)]
struct MessageColumns {
    channel: Vec<i64>,
    offset: Vec<i64>,
    id: Vec<String>,
    sender: Vec<String>,
    recipient: Vec<Option<String>>,
    kind: Vec<String>,
    ts: Vec<i64>,
    data: Vec<String>,
    attachments: Vec<Option<Vec<u8>>>,
}

impl MessageColumns {
    fn push(&mut self, channel_id: i64, m: &Message) {
        self.channel.push(channel_id);
        self.offset.push(signed(m.offset.unwrap_or(0)));
        self.id.push(text(&m.id));
        self.sender.push(text(&m.from));
        self.recipient.push(m.to.as_deref().map(text));
        self.kind.push(text(&m.kind));
        self.ts.push(m.ts);
        self.data.push(m.data.get().to_owned());
        self.attachments
            .push((!m.attachments.is_empty()).then(|| encode_attachments(&m.attachments)));
    }

    async fn insert(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        sqlx::query(
            r#"INSERT INTO messages (channel_id, "offset", id, sender, recipient, type, ts, data,
                   attachments)
               SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                   $5::text[], $6::text[], $7::bigint[], $8::text[], $9::bytea[])
               ON CONFLICT DO NOTHING"#,
        )
        .bind(self.channel)
        .bind(self.offset)
        .bind(self.id)
        .bind(self.sender)
        .bind(self.recipient)
        .bind(self.kind)
        .bind(self.ts)
        .bind(self.data)
        .bind(self.attachments)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Inbox rows as column arrays, for one `INSERT … SELECT FROM UNNEST`.
#[derive(Default)]
struct InboxColumns {
    channel: Vec<i64>,
    recipient: Vec<String>,
    offset: Vec<i64>,
    id: Vec<String>,
    sender: Vec<String>,
    sender_tenant: Vec<String>,
    receipt: Vec<bool>,
    message: Vec<String>,
    created_at: Vec<i64>,
}

impl InboxColumns {
    fn push(
        &mut self,
        channel_id: i64,
        recipient: &str,
        offset: u64,
        m: &Message,
        w: &InboxWrite,
        json: String,
    ) {
        self.channel.push(channel_id);
        self.recipient.push(text(recipient));
        self.offset.push(signed(offset));
        self.id.push(text(&m.id));
        self.sender.push(text(&m.from));
        self.sender_tenant.push(text(&w.sender_tenant));
        self.receipt.push(w.receipt);
        self.message.push(json);
        self.created_at.push(m.ts);
    }

    async fn insert(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        sqlx::query(
            r#"INSERT INTO inbox (channel_id, recipient, "offset", id, sender, sender_tenant,
                   receipt, message, created_at, visible_at)
               SELECT c, r, o, i, s, t, rc, m, ts, ts FROM UNNEST($1::bigint[], $2::text[],
                   $3::bigint[], $4::text[], $5::text[], $6::text[], $7::boolean[], $8::text[],
                   $9::bigint[]) AS u(c, r, o, i, s, t, rc, m, ts)
               ON CONFLICT DO NOTHING"#,
        )
        .bind(self.channel)
        .bind(self.recipient)
        .bind(self.offset)
        .bind(self.id)
        .bind(self.sender)
        .bind(self.sender_tenant)
        .bind(self.receipt)
        .bind(self.message)
        .bind(self.created_at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

// Tenants and keys.

/// Every tenant and key (admin keys have no tenant).
pub(crate) async fn load_keys(pool: &PgPool) -> sqlx::Result<(Vec<TenantRow>, Vec<KeyRow>)> {
    let tenants = sqlx::query_as::<_, (String, i64, Option<i64>)>(
        "SELECT id, created_at, revoked_at FROM tenants",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, created_at, revoked_at)| TenantRow {
        id,
        created_at,
        revoked_at,
    })
    .collect();
    let keys = sqlx::query_as::<_, (String, Option<String>, Vec<u8>, i64, Option<i64>)>(
        "SELECT id, tenant_id, secret_hash, created_at, revoked_at FROM api_keys
         UNION ALL SELECT id, NULL, secret_hash, created_at, revoked_at FROM admin_keys",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(
        |(id, tenant_id, secret_hash, created_at, revoked_at)| KeyRow {
            id,
            tenant_id,
            secret_hash,
            created_at,
            revoked_at,
        },
    )
    .collect();
    Ok((tenants, keys))
}

/// Inserts a tenant; false if the id exists.
pub(crate) async fn insert_tenant(pool: &PgPool, tenant: &TenantRow) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&tenant.id)
    .bind(tenant.created_at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a key (the tenant of a tenant key must exist: a foreign key checks it).
pub(crate) async fn insert_key(pool: &PgPool, key: &KeyRow) -> sqlx::Result<()> {
    match &key.tenant_id {
        Some(tenant) => sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.id)
        .bind(tenant)
        .bind(&key.secret_hash)
        .bind(key.created_at),
        None => {
            sqlx::query("INSERT INTO admin_keys (id, secret_hash, created_at) VALUES ($1, $2, $3)")
                .bind(&key.id)
                .bind(&key.secret_hash)
                .bind(key.created_at)
        }
    }
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a key of any kind revoked (once).
pub(crate) async fn revoke_key(pool: &PgPool, id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "WITH a AS (UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL),
              b AS (UPDATE admin_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL)
         UPDATE temporary_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a tenant and every key of it revoked.
pub(crate) async fn revoke_tenant(pool: &PgPool, id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "WITH t AS (UPDATE tenants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL)
         UPDATE api_keys SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Temporary keys that have not expired.
pub(crate) async fn load_temporary(pool: &PgPool, now: i64) -> sqlx::Result<Vec<TemporaryRow>> {
    Ok(
        sqlx::query_as::<_, (String, String, String, i64, i64, Option<i64>)>(
            "SELECT id, tenant_id, parent, created_at, expires_at, revoked_at FROM temporary_keys
             WHERE expires_at >= $1",
        )
        .bind(now)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(
            |(id, tenant_id, parent, created_at, expires_at, revoked_at)| TemporaryRow {
                id,
                tenant_id,
                parent,
                created_at,
                expires_at,
                revoked_at,
            },
        )
        .collect(),
    )
}

/// Records a minted temporary key.
pub(crate) async fn insert_temporary(pool: &PgPool, row: &TemporaryRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO temporary_keys (id, tenant_id, parent, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&row.id)
    .bind(&row.tenant_id)
    .bind(&row.parent)
    .bind(row.created_at)
    .bind(row.expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes the records of expired temporary keys.
pub(crate) async fn prune_temporary(pool: &PgPool, now: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM temporary_keys WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

// Usage.

/// Adds usage deltas to their hourly rows (peaks take the maximum), in one statement. Rows
/// for the same hour and key are summed first (one statement may not update a row twice),
/// and go in key order, so concurrent writers lock rows in the same order.
pub(crate) async fn add_usage(pool: &PgPool, rows: &[UsageRow]) -> sqlx::Result<()> {
    let mut summed: BTreeMap<(&str, i64, &str), UsageRow> = BTreeMap::new();
    for r in rows {
        let s = summed
            .entry((&r.tenant_id, r.period_start, &r.key_id))
            .or_insert_with(|| UsageRow {
                tenant_id: r.tenant_id.clone(),
                key_id: r.key_id.clone(),
                period_start: r.period_start,
                ..UsageRow::default()
            });
        s.messages_in += r.messages_in;
        s.messages_out += r.messages_out;
        s.bytes_in += r.bytes_in;
        s.bytes_out += r.bytes_out;
        s.peak_connections = s.peak_connections.max(r.peak_connections);
    }
    if summed.is_empty() {
        return Ok(());
    }
    let rows: Vec<UsageRow> = summed.into_values().collect();
    let column =
        |f: fn(&UsageRow) -> u64| -> Vec<i64> { rows.iter().map(|r| signed(f(r))).collect() };
    sqlx::query(
        "INSERT INTO usage (tenant_id, key_id, period_start, messages_in, messages_out, bytes_in,
             bytes_out, peak_connections)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
             $6::bigint[], $7::bigint[], $8::bigint[])
         ON CONFLICT (tenant_id, period_start, key_id) DO UPDATE SET
           messages_in = usage.messages_in + EXCLUDED.messages_in,
           messages_out = usage.messages_out + EXCLUDED.messages_out,
           bytes_in = usage.bytes_in + EXCLUDED.bytes_in,
           bytes_out = usage.bytes_out + EXCLUDED.bytes_out,
           peak_connections = GREATEST(usage.peak_connections, EXCLUDED.peak_connections)",
    )
    .bind(rows.iter().map(|r| r.tenant_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.key_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.period_start).collect::<Vec<_>>())
    .bind(column(|r| r.messages_in))
    .bind(column(|r| r.messages_out))
    .bind(column(|r| r.bytes_in))
    .bind(column(|r| r.bytes_out))
    .bind(column(|r| r.peak_connections))
    .execute(pool)
    .await?;
    Ok(())
}

/// A tenant's hourly usage rows in `[from, to)`, by hour then key.
pub(crate) async fn usage_rows(
    pool: &PgPool,
    tenant: &str,
    from: i64,
    to: i64,
) -> sqlx::Result<Vec<UsageRow>> {
    Ok(
        sqlx::query_as::<_, (String, String, i64, i64, i64, i64, i64, i64)>(
            "SELECT tenant_id, key_id, period_start, messages_in, messages_out, bytes_in,
                 bytes_out, peak_connections
             FROM usage WHERE tenant_id = $1 AND period_start >= $2 AND period_start < $3
             ORDER BY period_start, key_id",
        )
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(
            |(tenant_id, key_id, period_start, mi, mo, bi, bo, peak)| UsageRow {
                tenant_id,
                key_id,
                period_start,
                messages_in: unsigned(mi),
                messages_out: unsigned(mo),
                bytes_in: unsigned(bi),
                bytes_out: unsigned(bo),
                peak_connections: unsigned(peak),
            },
        )
        .collect(),
    )
}

/// Messages a tenant stores in its channels, and their bytes (data and attachments).
pub(crate) async fn storage_of(pool: &PgPool, tenant: &str) -> sqlx::Result<(u64, u64)> {
    let (count, bytes) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT COUNT(*),
             COALESCE(SUM(octet_length(m.data) + COALESCE(octet_length(m.attachments), 0)), 0)::bigint
         FROM messages m JOIN channels c ON c.id = m.channel_id WHERE c.tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    Ok((unsigned(count), unsigned(bytes)))
}

// Channel storage.

const KV_COLUMNS: &str = "key, value, version, updated_at, updated_by, expires_at";

fn kv_row(r: &PgRow) -> sqlx::Result<KvRow> {
    Ok(KvRow {
        key: r.try_get(0)?,
        value: r.try_get(1)?,
        version: unsigned(r.try_get(2)?),
        updated_at: r.try_get(3)?,
        updated_by: r.try_get(4)?,
        expires_at: r.try_get(5)?,
    })
}

/// A live (unexpired) entry.
pub(crate) async fn kv_get(
    pool: &PgPool,
    channel: i64,
    key: &str,
    now: i64,
) -> sqlx::Result<Option<KvRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {KV_COLUMNS} FROM kv WHERE channel_id = $1 AND key = $2
         AND (expires_at IS NULL OR expires_at > $3)"
    )))
    .bind(channel)
    .bind(key)
    .bind(now)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(kv_row)
    .transpose()
}

/// Locks a key's row (expired or not) until the transaction ends: its version if it is
/// live, and whether there is a row at all.
async fn kv_lock(
    conn: &mut PgConnection,
    channel: i64,
    key: &str,
    now: i64,
) -> sqlx::Result<(Option<u64>, bool)> {
    let row = sqlx::query_as::<_, (i64, Option<i64>)>(
        "SELECT version, expires_at FROM kv WHERE channel_id = $1 AND key = $2 FOR UPDATE",
    )
    .bind(channel)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    let live = row
        .filter(|(_, expires)| expires.is_none_or(|e| e > now))
        .map(|(v, _)| unsigned(v));
    Ok((live, row.is_some()))
}

/// Writes an entry, compare-and-set when `expected` is given; the new row. The key's row
/// is locked first, so concurrent writers of one key take turns and a compare-and-set has
/// one winner; a key that does not exist yet is inserted with `ON CONFLICT DO NOTHING`,
/// and if another writer inserted it meanwhile, the write starts over against its row.
/// Adding a key under a key limit first takes the channel's advisory lock, so concurrent
/// writers never take the channel past the limit.
pub(crate) async fn kv_put(
    pool: &PgPool,
    w: &crate::storage::KvWrite,
) -> sqlx::Result<Result<KvRow, KvRefused>> {
    let mut tx = pool.begin().await?;
    loop {
        let (live, exists) = kv_lock(&mut tx, w.channel_id, &w.key, w.now).await?;
        let version = live.unwrap_or(0);
        if w.expected.is_some_and(|e| e != version) {
            return Ok(Err(KvRefused::Conflict(version)));
        }
        if live.is_none() && w.max_keys > 0 {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("switchboard.kv.{}", w.channel_id))
                .execute(&mut *tx)
                .await?;
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM kv WHERE channel_id = $1
                 AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(w.channel_id)
            .bind(w.now)
            .fetch_one(&mut *tx)
            .await?;
            if unsigned(held) >= w.max_keys as u64 {
                return Ok(Err(KvRefused::Full));
            }
        }
        let row = KvRow {
            key: w.key.clone(),
            value: w.value.clone(),
            version: version + 1,
            updated_at: w.now,
            updated_by: w.by.clone(),
            expires_at: w.expires_at,
        };
        let sql = if exists {
            "UPDATE kv SET value = $3, version = $4, updated_at = $5, updated_by = $6,
                 expires_at = $7
             WHERE channel_id = $1 AND key = $2"
        } else {
            "INSERT INTO kv (channel_id, key, value, version, updated_at, updated_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel_id, key) DO NOTHING"
        };
        let done = sqlx::query(sql)
            .bind(w.channel_id)
            .bind(&row.key)
            .bind(&row.value)
            .bind(signed(row.version))
            .bind(row.updated_at)
            .bind(&row.updated_by)
            .bind(row.expires_at)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(Ok(row));
        }
        // Another writer inserted the key after the lock found none (its insert is
        // committed, or this one would still wait): start over with its row locked.
    }
}

/// Deletes an entry (compare-and-delete when `expected` is given); the version deleted,
/// `None` when there was none. The row is locked first.
pub(crate) async fn kv_delete(
    pool: &PgPool,
    channel: i64,
    key: &str,
    expected: Option<u64>,
    now: i64,
) -> sqlx::Result<Result<Option<u64>, KvRefused>> {
    let mut tx = pool.begin().await?;
    let (version, _) = kv_lock(&mut tx, channel, key, now).await?;
    if expected.is_some_and(|e| Some(e) != version) {
        return Ok(Err(KvRefused::Conflict(version.unwrap_or(0))));
    }
    sqlx::query("DELETE FROM kv WHERE channel_id = $1 AND key = $2")
        .bind(channel)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(version))
}

/// Live entries in key order: after `after`, starting with `prefix`, at most `limit`.
pub(crate) async fn kv_list(
    pool: &PgPool,
    channel: i64,
    prefix: &str,
    after: &str,
    limit: u32,
    now: i64,
) -> sqlx::Result<Vec<KvRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {KV_COLUMNS} FROM kv WHERE channel_id = $1 AND key > $2 AND key >= $3
         AND starts_with(key, $3) AND (expires_at IS NULL OR expires_at > $4)
         ORDER BY key LIMIT $5"
    )))
    .bind(channel)
    .bind(after)
    .bind(prefix)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?
    .iter()
    .map(kv_row)
    .collect()
}

/// Deletes expired entries.
pub(crate) async fn kv_prune(pool: &PgPool, now: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= $1")
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

// Channels and their messages.

const CHANNEL_COLUMNS: &str = "id, tenant_id, name, password_hash, persistent, max_messages, \
     max_age_secs, epoch, created_at, members, expires_at, tier_retention";

fn channel_from_row(r: &PgRow) -> sqlx::Result<ChannelRow> {
    let (cache_retention, log_retention) =
        TierRetention::parse(r.try_get::<Option<String>, _>(11)?.as_deref());
    Ok(ChannelRow {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        name: r.try_get(2)?,
        password_hash: r.try_get(3)?,
        storage: policy_from_column(i64::from(r.try_get::<i32, _>(4)?)),
        max_messages: unsigned(r.try_get(5)?),
        max_age_secs: unsigned(r.try_get(6)?),
        epoch: r.try_get(7)?,
        created_at: r.try_get(8)?,
        members: parse_members(r.try_get::<Option<String>, _>(9)?.as_deref()),
        expires_at: r.try_get(10)?,
        cache_retention,
        log_retention,
    })
}

/// Finds a channel.
pub(crate) async fn get_channel(
    conn: &mut PgConnection,
    tenant_id: &str,
    name: &str,
) -> sqlx::Result<Option<ChannelRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels WHERE tenant_id = $1 AND name = $2"
    )))
    .bind(tenant_id)
    .bind(name)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(channel_from_row)
    .transpose()
}

/// Creates a channel unless it exists: the stored row and whether it was created; `None`
/// when the tenant (or the public namespace, tenant `''`) already holds `max` channels (0:
/// no limit). Under a limit, creators of one tenant's channels take turns on the tenant's
/// advisory lock, so the limit is exact; nodes creating the same channel at once get the
/// same row, and exactly one of them `true`.
pub(crate) async fn create_channel(
    pool: &PgPool,
    row: &ChannelRow,
    max: usize,
) -> sqlx::Result<Option<(ChannelRow, bool)>> {
    let mut tx = pool.begin().await?;
    if let Some(existing) = get_channel(&mut tx, &row.tenant_id, &row.name).await? {
        return Ok(Some((existing, false)));
    }
    if max > 0 {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("switchboard.channels.{}", row.tenant_id))
            .execute(&mut *tx)
            .await?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM channels WHERE tenant_id = $1")
            .bind(&row.tenant_id)
            .fetch_one(&mut *tx)
            .await?;
        if unsigned(held) >= max as u64 {
            // Another node may have created this very channel meanwhile.
            let existing = get_channel(&mut tx, &row.tenant_id, &row.name).await?;
            return Ok(existing.map(|c| (c, false)));
        }
    }
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO channels (tenant_id, name, password_hash, persistent, max_messages,
             max_age_secs, epoch, created_at, members, expires_at, tier_retention)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (tenant_id, name) DO NOTHING
         RETURNING {CHANNEL_COLUMNS}"
    )))
    .bind(&row.tenant_id)
    .bind(&row.name)
    .bind(&row.password_hash)
    .bind(policy_column(row.storage) as i32)
    .bind(signed(row.max_messages))
    .bind(signed(row.max_age_secs))
    .bind(&row.epoch)
    .bind(row.created_at)
    .bind(members_column(&row.members))
    .bind(row.expires_at)
    .bind(TierRetention::column(row))
    .fetch_optional(&mut *tx)
    .await?;
    let stored = match inserted {
        Some(r) => (channel_from_row(&r)?, true),
        // Another node inserted it after the first look (its insert is committed, or this
        // one would still wait): read its row.
        None => (
            get_channel(&mut tx, &row.tenant_id, &row.name)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?,
            false,
        ),
    };
    tx.commit().await?;
    Ok(Some(stored))
}

/// Deletes a channel with its messages, channel storage and inboxes. The channel's row goes
/// first, so a concurrent `apply_log` either finishes before or finds the channel gone.
pub(crate) async fn delete_channel(pool: &PgPool, id: i64) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM channels WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "WITH m AS (DELETE FROM messages WHERE channel_id = $1),
              k AS (DELETE FROM kv WHERE channel_id = $1)
         DELETE FROM inbox WHERE channel_id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Team channels whose `expires_at` has come: (tenant, name).
pub(crate) async fn expired_channels(
    pool: &PgPool,
    now: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT tenant_id, name FROM channels WHERE expires_at IS NOT NULL AND expires_at <= $1",
    )
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Gives a channel a new epoch (its history starts over).
pub(crate) async fn set_epoch(pool: &PgPool, id: i64, epoch: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE channels SET epoch = $2 WHERE id = $1")
        .bind(id)
        .bind(epoch)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records that a channel's offsets up to `through` were removed (never lowers it).
pub(crate) async fn set_pruned_through(pool: &PgPool, id: i64, through: u64) -> sqlx::Result<()> {
    sqlx::query("UPDATE channels SET pruned_through = GREATEST(pruned_through, $2) WHERE id = $1")
        .bind(id)
        .bind(signed(through))
        .execute(pool)
        .await?;
    Ok(())
}

/// Records what log retention dropped, for the channels the database does not keep (for
/// the others the database still holds those messages). One statement; the highest offset
/// per channel is taken first, since one `UPDATE … FROM` changes a row only once.
pub(crate) async fn log_dropped(pool: &PgPool, dropped: &[(i64, u64)]) -> sqlx::Result<()> {
    let mut highest: BTreeMap<i64, u64> = BTreeMap::new();
    for (id, through) in dropped {
        let h = highest.entry(*id).or_default();
        *h = (*h).max(*through);
    }
    if highest.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE channels c SET pruned_through = GREATEST(c.pruned_through, d.through)
         FROM UNNEST($1::bigint[], $2::bigint[]) AS d(id, through)
         WHERE c.id = d.id AND c.persistent != 1",
    )
    .bind(highest.keys().copied().collect::<Vec<_>>())
    .bind(highest.values().map(|t| signed(*t)).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    Ok(())
}

/// First and last offsets: of the stored messages, or past what retention deleted (one
/// statement, so one snapshot).
pub(crate) async fn bounds(conn: &mut PgConnection, channel_id: i64) -> sqlx::Result<StoreStats> {
    let (first, last, last_ts, pruned) =
        sqlx::query_as::<_, (Option<i64>, Option<i64>, Option<i64>, Option<i64>)>(
            r#"SELECT (SELECT MIN("offset") FROM messages WHERE channel_id = $1),
                      (SELECT MAX("offset") FROM messages WHERE channel_id = $1),
                      (SELECT ts FROM messages WHERE channel_id = $1
                       ORDER BY "offset" DESC LIMIT 1),
                      (SELECT pruned_through FROM channels WHERE id = $1)"#,
        )
        .bind(channel_id)
        .fetch_one(conn)
        .await?;
    let (first, last) = (unsigned(first.unwrap_or(0)), unsigned(last.unwrap_or(0)));
    let pruned = unsigned(pruned.unwrap_or(0));
    Ok(StoreStats {
        first: if first == 0 {
            last.max(pruned) + 1
        } else {
            first
        },
        last: last.max(pruned),
        last_ts: last_ts.unwrap_or(0),
        pruned,
    })
}

const MESSAGE_COLUMNS: &str = r#""offset", id, sender, recipient, type, ts, data, attachments"#;

fn message_from_row(channel: &str, row: &PgRow) -> sqlx::Result<Message> {
    let data: String = row.try_get(6)?;
    let attachments: Option<Vec<u8>> = row.try_get(7)?;
    Ok(Message {
        offset: Some(unsigned(row.try_get(0)?)),
        id: row.try_get(1)?,
        from: row.try_get(2)?,
        to: row.try_get(3)?,
        kind: row.try_get(4)?,
        ts: row.try_get(5)?,
        data: RawValue::from_string(data).map_err(decode_error)?,
        channel: channel.to_owned(),
        ephemeral: false,
        attachments: attachments
            .map(|a| decode_attachments(&a))
            .unwrap_or_default(),
    })
}

/// The newest `n` messages, oldest first.
pub(crate) async fn recent(
    pool: &PgPool,
    channel_id: i64,
    channel: &str,
    n: usize,
) -> sqlx::Result<Vec<Message>> {
    let mut out = sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1
           ORDER BY "offset" DESC LIMIT $2"#
    )))
    .bind(channel_id)
    .bind(signed(n as u64))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| message_from_row(channel, r))
    .collect::<sqlx::Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// The ids and offsets of the newest `n` messages below offset `below`, oldest first.
pub(crate) async fn recent_ids(
    pool: &PgPool,
    channel_id: i64,
    below: u64,
    n: usize,
) -> sqlx::Result<Vec<(String, u64)>> {
    let mut out: Vec<(String, u64)> = sqlx::query_as::<_, (String, i64)>(
        r#"SELECT id, "offset" FROM messages WHERE channel_id = $1 AND "offset" < $3
           ORDER BY "offset" DESC LIMIT $2"#,
    )
    .bind(channel_id)
    .bind(signed(n as u64))
    .bind(signed(below))
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, offset)| (id, unsigned(offset)))
    .collect();
    out.reverse();
    Ok(out)
}

/// A history read and the channel's stored head. `visible_to` limits direct messages to
/// those the agent sent or receives. Reads one more than `limit` so the caller knows whether
/// the page was cut short.
pub(crate) async fn history(
    pool: &PgPool,
    channel_id: i64,
    channel: &str,
    q: &HistoryQuery,
    limit: u32,
    visible_to: Option<&str>,
) -> sqlx::Result<(Vec<Message>, u64)> {
    enum Arg {
        Int(i64),
        Text(String),
    }
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1");
    let mut args = vec![Arg::Int(channel_id)];
    let mut bind = |sql: &mut String, clause: &str, v: Arg| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(v) = q.from_offset {
        bind(&mut sql, r#" AND "offset" >= ?"#, Arg::Int(signed(v)));
    }
    if let Some(v) = q.to_offset {
        bind(&mut sql, r#" AND "offset" <= ?"#, Arg::Int(signed(v)));
    }
    if let Some(v) = q.from_ts {
        bind(&mut sql, " AND ts >= ?", Arg::Int(v));
    }
    if let Some(v) = q.to_ts {
        bind(&mut sql, " AND ts <= ?", Arg::Int(v));
    }
    if let Some(v) = &q.sender {
        bind(&mut sql, " AND sender = ?", Arg::Text(text(v)));
    }
    if let Some(v) = &q.kind {
        bind(&mut sql, " AND type = ?", Arg::Text(text(v)));
    }
    if let Some(agent) = visible_to {
        bind(
            &mut sql,
            " AND (recipient IS NULL OR recipient = ? OR sender = ?)",
            Arg::Text(text(agent)),
        );
    }
    sql.push_str(match q.direction {
        Direction::Forward => r#" ORDER BY "offset" ASC"#,
        Direction::Backward => r#" ORDER BY "offset" DESC"#,
    });
    sql.push_str(&format!(" LIMIT {}", u64::from(limit) + 1));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
        };
    }
    let mut conn = pool.acquire().await?;
    let found = query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| message_from_row(channel, r))
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok((found, bounds(&mut conn, channel_id).await?.last))
}

/// Deletes messages below offset `below` or older than `before_ts` (everything up to the
/// highest such offset), records the highest offset deleted, and returns the bounds after.
/// The channel's row is locked first (see [`write_messages`]).
pub(crate) async fn prune(
    pool: &PgPool,
    channel_id: i64,
    below: u64,
    before_ts: i64,
) -> sqlx::Result<StoreStats> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM channels WHERE id = $1 FOR UPDATE")
        .bind(channel_id)
        .execute(&mut *tx)
        .await?;
    let highest: Option<i64> = sqlx::query_scalar(
        r#"SELECT MAX("offset") FROM messages
           WHERE channel_id = $1 AND ("offset" < $2 OR ts < $3)"#,
    )
    .bind(channel_id)
    .bind(signed(below))
    .bind(before_ts)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(highest) = highest {
        sqlx::query(
            r#"WITH d AS (DELETE FROM messages WHERE channel_id = $1 AND "offset" <= $2)
               UPDATE channels SET pruned_through = GREATEST(pruned_through, $2) WHERE id = $1"#,
        )
        .bind(channel_id)
        .bind(highest)
        .execute(&mut *tx)
        .await?;
    }
    let after = bounds(&mut tx, channel_id).await?;
    tx.commit().await?;
    Ok(after)
}
