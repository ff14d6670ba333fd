//! The Switchboard server: one binary's worth of hub, channels, auth, transports and storage.
//!
//! Layout: `transport/` speaks to the outside (WebSocket, HTTP); `hub` and `channel` hold the
//! live state; `storage/` makes it durable; `auth` decides who may do what. Nothing here
//! parses wire bytes itself: that is `switchboard_protocol`'s job.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_server::StartError> {
//! let server = switchboard_server::Server::start(switchboard_server::Config::default()).await?;
//! println!("listening on {}", server.ws_url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod channel;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod discovery;
pub mod error;
pub mod history;
pub mod hub;
pub mod inbox;
pub mod kv;
pub mod metrics;
pub mod rate_limit;
pub mod storage;
pub mod stream;
pub mod transport;
pub mod usage;
pub mod webhooks;

pub use config::Config;
pub use error::{Error, Result};

use crate::auth::Keys;
use crate::channel::ChannelLimits;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::storage::Database;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Everything the transports share.
pub struct App {
    /// The effective configuration.
    pub config: Config,
    /// API keys.
    pub keys: Keys,
    /// Loaded channels.
    pub hub: Hub,
    /// The database tier and every other record.
    pub store: Arc<dyn Database>,
    /// The log tier.
    pub log: Arc<dyn storage::log::MessageLog>,
    /// Copies the log into the database.
    pub materializer: Arc<storage::materializer::Materializer>,
    /// Prometheus series.
    pub metrics: Arc<Metrics>,
    /// Open WebSocket connections.
    pub connections: AtomicUsize,
    /// Authenticated WebSocket connections, by id.
    pub live: connection::Live,
    /// Abuse limits.
    pub rate_limits: Arc<rate_limit::RateLimits>,
    /// Usage per tenant and key.
    pub usage: usage::Usage,
    /// Announced agents and their online status.
    pub directory: Arc<discovery::Directory>,
    /// The tenants' webhooks.
    pub webhooks: Arc<webhooks::Webhooks>,
    /// Streams in flight.
    pub streams: stream::Streams,
    next_conn_id: AtomicU64,
    /// Flips to true when shutdown begins.
    pub shutdown: watch::Receiver<bool>,
}

