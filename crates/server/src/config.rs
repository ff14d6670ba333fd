//! Server configuration: built-in defaults, then `switchboard.toml`, then `SWITCHBOARD_*`
//! environment variables, then command-line flags (applied by the caller).
//!
//! Every key can be overridden by an env var named after its path:
//! `[limits] max_connections` ↔ `SWITCHBOARD_LIMITS_MAX_CONNECTIONS`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The commented default configuration file, printed by `switchboard config --default`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../switchboard.toml");

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening address and data directory.
    pub server: ServerConfig,
    /// Input limits and queue bounds.
    pub limits: Limits,
    /// Durability and retention.
    pub storage: StorageConfig,
    /// `[inbox]`
    pub inbox: InboxConfig,
    /// `[webhooks]`
    pub webhooks: WebhooksConfig,
    /// `[streams]`
    pub streams: StreamsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP and WebSocket listener binds.
    pub listen: SocketAddr,
    /// Where the server keeps its database and the bootstrap key.
    pub data_dir: PathBuf,
    /// How long a graceful shutdown waits for connections to close, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Browser origins allowed to open WebSockets (empty: any).
    pub allowed_origins: Vec<String>,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Largest message body (data plus attachments), in bytes.
    pub max_message_bytes: usize,
    /// Most concurrent WebSocket connections.
    pub max_connections: usize,
    /// Most channels one connection may join.
    pub max_channels_per_connection: usize,
    /// Time allowed to authenticate after the upgrade, in milliseconds.
    pub auth_timeout_ms: u64,
    /// A connection silent for this long is dropped, in milliseconds.
    pub heartbeat_timeout_ms: u64,
    /// Frames queued per connection before it counts as a slow consumer.
    pub outbound_queue: usize,
    /// Unacknowledged publishes per connection.
    pub max_inflight_publishes: usize,
    /// Recent message ids remembered per channel for idempotent publishes.
    pub dedup_window: usize,
    /// How long presence joins and leaves collect before one merged `presence_diff` goes out.
    pub presence_batch_ms: u64,
    /// The longest lifetime a temporary key may be minted with, in seconds.
    pub max_temporary_key_ttl_secs: u64,
    /// Publishes per second one connection may make (0: no limit).
    pub connection_messages_per_sec: u64,
    /// Published bytes per second one connection may send (0: no limit).
    pub connection_bytes_per_sec: u64,
    /// Publishes per second one key may make, over all its connections and HTTP.
    pub key_messages_per_sec: u64,
    /// Published bytes per second one key may send.
    pub key_bytes_per_sec: u64,
    /// Publishes per second one tenant may make.
    pub tenant_messages_per_sec: u64,
    /// Published bytes per second one tenant may send.
    pub tenant_bytes_per_sec: u64,
    /// Authenticated WebSocket connections per tenant (0: no limit).
    pub max_connections_per_tenant: usize,
    /// Channels per tenant, and in the public namespace (0: no limit).
    pub max_channels_per_tenant: usize,
    /// WebSocket connections per IP address not yet authenticated (0: no limit).
    pub max_unauthenticated_per_ip: usize,
    /// Wrong channel passwords per channel and IP address per minute (0: no limit).
    pub password_attempts_per_minute: u32,
    /// Largest channel-storage value (its JSON text), in bytes.
    pub max_kv_value_bytes: usize,
    /// Most channel-storage keys per channel (0: no limit).
    pub max_kv_keys_per_channel: usize,
    /// Agents one tenant may announce in its directory.
    pub max_announced_agents_per_tenant: usize,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `fsync` (default: acknowledged means on disk) or `none` (acknowledged means in the OS
    /// page cache; survives a process crash, not a power loss).
    pub durability: Durability,
    /// Most publishes one group commit (one fsync) covers.
    pub max_batch: usize,
    /// The log tier's backend.
    pub log: LogBackend,
    /// `log = "jetstream"`: the NATS server(s) to connect to.
    pub nats_url: String,
    /// `log = "jetstream"`: the stream's name (also its subjects' prefix).
    pub jetstream_stream: String,
    /// `log = "jetstream"`: replicas of the stream (1, or 3 on a NATS cluster).
    pub jetstream_replicas: usize,
    /// The database tier's backend (also where tenants, keys, channels and all other
    /// metadata live).
    pub db: DbBackend,
    /// `db = "postgres"`: the connection URL (`postgres://user:password@host:port/database`).
    pub postgres_url: String,
    /// `db = "postgres"`: most connections this node opens.
    pub postgres_connections: u32,
    /// Cache tier: recent messages kept in memory per channel (a channel's own cache
    /// retention replaces it).
    pub cache_messages: usize,
    /// Cache tier: most bytes of encoded messages kept in memory per channel.
    pub cache_bytes: u64,
    /// Cache tier: messages older than this many seconds leave the cache (0: no limit).
    pub cache_ttl_secs: u64,
    /// Embedded log: a segment file is closed once it would grow past this size.
    pub log_segment_bytes: u64,
    /// Log tier: segments whose newest message is older than this are dropped (0: none).
    pub log_retention_secs: u64,
    /// Log tier: oldest segments are dropped while the log is larger than this (0: none).
    pub log_retention_bytes: u64,
    /// Database tier: how long the database writer gathers log records into one
    /// transaction, in milliseconds (0: it writes as soon as records arrive).
    pub db_batch_delay_ms: u64,
    /// Default retention for new channels: most messages kept (0 = unlimited).
    pub retention_max_messages: u64,
    /// Default retention for new channels: oldest message age in seconds (0 = unlimited).
    pub retention_max_age_secs: u64,
    /// How often retention is enforced, in milliseconds.
    pub retention_interval_ms: u64,
    /// How often usage counters are written to the store, in milliseconds.
    pub usage_flush_ms: u64,
}

