//! `switchboard migrate`: moves a stopped embedded deployment (SQLite and the embedded log)
//! into PostgreSQL and the log a configuration names (a JetStream stream for a cluster, or
//! the embedded log in the configuration's data directory), and proves the copy.
//!
//! The destination must be empty, so nothing is ever merged or overwritten. The source
//! database first catches up with its log, as a server start would. Every table is then
//! copied in one PostgreSQL transaction, primary keys included (channel ids are referenced
//! everywhere, and are the log's subjects), then the log records the source serves, the
//! stream spool files and the key files. Each side of each part is summed up (rows and a
//! SHA-256 of a canonical form, see `checksum.rs`) from what the source gave and from what
//! the destination reads back; the transaction commits only when every part matches, with
//! the destination log's identity and end as the database writer's position, so the
//! records copied into the log are never applied to the database a second time.

mod checksum;
mod files;
mod log;
mod tables;

pub use checksum::Summary;

use super::log::{EmbeddedLog, EmbeddedLogConfig, JetStreamLog, JetStreamLogConfig, MessageLog};
use super::materializer::Materializer;
use super::{Database, LOG_APPLIED, LOG_IDENTITY, PostgresStore, SqliteStore};
use crate::config::{Config, DbBackend, LogBackend};
use sqlx::Connection as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Why a migration was refused or failed. Refusals come before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The destination configuration does not use PostgreSQL.
    #[error(
        "the configuration given as --to uses [storage] db = \"sqlite\"; migrate copies into \
         PostgreSQL: set db = \"postgres\" and postgres_url (see docs/cluster.md)"
    )]
    NotPostgres,
    /// The source is not a data directory.
    #[error(
        "{0} is not a Switchboard data directory (it has no switchboard.db): give --from the \
         data_dir of the stopped server"
    )]
    NotADataDir(PathBuf),
    /// A server runs on the source.
    #[error(
        "{0} is in use by a running switchboard server: stop it first (migrate copies a \
         stopped deployment; a graceful stop also brings its database up to its log)"
    )]
    SourceInUse(PathBuf),
    /// The destination's data directory is the source.
    #[error(
        "the destination data_dir {0} is the source directory: give the new deployment a \
         data_dir of its own"
    )]
    SameDataDir(PathBuf),
    /// A server runs on the destination's data directory.
    #[error(
        "the destination data_dir {0} is in use by a running switchboard server: stop it \
         (migrate runs before the new nodes start)"
    )]
    DestinationInUse(PathBuf),
    /// The source used another log than the embedded one.
    #[error(
        "{dir} uses the log {identity}, not the embedded log: migrate copies a deployment \
         with SQLite and the embedded log"
    )]
    SourceNotEmbedded {
        /// The source directory.
        dir: PathBuf,
        /// The log its database follows.
        identity: String,
    },
    /// The destination database holds data.
    #[error(
        "the destination database {database} is not empty (table {table} holds rows): migrate \
         never merges into or overwrites a deployment; create an empty database (createdb) \
         and point postgres_url at it"
    )]
    DestinationNotEmpty {
        /// Where.
        database: String,
        /// The first table found with rows.
        table: String,
    },
    /// The destination log holds records.
    #[error("the destination log ({log}) already holds records (up to position {end}): {cleanup}")]
    DestinationLogNotEmpty {
        /// Which log.
        log: String,
        /// Its newest position.
        end: u64,
        /// What to do.
        cleanup: String,
    },
    /// The source has a table this version does not know.
    #[error(
        "the source database has a table {0} that this version of migrate does not know: use \
         the switchboard binary that wrote the data directory"
    )]
    UnknownTable(String),
    /// The two schemas disagree, or a value does not fit the destination's type.
    #[error("table {table}: {problem}")]
    Schema {
        /// The table.
        table: String,
        /// What is wrong.
        problem: String,
    },
    /// The copy failed after the destination log received records.
    #[error(
        "{error}. Nothing was committed to the destination database, but the destination log \
         ({log}) may hold copied records: {cleanup}, then run migrate again"
    )]
    Interrupted {
        /// What failed.
        error: Box<MigrateError>,
        /// Which log.
        log: String,
        /// What to do.
        cleanup: String,
    },
    /// A storage operation failed (opening the source, the log, PostgreSQL).
    #[error("{0}")]
    Storage(#[from] crate::error::Error),
    /// Reading the source database failed.
    #[error("reading the source database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Writing or reading the destination database failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A bug, or a broken machine.
    #[error("internal error: {0}")]
    Internal(String),
}

