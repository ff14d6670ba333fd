//! `switchboard migrate`: moves a stopped embedded deployment into PostgreSQL (and JetStream),
//! prints the verification table, and fails unless every part matched.

use anyhow::Context;
use std::path::PathBuf;
use switchboard_server::config::Config;
use switchboard_server::storage::migrate::{Report, migrate};

/// Arguments of `switchboard migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The data directory of the stopped embedded server (SQLite and the embedded log).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The configuration of the new deployment (`db = "postgres"`; `log = "jetstream"` for a
    /// cluster). `SWITCHBOARD_<SECTION>_<KEY>` env vars override it, as for `serve`.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
}

/// Runs the migration.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let config = Config::load(Some(&args.to), std::env::vars())?;
    init_logging();
    eprintln!(
        "Copying {} into the backends of {} …",
        args.from.display(),
        args.to.display()
    );
    let report = migrate(&args.from, &config)
        .await
        .context("switchboard migrate")?;
    print!("{}", report.table());
    print_figures(&report);
    if !report.committed {
        anyhow::bail!(
            "verification failed: the parts marked MISMATCH differ between source and \
             destination. Nothing was committed to the destination database ({}); the \
             destination log ({}) holds the copied records: {}, then run migrate again",
            report.database,
            report.log,
            report.cleanup
        );
    }
    println!(
        "Migrated {} into {} and {}. Start the nodes with this configuration; keep {} until \
         they serve as expected.",
        args.from.display(),
        report.database,
        report.log,
        args.from.display()
    );
    for path in &report.key_files {
        println!("Copied {}", path.display());
    }
    Ok(())
}

/// Throughput of the copy, on stderr (the table is the result).
fn print_figures(report: &Report) {
    let (mut rows, mut seconds) = (0u64, 0f64);
    for check in &report.checks {
        match check.name.as_str() {
            "log records" => eprintln!(
                "log: {} records in {:.2} s ({:.0} records/s)",
                check.source.rows,
                check.seconds,
                check.source.rows as f64 / check.seconds.max(1e-9)
            ),
            "log ranges" | "stream spool files" => {}
            _ => {
                rows += check.source.rows;
                seconds += check.seconds;
            }
        }
    }
    eprintln!(
        "database: {rows} rows in {seconds:.2} s ({:.0} rows/s); the source had {} log records \
         to catch up first",
        rows as f64 / seconds.max(1e-9),
        report.caught_up
    );
}

/// Warnings from the storage layer (a torn log tail cut, …) and the progress of the copy,
/// on stderr (not sqlx's slow-statement warnings: reading whole tables back is slow by
/// design); `RUST_LOG` overrides.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,sqlx=error,switchboard_server::storage::migrate=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
