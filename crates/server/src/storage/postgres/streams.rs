//! The SQL of streams (table `streams`): each stream's durable position, so a stream
//! survives a restart; the bytes themselves are in spool files.

use super::{signed, unsigned};
use crate::storage::rows::*;
use sqlx::postgres::PgPool;

/// Every stream (loaded at start).
pub(crate) async fn load_streams(pool: &PgPool) -> sqlx::Result<Vec<StreamRow>> {
    type Columns = (
        String,
        i64,
        String,
        String,
        i64,
        i64,
        i64,
        Option<String>,
        Option<i64>,
        i64,
    );
    Ok(sqlx::query_as::<_, Columns>(
        r#"SELECT id, channel_id, offer, recipient, next_seq, "offset", acked, checksum,
               total_size, updated_at FROM streams"#,
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(
        |(id, channel_id, offer, recipient, next_seq, offset, acked, checksum, total, updated)| {
            StreamRow {
                id,
                channel_id,
                offer,
                recipient,
                next_seq: unsigned(next_seq),
                offset: unsigned(offset),
                acked: unsigned(acked),
                checksum,
                total_size: total.map(unsigned),
                updated_at: updated,
            }
        },
    )
    .collect())
}

/// Inserts or replaces a stream's row.
pub(crate) async fn put_stream(pool: &PgPool, s: &StreamRow) -> sqlx::Result<()> {
    sqlx::query(
        r#"INSERT INTO streams (id, channel_id, offer, recipient, next_seq, "offset", acked,
               checksum, total_size, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (id) DO UPDATE SET channel_id = EXCLUDED.channel_id,
             offer = EXCLUDED.offer, recipient = EXCLUDED.recipient,
             next_seq = EXCLUDED.next_seq, "offset" = EXCLUDED."offset",
             acked = EXCLUDED.acked, checksum = EXCLUDED.checksum,
             total_size = EXCLUDED.total_size, updated_at = EXCLUDED.updated_at"#,
    )
    .bind(&s.id)
    .bind(s.channel_id)
    .bind(&s.offer)
    .bind(&s.recipient)
    .bind(signed(s.next_seq))
    .bind(signed(s.offset))
    .bind(signed(s.acked))
    .bind(&s.checksum)
    .bind(s.total_size.map(signed))
    .bind(s.updated_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes a stream's row.
pub(crate) async fn delete_stream(pool: &PgPool, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM streams WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
