//! `switchboard history`: read a channel's history over HTTP.

use super::{ChannelArgs, ConnectArgs, print_json_line};
use clap::Args;
use switchboard_client::{HistoryQuery, PollSource, protocol::history::Direction};

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
    /// The storage tier to read: cache, log (alias kafka), database, or auto (cache, then
    /// log, then database, stitched by offset; the default).
    #[arg(long, value_enum, value_name = "TIER")]
    source: Option<SourceArg>,
}

/// A storage tier, as `--source` takes it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SourceArg {
    Cache,
    #[value(alias = "kafka")]
    Log,
    Database,
    Auto,
}

impl From<SourceArg> for PollSource {
    fn from(arg: SourceArg) -> Self {
        match arg {
            SourceArg::Cache => PollSource::Cache,
            SourceArg::Log => PollSource::Log,
            SourceArg::Database => PollSource::Database,
            SourceArg::Auto => PollSource::Auto,
        }
    }
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
        poll_source: args.source.map(PollSource::from),
        ..HistoryQuery::default()
    };
    let page = http
        .history(&args.target.channel, &query, args.target.scope.into())
        .await?;
    for message in &page.messages {
        print_json_line(message)?;
    }
    if !page.sources.is_empty() {
        let served: Vec<String> = page
            .sources
            .iter()
            .map(|r| format!("{} {}-{}", r.tier.as_str(), r.from, r.to))
            .collect();
        eprintln!("note: served by {}", served.join(", "));
    }
    if let Some(next) = page.next {
        let flag = if args.backward { "--to" } else { "--from" };
        eprintln!("note: more messages: repeat with {flag} {next}");
    }
    Ok(())
}