impl StorageConfig {
    /// Whether this node is one of several sharing the deployment: the log in JetStream and
    /// the database in PostgreSQL, which every node reaches.
    pub fn is_cluster(&self) -> bool {
        self.log == LogBackend::Jetstream && self.db == DbBackend::Postgres
    }
}

/// `[streams]`: large payloads spooled through the server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsConfig {
    /// The largest stream, in bytes.
    pub max_bytes: u64,
    /// Streams open at once per channel.
    pub max_open_per_channel: usize,
    /// Bytes between durable checkpoints (fsync of the spool file and its position).
    pub checkpoint_bytes: u64,
    /// Bytes sent to a recipient beyond what it acknowledged.
    pub window_bytes: u64,
    /// A stream untouched this long (seconds) is deleted, finished or not.
    pub idle_secs: u64,
}

/// `[webhooks]`: delivery of events to the tenants' URLs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// How long one POST may take, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt, in milliseconds; it doubles for each later one.
    pub initial_backoff_ms: u64,
    /// The longest wait between attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Deliveries waiting to be sent; events beyond are dropped (and counted), so webhook
    /// trouble never slows message flow.
    pub queue: usize,
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// Attempts kept in each webhook's delivery log.
    pub log_per_webhook: u64,
}

/// `[inbox]`: durable inboxes (persisted direct messages that wait for `ack`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// How long a delivered message stays invisible before it is delivered again unless
    /// acknowledged, in milliseconds.
    pub visibility_timeout_ms: u64,
    /// Deliveries after which an unacknowledged message is dead-lettered.
    pub max_deliveries: u32,
    /// Rejections after which a message is dead-lettered.
    pub max_rejections: u32,
    /// Unacknowledged messages one agent's inbox in one channel may hold (inbox_full beyond).
    pub max_messages_per_agent: u32,
    /// Messages delivered to a consumer and not yet acknowledged, at most.
    pub prefetch: u32,
    /// Messages waiting longer than this are dead-lettered (`expired`), and dead letters
    /// older than this are deleted, in seconds.
    pub retention_secs: u64,
}

/// Where the log tier lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogBackend {
    /// Segment files under the data directory.
    Embedded,
    /// A NATS JetStream stream.
    Jetstream,
}

