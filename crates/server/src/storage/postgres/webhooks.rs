//! The SQL of webhooks (table `webhooks`) and their delivery log (`webhook_attempts`).

use super::{signed, unsigned};
use crate::storage::rows::*;
use sqlx::postgres::PgPool;

/// Every registered webhook (loaded at start).
pub(crate) async fn load_webhooks(pool: &PgPool) -> sqlx::Result<Vec<WebhookRow>> {
    type Columns = (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
    );
    Ok(sqlx::query_as::<_, Columns>(
        "SELECT id, tenant_id, url, secret, events, channel, types, created_at FROM webhooks",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(
        |(id, tenant_id, url, secret, events, channel, types, created_at)| WebhookRow {
            id,
            tenant_id,
            url,
            secret,
            events,
            channel,
            types,
            created_at,
        },
    )
    .collect())
}

/// Registers a webhook.
pub(crate) async fn insert_webhook(pool: &PgPool, w: &WebhookRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO webhooks (id, tenant_id, url, secret, events, channel, types, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&w.id)
    .bind(&w.tenant_id)
    .bind(&w.url)
    .bind(&w.secret)
    .bind(&w.events)
    .bind(&w.channel)
    .bind(&w.types)
    .bind(w.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes a tenant's webhook and its log (one statement); false if it has none with this
/// id.
pub(crate) async fn delete_webhook(pool: &PgPool, tenant: &str, id: &str) -> sqlx::Result<bool> {
    let deleted: i64 = sqlx::query_scalar(
        "WITH w AS (DELETE FROM webhooks WHERE id = $1 AND tenant_id = $2 RETURNING id),
              a AS (DELETE FROM webhook_attempts WHERE webhook_id IN (SELECT id FROM w))
         SELECT COUNT(*) FROM w",
    )
    .bind(id)
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    Ok(deleted > 0)
}

/// Appends attempts to the log and keeps the newest `keep` per webhook, in one transaction.
/// Writers on several nodes each trim to what they see, so a log may hold a few more than
/// `keep` until its next write.
pub(crate) async fn insert_attempts(
    pool: &PgPool,
    rows: &[AttemptRow],
    keep: u64,
) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (webhook_id, delivery_id, event, attempt, ts, status,
             error, duration_ms, will_retry)
         SELECT w, d, e, a, t, s, er, ms, r
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::integer[], $5::bigint[],
             $6::integer[], $7::text[], $8::bigint[], $9::boolean[]) WITH ORDINALITY
             AS u(w, d, e, a, t, s, er, ms, r, n)
         ORDER BY n",
    )
    .bind(
        rows.iter()
            .map(|r| r.webhook_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.delivery_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.event.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.attempt.min(i32::MAX as u32) as i32)
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.status.map(i32::from))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| signed(r.duration_ms))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.will_retry).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    let mut hooks: Vec<&str> = rows.iter().map(|r| r.webhook_id.as_str()).collect();
    hooks.sort_unstable();
    hooks.dedup();
    sqlx::query(
        "DELETE FROM webhook_attempts a
         USING (SELECT h.id, (SELECT seq FROM webhook_attempts WHERE webhook_id = h.id
                              ORDER BY seq DESC LIMIT 1 OFFSET $2) AS cut
                FROM UNNEST($1::text[]) AS h(id)) c
         WHERE a.webhook_id = c.id AND a.seq <= c.cut",
    )
    .bind(&hooks)
    .bind(signed(keep))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The newest `limit` attempts of a webhook, newest first.
pub(crate) async fn attempts(
    pool: &PgPool,
    webhook_id: &str,
    limit: u32,
) -> sqlx::Result<Vec<AttemptRow>> {
    type Columns = (
        String,
        String,
        String,
        i32,
        i64,
        Option<i32>,
        Option<String>,
        i64,
        bool,
    );
    Ok(sqlx::query_as::<_, Columns>(
        "SELECT webhook_id, delivery_id, event, attempt, ts, status, error, duration_ms,
             will_retry
         FROM webhook_attempts WHERE webhook_id = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(webhook_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(
        |(webhook_id, delivery_id, event, attempt, ts, status, error, duration, will_retry)| {
            AttemptRow {
                webhook_id,
                delivery_id,
                event,
                attempt: attempt.max(0) as u32,
                ts,
                status: status.map(|s| s.clamp(0, u16::MAX.into()) as u16),
                error,
                duration_ms: unsigned(duration),
                will_retry,
            }
        },
    )
    .collect())
}
