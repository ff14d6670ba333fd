//! The SQL of webhooks (table `webhooks`) and their delivery log (`webhook_attempts`).

use crate::storage::rows::*;
use rusqlite::{Connection, params};

/// Every registered webhook (loaded at start).
pub(crate) fn load_webhooks(conn: &Connection) -> rusqlite::Result<Vec<WebhookRow>> {
    conn.prepare(
        "SELECT id, tenant_id, url, secret, events, channel, types, created_at FROM webhooks",
    )?
    .query_map([], |r| {
        Ok(WebhookRow {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            url: r.get(2)?,
            secret: r.get(3)?,
            events: r.get(4)?,
            channel: r.get(5)?,
            types: r.get(6)?,
            created_at: r.get(7)?,
        })
    })?
    .collect()
}

/// Registers a webhook.
pub(crate) fn insert_webhook(conn: &Connection, w: &WebhookRow) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO webhooks (id, tenant_id, url, secret, events, channel, types, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            w.id,
            w.tenant_id,
            w.url,
            w.secret,
            w.events,
            w.channel,
            w.types,
            w.created_at
        ],
    )?;
    Ok(())
}

/// Deletes a tenant's webhook and its log; false if it has none with this id.
pub(crate) fn delete_webhook(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<bool> {
    let tx = conn.unchecked_transaction()?;
    let deleted = tx.execute(
        "DELETE FROM webhooks WHERE id = ?1 AND tenant_id = ?2",
        params![id, tenant],
    )? > 0;
    if deleted {
        tx.execute("DELETE FROM webhook_attempts WHERE webhook_id = ?1", [id])?;
    }
    tx.commit()?;
    Ok(deleted)
}

/// Appends attempts to the log, keeping the newest `keep` per webhook.
pub(crate) fn insert_attempts(
    conn: &Connection,
    rows: &[AttemptRow],
    keep: u64,
) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO webhook_attempts (webhook_id, delivery_id, event, attempt, ts, status,
                 error, duration_ms, will_retry)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for r in rows {
            insert.execute(params![
                r.webhook_id,
                r.delivery_id,
                r.event,
                r.attempt,
                r.ts,
                r.status,
                r.error,
                r.duration_ms as i64,
                r.will_retry
            ])?;
        }
        let mut trim = tx.prepare_cached(
            "DELETE FROM webhook_attempts WHERE webhook_id = ?1 AND seq <=
                 (SELECT seq FROM webhook_attempts WHERE webhook_id = ?1
                  ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        )?;
        let mut hooks: Vec<&str> = rows.iter().map(|r| r.webhook_id.as_str()).collect();
        hooks.sort_unstable();
        hooks.dedup();
        for hook in hooks {
            trim.execute(params![hook, keep as i64])?;
        }
    }
    tx.commit()
}

/// The newest `limit` attempts of a webhook, newest first.
pub(crate) fn attempts(
    conn: &Connection,
    webhook_id: &str,
    limit: u32,
) -> rusqlite::Result<Vec<AttemptRow>> {
    conn.prepare_cached(
        "SELECT webhook_id, delivery_id, event, attempt, ts, status, error, duration_ms,
             will_retry
         FROM webhook_attempts WHERE webhook_id = ?1 ORDER BY seq DESC LIMIT ?2",
    )?
    .query_map(params![webhook_id, limit], |r| {
        Ok(AttemptRow {
            webhook_id: r.get(0)?,
            delivery_id: r.get(1)?,
            event: r.get(2)?,
            attempt: r.get(3)?,
            ts: r.get(4)?,
            status: r.get(5)?,
            error: r.get(6)?,
            duration_ms: r.get::<_, i64>(7)? as u64,
            will_retry: r.get(8)?,
        })
    })?
    .collect()
}
