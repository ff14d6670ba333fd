//! `switchboard webhooks …`: register, list and delete the tenant's webhooks, and read their
//! delivery logs (over HTTP, with an original key).

use super::{ConnectArgs, print_json_line};
use anyhow::Context;
use clap::{Args, Subcommand};
use switchboard_client::{CreateWebhook, WebhookEvent};

/// Arguments of `switchboard webhooks`.
#[derive(Debug, Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Register a webhook and print it with its signing secret (shown only now).
    Create {
        /// Where to POST (http:// or https://).
        #[arg(value_name = "URL")]
        endpoint: String,
        /// An event (repeatable): channel.occupied, channel.vacated, agent.joined, agent.left,
        /// message.published, inbox.rejected, inbox.dead_lettered.
        #[arg(long = "event", value_name = "EVENT", required = true)]
        events: Vec<String>,
        /// Only channels with this name, or starting with the prefix before a trailing `*`.
        #[arg(long)]
        channel: Option<String>,
        /// message.published only for this message type (repeatable).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print the tenant's webhooks, one JSON line each.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a webhook.
    Delete {
        /// The webhook id.
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print a webhook's newest delivery attempts, one JSON line each, newest first.
    Deliveries {
        /// The webhook id.
        id: String,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn event(name: &str) -> anyhow::Result<WebhookEvent> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).with_context(|| {
        let all: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
        format!("unknown event {name:?}; use one of {}", all.join(", "))
    })
}

/// Runs `switchboard webhooks`.
pub async fn run(args: WebhooksArgs) -> anyhow::Result<()> {
    match args.command {
        WebhooksCommand::Create {
            endpoint,
            events,
            channel,
            types,
            connect,
        } => {
            let create = CreateWebhook {
                url: endpoint,
                events: events
                    .iter()
                    .map(|e| event(e))
                    .collect::<anyhow::Result<_>>()?,
                channel,
                types: (!types.is_empty()).then_some(types),
            };
            print_json_line(&connect.http(None)?.create_webhook(&create).await?)
        }
        WebhooksCommand::List { connect } => {
            for webhook in connect.http(None)?.webhooks().await? {
                print_json_line(&webhook)?;
            }
            Ok(())
        }
        WebhooksCommand::Delete { id, connect } => {
            connect.http(None)?.delete_webhook(&id).await?;
            Ok(())
        }
        WebhooksCommand::Deliveries { id, limit, connect } => {
            for attempt in connect
                .http(None)?
                .webhook_deliveries(&id, limit)
                .await?
                .attempts
            {
                print_json_line(&attempt)?;
            }
            Ok(())
        }
    }
}
