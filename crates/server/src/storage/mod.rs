//! Durable storage: the message tiers, and tenants, keys, channels and every other record.
//!
//! Messages live in up to three tiers sharing one offset space per channel: the cache (the
//! channel's in-memory ring, in `channel.rs`), the log (`log/`, durable and ordered: the
//! point of acknowledgement) and the database (permanent and queryable, written from the log
//! by `materializer`). The embedded default is a segment-file log under the data directory
//! and one SQLite database in WAL mode beside it, which also holds all metadata. SQLite
//! writes go through one writer thread; reads use a pool of read-only connections and never
//! wait for the writer. The database tier is the [`Database`] trait (`database.rs`), so
//! PostgreSQL (`postgres/`, one database several nodes share) can take SQLite's place.

mod columns;
#[cfg(test)]
mod conformance;
pub mod database;
pub mod log;
pub mod materializer;
pub mod migrate;
mod postgres;
mod rows;
mod sqlite;

pub use database::{Database, DbFuture, KvWrite};
pub use postgres::PostgresStore;
pub use rows::*;
pub use sqlite::SqliteStore;

/// The setting holding the log position the database holds everything up to.
pub(crate) const LOG_APPLIED: &str = "log_applied";
/// The setting naming the log `LOG_APPLIED` is a position of.
pub(crate) const LOG_IDENTITY: &str = "log_identity";

/// Opens the database tier the configuration names: SQLite in `data_dir` (which it
/// locks), or the PostgreSQL database at `postgres_url` (which other nodes may share).
pub async fn open_database(
    data_dir: &std::path::Path,
    config: &crate::config::StorageConfig,
) -> crate::error::Result<std::sync::Arc<dyn Database>> {
    match config.db {
        crate::config::DbBackend::Sqlite => {
            let (dir, config) = (data_dir.to_owned(), config.clone());
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir, &config))
                .await
                .map_err(unavailable)??;
            Ok(std::sync::Arc::new(store))
        }
        crate::config::DbBackend::Postgres => {
            // The database is shared, but the data directory (the embedded log, stream
            // spools) is this node's alone.
            let lock = lock_data_dir(data_dir)?;
            let store =
                PostgresStore::connect(&config.postgres_url, config.postgres_connections).await?;
            Ok(std::sync::Arc::new(store.holding(lock)))
        }
    }
}

/// Creates and locks the data directory until the returned file is dropped: one server per
/// data directory, since two would hand out the same offsets.
pub(crate) fn lock_data_dir(dir: &std::path::Path) -> crate::error::Result<std::fs::File> {
    std::fs::create_dir_all(dir).map_err(unavailable)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(unavailable)?;
    if lock.try_lock().is_err() {
        return Err(unavailable(format!(
            "{} is in use by another switchboard process; stop it or pick another --data-dir",
            dir.display()
        )));
    }
    Ok(lock)
}

use crate::error::Error;
use switchboard_protocol::ErrorCode;

/// The error of an operation on a store that was closed.
pub(crate) fn stopped() -> Error {
    Error::new(
        ErrorCode::ServerShutdown,
        "the server is shutting down; retry on reconnect",
    )
}

/// A storage failure as the client sees it.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> Error {
    tracing::error!(error = %e, "storage failure");
    Error::new(
        ErrorCode::StorageUnavailable,
        format!("durable storage failed ({e}); nothing was acknowledged, retry later"),
    )
}
