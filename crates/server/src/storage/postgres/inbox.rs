//! The SQL of the durable inboxes (table `inbox`), as `sqlite/inbox.rs` has it, for
//! consumers on several nodes at once.
//!
//! A row is pending while `dead_at` is null, delivered (leased) while `visible_at` lies in
//! the future, and a dead letter once `dead_at` is set. An inbox batch runs in one
//! transaction: the messages it settles are locked first (`FOR UPDATE`, in offset order, so
//! two batches never wait on each other crosswise), and it leases with `FOR UPDATE SKIP
//! LOCKED`, so a message another consumer is settling or leasing right now is passed over,
//! and no two consumers ever lease the same message.

use super::{signed, text, unsigned};
use crate::storage::rows::*;
use sqlx::postgres::PgPool;
use std::collections::HashMap;

/// A pending message as a settlement finds it.
struct Pending {
    offset: i64,
    sender: String,
    receipt: bool,
    deliveries: i32,
    rejections: i32,
}

/// Settles and leases in one transaction (see [`InboxBatch`]).
pub(crate) async fn inbox_batch(
    pool: &PgPool,
    channel_id: i64,
    recipient: &str,
    batch: &InboxBatch,
    limits: InboxLimits,
    now: i64,
) -> sqlx::Result<InboxBatchResult> {
    let mut tx = pool.begin().await?;
    let mut result = InboxBatchResult::default();
    if !batch.settle.is_empty() {
        let ids: Vec<String> = batch.settle.iter().map(|s| text(s.id())).collect();
        // The first pending row per id (ids are unique per inbox in practice).
        let mut pending: HashMap<String, Pending> = HashMap::new();
        for (id, offset, sender, receipt, deliveries, rejections) in
            sqlx::query_as::<_, (String, i64, String, bool, i32, i32)>(
                r#"SELECT id, "offset", sender, receipt, deliveries, rejections FROM inbox
                   WHERE channel_id = $1 AND recipient = $2 AND id = ANY($3)
                     AND dead_at IS NULL
                   ORDER BY "offset" FOR UPDATE"#,
            )
            .bind(channel_id)
            .bind(recipient)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
        {
            pending.entry(id).or_insert(Pending {
                offset,
                sender,
                receipt,
                deliveries,
                rejections,
            });
        }
        let max_rejections = limits.max_rejections.max(1);
        for settle in &batch.settle {
            let id = text(settle.id());
            let Some(p) = pending.get_mut(&id) else {
                result.settled.push(None);
                continue;
            };
            let outcome = match settle {
                Settle::Ack { .. } => {
                    sqlx::query(
                        r#"DELETE FROM inbox
                           WHERE channel_id = $1 AND recipient = $2 AND "offset" = $3"#,
                    )
                    .bind(channel_id)
                    .bind(recipient)
                    .bind(p.offset)
                    .execute(&mut *tx)
                    .await?;
                    Outcome::Acknowledged
                }
                Settle::Reject {
                    reason, requeue, ..
                } => {
                    p.rejections += 1;
                    let dead = !*requeue || unsigned(p.rejections.into()) >= max_rejections.into();
                    if dead {
                        let why = reason.clone().unwrap_or_else(|| {
                            if *requeue {
                                "max_rejections"
                            } else {
                                "rejected"
                            }
                            .to_owned()
                        });
                        sqlx::query(
                            r#"UPDATE inbox SET rejections = $4, dead_at = $5, reason = $6
                               WHERE channel_id = $1 AND recipient = $2 AND "offset" = $3"#,
                        )
                        .bind(channel_id)
                        .bind(recipient)
                        .bind(p.offset)
                        .bind(p.rejections)
                        .bind(now)
                        .bind(&why)
                        .execute(&mut *tx)
                        .await?;
                        Outcome::DeadLettered(why)
                    } else {
                        // Back in line at once: the next delivery counts as another one.
                        sqlx::query(
                            r#"UPDATE inbox SET rejections = $4, visible_at = $5, reason = $6
                               WHERE channel_id = $1 AND recipient = $2 AND "offset" = $3"#,
                        )
                        .bind(channel_id)
                        .bind(recipient)
                        .bind(p.offset)
                        .bind(p.rejections)
                        .bind(now)
                        .bind(reason)
                        .execute(&mut *tx)
                        .await?;
                        Outcome::Rejected(reason.clone())
                    }
                }
            };
            let settled = Settled {
                id: settle.id().to_owned(),
                sender: p.sender.clone(),
                receipt: p.receipt,
                deliveries: p.deliveries as u32,
                outcome,
            };
            if settled.removed() {
                pending.remove(&id);
            }
            result.settled.push(Some(settled));
        }
    }
    if let Some((max, visibility_ms)) = batch.lease {
        let max_deliveries = limits.max_deliveries.max(1);
        let rows = sqlx::query_as::<_, (i64, String, String, bool, String, i32)>(
            r#"SELECT "offset", id, sender, receipt, message, deliveries FROM inbox
               WHERE channel_id = $1 AND recipient = $2 AND dead_at IS NULL AND visible_at <= $3
               ORDER BY "offset" LIMIT $4 FOR UPDATE SKIP LOCKED"#,
        )
        .bind(channel_id)
        .bind(recipient)
        .bind(now)
        .bind(i64::from(max))
        .fetch_all(&mut *tx)
        .await?;
        let visible_at = now + visibility_ms;
        let (mut leased_at, mut dead_at) = (Vec::new(), Vec::new());
        for (offset, id, sender, receipt, message, deliveries) in rows {
            let deliveries = deliveries as u32;
            if deliveries >= max_deliveries {
                dead_at.push(offset);
                result.dead.push(Settled {
                    id,
                    sender,
                    receipt,
                    deliveries,
                    outcome: Outcome::DeadLettered("max_deliveries".to_owned()),
                });
            } else {
                leased_at.push(offset);
                result.leased.push(InboxRow {
                    offset: unsigned(offset),
                    id,
                    sender,
                    receipt,
                    message,
                    deliveries: deliveries + 1,
                    visible_at,
                });
            }
        }
        if !dead_at.is_empty() {
            sqlx::query(
                r#"UPDATE inbox SET dead_at = $4, reason = 'max_deliveries'
                   WHERE channel_id = $1 AND recipient = $2 AND "offset" = ANY($3)"#,
            )
            .bind(channel_id)
            .bind(recipient)
            .bind(&dead_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if !leased_at.is_empty() {
            sqlx::query(
                r#"UPDATE inbox SET deliveries = deliveries + 1, visible_at = $4
                   WHERE channel_id = $1 AND recipient = $2 AND "offset" = ANY($3)"#,
            )
            .bind(channel_id)
            .bind(recipient)
            .bind(&leased_at)
            .bind(visible_at)
            .execute(&mut *tx)
            .await?;
        }
    }
    result.next_visible = sqlx::query_scalar(
        "SELECT MIN(visible_at) FROM inbox
         WHERE channel_id = $1 AND recipient = $2 AND dead_at IS NULL AND visible_at > $3",
    )
    .bind(channel_id)
    .bind(recipient)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(result)
}

/// Makes leased messages visible again at once (their consumer went away).
pub(crate) async fn inbox_release(
    pool: &PgPool,
    channel_id: i64,
    recipient: &str,
    ids: &[String],
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE inbox SET visible_at = $4
         WHERE channel_id = $1 AND recipient = $2 AND id = ANY($3) AND dead_at IS NULL
           AND visible_at > $4",
    )
    .bind(channel_id)
    .bind(recipient)
    .bind(ids.iter().map(|id| text(id)).collect::<Vec<_>>())
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Pending (not dead-lettered) messages per recipient of a channel.
pub(crate) async fn inbox_counts(
    pool: &PgPool,
    channel_id: i64,
) -> sqlx::Result<Vec<(String, u32)>> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT recipient, COUNT(*) FROM inbox WHERE channel_id = $1 AND dead_at IS NULL
         GROUP BY recipient",
    )
    .bind(channel_id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(recipient, n)| (recipient, n.clamp(0, u32::MAX.into()) as u32))
    .collect())
}

