//! The SQL of the durable inboxes (table `inbox`).
//!
//! A row is one persisted direct message waiting for its recipient: pending while
//! `dead_at` is null, delivered (leased) while `visible_at` lies in the future, and a dead
//! letter once `dead_at` is set. The message itself is kept as JSON, so an inbox outlives the
//! channel's history retention.

use crate::storage::rows::*;
use rusqlite::{Connection, OptionalExtension, params};
use switchboard_protocol::Message;

fn json_error(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Adds a direct message to its recipient's inbox (inside the append's transaction).
pub(crate) fn inbox_insert(
    conn: &Connection,
    channel_id: i64,
    recipient: &str,
    m: &Message,
    w: &InboxWrite,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(m).map_err(json_error)?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO inbox (channel_id, recipient, offset, id, sender, sender_tenant,
             receipt, message, created_at, visible_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        channel_id,
        recipient,
        m.offset.unwrap_or(0) as i64,
        m.id,
        m.from,
        &*w.sender_tenant,
        w.receipt,
        json,
        m.ts,
    ])?;
    Ok(())
}

/// Acknowledges or rejects one message; `None` if the recipient has no such pending message.
pub(crate) fn inbox_settle(
    conn: &Connection,
    channel_id: i64,
    recipient: &str,
    now: i64,
    settle: &Settle,
    max_rejections: u32,
) -> rusqlite::Result<Option<Settled>> {
    let row = conn
        .prepare_cached(
            "SELECT offset, sender, receipt, deliveries, rejections FROM inbox
             WHERE channel_id = ?1 AND recipient = ?2 AND id = ?3 AND dead_at IS NULL",
        )?
        .query_row(params![channel_id, recipient, settle.id()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })
        .optional()?;
    let Some((offset, sender, receipt, deliveries, rejections)) = row else {
        return Ok(None);
    };
    let outcome = match settle {
        Settle::Ack { .. } => {
            conn.prepare_cached(
                "DELETE FROM inbox WHERE channel_id = ?1 AND recipient = ?2 AND offset = ?3",
            )?
            .execute(params![channel_id, recipient, offset])?;
            Outcome::Acknowledged
        }
        Settle::Reject {
            reason, requeue, ..
        } => {
            let rejections = rejections + 1;
            let dead = !*requeue || rejections >= max_rejections;
            if dead {
                let why = reason.clone().unwrap_or_else(|| {
                    if *requeue {
                        "max_rejections".to_owned()
                    } else {
                        "rejected".to_owned()
                    }
                });
                conn.prepare_cached(
                    "UPDATE inbox SET rejections = ?4, dead_at = ?5, reason = ?6
                     WHERE channel_id = ?1 AND recipient = ?2 AND offset = ?3",
                )?
                .execute(params![channel_id, recipient, offset, rejections, now, why])?;
                Outcome::DeadLettered(why)
            } else {
                // Back in line at once: the next delivery counts as another one.
                conn.prepare_cached(
                    "UPDATE inbox SET rejections = ?4, visible_at = ?5, reason = ?6
                     WHERE channel_id = ?1 AND recipient = ?2 AND offset = ?3",
                )?
                .execute(params![
                    channel_id, recipient, offset, rejections, now, reason
                ])?;
                Outcome::Rejected(reason.clone())
            }
        }
    };
    Ok(Some(Settled {
        id: settle.id().to_owned(),
        sender,
        receipt,
        deliveries,
        outcome,
    }))
}

