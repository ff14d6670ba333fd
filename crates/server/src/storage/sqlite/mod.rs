//! SQLite implementation of the store (WAL, group commit on one writer thread).

mod database;
mod directory;
mod inbox;
mod streams;
mod webhooks;

use super::columns::*;
use super::database::DbFuture;
use super::log::Record;
use super::rows::*;
use super::{LOG_APPLIED, LOG_IDENTITY, lock_data_dir, stopped, unavailable};
use crate::config::{Durability, StorageConfig};
use crate::error::Result;
use inbox::inbox_insert;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_protocol::history::Direction;
use switchboard_protocol::{HistoryQuery, Message};
use tokio::sync::{mpsc, oneshot};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS temporary_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    parent TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS usage (
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    period_start INTEGER NOT NULL,    -- the hour, ms
    messages_in INTEGER NOT NULL,
    messages_out INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    peak_connections INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, period_start, key_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    channel_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (channel_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_keys (
    id TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    secret_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL,          -- '' for public scope
    name TEXT NOT NULL,
    password_hash TEXT,
    persistent INTEGER NOT NULL,      -- storage policy: 0 ephemeral, 1 persistent, 2 cache, 3 log
    max_messages INTEGER NOT NULL,    -- 0 = unlimited
    max_age_secs INTEGER NOT NULL,    -- 0 = unlimited
    epoch TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL DEFAULT 0,  -- highest offset retention ever deleted
    members TEXT,                     -- team channels: JSON array of agent names
    expires_at INTEGER,               -- team channels: completes itself then, ms
    tier_retention TEXT,              -- JSON: the cache and log tiers' own limits
    UNIQUE (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS messages (
    channel_id INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT,
    type TEXT NOT NULL,
    ts INTEGER NOT NULL,
    data TEXT NOT NULL,
    attachments BLOB,
    PRIMARY KEY (channel_id, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_ts ON messages (channel_id, ts);
CREATE TABLE IF NOT EXISTS inbox (
    channel_id INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    offset INTEGER NOT NULL,
    id TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_tenant TEXT NOT NULL,
    receipt INTEGER NOT NULL,         -- 1: the sender asked for receipts
    message TEXT NOT NULL,            -- the message as JSON
    created_at INTEGER NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    rejections INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL,      -- delivered again from then on unless acknowledged
    dead_at INTEGER,                  -- set once dead-lettered
    reason TEXT,                      -- the last rejection's, or why it was dead-lettered
    PRIMARY KEY (channel_id, recipient, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_id ON inbox (channel_id, recipient, id);
CREATE INDEX IF NOT EXISTS inbox_dead ON inbox (channel_id, dead_at, offset) WHERE dead_at IS NOT NULL;
-- Retention's sweeps (every retention_interval_ms) read these instead of the whole table.
CREATE INDEX IF NOT EXISTS inbox_waiting_since ON inbox (created_at) WHERE dead_at IS NULL;
CREATE INDEX IF NOT EXISTS inbox_dead_since ON inbox (dead_at) WHERE dead_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,             -- the HMAC key (needed to sign, so not hashed)
    events TEXT NOT NULL,             -- JSON array of event names
    channel TEXT,                     -- name, or prefix*
    types TEXT,                       -- JSON array of message types
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    will_retry INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_hook ON webhook_attempts (webhook_id, seq);
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    channel_id INTEGER NOT NULL,
    offer TEXT NOT NULL,              -- the stream_offer JSON (sender, recipient, name, size…)
    recipient TEXT NOT NULL,
    next_seq INTEGER NOT NULL,        -- durable position: the spool file holds `offset` bytes
    offset INTEGER NOT NULL,
    acked INTEGER NOT NULL,           -- the recipient's checkpoint
    checksum TEXT,                    -- set once closed
    total_size INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    capabilities TEXT NOT NULL,       -- JSON array
    metadata TEXT NOT NULL,           -- JSON object
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
";

type Job = Box<dyn FnOnce(&Connection) + Send>;

/// The embedded store.
pub struct SqliteStore {
    readers: Arc<Readers>,
    writer: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The data directory's lock, held until `close`.
    lock: Mutex<Option<std::fs::File>>,
}

/// Read-only connections, reused across reads.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `dir` and starts the writer thread.
    pub fn open(dir: &Path, config: &StorageConfig) -> Result<Self> {
        let lock = lock_data_dir(dir)?;
        let path = dir.join("switchboard.db");
        let conn = Connection::open(&path).map_err(unavailable)?;
        let sync = match config.durability {
            Durability::Fsync => "FULL",
            Durability::None => "OFF",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000;
             PRAGMA wal_autocheckpoint=4000; {SCHEMA}"
        ))
        .and_then(|()| migrate(&conn))
        .map_err(unavailable)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("switchboard-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(unavailable)?;
        Ok(SqliteStore {
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Queues `f` for the writer thread now (after every write queued before it); the
    /// future resolves with its result.
    fn write<T, F>(&self, f: F) -> DbFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        let sent = self.send(job).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(stopped());
            }
            rx.await.map_err(|_| stopped())?.map_err(unavailable)
        })
    }

    /// Runs `f` on a pooled read-only connection on the blocking thread pool.
    fn read<T, F>(&self, f: F) -> DbFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = match readers.idle.lock().pop() {
                    Some(conn) => conn,
                    None => Connection::open_with_flags(
                        &readers.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?,
                };
                let out = f(&conn);
                readers.idle.lock().push(conn);
                out
            })
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
        })
    }

    /// Stops accepting writes, commits what is queued, and waits for the writer to finish.
    pub fn close_now(&self) {
        self.writer.lock().take();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
        self.readers.idle.lock().clear();
        self.lock.lock().take();
    }

    fn send(&self, op: Job) -> std::result::Result<(), Job> {
        match self.writer.lock().as_ref() {
            Some(w) => w.send(op).map_err(|e| e.0),
            None => Err(op),
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close_now();
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = rx.blocking_recv() {
        job(&conn);
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

/// Copies a batch of log records into the database and records the position reached, in
/// one transaction (the database writer's step). Messages of channels that no longer exist,
/// or that retention pruned already, are not inserted; records at or below the position
/// already applied are skipped, and that position never moves back.
///
/// The transaction is not fsynced on its own: the log holds the records durably, and if a
/// power loss takes this commit back, it takes `log_applied` back with it and the writer
/// copies the records again. The next fsynced commit of any other write (or
/// [`durable_log_applied`]) makes it durable too. This keeps the database's fsyncs off the
/// disk the log's group commits wait for.
pub(crate) fn apply_log(
    conn: &Connection,
    batch: &[(u64, Record)],
    last: u64,
) -> rusqlite::Result<()> {
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if sync > 1 {
        conn.execute_batch("PRAGMA synchronous=NORMAL")?;
    }
    let applied = apply_log_transaction(conn, batch, last);
    if sync > 1 {
        conn.execute_batch("PRAGMA synchronous=FULL")?;
    }
    applied
}

/// Makes every commit so far durable and returns the log position the database holds for
/// sure: the log may drop what is below it.
pub(crate) fn durable_log_applied(conn: &Connection) -> rusqlite::Result<u64> {
    // A commit at the connection's own synchronous level fsyncs the write-ahead log, and with
    // it every earlier commit.
    conn.execute(
        "UPDATE settings SET value = value WHERE name = ?1",
        [LOG_APPLIED],
    )?;
    Ok(get_setting(conn, LOG_APPLIED)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn apply_log_transaction(
    conn: &Connection,
    batch: &[(u64, Record)],
    last: u64,
) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    // What an earlier batch applied already is skipped (so an acknowledged inbox entry is
    // not written again), and the position never moves back.
    let applied: u64 = get_setting(&tx, LOG_APPLIED)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO messages (channel_id, offset, id, sender, recipient, type, ts, data, attachments)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut pruned_of =
            tx.prepare_cached("SELECT pruned_through FROM channels WHERE id = ?1")?;
        // Per channel, what retention removed (None: the channel is gone); looked up once
        // per batch.
        let mut pruned: std::collections::HashMap<i64, Option<u64>> = Default::default();
        for (_, record) in batch.iter().filter(|(position, _)| *position > applied) {
            match record {
                Record::ChannelDeleted { channel_id } => {
                    tx.execute("DELETE FROM messages WHERE channel_id = ?1", [channel_id])?;
                    tx.execute("DELETE FROM inbox WHERE channel_id = ?1", [channel_id])?;
                    pruned.remove(channel_id);
                }
                Record::Message(r) => {
                    let m = &r.message;
                    if let (Some(inbox), Some(to)) = (&r.inbox, &m.to) {
                        inbox_insert(&tx, r.channel_id, to, m, inbox)?;
                    }
                    let through = match pruned.get(&r.channel_id) {
                        Some(through) => *through,
                        None => {
                            let through = pruned_of
                                .query_row([r.channel_id], |row| row.get::<_, i64>(0))
                                .optional()?
                                .map(|v| v as u64);
                            pruned.insert(r.channel_id, through);
                            through
                        }
                    };
                    // Not for channels that are gone, nor what retention removed already.
                    let wanted = through.is_some_and(|t| m.offset.unwrap_or(0) > t);
                    if r.to_database && wanted {
                        let attachments =
                            (!m.attachments.is_empty()).then(|| encode_attachments(&m.attachments));
                        insert.execute(params![
                            r.channel_id,
                            m.offset.unwrap_or(0) as i64,
                            m.id,
                            m.from,
                            m.to,
                            m.kind,
                            m.ts,
                            m.data.get(),
                            attachments.as_deref(),
                        ])?;
                    }
                }
            }
        }
    }
    put_setting(&tx, LOG_APPLIED, &last.max(applied).to_string())?;
    tx.commit()
}

const MESSAGE_COLUMNS: &str = "offset, id, sender, recipient, type, ts, data, attachments";

fn message_from_row(channel: &str, row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let data: String = row.get(6)?;
    let attachments: Option<Vec<u8>> = row.get(7)?;
    Ok(Message {
        offset: Some(row.get::<_, i64>(0)? as u64),
        id: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        kind: row.get(4)?,
        ts: row.get(5)?,
        data: RawValue::from_string(data).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, e.into())
        })?,
        channel: channel.to_owned(),
        ephemeral: false,
        attachments: attachments
            .map(|a| decode_attachments(&a))
            .unwrap_or_default(),
    })
}

// Queries, run through `read` / `write` by the layers above.

/// Loads every tenant id and API key.
pub(crate) fn load_keys(conn: &Connection) -> rusqlite::Result<(Vec<TenantRow>, Vec<KeyRow>)> {
    let tenants = conn
        .prepare("SELECT id, created_at, revoked_at FROM tenants")?
        .query_map([], |r| {
            Ok(TenantRow {
                id: r.get(0)?,
                created_at: r.get(1)?,
                revoked_at: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let keys = conn
        .prepare(
            "SELECT id, tenant_id, secret_hash, created_at, revoked_at FROM api_keys
             UNION ALL SELECT id, NULL, secret_hash, created_at, revoked_at FROM admin_keys",
        )?
        .query_map([], |r| {
            Ok(KeyRow {
                id: r.get(0)?,
                tenant_id: r.get(1)?,
                secret_hash: r.get(2)?,
                created_at: r.get(3)?,
                revoked_at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((tenants, keys))
}

/// Inserts a tenant; false if the id exists.
pub(crate) fn insert_tenant(conn: &Connection, tenant: &TenantRow) -> rusqlite::Result<bool> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?1, ?2)",
        params![tenant.id, tenant.created_at],
    )?;
    Ok(inserted == 1)
}

/// Inserts a key (the tenant of a tenant key must exist).
pub(crate) fn insert_key(conn: &Connection, key: &KeyRow) -> rusqlite::Result<()> {
    match &key.tenant_id {
        Some(tenant) => conn.execute(
            "INSERT INTO api_keys (id, tenant_id, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![key.id, tenant, key.secret_hash, key.created_at],
        )?,
        None => conn.execute(
            "INSERT INTO admin_keys (id, secret_hash, created_at) VALUES (?1, ?2, ?3)",
            params![key.id, key.secret_hash, key.created_at],
        )?,
    };
    Ok(())
}

/// Marks a key revoked (of either kind).
pub(crate) fn revoke_key(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<()> {
    for table in ["api_keys", "admin_keys", "temporary_keys"] {
        conn.execute(
            &format!("UPDATE {table} SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL"),
            params![id, now],
        )?;
    }
    Ok(())
}

/// Marks a tenant and every key of it revoked.
pub(crate) fn revoke_tenant(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE tenants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE tenant_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Temporary keys that have not expired.
pub(crate) fn load_temporary(conn: &Connection, now: i64) -> rusqlite::Result<Vec<TemporaryRow>> {
    conn.prepare(
        "SELECT id, tenant_id, parent, created_at, expires_at, revoked_at FROM temporary_keys
         WHERE expires_at >= ?1",
    )?
    .query_map([now], |r| {
        Ok(TemporaryRow {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            parent: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            revoked_at: r.get(5)?,
        })
    })?
    .collect()
}

/// Records a minted temporary key.
pub(crate) fn insert_temporary(conn: &Connection, row: &TemporaryRow) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO temporary_keys (id, tenant_id, parent, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            row.id,
            row.tenant_id,
            row.parent,
            row.created_at,
            row.expires_at,
        ],
    )?;
    Ok(())
}

/// Deletes the records of expired temporary keys (an expired key is refused anyway).
pub(crate) fn prune_temporary(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM temporary_keys WHERE expires_at < ?1", [now])?;
    Ok(())
}

/// A server setting.
pub(crate) fn get_setting(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
}

/// Stores a server setting.
pub(crate) fn put_setting(conn: &Connection, name: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )?;
    Ok(())
}

/// Adds usage deltas to their hourly rows.
pub(crate) fn add_usage(conn: &Connection, rows: &[UsageRow]) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO usage (tenant_id, key_id, period_start, messages_in, messages_out, bytes_in,
                            bytes_out, peak_connections)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant_id, period_start, key_id) DO UPDATE SET
           messages_in = messages_in + excluded.messages_in,
           messages_out = messages_out + excluded.messages_out,
           bytes_in = bytes_in + excluded.bytes_in,
           bytes_out = bytes_out + excluded.bytes_out,
           peak_connections = MAX(peak_connections, excluded.peak_connections)",
    )?;
    for r in rows {
        upsert.execute(params![
            r.tenant_id,
            r.key_id,
            r.period_start,
            r.messages_in as i64,
            r.messages_out as i64,
            r.bytes_in as i64,
            r.bytes_out as i64,
            r.peak_connections as i64
        ])?;
    }
    Ok(())
}

/// A tenant's hourly usage rows in `[from, to)`, oldest first.
pub(crate) fn usage_rows(
    conn: &Connection,
    tenant: &str,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<UsageRow>> {
    conn.prepare(
        "SELECT tenant_id, key_id, period_start, messages_in, messages_out, bytes_in, bytes_out,
                peak_connections
         FROM usage WHERE tenant_id = ?1 AND period_start >= ?2 AND period_start < ?3
         ORDER BY period_start, key_id",
    )?
    .query_map(params![tenant, from, to], |r| {
        Ok(UsageRow {
            tenant_id: r.get(0)?,
            key_id: r.get(1)?,
            period_start: r.get(2)?,
            messages_in: r.get::<_, i64>(3)? as u64,
            messages_out: r.get::<_, i64>(4)? as u64,
            bytes_in: r.get::<_, i64>(5)? as u64,
            bytes_out: r.get::<_, i64>(6)? as u64,
            peak_connections: r.get::<_, i64>(7)? as u64,
        })
    })?
    .collect()
}

/// Messages a tenant stores in its private channels, and their bytes.
pub(crate) fn storage_of(conn: &Connection, tenant: &str) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(
        // Bytes, not characters: LENGTH of a text counts characters.
        "SELECT COUNT(*),
             COALESCE(SUM(LENGTH(CAST(m.data AS BLOB)) + COALESCE(LENGTH(m.attachments), 0)), 0)
         FROM messages m JOIN channels c ON c.id = m.channel_id WHERE c.tenant_id = ?1",
        [tenant],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

fn kv_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KvRow> {
    Ok(KvRow {
        key: r.get(0)?,
        value: r.get(1)?,
        version: r.get::<_, i64>(2)? as u64,
        updated_at: r.get(3)?,
        updated_by: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

const KV_COLUMNS: &str = "key, value, version, updated_at, updated_by, expires_at";

/// A live (unexpired) entry.
pub(crate) fn kv_get(
    conn: &Connection,
    channel: i64,
    key: &str,
    now: i64,
) -> rusqlite::Result<Option<KvRow>> {
    conn.prepare_cached(&format!(
        "SELECT {KV_COLUMNS} FROM kv WHERE channel_id = ?1 AND key = ?2
         AND (expires_at IS NULL OR expires_at > ?3)"
    ))?
    .query_row(params![channel, key, now], kv_row)
    .optional()
}

/// Writes an entry, compare-and-set when `expected` is given; returns the new row.
#[allow(clippy::too_many_arguments)]
pub(crate) fn kv_put(
    conn: &Connection,
    channel: i64,
    key: &str,
    value: &str,
    expected: Option<u64>,
    expires_at: Option<i64>,
    by: &str,
    now: i64,
    max_keys: usize,
) -> rusqlite::Result<Result<KvRow, KvRefused>> {
    let current = kv_get(conn, channel, key, now)?;
    let version = current.as_ref().map_or(0, |c| c.version);
    if expected.is_some_and(|e| e != version) {
        return Ok(Err(KvRefused::Conflict(version)));
    }
    if current.is_none() && max_keys > 0 {
        let held: i64 = conn.query_row(
            "SELECT COUNT(*) FROM kv WHERE channel_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
            params![channel, now],
            |r| r.get(0),
        )?;
        if held as usize >= max_keys {
            return Ok(Err(KvRefused::Full));
        }
    }
    let row = KvRow {
        key: key.to_owned(),
        value: value.to_owned(),
        version: version + 1,
        updated_at: now,
        updated_by: by.to_owned(),
        expires_at,
    };
    conn.prepare_cached(
        "INSERT INTO kv (channel_id, key, value, version, updated_at, updated_by, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (channel_id, key) DO UPDATE SET value = excluded.value,
           version = excluded.version, updated_at = excluded.updated_at,
           updated_by = excluded.updated_by, expires_at = excluded.expires_at",
    )?
    .execute(params![
        channel,
        row.key,
        row.value,
        row.version as i64,
        row.updated_at,
        row.updated_by,
        row.expires_at
    ])?;
    Ok(Ok(row))
}

/// Deletes an entry (compare-and-delete when `expected` is given); the version deleted, or
/// `None` when there was none.
pub(crate) fn kv_delete(
    conn: &Connection,
    channel: i64,
    key: &str,
    expected: Option<u64>,
    now: i64,
) -> rusqlite::Result<Result<Option<u64>, KvRefused>> {
    let version = kv_get(conn, channel, key, now)?.map(|c| c.version);
    if expected.is_some_and(|e| Some(e) != version) {
        return Ok(Err(KvRefused::Conflict(version.unwrap_or(0))));
    }
    conn.execute(
        "DELETE FROM kv WHERE channel_id = ?1 AND key = ?2",
        params![channel, key],
    )?;
    Ok(Ok(version))
}

/// Live entries in key order: after `after`, starting with `prefix`, at most `limit`.
pub(crate) fn kv_list(
    conn: &Connection,
    channel: i64,
    prefix: &str,
    after: &str,
    limit: u32,
    now: i64,
) -> rusqlite::Result<Vec<KvRow>> {
    conn.prepare_cached(&format!(
        "SELECT {KV_COLUMNS} FROM kv WHERE channel_id = ?1 AND key > ?2 AND key >= ?3
         AND substr(key, 1, length(?3)) = ?3 AND (expires_at IS NULL OR expires_at > ?4)
         ORDER BY key LIMIT ?5"
    ))?
    .query_map(params![channel, after, prefix, now, limit], kv_row)?
    .collect()
}

/// Deletes expired entries.
pub(crate) fn kv_prune(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        [now],
    )?;
    Ok(())
}

/// Brings a database written by an earlier version up to the current schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = |table: &str, column: &str| -> rusqlite::Result<bool> {
        conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
            .exists(params![table, column])
    };
    if !has_column("tenants", "revoked_at")? {
        conn.execute_batch("ALTER TABLE tenants ADD COLUMN revoked_at INTEGER")?;
    }
    if !has_column("channels", "members")? {
        conn.execute_batch(
            "ALTER TABLE channels ADD COLUMN members TEXT;
             ALTER TABLE channels ADD COLUMN expires_at INTEGER;",
        )?;
    }
    if !has_column("channels", "tier_retention")? {
        conn.execute_batch("ALTER TABLE channels ADD COLUMN tier_retention TEXT;")?;
    }
    Ok(())
}

fn channel_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChannelRow> {
    let (cache_retention, log_retention) =
        TierRetention::parse(r.get::<_, Option<String>>(11)?.as_deref());
    Ok(ChannelRow {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        password_hash: r.get(3)?,
        storage: policy_from_column(r.get(4)?),
        max_messages: r.get::<_, i64>(5)? as u64,
        max_age_secs: r.get::<_, i64>(6)? as u64,
        epoch: r.get(7)?,
        created_at: r.get(8)?,
        members: parse_members(r.get::<_, Option<String>>(9)?.as_deref()),
        expires_at: r.get(10)?,
        cache_retention,
        log_retention,
    })
}

const CHANNEL_COLUMNS: &str = "id, tenant_id, name, password_hash, persistent, max_messages, \
     max_age_secs, epoch, created_at, members, expires_at, tier_retention";

/// Team channels whose `expires_at` has come: (tenant, name).
pub(crate) fn expired_channels(
    conn: &Connection,
    now: i64,
) -> rusqlite::Result<Vec<(String, String)>> {
    conn.prepare(
        "SELECT tenant_id, name FROM channels WHERE expires_at IS NOT NULL AND expires_at <= ?1",
    )?
    .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Finds a channel.
pub(crate) fn get_channel(
    conn: &Connection,
    tenant_id: &str,
    name: &str,
) -> rusqlite::Result<Option<ChannelRow>> {
    conn.prepare_cached(&format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels WHERE tenant_id = ?1 AND name = ?2"
    ))?
    .query_row(params![tenant_id, name], channel_from_row)
    .optional()
}

/// Inserts `row` unless the channel exists; returns the stored row and whether it was created.
/// Creates a channel unless it exists; `None` when the tenant (or the public namespace,
/// tenant `''`) already holds `max` channels (0: no limit).
pub(crate) fn create_channel(
    conn: &Connection,
    row: &ChannelRow,
    max: usize,
) -> rusqlite::Result<Option<(ChannelRow, bool)>> {
    if let Some(existing) = get_channel(conn, &row.tenant_id, &row.name)? {
        return Ok(Some((existing, false)));
    }
    if max > 0 {
        let held: i64 = conn.query_row(
            "SELECT COUNT(*) FROM channels WHERE tenant_id = ?1",
            [&row.tenant_id],
            |r| r.get(0),
        )?;
        if held as usize >= max {
            return Ok(None);
        }
    }
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO channels (tenant_id, name, password_hash, persistent, max_messages, max_age_secs, epoch, created_at, members, expires_at, tier_retention)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            row.tenant_id,
            row.name,
            row.password_hash,
            policy_column(row.storage),
            row.max_messages as i64,
            row.max_age_secs as i64,
            row.epoch,
            row.created_at,
            members_column(&row.members),
            row.expires_at,
            TierRetention::column(row),
        ],
    )?;
    let stored = get_channel(conn, &row.tenant_id, &row.name)?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok(Some((stored, inserted == 1)))
}

/// Deletes a channel and its messages.
pub(crate) fn delete_channel(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute("DELETE FROM messages WHERE channel_id = ?1", [id])?;
    tx.execute("DELETE FROM kv WHERE channel_id = ?1", [id])?;
    tx.execute("DELETE FROM inbox WHERE channel_id = ?1", [id])?;
    tx.execute("DELETE FROM channels WHERE id = ?1", [id])?;
    tx.commit()
}

/// First and last offsets: of the stored messages, or past what retention deleted.
pub(crate) fn bounds(conn: &Connection, channel_id: i64) -> rusqlite::Result<StoreStats> {
    let (first, last, last_ts) = conn
        // Each part is one index lookup (ts grows with offset within a channel); a single
        // MIN/MAX/MAX(ts) aggregate would scan every row of the channel.
        .prepare_cached(
            "SELECT (SELECT MIN(offset) FROM messages WHERE channel_id = ?1),
                    (SELECT MAX(offset) FROM messages WHERE channel_id = ?1),
                    (SELECT ts FROM messages WHERE channel_id = ?1 ORDER BY offset DESC LIMIT 1)",
        )?
        .query_row([channel_id], |r| {
            Ok((
                r.get::<_, Option<i64>>(0)?.unwrap_or(0) as u64,
                r.get::<_, Option<i64>>(1)?.unwrap_or(0) as u64,
                r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            ))
        })?;
    let pruned: i64 = conn
        .prepare_cached("SELECT pruned_through FROM channels WHERE id = ?1")?
        .query_row([channel_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let pruned = pruned as u64;
    Ok(StoreStats {
        first: if first == 0 {
            last.max(pruned) + 1
        } else {
            first
        },
        last: last.max(pruned),
        last_ts,
        pruned,
    })
}

/// The newest `n` messages, oldest first.
pub(crate) fn recent(
    conn: &Connection,
    channel_id: i64,
    channel: &str,
    n: usize,
) -> rusqlite::Result<Vec<Message>> {
    let mut out = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ?1 ORDER BY offset DESC LIMIT ?2"
        ))?
        .query_map(params![channel_id, n as i64], |r| message_from_row(channel, r))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// The ids and offsets of the newest `n` messages below offset `below`, oldest first.
pub(crate) fn recent_ids(
    conn: &Connection,
    channel_id: i64,
    below: u64,
    n: usize,
) -> rusqlite::Result<Vec<(String, u64)>> {
    let below = below.min(i64::MAX as u64) as i64;
    let mut out = conn
        .prepare_cached(
            "SELECT id, offset FROM messages WHERE channel_id = ?1 AND offset < ?3
             ORDER BY offset DESC LIMIT ?2",
        )?
        .query_map(params![channel_id, n as i64, below], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// A history read. `visible_to` limits direct messages to those the agent sent or receives.
/// Reads one more than `limit` so the caller knows whether the page was cut short.
pub(crate) fn history(
    conn: &Connection,
    channel_id: i64,
    channel: &str,
    q: &HistoryQuery,
    limit: u32,
    visible_to: Option<&str>,
) -> rusqlite::Result<Vec<Message>> {
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ?1");
    let mut args: Vec<rusqlite::types::Value> = vec![channel_id.into()];
    let mut bind = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(v) = q.from_offset {
        bind(
            &mut sql,
            " AND offset >= ?",
            (v.min(i64::MAX as u64) as i64).into(),
        );
    }
    if let Some(v) = q.to_offset {
        bind(
            &mut sql,
            " AND offset <= ?",
            (v.min(i64::MAX as u64) as i64).into(),
        );
    }
    if let Some(v) = q.from_ts {
        bind(&mut sql, " AND ts >= ?", v.into());
    }
    if let Some(v) = q.to_ts {
        bind(&mut sql, " AND ts <= ?", v.into());
    }
    if let Some(v) = &q.sender {
        bind(&mut sql, " AND sender = ?", v.clone().into());
    }
    if let Some(v) = &q.kind {
        bind(&mut sql, " AND type = ?", v.clone().into());
    }
    if let Some(agent) = visible_to {
        args.push(agent.to_owned().into());
        let n = args.len();
        sql.push_str(&format!(
            " AND (recipient IS NULL OR recipient = ?{n} OR sender = ?{n})"
        ));
    }
    sql.push_str(match q.direction {
        Direction::Forward => " ORDER BY offset ASC",
        Direction::Backward => " ORDER BY offset DESC",
    });
    sql.push_str(&format!(" LIMIT {}", limit as u64 + 1));
    conn.prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), |r| {
            message_from_row(channel, r)
        })?
        .collect()
}

/// Gives a channel a new epoch (its history starts over).
pub(crate) fn set_epoch(conn: &Connection, id: i64, epoch: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE channels SET epoch = ?2 WHERE id = ?1",
        params![id, epoch],
    )?;
    Ok(())
}

/// Gives every channel with the `log` storage policy a new epoch (its history was in a log
/// that is no longer used).
pub(crate) fn new_log_epochs(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE channels SET epoch = lower(hex(randomblob(8))), pruned_through = 0 WHERE persistent = 3",
        [],
    )?;
    Ok(())
}

/// Records that a channel's offsets up to `through` were removed (never lowers it).
pub(crate) fn set_pruned_through(conn: &Connection, id: i64, through: u64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE channels SET pruned_through = MAX(pruned_through, ?2) WHERE id = ?1",
        params![id, through.min(i64::MAX as u64) as i64],
    )?;
    Ok(())
}

/// Records what log retention dropped, for the channels the database does not keep (for
/// the others the database still holds those messages).
pub(crate) fn log_dropped(conn: &Connection, dropped: &[(i64, u64)]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut update = tx.prepare_cached(
            "UPDATE channels SET pruned_through = MAX(pruned_through, ?2) WHERE id = ?1 AND persistent != 1",
        )?;
        for (id, through) in dropped {
            update.execute(params![id, (*through).min(i64::MAX as u64) as i64])?;
        }
    }
    tx.commit()
}

/// Deletes messages beyond retention and records the highest offset deleted, so the channel's
/// offsets continue after a restart even when retention emptied it.
pub(crate) fn prune(
    conn: &Connection,
    channel_id: i64,
    below_offset: u64,
    before_ts: i64,
) -> rusqlite::Result<usize> {
    let below = below_offset.min(i64::MAX as u64) as i64;
    let tx = conn.unchecked_transaction()?;
    let highest: Option<i64> = tx
        .prepare_cached(
            "SELECT MAX(offset) FROM messages WHERE channel_id = ?1 AND (offset < ?2 OR ts < ?3)",
        )?
        .query_row(params![channel_id, below, before_ts], |r| r.get(0))?;
    let Some(highest) = highest else { return Ok(0) };
    let deleted = tx
        .prepare_cached("DELETE FROM messages WHERE channel_id = ?1 AND offset <= ?2")?
        .execute(params![channel_id, highest])?;
    tx.execute(
        "UPDATE channels SET pruned_through = MAX(pruned_through, ?2) WHERE id = ?1",
        params![channel_id, highest],
    )?;
    tx.commit()?;
    Ok(deleted)
}
