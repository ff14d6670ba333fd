//! `switchboard channels …`: create (team channels included), show, complete and delete
//! channels over HTTP.

use super::{ConnectArgs, ScopeArg, print_json_line};
use clap::{Args, Subcommand};
use switchboard_client::{CacheRetention, CreateChannel, LogRetention, Retention, StoragePolicy};

/// A channel's storage policy, as the CLI takes it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StorageArg {
    Ephemeral,
    Cache,
    Log,
    Persistent,
}

impl From<StorageArg> for StoragePolicy {
    fn from(arg: StorageArg) -> Self {
        match arg {
            StorageArg::Ephemeral => StoragePolicy::Ephemeral,
            StorageArg::Cache => StoragePolicy::Cache,
            StorageArg::Log => StoragePolicy::Log,
            StorageArg::Persistent => StoragePolicy::Persistent,
        }
    }
}

/// Arguments of `switchboard channels`.
#[derive(Debug, Args)]
pub struct ChannelsArgs {
    #[command(subcommand)]
    command: ChannelsCommand,
}

/// A channel by name and scope.
#[derive(Debug, Args)]
struct Named {
    /// The channel name.
    name: String,
    /// Channel scope.
    #[arg(long, value_enum, default_value_t)]
    scope: ScopeArg,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
enum ChannelsCommand {
    /// Create a channel and print it. With --member it is a team channel: only those agent
    /// names may join, and it is purged when completed or at --expires-in.
    Create {
        /// A member's agent name (repeatable).
        #[arg(long = "member", value_name = "AGENT")]
        members: Vec<String>,
        /// A team channel completes itself after this many seconds.
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
        /// Channel password.
        #[arg(long)]
        password: Option<String>,
        /// Deliver to the agents present only; store nothing (same as --storage ephemeral).
        #[arg(long, conflicts_with = "storage")]
        ephemeral: bool,
        /// The tiers messages live in: ephemeral (none), cache (memory), log (memory and
        /// the durable log), persistent (memory, log and database; the default).
        #[arg(long, value_enum)]
        storage: Option<StorageArg>,
        /// Keep at most this many messages (every tier).
        #[arg(long)]
        max_messages: Option<u64>,
        /// Keep messages at most this many seconds (every tier).
        #[arg(long)]
        max_age_secs: Option<u64>,
        /// Cache tier: most messages held in memory (default: the server's).
        #[arg(long, value_name = "N")]
        cache_messages: Option<u64>,
        /// Cache tier: most bytes held in memory (default: the server's).
        #[arg(long, value_name = "BYTES")]
        cache_bytes: Option<u64>,
        /// Cache tier: messages leave memory after this many seconds.
        #[arg(long, value_name = "SECS")]
        cache_ttl_secs: Option<u64>,
        /// Log tier: read messages older than this from the database instead.
        #[arg(long, value_name = "SECS")]
        log_max_age_secs: Option<u64>,
        #[command(flatten)]
        channel: Named,
    },
    /// Print a channel.
    Get {
        #[command(flatten)]
        channel: Named,
    },
    /// Complete a team channel: its agents are removed and it is purged.
    Complete {
        #[command(flatten)]
        channel: Named,
    },
    /// Delete a channel with its messages and storage.
    Delete {
        #[command(flatten)]
        channel: Named,
    },
}

/// Runs `switchboard channels`.
pub async fn run(args: ChannelsArgs) -> anyhow::Result<()> {
    match args.command {
        ChannelsCommand::Create {
            members,
            expires_in,
            password,
            ephemeral,
            storage,
            max_messages,
            max_age_secs,
            cache_messages,
            cache_bytes,
            cache_ttl_secs,
            log_max_age_secs,
            channel,
        } => {
            if expires_in.is_some() && members.is_empty() {
                anyhow::bail!("--expires-in is for team channels: name their --member agents");
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let mut create = CreateChannel::new(&channel.name);
            create.scope = channel.scope.into();
            create.password = password;
            create.storage = match (ephemeral, storage) {
                (true, _) => Some(StoragePolicy::Ephemeral),
                (false, storage) => storage.map(StoragePolicy::from),
            };
            let cache =
                (cache_messages.is_some() || cache_bytes.is_some() || cache_ttl_secs.is_some())
                    .then_some(CacheRetention {
                        max_messages: cache_messages,
                        max_bytes: cache_bytes,
                        ttl_secs: cache_ttl_secs,
                    });
            let log = log_max_age_secs.map(|secs| LogRetention {
                max_age_secs: Some(secs),
            });
            if max_messages.is_some() || max_age_secs.is_some() || cache.is_some() || log.is_some()
            {
                create.retention = Some(Retention {
                    max_messages,
                    max_age_secs,
                    cache,
                    log,
                });
            }
            create.members = (!members.is_empty()).then_some(members);
            create.expires_at =
                expires_in.map(|secs| now.saturating_add((secs as i64).saturating_mul(1000)));
            let http = channel.connect.http(None)?;
            print_json_line(&http.create_channel(&create).await?)
        }
        ChannelsCommand::Get { channel } => {
            let http = channel.connect.http(None)?;
            print_json_line(
                &http
                    .get_channel(&channel.name, channel.scope.into())
                    .await?,
            )
        }
        ChannelsCommand::Complete { channel } => {
            let http = channel.connect.http(None)?;
            http.complete_channel(&channel.name, channel.scope.into())
                .await?;
            Ok(())
        }
        ChannelsCommand::Delete { channel } => {
            let http = channel.connect.http(None)?;
            http.delete_channel(&channel.name, channel.scope.into())
                .await?;
            Ok(())
        }
    }
}