impl App {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Applies every retention rule once (the retention loop runs this each
    /// `retention_interval_ms`): channels' and tiers' retention, the log's, expired keys,
    /// team channels, channel storage, inboxes and streams.
    pub async fn enforce_retention(&self) {
        for channel in self.hub.loaded() {
            if let Err(e) = channel.enforce_retention().await {
                tracing::warn!(channel = channel.name(), error = %e, "retention failed");
            }
        }
        log_retention(self).await;
        self.rate_limits.prune();
        complete_expired_channels(self).await;
        let now = now_ms();
        if let Err(e) = self.store.kv_prune(now).await {
            tracing::warn!(error = %e, "pruning expired channel storage failed");
        }
        let retention_ms = (self.config.inbox.retention_secs as i64).saturating_mul(1000);
        match self.store.inbox_prune(now, retention_ms).await {
            Ok(0) => {}
            Ok(_) => {
                for channel in self.hub.loaded() {
                    if let Err(e) = channel.reload_inbox_counts().await {
                        tracing::warn!(channel = channel.name(), error = %e, "reading inbox counts failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "pruning inboxes failed"),
        }
        self.streams.prune().await;
        if let Err(e) = self.keys.prune_expired().await {
            tracing::warn!(error = %e, "pruning expired temporary keys failed");
        }
    }

    /// Revokes a key and closes every connection using it.
    pub async fn revoke_key(&self, id: &str) -> Result<switchboard_protocol::KeyInfo> {
        let info = self.keys.revoke_key(id).await?;
        let closed = self.live.revoke(
            |p| p.uses_key(id),
            "the API key of this connection was revoked",
        );
        tracing::info!(key = id, closed, "key revoked");
        Ok(info)
    }

    /// Revokes a tenant with all its keys and closes every connection of it.
    pub async fn revoke_tenant(&self, id: &str) -> Result<switchboard_protocol::TenantInfo> {
        let info = self.keys.revoke_tenant(id).await?;
        let closed = self.live.revoke(
            |p| &*p.tenant_id == id,
            "the tenant of this connection was revoked",
        );
        tracing::info!(tenant = id, closed, "tenant revoked");
        Ok(info)
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or database could not be opened.
    #[error("cannot open the data directory {dir}: {error}")]
    Storage {
        /// The directory.
        dir: PathBuf,
        /// Why.
        error: Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The bootstrap key could not be written.
    #[error("cannot write the bootstrap key {path}: {error}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// A running server.
pub struct Server {
    /// The bound address (useful with port 0).
    pub local_addr: SocketAddr,
    /// The `default` tenant's key when this start created it (first start only).
    pub bootstrap_key: Option<String>,
    /// An admin key when this start created it (when the data directory had none).
    pub admin_key: Option<String>,
    app: Arc<App>,
    shutdown_tx: watch::Sender<bool>,
    serve: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the data directory, bootstraps the default tenant on first start, binds the
    /// listener and starts serving.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let dir = config.server.data_dir.clone();
        let storage_error = |error| StartError::Storage {
            dir: dir.clone(),
            error,
        };
        let metrics = Arc::new(Metrics::default());
        let observer_metrics = metrics.clone();
        let observer: storage::log::CommitObserver = Arc::new(move |batch, took| {
            observer_metrics.fsync_batch_size.observe(batch as f64);
            observer_metrics.fsync_seconds.observe(took.as_secs_f64());
        });
        let store = storage::open_database(&dir, &config.storage)
            .await
            .map_err(storage_error)?;
        let (log, materializer) = open_tiers(&dir, &config, &store, observer)
            .await
            .map_err(storage_error)?;
        let keys = Keys::load(store.clone()).await.map_err(storage_error)?;
        let bootstrap_key = if keys.is_empty() {
            keys.create_tenant(auth::DEFAULT_TENANT)
                .await
                .map_err(storage_error)?;
            let key = keys
                .create_key(auth::DEFAULT_TENANT)
                .await
                .map_err(storage_error)?
                .key;
            let path = dir.join("default.key");
            write_secret(&path, &key).map_err(|error| StartError::KeyFile { path, error })?;
            Some(key)
        } else {
            None
        };
        let admin_key = if keys.has_admin_key() {
            None
        } else {
            let key = keys.create_admin_key().await.map_err(storage_error)?.key;
            let path = dir.join("admin.key");
            write_secret(&path, &key).map_err(|error| StartError::KeyFile { path, error })?;
            Some(key)
        };
        let limits = ChannelLimits {
            cache_messages: config.storage.cache_messages,
            cache_bytes: config.storage.cache_bytes,
            cache_ttl_secs: config.storage.cache_ttl_secs,
            dedup_window: config.limits.dedup_window,
            catch_up_buffer: config.limits.outbound_queue,
            presence_batch: Duration::from_millis(config.limits.presence_batch_ms),
            max_per_tenant: config.limits.max_channels_per_tenant,
            inbox: config.inbox,
        };
        let webhooks = webhooks::Webhooks::start(store.clone(), config.webhooks, metrics.clone())
            .await
            .map_err(storage_error)?;
        let hub = Hub::new(
            store.clone(),
            log.clone(),
            materializer.clone(),
            metrics.clone(),
            webhooks.clone(),
            limits,
            config.storage.retention_max_messages,
            config.storage.retention_max_age_secs,
        );
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|error| StartError::Bind {
                addr: config.server.listen,
                error,
            })?;
        let local_addr = listener.local_addr().map_err(|error| StartError::Bind {
            addr: config.server.listen,
            error,
        })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let rate_limits = Arc::new(rate_limit::RateLimits::new(&config.limits));
        let usage = usage::Usage::new(store.clone(), metrics.tenants.clone());
        let (changes_tx, changes) = tokio::sync::mpsc::unbounded_channel();
        let directory = discovery::Directory::load(
            store.clone(),
            config.limits.max_announced_agents_per_tenant,
            changes_tx,
        )
        .await
        .map_err(storage_error)?;
        let streams = stream::Streams::load(
            dir.join("streams"),
            store.clone(),
            config.streams,
            config.storage.is_cluster(),
        )
        .await
        .map_err(storage_error)?;
        let app = Arc::new(App {
            streams,
            directory: Arc::new(directory),
            webhooks,
            rate_limits,
            usage,
            config,
            keys,
            hub,
            store,
            log,
            materializer,
            metrics,
            connections: AtomicUsize::new(0),
            live: connection::Live::default(),
            next_conn_id: AtomicU64::new(0),
            shutdown: shutdown_rx.clone(),
        });
        tokio::spawn(app.materializer.clone().run(
            Duration::from_millis(app.config.storage.db_batch_delay_ms),
            app.shutdown.clone(),
        ));
        if app.config.storage.is_cluster() {
            let receiver: std::sync::Weak<dyn cluster::Receiver> = Arc::downgrade(&app) as _;
            let bus = cluster::Bus::start(
                &app.config.storage.nats_url,
                &app.config.storage.jetstream_stream,
                receiver,
            )
            .await
            .map_err(storage_error)?;
            app.hub.set_bus(bus.clone());
            let keys_bus = bus.clone();
            app.keys
                .on_change(Box::new(move || keys_bus.send(cluster::Event::Keys)));
            let hooks_bus = bus.clone();
            app.webhooks
                .on_change(Box::new(move || hooks_bus.send(cluster::Event::Webhooks)));
            app.directory.set_bus(bus.clone());
        }
        if app.log.is_shared() {
            // Other nodes' messages reach this node's subscribers through the log's tail.
            let weak = Arc::downgrade(&app);
            app.log.set_tail(Arc::new(move |position, record| {
                if let Some(app) = weak.upgrade() {
                    app.hub.tailed(position, record);
                }
            }));
        }
        tokio::spawn(retention_loop(app.clone()));
        tokio::spawn(usage_loop(app.clone()));
        tokio::spawn(discovery_loop(app.clone(), changes));
        let router = transport::router(app.clone());
        let serve = tokio::spawn(transport::serve(listener, router, shutdown_rx));
        tracing::info!(addr = %local_addr, data_dir = %app.config.server.data_dir.display(), "switchboard listening");
        Ok(Server {
            local_addr,
            bootstrap_key,
            admin_key,
            app,
            shutdown_tx,
            serve,
        })
    }

    /// `ws://<addr>`, the base URL SDKs take.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.local_addr)
    }

    /// `http://<addr>`, the base of the HTTP API.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The shared state (for embedding and tests).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Creates an API key for `tenant`, creating the tenant if new; returns the key string.
    pub async fn create_key(&self, tenant: &str) -> Result<String> {
        if self.app.keys.tenant_info(tenant).is_none() {
            self.app.keys.create_tenant(tenant).await?;
        }
        Ok(self.app.keys.create_key(tenant).await?.key)
    }

    /// Graceful shutdown: stop accepting, close every socket with 1001, commit and fsync what
    /// was accepted, and close the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        let grace = Duration::from_millis(self.app.config.server.shutdown_grace_ms);
        let mut serve = self.serve;
        if tokio::time::timeout(grace, &mut serve).await.is_err() {
            tracing::warn!("connections did not close within the grace period; closing anyway");
            serve.abort();
        }
        if let Err(e) = self.app.usage.flush().await {
            tracing::warn!(error = %e, "the last usage could not be written");
        }
        // Completes the appends in flight, then brings the database up to the log.
        let log = self.app.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
        if let Err(e) = self.app.materializer.catch_up().await {
            tracing::warn!(error = %e, "the database is behind the log; it catches up at the next start");
        }
        self.app.store.close().await;
        tracing::info!("switchboard stopped");
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        self.shutdown().await;
    }
}

impl cluster::Receiver for App {
    fn event(self: Arc<Self>, _node: &Arc<str>, event: cluster::Event) {
        use cluster::Event;
        match event {
            Event::Presence {
                channel,
                joins,
                leaves,
                ..
            } => {
                if let Some(channel) = self.hub.by_id(channel) {
                    channel.remote_presence(joins, leaves);
                }
            }
            Event::Ephemeral { channel, message } => {
                if let Some(channel) = self.hub.by_id(channel) {
                    channel.remote_ephemeral(message);
                }
            }
            Event::Kv { channel, change } => {
                if let Some(channel) = self.hub.by_id(channel) {
                    channel.kv_changed_here(&change);
                }
            }
            Event::Keys => {
                tokio::spawn(async move {
                    if let Err(e) = self.keys.reload().await {
                        tracing::warn!(error = %e, "reloading keys another node changed failed");
                    }
                });
            }
            Event::Webhooks => {
                tokio::spawn(async move {
                    if let Err(e) = self.webhooks.reload().await {
                        tracing::warn!(error = %e, "reloading webhooks another node changed failed");
                    }
                });
            }
            Event::Signal {
                channel,
                to,
                signal,
            } => {
                if let Some(channel) = self.hub.by_id(channel) {
                    channel.signal_from_elsewhere(&to, &signal);
                }
            }
            Event::Card { tenant, name, card } => {
                self.directory.changed_elsewhere(&tenant, &name, card);
            }
            Event::Hello | Event::Alive => {}
        }
    }

    fn node_gone(
        self: Arc<Self>,
        _node: &Arc<str>,
        left: Vec<(i64, Vec<switchboard_protocol::PresenceMeta>)>,
    ) {
        for (channel, metas) in left {
            if let Some(channel) = self.hub.by_id(channel) {
                channel.remote_presence(Vec::new(), metas);
            }
        }
    }

    fn presence(self: Arc<Self>) -> Vec<(i64, Vec<switchboard_protocol::PresenceMeta>)> {
        self.hub
            .loaded()
            .into_iter()
            .map(|c| (c.row.id, c.local_presence()))
            .filter(|(_, metas)| !metas.is_empty())
            .collect()
    }
}

/// Resolves once shutdown begins.
pub(crate) async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn write_secret(path: &std::path::Path, key: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(key.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Opens the log tier and brings the database tier up to it (after a crash the database
/// may be behind: the log is the point of acknowledgement).
async fn open_tiers(
    dir: &std::path::Path,
    config: &Config,
    store: &Arc<dyn Database>,
    observer: storage::log::CommitObserver,
) -> Result<(
    Arc<dyn storage::log::MessageLog>,
    Arc<storage::materializer::Materializer>,
)> {
    use storage::log::{EmbeddedLog, EmbeddedLogConfig};
    let s = &config.storage;
    let stored = store.get_setting(storage::LOG_IDENTITY).await?;
    let applied = store.get_setting(storage::LOG_APPLIED).await?;
    let mut applied: u64 = applied.and_then(|v| v.parse().ok()).unwrap_or(0);
    // Positions belong to one log. Data directories from before `log_identity` used the
    // embedded log.
    let before = stored.or_else(|| (applied > 0).then(|| "embedded".to_owned()));
    let embedded = s.log == config::LogBackend::Embedded;
    if embedded && before.as_deref().is_some_and(|b| b != "embedded") {
        // Back to the embedded log after another: what it holds is older than the database.
        let old = dir.join("log");
        if old.exists() {
            let aside = dir.join(format!("log.replaced-{}", now_ms()));
            std::fs::rename(&old, &aside).map_err(storage::unavailable)?;
            tracing::warn!(to = %aside.display(), "the embedded log predates the log used since; moved aside");
        }
    }
    let log: Arc<dyn storage::log::MessageLog> = match s.log {
        config::LogBackend::Embedded => Arc::new(EmbeddedLog::open(
            &dir.join("log"),
            EmbeddedLogConfig {
                fsync: s.durability == config::Durability::Fsync,
                max_batch: s.max_batch,
                segment_bytes: s.log_segment_bytes,
                retention_secs: s.log_retention_secs,
                retention_bytes: s.log_retention_bytes,
            },
            applied + 1,
            observer,
        )?),
        config::LogBackend::Jetstream => Arc::new(
            storage::log::JetStreamLog::open(
                storage::log::JetStreamLogConfig {
                    url: s.nats_url.clone(),
                    stream: s.jetstream_stream.clone(),
                    replicas: s.jetstream_replicas,
                    retention_secs: s.log_retention_secs,
                    retention_bytes: s.log_retention_bytes,
                    max_batch: s.max_batch,
                    shared: s.is_cluster(),
                },
                observer,
            )
            .await?,
        ),
    };
    let identity = log.identity();
    if before.as_deref() != Some(identity.as_str()) {
        let switched = before.is_some();
        if switched {
            if !embedded && log.end() > 0 {
                return Err(storage::unavailable(format!(
                    "the JetStream stream {} holds records, but this data directory used \
                     another log since ({}): they are not this database's. Delete the stream \
                     (nats stream rm {}) or set another [storage] jetstream_stream",
                    s.jetstream_stream,
                    before.unwrap_or_default(),
                    s.jetstream_stream
                )));
            }
            // The new log starts empty. The database writer starts at its end, and `log`
            // channels, whose history was in the old log, start a new epoch rather than
            // reuse offsets.
            applied = log.end();
            tracing::warn!(
                before,
                now = identity,
                "the log changed: the database writer starts at its end, and channels with the log storage policy start a new epoch"
            );
        }
        store.set_log(&identity, applied, switched).await?;
    }
    let materializer =
        storage::materializer::Materializer::new(log.clone(), store.clone(), applied);
    let copied = materializer.catch_up().await?;
    if copied > 0 {
        tracing::info!(records = copied, "the database caught up with the log");
    }
    Ok((log, materializer))
}

/// Drops what the log's retention allows and records, per channel, what is gone.
async fn log_retention(app: &App) {
    let log = app.log.clone();
    // Only what the database holds durably may go (its copies are fsynced lazily).
    let keep_from = match app.store.durable_log_applied().await {
        Ok(applied) => applied + 1,
        Err(e) => return tracing::warn!(error = %e, "log retention failed"),
    };
    let dropped =
        match tokio::task::spawn_blocking(move || log.enforce_retention(now_ms(), keep_from)).await
        {
            Ok(Ok(dropped)) => dropped,
            Ok(Err(e)) => return tracing::warn!(error = %e, "log retention failed"),
            Err(e) => return tracing::warn!(error = %e, "log retention failed"),
        };
    if dropped.is_empty() {
        return;
    }
    for channel in app.hub.loaded() {
        if let Some((_, through)) = dropped.iter().find(|(id, _)| *id == channel.row.id) {
            channel.log_dropped(*through);
        }
    }
    if let Err(e) = app.store.log_dropped(dropped).await {
        tracing::warn!(error = %e, "recording what log retention dropped failed");
    }
}

async fn usage_loop(app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(
        app.config.storage.usage_flush_ms.max(100),
    ));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutting_down(&mut shutdown) => return,
        }
        if let Err(e) = app.usage.flush().await {
            tracing::warn!(error = %e, "writing usage failed");
        }
    }
}

/// Completes the team channels whose `expires_at` has come.
async fn complete_expired_channels(app: &App) {
    let now = now_ms();
    let expired = match app.store.expired_channels(now).await {
        Ok(expired) => expired,
        Err(e) => return tracing::warn!(error = %e, "listing expired team channels failed"),
    };
    for (tenant, name) in expired {
        let scope = if tenant.is_empty() {
            switchboard_protocol::Scope::Public
        } else {
            switchboard_protocol::Scope::Private
        };
        if let Err(e) = app
            .hub
            .complete(&tenant, scope, &name, "the team channel expired")
            .await
        {
            tracing::warn!(channel = name, error = %e, "completing an expired team channel failed");
        }
    }
}

/// Sends each directory change to the members of its tenant's discovery channel, if anyone
/// is in it now (the message is ephemeral: nobody there, nothing to do).
async fn discovery_loop(
    app: Arc<App>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<discovery::Change>,
) {
    use switchboard_protocol::discovery::{AGENT_MESSAGE_TYPE, DISCOVERY_CHANNEL};
    while let Some((tenant, update)) = changes.recv().await {
        let Some(channel) = app.hub.loaded_channel(
            &tenant,
            switchboard_protocol::Scope::Private,
            DISCOVERY_CHANNEL,
        ) else {
            continue;
        };
        let mut publish = switchboard_protocol::Publish::new(AGENT_MESSAGE_TYPE, &update);
        publish.ephemeral = true;
        channel.publish(
            "switchboard",
            &tenant,
            None,
            publish,
            channel::AckTo::Nobody,
        );
    }
}

async fn retention_loop(app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(
        app.config.storage.retention_interval_ms.max(100),
    ));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutting_down(&mut shutdown) => return,
        }
        app.enforce_retention().await;
    }
}
