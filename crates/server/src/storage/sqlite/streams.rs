//! The SQL of streams (table `streams`): each stream's durable position, so a stream
//! survives a restart; the bytes themselves are in spool files.

use crate::storage::rows::*;
use rusqlite::{Connection, params};

/// Every stream (loaded at start).
pub(crate) fn load_streams(conn: &Connection) -> rusqlite::Result<Vec<StreamRow>> {
    conn.prepare(
        "SELECT id, channel_id, offer, recipient, next_seq, offset, acked, checksum, total_size,
             updated_at FROM streams",
    )?
    .query_map([], |r| {
        Ok(StreamRow {
            id: r.get(0)?,
            channel_id: r.get(1)?,
            offer: r.get(2)?,
            recipient: r.get(3)?,
            next_seq: r.get::<_, i64>(4)? as u64,
            offset: r.get::<_, i64>(5)? as u64,
            acked: r.get::<_, i64>(6)? as u64,
            checksum: r.get(7)?,
            total_size: r.get::<_, Option<i64>>(8)?.map(|n| n as u64),
            updated_at: r.get(9)?,
        })
    })?
    .collect()
}

/// Inserts or replaces a stream's row.
pub(crate) fn put_stream(conn: &Connection, s: &StreamRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO streams (id, channel_id, offer, recipient, next_seq, offset, acked,
             checksum, total_size, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        s.id,
        s.channel_id,
        s.offer,
        s.recipient,
        s.next_seq as i64,
        s.offset as i64,
        s.acked as i64,
        s.checksum,
        s.total_size.map(|n| n as i64),
        s.updated_at
    ])?;
    Ok(())
}

/// Deletes a stream's row.
pub(crate) fn delete_stream(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM streams WHERE id = ?1", [id])?;
    Ok(())
}
