//! `switchboard agents …`: the tenant's agent directory (announce, discover, get, remove)
//! over HTTP. Watch the changes with `switchboard listen --channel sys.discovery`.

use super::{ConnectArgs, print_json_line};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use switchboard_client::{Announce, Discover};

/// Arguments of `switchboard agents`.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    command: AgentsCommand,
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// Announce an agent (replacing its card) and print the card.
    Announce {
        /// The agent name.
        name: String,
        /// A capability (repeatable).
        #[arg(long = "capability", value_name = "NAME")]
        capabilities: Vec<String>,
        /// Metadata, as a JSON object.
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print the matching agents, one JSON line each, by name.
    Discover {
        /// Only agents with this capability.
        #[arg(long)]
        capability: Option<String>,
        /// Metadata conditions as a JSON object: `{"status":"idle","price":{"max":10}}`.
        #[arg(long, value_name = "JSON")]
        filters: Option<String>,
        /// Only agents online (true) or offline (false).
        #[arg(long)]
        online: Option<bool>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print one agent's card.
    Get {
        /// The agent name.
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove an agent's card.
    Remove {
        /// The agent name.
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn object(flag: &str, text: Option<String>) -> anyhow::Result<Map<String, Value>> {
    match text {
        None => Ok(Map::new()),
        Some(text) => serde_json::from_str(&text).with_context(|| {
            format!("--{flag} must be a JSON object, like '{{\"status\":\"idle\"}}'")
        }),
    }
}

/// Runs `switchboard agents`.
pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    match args.command {
        AgentsCommand::Announce {
            name,
            capabilities,
            metadata,
            connect,
        } => {
            let announce = Announce {
                capabilities,
                metadata: object("metadata", metadata)?,
            };
            print_json_line(&connect.http(None)?.announce_agent(&name, &announce).await?)
        }
        AgentsCommand::Discover {
            capability,
            filters,
            online,
            limit,
            connect,
        } => {
            let query = Discover {
                capability,
                filters: object("filters", filters)?,
                online,
                limit,
            };
            for card in connect.http(None)?.discover(&query).await? {
                print_json_line(&card)?;
            }
            Ok(())
        }
        AgentsCommand::Get { name, connect } => {
            print_json_line(&connect.http(None)?.agent(&name).await?)
        }
        AgentsCommand::Remove { name, connect } => {
            connect.http(None)?.remove_agent(&name).await?;
            Ok(())
        }
    }
}
