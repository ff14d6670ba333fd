//! `switchboard kv …`: read and write a channel's storage over HTTP.

use super::{ChannelArgs, ConnectArgs, print_json_line};
use anyhow::Context;
use clap::{Args, Subcommand};
use switchboard_client::KvList;

/// Arguments of `switchboard kv`.
#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
}

/// Where the storage is.
#[derive(Debug, Args)]
struct At {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    target: ChannelArgs,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Print one entry as a JSON line.
    Get {
        /// The key.
        #[arg(value_name = "KEY")]
        entry: String,
        #[command(flatten)]
        at: At,
    },
    /// Write a value (JSON) and print the entry.
    Put {
        /// The key.
        #[arg(value_name = "KEY")]
        entry: String,
        /// The value, as JSON (a bare word is taken as a string).
        value: String,
        /// Only if the key is at this version now (0: only if absent).
        #[arg(long)]
        version: Option<u64>,
        /// Remove the entry after this many seconds.
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        #[command(flatten)]
        at: At,
    },
    /// Delete a key.
    Delete {
        /// The key.
        #[arg(value_name = "KEY")]
        entry: String,
        /// Only if the key is at this version now.
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        at: At,
    },
    /// Print entries in key order, one JSON line each.
    List {
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many (all pages when absent).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        at: At,
    },
}

/// Runs `switchboard kv`.
pub async fn run(args: KvArgs) -> anyhow::Result<()> {
    let at = match &args.command {
        KvCommand::Get { at, .. }
        | KvCommand::Put { at, .. }
        | KvCommand::Delete { at, .. }
        | KvCommand::List { at, .. } => at,
    };
    let http = at.connect.http(at.target.password.clone())?;
    let (channel, scope) = (at.target.channel.clone(), at.target.scope.into());
    let channel = channel.as_str();
    match args.command {
        KvCommand::Get { entry: key, .. } => {
            print_json_line(&http.kv_get(channel, &key, scope).await?)
        }
        KvCommand::Put {
            entry: key,
            value,
            version,
            ttl,
            ..
        } => {
            let value = serde_json::from_str(&value)
                .or_else(|_| serde_json::to_value(&value))
                .context("the value")?;
            print_json_line(
                &http
                    .kv_put(channel, &key, &value, version, ttl, scope)
                    .await?,
            )
        }
        KvCommand::Delete {
            entry: key,
            version,
            ..
        } => http
            .kv_delete(channel, &key, version, scope)
            .await
            .map_err(Into::into),
        KvCommand::List { prefix, limit, .. } => {
            let mut query = KvList {
                prefix,
                after: None,
                limit: Some(limit.unwrap_or(1000).clamp(1, 1000)),
            };
            let mut left = limit.map(|l| l as usize);
            loop {
                let page = http.kv_list(channel, &query, scope).await?;
                for entry in &page.entries {
                    if left == Some(0) {
                        return Ok(());
                    }
                    print_json_line(entry)?;
                    left = left.map(|l| l - 1);
                }
                match page.next {
                    Some(next) if left != Some(0) => query.after = Some(next),
                    _ => return Ok(()),
                }
            }
        }
    }
}
