//! `switchboard send`: join, publish one message, print its offset.

use super::{ChannelArgs, ConnectArgs};
use anyhow::Context;
use clap::Args;
use std::io::Read;
use std::path::PathBuf;
use switchboard_client::{JoinParams, Publish, PublishAck};

/// Arguments of `switchboard send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    target: ChannelArgs,
    /// Agent name to send as.
    #[arg(long)]
    agent: String,
    /// Send only to this agent.
    #[arg(long)]
    to: Option<String>,
    /// Message type.
    #[arg(long = "type", default_value = "message")]
    kind: String,
    /// Deliver to agents present only; never store.
    #[arg(long)]
    ephemeral: bool,
    /// Message id (a retry with the same id is not stored twice).
    #[arg(long)]
    id: Option<String>,
    /// Attach a file (repeatable).
    #[arg(long = "attach", value_name = "FILE")]
    attachments: Vec<PathBuf>,
    /// The message data as JSON; `-` reads it from stdin.
    data: String,
}

/// Runs `switchboard send`.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let data = read_data(&args.data)?;
    let mut publish = Publish::new(args.kind.clone(), &data);
    publish.to = args.to.clone();
    publish.ephemeral = args.ephemeral;
    publish.id = args.id.clone();
    for path in &args.attachments {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        publish.attachments.push(bytes.into());
    }

    let client = args.connect.connect().await?;
    let mut params = JoinParams::new(&args.agent);
    params.password = args.target.password.clone();
    params.scope = args.target.scope.into();
    // This agent only sends: no echo of its own message.
    params.echo = false;
    let outcome = async {
        let channel = client.join(&args.target.channel, params).await?;
        let ack = channel.publish(publish).await?;
        channel.leave().await?;
        Ok::<PublishAck, switchboard_client::Error>(ack)
    }
    .await;
    client.close().await;
    let ack = outcome?;
    match ack.offset {
        Some(offset) => println!("{offset}"),
        None => println!("{}", ack.id),
    }
    Ok(())
}

fn read_data(arg: &str) -> anyhow::Result<serde_json::Value> {
    let text = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the message data from stdin")?;
        text
    } else {
        arg.to_owned()
    };
    serde_json::from_str(&text)
        .context("the message data is not valid JSON (quote strings: '\"hi\"')")
}
