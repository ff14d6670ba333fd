//! `switchboard listen`: join a channel and print each message as one JSON line.

use super::{ChannelArgs, ConnectArgs, join_as, print_json_line};
use clap::Args;
use switchboard_client::{ChannelEvent, GapReason, JoinParams};

/// Arguments of `switchboard listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    target: ChannelArgs,
    /// Agent name to listen as.
    #[arg(long)]
    agent: String,
    /// First replay every stored message after this offset.
    #[arg(long, value_name = "OFFSET")]
    since: Option<u64>,
    /// Exit after this many messages (default: run until interrupted).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Only messages of this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
}

/// Runs `switchboard listen`.
pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    if args.count == Some(0) {
        return Ok(());
    }
    let client = args.connect.connect().await?;
    let mut params = JoinParams::new(&args.agent);
    params.password = args.target.password.clone();
    params.scope = args.target.scope.into();
    params.since = args.since;
    if !args.types.is_empty() {
        params.event_types = Some(args.types.clone());
    }
    let mut channel = join_as(&client, &args.target.channel, params).await?;
    let mut seen = 0u64;
    let outcome = loop {
        let event = tokio::select! {
            event = channel.recv() => event,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        match event {
            Some(ChannelEvent::Message(message)) => {
                print_json_line(&message)?;
                seen += 1;
                if args.count.is_some_and(|count| seen >= count) {
                    break Ok(());
                }
            }
            Some(ChannelEvent::Gap(gap)) => {
                let why = match gap.reason {
                    GapReason::Retention => "retention removed them",
                    GapReason::EpochChanged => "the channel's history was reset",
                };
                eprintln!(
                    "warning: messages before offset {} are missing: {why}",
                    gap.first_available
                );
            }
            Some(ChannelEvent::Reconnected) => eprintln!("note: reconnected and resumed"),
            Some(ChannelEvent::Kicked(reply)) => {
                break Err(anyhow::Error::new(switchboard_client::Error::Server(reply)));
            }
            Some(_) => {}
            None => break Err(anyhow::anyhow!("the channel closed")),
        }
    };
    if outcome.is_ok() {
        let _ = channel.leave().await;
    } else {
        drop(channel);
    }
    client.close().await;
    outcome
}
