//! The SQL of the agent directory (table `agents`): announced capabilities and metadata.

use crate::storage::rows::*;
use sqlx::postgres::PgPool;

/// Every announced agent (loaded at start).
pub(crate) async fn load_agents(pool: &PgPool) -> sqlx::Result<Vec<AgentRow>> {
    Ok(sqlx::query_as::<_, (String, String, String, String, i64)>(
        "SELECT tenant_id, name, capabilities, metadata, updated_at FROM agents",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(
        |(tenant_id, name, capabilities, metadata, updated_at)| AgentRow {
            tenant_id,
            name,
            capabilities,
            metadata,
            updated_at,
        },
    )
    .collect())
}

/// Inserts or replaces an agent's card.
pub(crate) async fn put_agent(pool: &PgPool, row: &AgentRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO agents (tenant_id, name, capabilities, metadata, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, name) DO UPDATE SET capabilities = EXCLUDED.capabilities,
           metadata = EXCLUDED.metadata, updated_at = EXCLUDED.updated_at",
    )
    .bind(&row.tenant_id)
    .bind(&row.name)
    .bind(&row.capabilities)
    .bind(&row.metadata)
    .bind(row.updated_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes an agent's card; false if there was none.
pub(crate) async fn delete_agent(pool: &PgPool, tenant: &str, name: &str) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("DELETE FROM agents WHERE tenant_id = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected()
            > 0,
    )
}
