//! The client subcommands: thin wrappers over the SDK that print JSON lines.

pub mod agents;
pub mod channels;
pub mod files;
pub mod history;
pub mod inbox;
pub mod kv;
pub mod listen;
pub mod presence;
pub mod send;
pub mod webhooks;

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::io::Write;
use switchboard_client::{Client, ClientConfig, HttpClient, Scope};

/// Where the server is and which key to use.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Server URL (`ws://`, `wss://`, `http://` or `https://`).
    #[arg(long, default_value = "ws://127.0.0.1:7400")]
    pub url: String,
    /// API key.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub key: String,
}

impl ConnectArgs {
    /// The SDK configuration for these arguments.
    pub fn config(&self) -> ClientConfig {
        ClientConfig::new(&self.url, &self.key)
    }

    /// Opens a socket.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(self.config())
            .await
            .with_context(|| format!("cannot connect to {}", self.url))
    }

    /// An HTTP API client, sending `password` for public channels that have one.
    pub fn http(&self, password: Option<String>) -> anyhow::Result<HttpClient> {
        Ok(HttpClient::from_config(&self.config())?.with_channel_password(password))
    }
}

/// Which channel, and how to get in.
#[derive(Debug, Clone, Args)]
pub struct ChannelArgs {
    /// Channel name.
    #[arg(long)]
    pub channel: String,
    /// Channel password (a join that creates the channel sets it; over HTTP, needed for
    /// public channels that have one).
    #[arg(long)]
    pub password: Option<String>,
    /// Channel scope.
    #[arg(long, value_enum, default_value_t)]
    pub scope: ScopeArg,
}

/// A channel's namespace, as a flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// The key's tenant namespace.
    #[default]
    Private,
    /// The namespace shared by every tenant.
    Public,
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Scope {
        match scope {
            ScopeArg::Private => Scope::Private,
            ScopeArg::Public => Scope::Public,
        }
    }
}

/// Joins `channel`, waiting up to 10 s while the agent name is still held by an earlier
/// session of this agent (a process that was just killed: the server drops its connection a
/// moment later).
pub async fn join_as(
    client: &Client,
    channel: &str,
    params: switchboard_client::JoinParams,
) -> anyhow::Result<switchboard_client::Channel> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut told = false;
    loop {
        match client.join(channel, params.clone()).await {
            Err(e)
                if e.code() == Some(switchboard_client::ErrorCode::AgentNameTaken)
                    && std::time::Instant::now() < deadline =>
            {
                if !told {
                    eprintln!(
                        "note: {:?} is in use in {channel}; waiting up to 10 s for that session to end",
                        params.agent_name
                    );
                    told = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Writes one JSON line to stdout and flushes it, so pipes see each line at once.
pub fn print_json_line<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let line = serde_json::to_string(value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// `<code>: <message>` for errors the server (or the SDK, by a protocol code) reported; the
/// whole context chain otherwise.
pub fn describe(error: &anyhow::Error) -> String {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<switchboard_client::Error>() {
            if let Some(reply) = e.as_server() {
                return format!("{}: {}", reply.code, reply.message);
            }
            if let Some(code) = e.code() {
                return format!("{code}: {e}");
            }
        }
    }
    format!("{error:#}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_client::{ErrorCode, ErrorReply};

    #[test]
    fn error_lines() {
        let e = anyhow::Error::new(switchboard_client::Error::Server(ErrorReply::new(
            ErrorCode::BadPassword,
            "wrong channel password",
        )))
        .context("cannot join room");
        assert_eq!(describe(&e), "bad_password: wrong channel password");
        let e = anyhow::anyhow!("plain").context("outer");
        assert_eq!(describe(&e), "outer: plain");
    }
}