/// Where the database tier (and metadata) lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbBackend {
    /// `switchboard.db` under the data directory (WAL mode).
    Sqlite,
    /// A PostgreSQL database, which several nodes may share.
    Postgres,
}

/// What an acknowledgement promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync before acknowledging (group-committed).
    Fsync,
    /// Written to the OS before acknowledging, no fsync.
    None,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `RUST_LOG`-style filter; the `RUST_LOG` env var wins when set.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

// The defaults are the commented file itself, so the file and the code never disagree.
// Loading merges a user's file and env vars over the default file's table, so every key
// is always present and the structs need no serde defaults.
impl Default for Config {
    fn default() -> Self {
        toml::from_str(DEFAULT_CONFIG_TOML).expect("the built-in switchboard.toml parses")
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an env var does not fit the schema.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `file` (if any), then `SWITCHBOARD_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(DEFAULT_CONFIG_TOML).expect("the built-in switchboard.toml parses");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let from_file: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            merge(&mut table, from_file);
        }
        for (name, value) in env {
            let Some(path) = name.strip_prefix("SWITCHBOARD_") else {
                continue;
            };
            apply_env(&mut table, path, &value)?;
        }
        Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The configuration as TOML (for `switchboard config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Sets `SECTION_KEY` (upper case) in `table`, parsing the value as the key's current type.
/// Variables that name no key (such as `SWITCHBOARD_API_KEY`, a client setting) are ignored.
fn apply_env(table: &mut toml::Table, path: &str, value: &str) -> Result<(), ConfigError> {
    for (section, keys) in table.iter_mut() {
        let Some(rest) = path.strip_prefix(&section.to_uppercase()) else {
            continue;
        };
        let Some(key_upper) = rest.strip_prefix('_') else {
            continue;
        };
        let toml::Value::Table(keys) = keys else {
            continue;
        };
        for (key, current) in keys.iter_mut() {
            if key.to_uppercase() != key_upper {
                continue;
            }
            let invalid = |what: &str| {
                ConfigError::Invalid(format!("SWITCHBOARD_{path}={value:?}: expected {what}"))
            };
            *current = match current {
                toml::Value::String(_) => toml::Value::String(value.to_owned()),
                toml::Value::Integer(_) => {
                    toml::Value::Integer(value.parse().map_err(|_| invalid("an integer"))?)
                }
                toml::Value::Boolean(_) => {
                    toml::Value::Boolean(value.parse().map_err(|_| invalid("true or false"))?)
                }
                toml::Value::Float(_) => {
                    toml::Value::Float(value.parse().map_err(|_| invalid("a number"))?)
                }
                // Lists of strings come comma-separated: `a,b`.
                toml::Value::Array(_) => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.to_owned()))
                        .collect(),
                ),
                _ => return Err(invalid("a scalar")),
            };
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_file() {
        let c = Config::default();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:7400");
        assert_eq!(c.server.data_dir, PathBuf::from("./switchboard-data"));
        assert_eq!(c.storage.durability, Durability::Fsync);
        assert_eq!(Config::load(None, []).unwrap(), c);
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "[limits]\nmax_connections = 7\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let env = [
            (
                "SWITCHBOARD_LIMITS_MAX_CONNECTIONS".to_owned(),
                "9".to_owned(),
            ),
            (
                "SWITCHBOARD_SERVER_LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
            ("SWITCHBOARD_API_KEY".to_owned(), "ignored".to_owned()),
        ];
        let c = Config::load(Some(&path), env).unwrap();
        assert_eq!(c.limits.max_connections, 9);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.server.listen.port(), 0);
    }

    #[test]
    fn bad_values_are_clear() {
        let env = [(
            "SWITCHBOARD_LIMITS_MAX_CONNECTIONS".to_owned(),
            "many".to_owned(),
        )];
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("SWITCHBOARD_LIMITS_MAX_CONNECTIONS"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[limits]\nmax_conections = 7\n").unwrap();
        let err = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("max_conections"), "{err}");
    }
}
