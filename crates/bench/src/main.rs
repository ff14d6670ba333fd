//! `switchboard-bench`: runs Switchboard side by side with peer servers and reports ratios.
//!
//! `switchboard-bench run` is the entry point (see bench/README.md); the other subcommands are
//! the processes it starts: the bare baseline server and the subscriber workers.

mod baseline;
mod payload;
mod proto;
mod servers;
mod worker;
mod ws;

use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
        } => {
            let target = serde_json::from_str(&target)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(worker::run(target, channel, connections, first_id, locals))
        }
    }
}