/// One part of the copy, summed up on both sides.
#[derive(Debug, Clone)]
pub struct Check {
    /// The table, or `log records`, `log ranges`, `stream spool files`.
    pub name: String,
    /// What the source gave.
    pub source: Summary,
    /// What the destination read back.
    pub destination: Summary,
    /// Time the copy of this part took (not its read-back), seconds.
    pub seconds: f64,
}

impl Check {
    /// Whether both sides agree.
    pub fn ok(&self) -> bool {
        self.source == self.destination
    }
}

/// What a migration did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every part, tables first.
    pub checks: Vec<Check>,
    /// Log records the source database had not copied yet and copied first.
    pub caught_up: u64,
    /// The destination database (host:port/name).
    pub database: String,
    /// The destination log, for people.
    pub log: String,
    /// The destination log's identity, as its `log_identity` setting.
    pub log_identity: String,
    /// The destination log's end, as its `log_applied` setting.
    pub log_applied: u64,
    /// Key files copied into the destination data directory.
    pub key_files: Vec<PathBuf>,
    /// Whether the destination database was committed (every check matched).
    pub committed: bool,
    /// What to remove from the destination log before running again, when not committed.
    pub cleanup: String,
}

impl Report {
    /// Whether every part matched (the destination database is then committed).
    pub fn ok(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }

    /// The verification table: part, rows, checksum (its first 16 hex digits; the whole
    /// SHA-256 is compared), ok. A part that differs shows source → destination.
    pub fn table(&self) -> String {
        let mut lines = vec![(
            "table".to_owned(),
            "rows".to_owned(),
            "sha-256".to_owned(),
            "ok".to_owned(),
        )];
        for c in &self.checks {
            let (s, d) = (&c.source, &c.destination);
            let rows = if s.rows == d.rows {
                s.rows.to_string()
            } else {
                format!("{} → {}", s.rows, d.rows)
            };
            let sum = if s.checksum == d.checksum {
                s.hex()[..16].to_owned()
            } else {
                format!("{} → {}", &s.hex()[..16], &d.hex()[..16])
            };
            let ok = if c.ok() { "ok" } else { "MISMATCH" };
            lines.push((c.name.clone(), rows, sum, ok.to_owned()));
        }
        let width = |f: fn(&(String, String, String, String)) -> &String| {
            lines
                .iter()
                .map(|l| f(l).chars().count())
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(|l| &l.0), width(|l| &l.1), width(|l| &l.2));
        let mut out = String::new();
        for (name, rows, sum, ok) in &lines {
            out.push_str(&format!("{name:<w0$}  {rows:>w1$}  {sum:<w2$}  {ok}\n"));
        }
        out
    }
}

/// Locks `dir` (its `LOCK` file, as a server does) unless another process holds it.
fn try_lock(dir: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn noop_observer() -> super::log::CommitObserver {
    Arc::new(|_, _| {})
}

/// The destination log, how to name it, and how to empty it.
async fn open_destination_log(
    config: &Config,
) -> Result<(Arc<dyn MessageLog>, String, String), MigrateError> {
    let s = &config.storage;
    Ok(match s.log {
        LogBackend::Embedded => {
            let dir = config.server.data_dir.join("log");
            let log = EmbeddedLog::open(
                &dir,
                EmbeddedLogConfig {
                    fsync: true,
                    max_batch: s.max_batch,
                    segment_bytes: s.log_segment_bytes,
                    retention_secs: s.log_retention_secs,
                    retention_bytes: s.log_retention_bytes,
                },
                1,
                noop_observer(),
            )?;
            let name = dir.display().to_string();
            let cleanup = format!("remove the directory {name}");
            (Arc::new(log), name, cleanup)
        }
        LogBackend::Jetstream => {
            let log = JetStreamLog::open(
                JetStreamLogConfig {
                    url: s.nats_url.clone(),
                    stream: s.jetstream_stream.clone(),
                    replicas: s.jetstream_replicas,
                    retention_secs: s.log_retention_secs,
                    retention_bytes: s.log_retention_bytes,
                    max_batch: s.max_batch,
                    shared: false,
                },
                noop_observer(),
            )
            .await?;
            let name = format!("JetStream stream {} at {}", s.jetstream_stream, s.nats_url);
            let cleanup = format!(
                "delete the stream (nats stream rm {}) or set another [storage] jetstream_stream",
                s.jetstream_stream
            );
            (Arc::new(log), name, cleanup)
        }
    })
}

/// Closes a log, completing what it has queued.
async fn close_log(log: Arc<dyn MessageLog>) {
    let _ = tokio::task::spawn_blocking(move || log.close()).await;
}

/// `host:port/database` of a PostgreSQL URL (never its password).
fn database_name(url: &str) -> String {
    use std::str::FromStr;
    match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or_default()
        ),
        Err(_) => "(an invalid postgres_url)".to_owned(),
    }
}