/// A page of a channel's dead letters sent by `tenant`'s agents, oldest first, after the
/// cursor `(dead_at, offset)`.
pub(crate) async fn dead_letters(
    pool: &PgPool,
    channel_id: i64,
    tenant: &str,
    recipient: Option<&str>,
    after: (i64, u64),
    limit: u32,
) -> sqlx::Result<Vec<DeadRow>> {
    Ok(
        sqlx::query_as::<_, (String, i64, String, i32, i32, Option<String>, i64)>(
            r#"SELECT message, "offset", recipient, deliveries, rejections, reason, dead_at
               FROM inbox
               WHERE channel_id = $1 AND dead_at IS NOT NULL AND sender_tenant = $2
                 AND ($3::text IS NULL OR recipient = $3) AND (dead_at, "offset") > ($4, $5)
               ORDER BY dead_at, "offset" LIMIT $6"#,
        )
        .bind(channel_id)
        .bind(tenant)
        .bind(recipient)
        .bind(after.0)
        .bind(signed(after.1))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(
            |(message, offset, recipient, deliveries, rejections, reason, dead_at)| DeadRow {
                message,
                offset: unsigned(offset),
                recipient,
                deliveries: deliveries as u32,
                rejections: rejections as u32,
                reason: reason.unwrap_or_default(),
                dead_at,
            },
        )
        .collect(),
    )
}

/// Deletes one of `tenant`'s dead letters; false if there is none with this id.
pub(crate) async fn delete_dead_letter(
    pool: &PgPool,
    channel_id: i64,
    tenant: &str,
    id: &str,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "DELETE FROM inbox
         WHERE channel_id = $1 AND id = $2 AND sender_tenant = $3 AND dead_at IS NOT NULL",
    )
    .bind(channel_id)
    .bind(text(id))
    .bind(tenant)
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

/// Dead-letters messages that waited longer than `retention_ms` (`expired`) and deletes dead
/// letters older than that; returns how many messages expired. Nodes running it at once
/// split the work (each row is changed once); messages a consumer has locked are waited for.
pub(crate) async fn inbox_prune(pool: &PgPool, now: i64, retention_ms: i64) -> sqlx::Result<usize> {
    let cutoff = now.saturating_sub(retention_ms);
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM inbox WHERE dead_at IS NOT NULL AND dead_at < $1")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    let expired = sqlx::query(
        "UPDATE inbox SET dead_at = $1, reason = 'expired'
         WHERE dead_at IS NULL AND created_at < $2",
    )
    .bind(now)
    .bind(cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(expired as usize)
}
