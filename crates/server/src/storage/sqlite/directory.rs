//! The SQL of the agent directory (table `agents`): announced capabilities and metadata.

use crate::storage::rows::*;
use rusqlite::{Connection, params};

/// Every announced agent (loaded at start).
pub(crate) fn load_agents(conn: &Connection) -> rusqlite::Result<Vec<AgentRow>> {
    conn.prepare("SELECT tenant_id, name, capabilities, metadata, updated_at FROM agents")?
        .query_map([], |r| {
            Ok(AgentRow {
                tenant_id: r.get(0)?,
                name: r.get(1)?,
                capabilities: r.get(2)?,
                metadata: r.get(3)?,
                updated_at: r.get(4)?,
            })
        })?
        .collect()
}

/// Inserts or replaces an agent's card.
pub(crate) fn put_agent(conn: &Connection, row: &AgentRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO agents (tenant_id, name, capabilities, metadata, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        row.tenant_id,
        row.name,
        row.capabilities,
        row.metadata,
        row.updated_at
    ])?;
    Ok(())
}

/// Deletes an agent's card; false if there was none.
pub(crate) fn delete_agent(conn: &Connection, tenant: &str, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM agents WHERE tenant_id = ?1 AND name = ?2",
        params![tenant, name],
    )? > 0)
}