/// Copies the stopped embedded deployment in `from` into the backends `to` names (see the
/// module docs). A mismatch is not an error: the report says which part differs, and the
/// destination database is then left empty (`committed` false).
pub async fn migrate(from: &Path, to: &Config) -> Result<Report, MigrateError> {
    let s = &to.storage;
    if s.db != DbBackend::Postgres {
        return Err(MigrateError::NotPostgres);
    }
    if !from.join("switchboard.db").is_file() {
        return Err(MigrateError::NotADataDir(from.to_owned()));
    }
    let dest_dir = &to.server.data_dir;
    let canonical = |p: &Path| {
        p.canonicalize().map_err(|error| MigrateError::Io {
            path: p.to_owned(),
            error,
        })
    };
    if dest_dir.exists() && canonical(dest_dir)? == canonical(from)? {
        return Err(MigrateError::SameDataDir(dest_dir.clone()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| MigrateError::Io { path, error }
    };
    // A running server holds the source's lock (checked here so the refusal is clean; the
    // store takes the lock for the whole copy below).
    if try_lock(from).map_err(io(from))?.is_none() {
        return Err(MigrateError::SourceInUse(from.to_owned()));
    }
    std::fs::create_dir_all(dest_dir).map_err(io(dest_dir))?;
    let _dest_lock = try_lock(dest_dir)
        .map_err(io(dest_dir))?
        .ok_or_else(|| MigrateError::DestinationInUse(dest_dir.clone()))?;

    // The source, opened as a server start opens it.
    let source_store: Arc<dyn Database> = {
        let (dir, config) = (from.to_owned(), Config::default().storage);
        Arc::new(
            tokio::task::spawn_blocking(move || SqliteStore::open(&dir, &config))
                .await
                .map_err(|e| MigrateError::Internal(e.to_string()))??,
        )
    };
    let stored_identity = source_store.get_setting(LOG_IDENTITY).await?;
    let applied: u64 = source_store
        .get_setting(LOG_APPLIED)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // As at a start: a database without the setting that copied anything followed the
    // embedded log.
    let identity = stored_identity
        .clone()
        .or_else(|| (applied > 0).then(|| "embedded".to_owned()));
    if let Some(identity) = identity.filter(|i| i != "embedded") {
        source_store.close().await;
        return Err(MigrateError::SourceNotEmbedded {
            dir: from.to_owned(),
            identity,
        });
    }

    // The destination database: reachable, the same schema, empty.
    let database = database_name(&s.postgres_url);
    let pg_store = PostgresStore::connect(&s.postgres_url, 2).await?;
    let mut pg = pg_store.pool().acquire().await?;
    let sqlite_path = from.join("switchboard.db");
    let sqlite = rusqlite::Connection::open_with_flags(
        &sqlite_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let tables = tables::describe(&sqlite, &mut pg).await?;
    if let Some(table) = tables::first_non_empty(&mut pg, &tables).await? {
        return Err(MigrateError::DestinationNotEmpty {
            database,
            table: table.to_owned(),
        });
    }

    // The destination log: empty.
    let (dest_log, log_name, cleanup) = open_destination_log(to).await?;
    if dest_log.end() > 0 {
        let end = dest_log.end();
        close_log(dest_log).await;
        return Err(MigrateError::DestinationLogNotEmpty {
            log: log_name,
            end,
            cleanup,
        });
    }

    // The source database catches up with its log, as at a start.
    let source_log: Arc<dyn MessageLog> = {
        let c = Config::default().storage;
        Arc::new(EmbeddedLog::open(
            &from.join("log"),
            EmbeddedLogConfig {
                fsync: true,
                max_batch: c.max_batch,
                segment_bytes: c.log_segment_bytes,
                retention_secs: 0,
                retention_bytes: 0,
            },
            applied + 1,
            noop_observer(),
        )?)
    };
    if stored_identity.is_none() {
        source_store.set_log("embedded", applied, false).await?;
    }
    let materializer = Materializer::new(source_log.clone(), source_store.clone(), applied);
    let caught_up = materializer.catch_up().await?;
    if materializer.applied() < source_log.end() {
        return Err(MigrateError::Internal(format!(
            "the source database stopped at log position {} of {}",
            materializer.applied(),
            source_log.end()
        )));
    }
    tracing::info!(
        records = caught_up,
        "the source database caught up with its log"
    );

    // One read snapshot of the source for everything below.
    sqlite.execute_batch("BEGIN")?;
    let channels: HashMap<i64, u64> = sqlite
        .prepare("SELECT id, pruned_through FROM channels")?
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut floors = HashMap::new();
    for table in &tables {
        floors.insert(table.name, tables::sqlite_sequence(&sqlite, table.name)?);
    }

    let mut tx = (*pg).begin().await?;
    let mut checks = Vec::new();
    let mut sqlite = sqlite;
    for table in &tables {
        let started = Instant::now();
        let (summary, back) = tables::copy(sqlite, &mut tx, table).await?;
        sqlite = back;
        tables::fix_sequence(&mut tx, table, floors[table.name]).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(table = table.name, rows = summary.rows, seconds, "copied");
        checks.push(Check {
            name: table.name.to_owned(),
            source: summary,
            destination: summary,
            seconds,
        });
    }
    drop(sqlite);

    // From here on the destination log receives records.
    let interrupted = {
        let (log, cleanup) = (log_name.clone(), cleanup.clone());
        move |error: MigrateError| MigrateError::Interrupted {
            error: Box::new(error),
            log: log.clone(),
            cleanup: cleanup.clone(),
        }
    };
    let started = Instant::now();
    let copied = {
        let (source, destination) = (source_log.clone(), dest_log.clone());
        tokio::task::spawn_blocking(move || log::copy(&*source, &*destination, &channels))
            .await
            .map_err(|e| interrupted(MigrateError::Internal(e.to_string())))?
            .map_err(&interrupted)?
    };
    let log_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        records = copied.records.rows,
        seconds = log_seconds,
        "copied the log"
    );
    close_log(dest_log).await;
    close_log(source_log).await;
    source_store.close().await;

    // The destination log, read back as a starting node reads it.
    let (reopened, _, _) = open_destination_log(to).await.map_err(&interrupted)?;
    let read_back = {
        let log = reopened.clone();
        tokio::task::spawn_blocking(move || log::summarize(&*log))
            .await
            .map_err(|e| interrupted(MigrateError::Internal(e.to_string())))?
            .map_err(|e| interrupted(e.into()))?
    };
    let served = log::summarize_ranges(copied.ranges.keys().map(|&c| (c, reopened.bounds(c))));
    let log_identity = reopened.identity();
    let log_applied = reopened.end();
    close_log(reopened).await;
    checks.push(Check {
        name: "log records".to_owned(),
        source: copied.records,
        destination: read_back,
        seconds: log_seconds,
    });
    checks.push(Check {
        name: "log ranges".to_owned(),
        source: log::summarize_ranges(copied.ranges.iter().map(|(&c, &r)| (c, Some(r)))),
        destination: served,
        seconds: 0.0,
    });

    // The database writer's position: the end of the destination log, which holds nothing
    // the database lacks.
    let settings = async {
        super::postgres::put_setting(&mut tx, LOG_IDENTITY, &log_identity).await?;
        super::postgres::put_setting(&mut tx, LOG_APPLIED, &log_applied.to_string()).await
    };
    settings.await.map_err(|e| interrupted(e.into()))?;

    let started = Instant::now();
    let (from_dir, to_dir) = (from.to_owned(), dest_dir.clone());
    let (spool, key_files) = tokio::task::spawn_blocking(move || {
        Ok::<_, MigrateError>((
            files::copy_spool(&from_dir, &to_dir)?,
            files::copy_key_files(&from_dir, &to_dir)?,
        ))
    })
    .await
    .map_err(|e| interrupted(MigrateError::Internal(e.to_string())))?
    .map_err(&interrupted)?;
    checks.push(Check {
        name: "stream spool files".to_owned(),
        source: spool.0,
        destination: spool.1,
        seconds: started.elapsed().as_secs_f64(),
    });

    // Every table read back from the destination.
    for (check, table) in checks.iter_mut().zip(&tables) {
        check.destination = tables::summarize_destination(&mut tx, table)
            .await
            .map_err(|e| interrupted(e.into()))?;
    }
    let mut report = Report {
        checks,
        caught_up,
        database,
        log: log_name,
        log_identity,
        log_applied,
        key_files,
        committed: false,
        cleanup,
    };
    if report.ok() {
        tx.commit().await.map_err(|e| interrupted(e.into()))?;
        report.committed = true;
    } else {
        tx.rollback().await.map_err(|e| interrupted(e.into()))?;
    }
    drop(pg);
    pg_store.close().await;
    Ok(report)
}
