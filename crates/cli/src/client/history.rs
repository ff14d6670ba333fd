//! `switchboard history`: read a channel's history over HTTP.

use super::{ChannelArgs, ConnectArgs, print_json_line};
use clap::Args;
use switchboard_client::{HistoryQuery, protocol::history::Direction};

/// Arguments of `switchboard history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    target: ChannelArgs,
    /// Lowest offset (inclusive).
    #[arg(long = "from", value_name = "OFFSET")]
    from_offset: Option<u64>,
    /// Highest offset (inclusive).
    #[arg(long = "to", value_name = "OFFSET")]
    to_offset: Option<u64>,
    /// At most this many messages (server default 100, at most 1000).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Only messages from this agent.
    #[arg(long, value_name = "AGENT")]
    sender: Option<String>,
    /// Only messages of this type.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Newest first ("the last N").
    #[arg(long)]
    backward: bool,
}

/// Runs `switchboard history`.
pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let http = args.connect.http(args.target.password.clone())?;
    let query = HistoryQuery {
        from_offset: args.from_offset,
        to_offset: args.to_offset,
        sender: args.sender.clone(),
        kind: args.kind.clone(),
        limit: args.limit,
        direction: if args.backward {
            Direction::Backward
        } else {
            Direction::Forward
        },
        ..HistoryQuery::default()
    };
    let page = http
        .history(&args.target.channel, &query, args.target.scope.into())
        .await?;
    for message in &page.messages {
        print_json_line(message)?;
    }
    if let Some(next) = page.next {
        let flag = if args.backward { "--to" } else { "--from" };
        eprintln!("note: more messages: repeat with {flag} {next}");
    }
    Ok(())
}
