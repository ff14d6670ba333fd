//! `switchboard-bench`: runs Switchboard side by side with peer servers and reports ratios.
//!
//! `switchboard-bench run` is the entry point (see bench/README.md); the other subcommands are
//! the processes it starts: the bare baseline server and the subscriber workers.

mod baseline;
mod cluster;
mod payload;
mod peers;
mod proto;
mod report;
mod run;
mod scenarios;
mod servers;
mod worker;
mod ws;

use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// A scenario of the benchmark plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Fan-out: one publisher to N subscribers, rate stepped up.
    S1,
    /// Many pairs: 1,000 channels with one sender and one receiver each.
    S2,
    /// Latency at 10,000 deliveries/s.
    S3,
    /// Memory per idle connection.
    S4,
    /// Durable publish against the fdatasync floor.
    S5,
    /// History reads.
    S6,
    /// Cross-node fan-out: persisted messages on a three-node cluster vs one node.
    S7,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the suite and writes `<out>/latest.md` and `<out>/latest.json`.
    Run {
        /// Scenarios to run (default: all).
        #[arg(long, value_delimiter = ',')]
        scenario: Vec<Scenario>,
        /// Servers to compare (default: all).
        #[arg(long, value_delimiter = ',')]
        servers: Vec<scenarios::Server>,
        /// Fewer steps and shorter windows: a smoke run, not for publishing.
        #[arg(long)]
        quick: bool,
        /// Repetitions of each measurement, alternating servers.
        #[arg(long, default_value_t = 2)]
        repeats: usize,
        /// Output directory.
        #[arg(long, default_value = "bench/results")]
        out: std::path::PathBuf,
        /// Keep the other scenarios of `<out>/latest.json` and replace only those run now.
        #[arg(long)]
        merge: bool,
        /// The `switchboard` binary (a release build).
        #[arg(long, default_value = "target/release/switchboard")]
        switchboard: std::path::PathBuf,
    },
    /// Rewrites `<dir>/latest.md` (and the derived figures in `latest.json`) from the
    /// recorded steps in `<dir>/latest.json`, without measuring again.
    Report {
        /// The results directory.
        #[arg(long, default_value = "bench/results")]
        dir: std::path::PathBuf,
    },
    /// Appends records and fdatasyncs every batch; prints records per second.
    FsyncFloor {
        /// Directory for the file.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Bytes per record.
        #[arg(long, default_value_t = 200)]
        record_bytes: usize,
        /// Records per fdatasync.
        #[arg(long, default_value_t = 1)]
        batch: u64,
        /// How long to run.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// The bare tokio WebSocket broadcast server (the physical-limit baseline).
    BaselineServer {
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// A subscriber worker (started by `run`; speaks JSON lines on stdin/stdout).
    Worker {
        /// The target, as JSON.
        #[arg(long)]
        target: String,
        /// Channel to subscribe to.
        #[arg(long)]
        channel: String,
        /// Connections to hold.
        #[arg(long)]
        connections: u64,
        /// First subscriber id (ids are unique across workers).
        #[arg(long, default_value_t = 0)]
        first_id: u64,
        /// Local addresses to spread connections over.
        #[arg(long, value_delimiter = ',')]
        locals: Vec<IpAddr>,
        /// Each id gets its own channel `<channel>-<id>` with a publisher beside the subscriber.
        #[arg(long)]
        pairs: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run {
            scenario,
            servers,
            quick,
            repeats,
            out,
            merge,
            switchboard,
        } => {
            let bins = servers::Binaries {
                switchboard,
                bench: std::env::current_exe()?,
                peers: peers::PeerPaths::discover(),
            };
            anyhow::ensure!(
                bins.switchboard.exists(),
                "{} not found: cargo build --release -p switchboard",
                bins.switchboard.display()
            );
            let servers = if servers.is_empty() {
                <scenarios::Server as clap::ValueEnum>::value_variants().to_vec()
            } else {
                servers
            };
            let scenario = if scenario.is_empty() {
                <Scenario as clap::ValueEnum>::value_variants().to_vec()
            } else {
                scenario
            };
            let timing = if quick {
                run::Timing {
                    warmup: Duration::from_millis(500),
                    window: Duration::from_secs(1),
                    drain: Duration::from_millis(500),
                }
            } else {
                run::Timing {
                    warmup: Duration::from_secs(1),
                    window: Duration::from_secs(2),
                    drain: Duration::from_millis(700),
                }
            };
            let plan = scenarios::Plan {
                quick,
                repeats: if quick { 1 } else { repeats },
                timing,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut results = report::Results {
                started: String::from_utf8(
                    std::process::Command::new("date")
                        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
                        .output()?
                        .stdout,
                )?
                .trim()
                .to_owned(),
                machine: report::machine(&bins.switchboard, &peers::versions(&bins.peers)),
                command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
                ..Default::default()
            };
            std::fs::create_dir_all(&out)?;
            if merge && let Ok(text) = std::fs::read_to_string(out.join("latest.json")) {
                let before: report::Results = serde_json::from_str(&text)?;
                results = report::Results {
                    started: format!(
                        "{} (merged into the run of {})",
                        results.started, before.started
                    ),
                    command: format!("{}; then {}", before.command, results.command),
                    ..before
                };
            }
            for s in scenario {
                match s {
                    Scenario::S1 => {
                        results.fan_out = rt.block_on(scenarios::fan_out(&bins, &servers, &plan))?
                    }
                    Scenario::S2 => {
                        results.pairs = rt.block_on(scenarios::pairs(&bins, &servers, &plan))?
                    }
                    Scenario::S3 => {
                        results.latency = rt.block_on(scenarios::latency(&bins, &servers, &plan))?
                    }
                    Scenario::S4 => {
                        results.memory = rt.block_on(scenarios::memory(&bins, &servers, &plan))?
                    }
                    Scenario::S5 => {
                        results.durable = rt.block_on(scenarios::durable(&bins, &plan))?
                    }
                    Scenario::S6 => {
                        results.history = rt.block_on(scenarios::history(&bins, &plan))?
                    }
                    Scenario::S7 => {
                        results.cross_node = rt.block_on(scenarios::cross_node(&bins, &plan))?
                    }
                }
                // Write after every scenario, so an interrupted run keeps what it measured.
                std::fs::write(
                    out.join("latest.json"),
                    serde_json::to_string_pretty(&results)?,
                )?;
                std::fs::write(out.join("latest.md"), results.markdown())?;
            }
            eprintln!("wrote {}/latest.md and latest.json", out.display());
            Ok(())
        }
        Cmd::Report { dir } => {
            let path = dir.join("latest.json");
            let mut results: report::Results =
                serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            results.recompute();
            std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
            std::fs::write(dir.join("latest.md"), results.markdown())?;
            eprintln!("rewrote {}/latest.md", dir.display());
            Ok(())
        }
        Cmd::FsyncFloor {
            dir,
            record_bytes,
            batch,
            seconds,
        } => {
            println!(
                "{}",
                scenarios::fsync_floor_loop(&dir, record_bytes, batch, seconds)?
            );
            Ok(())
        }
        Cmd::BaselineServer { listen } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(baseline::serve(listen)),
        Cmd::Worker {
            target,
            channel,
            connections,
            first_id,
            locals,
            pairs,
        } => {
            let target = serde_json::from_str(&target)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(worker::run(
                    target,
                    channel,
                    connections,
                    first_id,
                    locals,
                    pairs,
                ))
        }
    }
}