/// Leases up to `max` visible messages, oldest first, for `visibility_ms`. Messages delivered
/// `max_deliveries` times already are dead-lettered instead (returned second).
pub(crate) fn inbox_lease(
    conn: &Connection,
    channel_id: i64,
    recipient: &str,
    now: i64,
    visibility_ms: i64,
    max: u32,
    max_deliveries: u32,
) -> rusqlite::Result<(Vec<InboxRow>, Vec<Settled>)> {
    let rows = conn
        .prepare_cached(
            "SELECT offset, id, sender, receipt, message, deliveries FROM inbox
             WHERE channel_id = ?1 AND recipient = ?2 AND dead_at IS NULL AND visible_at <= ?3
             ORDER BY offset LIMIT ?4",
        )?
        .query_map(params![channel_id, recipient, now, max], |r| {
            Ok(InboxRow {
                offset: r.get::<_, i64>(0)? as u64,
                id: r.get(1)?,
                sender: r.get(2)?,
                receipt: r.get(3)?,
                message: r.get(4)?,
                deliveries: r.get(5)?,
                visible_at: now + visibility_ms,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut leased = Vec::with_capacity(rows.len());
    let mut dead = Vec::new();
    for mut row in rows {
        if row.deliveries >= max_deliveries {
            conn.prepare_cached(
                "UPDATE inbox SET dead_at = ?4, reason = 'max_deliveries'
                 WHERE channel_id = ?1 AND recipient = ?2 AND offset = ?3",
            )?
            .execute(params![channel_id, recipient, row.offset as i64, now])?;
            dead.push(Settled {
                id: row.id,
                sender: row.sender,
                receipt: row.receipt,
                deliveries: row.deliveries,
                outcome: Outcome::DeadLettered("max_deliveries".to_owned()),
            });
            continue;
        }
        row.deliveries += 1;
        conn.prepare_cached(
            "UPDATE inbox SET deliveries = ?4, visible_at = ?5
             WHERE channel_id = ?1 AND recipient = ?2 AND offset = ?3",
        )?
        .execute(params![
            channel_id,
            recipient,
            row.offset as i64,
            row.deliveries,
            row.visible_at
        ])?;
        leased.push(row);
    }
    Ok((leased, dead))
}

/// When the next leased message becomes visible again, if any is leased.
pub(crate) fn inbox_next_visible(
    conn: &Connection,
    channel_id: i64,
    recipient: &str,
    now: i64,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MIN(visible_at) FROM inbox
         WHERE channel_id = ?1 AND recipient = ?2 AND dead_at IS NULL AND visible_at > ?3",
    )?
    .query_row(params![channel_id, recipient, now], |r| r.get(0))
}

/// Makes leased messages visible again at once (their consumer went away).
pub(crate) fn inbox_release(
    conn: &Connection,
    channel_id: i64,
    recipient: &str,
    ids: &[String],
    now: i64,
) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE inbox SET visible_at = ?4
             WHERE channel_id = ?1 AND recipient = ?2 AND id = ?3 AND dead_at IS NULL
               AND visible_at > ?4",
        )?;
        for id in ids {
            stmt.execute(params![channel_id, recipient, id, now])?;
        }
    }
    tx.commit()
}

/// Pending (not dead-lettered) messages per recipient of a channel.
pub(crate) fn inbox_counts(
    conn: &Connection,
    channel_id: i64,
) -> rusqlite::Result<Vec<(String, u32)>> {
    conn.prepare_cached(
        "SELECT recipient, COUNT(*) FROM inbox WHERE channel_id = ?1 AND dead_at IS NULL
         GROUP BY recipient",
    )?
    .query_map([channel_id], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// A page of a channel's dead letters sent by `tenant`'s agents, oldest first, after the
/// cursor `(dead_at, offset)`.
pub(crate) fn dead_letters(
    conn: &Connection,
    channel_id: i64,
    tenant: &str,
    recipient: Option<&str>,
    after: (i64, u64),
    limit: u32,
) -> rusqlite::Result<Vec<DeadRow>> {
    conn.prepare_cached(
        "SELECT message, offset, recipient, deliveries, rejections, reason, dead_at FROM inbox
         WHERE channel_id = ?1 AND dead_at IS NOT NULL AND sender_tenant = ?2
           AND (?3 IS NULL OR recipient = ?3) AND (dead_at, offset) > (?4, ?5)
         ORDER BY dead_at, offset LIMIT ?6",
    )?
    .query_map(
        params![
            channel_id,
            tenant,
            recipient,
            after.0,
            after.1 as i64,
            limit
        ],
        |r| {
            Ok(DeadRow {
                message: r.get(0)?,
                offset: r.get::<_, i64>(1)? as u64,
                recipient: r.get(2)?,
                deliveries: r.get(3)?,
                rejections: r.get(4)?,
                reason: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                dead_at: r.get(6)?,
            })
        },
    )?
    .collect()
}

/// Deletes one of `tenant`'s dead letters; false if there is none with this id.
pub(crate) fn delete_dead_letter(
    conn: &Connection,
    channel_id: i64,
    tenant: &str,
    id: &str,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM inbox
         WHERE channel_id = ?1 AND id = ?2 AND sender_tenant = ?3 AND dead_at IS NOT NULL",
        params![channel_id, id, tenant],
    )? > 0)
}

/// Dead-letters messages that waited longer than `retention_ms` (`expired`) and deletes dead
/// letters older than that; returns how many messages expired.
pub(crate) fn inbox_prune(
    conn: &Connection,
    now: i64,
    retention_ms: i64,
) -> rusqlite::Result<usize> {
    let cutoff = now.saturating_sub(retention_ms);
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "DELETE FROM inbox WHERE dead_at IS NOT NULL AND dead_at < ?1",
        [cutoff],
    )?;
    let expired = tx.execute(
        "UPDATE inbox SET dead_at = ?1, reason = 'expired'
         WHERE dead_at IS NULL AND created_at < ?2",
        params![now, cutoff],
    )?;
    tx.commit()?;
    Ok(expired)
}
