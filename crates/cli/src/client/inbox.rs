//! `switchboard inbox …`: consume an agent's inbox, and read the dead letters.

use super::{ChannelArgs, ConnectArgs, join_as, print_json_line};
use clap::{Args, Subcommand};
use switchboard_client::{ChannelEvent, DeadLetterQuery, JoinParams};

/// Arguments of `switchboard inbox`.
#[derive(Debug, Args)]
pub struct InboxArgs {
    #[command(subcommand)]
    command: InboxCommand,
}

#[derive(Debug, Subcommand)]
enum InboxCommand {
    /// Join as an agent consuming its inbox; print each message as one JSON line
    /// (`{delivery_count, message}`) and acknowledge it once printed.
    Receive {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        target: ChannelArgs,
        /// The agent whose inbox this is.
        #[arg(long)]
        agent: String,
        /// Exit after this many messages (default: run until interrupted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Print without acknowledging: the messages come back after the visibility timeout
        /// (or at once, to the next consumer, when this one exits).
        #[arg(long)]
        no_ack: bool,
    },
    /// Print the channel's dead letters sent by this tenant, one JSON line each, oldest first.
    DeadLetters {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        target: ChannelArgs,
        /// Only those addressed to this agent.
        #[arg(long)]
        recipient: Option<String>,
        /// At most this many (all pages when absent).
        #[arg(long)]
        limit: Option<u32>,
    },
}

/// Runs `switchboard inbox`.
pub async fn run(args: InboxArgs) -> anyhow::Result<()> {
    match args.command {
        InboxCommand::Receive {
            connect,
            target,
            agent,
            count,
            no_ack,
        } => receive(connect, target, agent, count, no_ack).await,
        InboxCommand::DeadLetters {
            connect,
            target,
            recipient,
            limit,
        } => dead_letters(connect, target, recipient, limit).await,
    }
}

async fn receive(
    connect: ConnectArgs,
    target: ChannelArgs,
    agent: String,
    count: Option<u64>,
    no_ack: bool,
) -> anyhow::Result<()> {
    if count == Some(0) {
        return Ok(());
    }
    let client = connect.connect().await?;
    let mut params = JoinParams::new(&agent);
    params.password = target.password.clone();
    params.scope = target.scope.into();
    params.inbox = true;
    params.presence = false;
    let mut channel = join_as(&client, &target.channel, params).await?;
    let mut seen = 0u64;
    let outcome = loop {
        let event = tokio::select! {
            event = channel.recv() => event,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        match event {
            Some(ChannelEvent::InboxMessage(m)) => {
                print_json_line(&m)?;
                if !no_ack && let Err(e) = channel.ack(&m.message.id).await {
                    break Err(e.into());
                }
                seen += 1;
                if count.is_some_and(|count| seen >= count) {
                    break Ok(());
                }
            }
            Some(ChannelEvent::Kicked(reply)) => {
                break Err(anyhow::Error::new(switchboard_client::Error::Server(reply)));
            }
            Some(ChannelEvent::Reconnected) => eprintln!("note: reconnected"),
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

async fn dead_letters(
    connect: ConnectArgs,
    target: ChannelArgs,
    recipient: Option<String>,
    limit: Option<u32>,
) -> anyhow::Result<()> {
    let http = connect.http(target.password.clone())?;
    let mut left = limit.map(u64::from);
    let mut query = DeadLetterQuery {
        recipient,
        after: None,
        limit: limit.map(|l| l.clamp(1, 1000)),
    };
    loop {
        let page = http
            .dead_letters(&target.channel, &query, target.scope.into())
            .await?;
        for entry in &page.entries {
            if left == Some(0) {
                return Ok(());
            }
            print_json_line(entry)?;
            left = left.map(|n| n - 1);
        }
        match page.next {
            Some(next) if left != Some(0) => query.after = Some(next),
            _ => return Ok(()),
        }
    }
}
