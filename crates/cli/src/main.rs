//! The switchboard binary: `serve` and `config` run the server; `migrate` moves an embedded
//! deployment into PostgreSQL; `tenants` and `keys` manage credentials; the other
//! subcommands are a command-line client built on the Rust SDK.

mod admin;
mod client;
mod migrate;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Switchboard: a real-time messaging server for agents, and its command-line client.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Print the effective server configuration.
    Config(serve::ConfigArgs),
    /// Copy a stopped embedded deployment into PostgreSQL (and JetStream), verified.
    Migrate(migrate::MigrateArgs),
    /// Join a channel, publish one message and print its offset (its id if ephemeral).
    Send(client::send::SendArgs),
    /// Join a channel and print each message as one JSON line.
    Listen(client::listen::ListenArgs),
    /// Print a channel's history (over HTTP), one JSON line per message.
    History(client::history::HistoryArgs),
    /// Print the agents present in a channel (over HTTP), one JSON line per agent.
    Presence(client::presence::PresenceArgs),
    /// Create (team channels too), show, complete and delete channels (over HTTP).
    Channels(client::channels::ChannelsArgs),
    /// Read and write a channel's storage (over HTTP).
    Kv(client::kv::KvArgs),
    /// Consume an agent's durable inbox, or read the dead letters.
    Inbox(client::inbox::InboxArgs),
    /// Send a file to an agent as a stream (resumable), with a progress bar.
    SendFile(client::files::SendFileArgs),
    /// Receive a file streamed to this agent (resumes into an existing --output).
    ReceiveFile(client::files::ReceiveFileArgs),
    /// Announce and discover the tenant's agents (over HTTP).
    Agents(client::agents::AgentsArgs),
    /// Register, list and delete webhooks, and read their delivery logs (over HTTP).
    Webhooks(client::webhooks::WebhooksArgs),
    /// Create, list and revoke tenants (admin key, or offline on a data directory).
    Tenants(admin::TenantsArgs),
    /// Create, list and revoke API keys (admin or tenant key, or offline on a data directory).
    Keys(admin::KeysArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Config(args) => serve::print_config(args),
        Command::Migrate(args) => migrate::run(args).await,
        Command::Send(args) => client::send::run(args).await,
        Command::Listen(args) => client::listen::run(args).await,
        Command::History(args) => client::history::run(args).await,
        Command::Presence(args) => client::presence::run(args).await,
        Command::Kv(args) => client::kv::run(args).await,
        Command::Channels(args) => client::channels::run(args).await,
        Command::Inbox(args) => client::inbox::run(args).await,
        Command::Agents(args) => client::agents::run(args).await,
        Command::SendFile(args) => client::files::send(args).await,
        Command::ReceiveFile(args) => client::files::receive(args).await,
        Command::Webhooks(args) => client::webhooks::run(args).await,
        Command::Tenants(args) => admin::tenants(args).await,
        Command::Keys(args) => admin::keys(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", client::describe(&error));
            ExitCode::FAILURE
        }
    }
}
