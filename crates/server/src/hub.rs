//! The hub: every loaded channel, sharded so no lock is global.

use crate::auth::{hash_password, random_id};
use crate::channel::{Channel, ChannelKey, ChannelLimits};
use crate::error::{Error, Result, err};
use crate::metrics::Metrics;
use crate::storage::log::{MessageLog, Record};
use crate::storage::materializer::Materializer;
use crate::storage::{ChannelRow, Database};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::sync::Arc;
use switchboard_protocol::{
    CacheRetention, ErrorCode, LogRetention, Scope, StoragePolicy, valid_name,
};

/// Options for a channel created explicitly (or implicitly, with defaults).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Password to set (hashed before storing).
    pub password: Option<String>,
    /// The tiers the channel keeps (None: persistent, all three).
    pub storage: Option<StoragePolicy>,
    /// The cache tier's own bounds.
    pub cache_retention: Option<CacheRetention>,
    /// The log tier's own retention.
    pub log_retention: Option<LogRetention>,
    /// Retention by count (None: the server default; 0: unlimited).
    pub max_messages: Option<u64>,
    /// Retention by age in seconds (None: the server default; 0: unlimited).
    pub max_age_secs: Option<u64>,
    /// A team channel's members.
    pub members: Option<Vec<String>>,
    /// When a team channel completes itself, ms.
    pub expires_at: Option<i64>,
}

/// Every loaded channel.
pub struct Hub {
    channels: DashMap<ChannelKey, Arc<Channel>>,
    /// The same channels by row id (for records the shared log's tail delivers).
    by_id: DashMap<i64, Arc<Channel>>,
    store: Arc<dyn Database>,
    log: Arc<dyn MessageLog>,
    materializer: Arc<Materializer>,
    metrics: Arc<Metrics>,
    webhooks: Arc<crate::webhooks::Webhooks>,
    limits: ChannelLimits,
    default_max_messages: u64,
    default_max_age_secs: u64,
    /// Cluster: the bus, set once the server started it.
    bus: std::sync::OnceLock<Arc<crate::cluster::Bus>>,
}

impl Hub {
    /// An empty hub over the tiers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Database>,
        log: Arc<dyn MessageLog>,
        materializer: Arc<Materializer>,
        metrics: Arc<Metrics>,
        webhooks: Arc<crate::webhooks::Webhooks>,
        limits: ChannelLimits,
        default_max_messages: u64,
        default_max_age_secs: u64,
    ) -> Self {
        Hub {
            channels: DashMap::new(),
            by_id: DashMap::new(),
            store,
            log,
            materializer,
            metrics,
            webhooks,
            limits,
            default_max_messages,
            default_max_age_secs,
            bus: std::sync::OnceLock::new(),
        }
    }

    /// Cluster: hands channels the bus to the other nodes (before any channel loads).
    pub fn set_bus(&self, bus: Arc<crate::cluster::Bus>) {
        let _ = self.bus.set(bus);
    }

    /// A loaded channel by row id.
    pub fn by_id(&self, id: i64) -> Option<Arc<Channel>> {
        self.by_id.get(&id).map(|c| c.clone())
    }

    /// Every loaded channel.
    pub fn loaded(&self) -> Vec<Arc<Channel>> {
        self.channels.iter().map(|e| e.value().clone()).collect()
    }

    /// A channel that is loaded now (not deleted); never touches the store.
    pub fn loaded_channel(&self, tenant: &str, scope: Scope, name: &str) -> Option<Arc<Channel>> {
        self.channels
            .get(&ChannelKey::new(tenant, scope, name))
            .filter(|ch| !ch.is_deleted())
            .map(|ch| ch.clone())
    }

    /// Finds a channel, loading it from the store; `None` if it does not exist.
    pub async fn find(
        &self,
        tenant: &str,
        scope: Scope,
        name: &str,
    ) -> Result<Option<Arc<Channel>>> {
        check_name(name)?;
        let key = ChannelKey::new(tenant, scope, name);
        if let Some(ch) = self.channels.get(&key) {
            if ch.is_deleted() {
                return Ok(None);
            }
            return Ok(Some(ch.clone()));
        }
        let (t, n) = (key.tenant.to_string(), name.to_owned());
        match self.store.get_channel(&t, &n).await? {
            Some(row) => Ok(Some(self.install(key, row).await?)),
            None => Ok(None),
        }
    }

    /// Finds a channel or creates it with `options`; returns it and whether it was created.
    pub async fn open(
        &self,
        tenant: &str,
        scope: Scope,
        name: &str,
        options: CreateOptions,
    ) -> Result<(Arc<Channel>, bool)> {
        if let Some(ch) = self.find(tenant, scope, name).await? {
            return Ok((ch, false));
        }
        self.create(tenant, scope, name, options).await
    }

    /// Creates a channel; if it exists already, returns it with `false`.
    pub async fn create(
        &self,
        tenant: &str,
        scope: Scope,
        name: &str,
        options: CreateOptions,
    ) -> Result<(Arc<Channel>, bool)> {
        check_name(name)?;
        let key = ChannelKey::new(tenant, scope, name);
        let password_hash = match options.password {
            Some(p) => Some(
                tokio::task::spawn_blocking(move || hash_password(&p))
                    .await
                    .map_err(Error::internal)??,
            ),
            None => None,
        };
        let row = ChannelRow {
            id: 0,
            tenant_id: key.tenant.to_string(),
            name: name.to_owned(),
            password_hash,
            storage: options.storage.unwrap_or_default(),
            cache_retention: options.cache_retention,
            log_retention: options.log_retention,
            max_messages: options.max_messages.unwrap_or(self.default_max_messages),
            max_age_secs: options.max_age_secs.unwrap_or(self.default_max_age_secs),
            epoch: random_id::<8>(),
            created_at: crate::now_ms(),
            members: options.members,
            expires_at: options.expires_at,
        };
        let max = self.limits.max_per_tenant;
        let (stored, created) = self.store.create_channel(row, max).await?.ok_or_else(|| {
            err!(
                TooManyChannels,
                "the tenant holds its maximum of {max} channels; delete some first"
            )
        })?;
        Ok((self.install(key, stored).await?, created))
    }

    /// Deletes a channel: agents are kicked, messages and the row removed.
    pub async fn delete(&self, tenant: &str, scope: Scope, name: &str) -> Result<()> {
        self.remove(
            tenant,
            scope,
            name,
            ErrorCode::ChannelDeleted,
            "the channel was deleted",
        )
        .await
    }

    /// Completes a team channel: members are told (`kicked {channel_completed}`), connections
    /// leave, messages and storage are purged.
    pub async fn complete(&self, tenant: &str, scope: Scope, name: &str, why: &str) -> Result<()> {
        self.remove(tenant, scope, name, ErrorCode::ChannelCompleted, why)
            .await
    }

    async fn remove(
        &self,
        tenant: &str,
        scope: Scope,
        name: &str,
        code: ErrorCode,
        why: &str,
    ) -> Result<()> {
        let channel = self.find(tenant, scope, name).await?.ok_or_else(|| {
            err!(
                ChannelNotFound,
                "no channel {name:?} in scope {}",
                scope.as_str()
            )
        })?;
        // Marked deleted first (publishes and joins are refused, `find` no longer sees it),
        // then removed from the store, and only then from the map: a lookup in between must
        // not load the row that is being deleted back in.
        channel.delete(code, why);
        let id = channel.row.id;
        // The log learns of the deletion first: its records of this channel then belong to
        // no channel, even if the id is given to a new one.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.log.append(
            Record::ChannelDeleted { channel_id: id },
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await
            .map_err(|_| err!(ServerShutdown, "the server is shutting down"))??;
        let deleted = self.store.delete_channel(id).await;
        self.channels
            .remove_if(&ChannelKey::new(tenant, scope, name), |_, c| {
                Arc::ptr_eq(c, &channel)
            });
        self.by_id.remove_if(&id, |_, c| Arc::ptr_eq(c, &channel));
        self.metrics.channels.set(self.channels.len() as i64);
        deleted
    }

    async fn install(&self, key: ChannelKey, row: ChannelRow) -> Result<Arc<Channel>> {
        let loaded = Channel::load(
            row,
            self.store.clone(),
            self.log.clone(),
            self.materializer.clone(),
            self.metrics.clone(),
            self.webhooks.clone(),
            self.limits,
            self.bus.get().cloned(),
        )
        .await?;
        let channel = match self.channels.entry(key) {
            Entry::Occupied(e) => e.get().clone(),
            Entry::Vacant(e) => {
                self.by_id.insert(loaded.row.id, loaded.clone());
                e.insert(loaded).clone()
            }
        };
        self.metrics.channels.set(self.channels.len() as i64);
        if self.log.is_shared()
            && let Some((_, last)) = self.log.bounds(channel.row.id)
        {
            // What the tail delivered while the channel was loading.
            channel.fill_from_log(last).await;
        }
        Ok(channel)
    }

    /// A record of the shared log, from any node, as the tail delivers it: loaded channels
    /// deliver other nodes' messages, and a channel another node deleted goes.
    pub fn tailed(&self, position: u64, record: &Record) {
        match record {
            Record::Message(r) => {
                if let Some(channel) = self.by_id.get(&r.channel_id).map(|c| c.clone()) {
                    channel.tailed(position, r);
                }
            }
            Record::ChannelDeleted { channel_id } => {
                if let Some((_, channel)) = self.by_id.remove(channel_id) {
                    channel.delete(ErrorCode::ChannelDeleted, "the channel was deleted");
                    let key =
                        ChannelKey::new(&channel.row.tenant_id, channel.scope, channel.name());
                    self.channels
                        .remove_if(&key, |_, c| Arc::ptr_eq(c, &channel));
                    self.metrics.channels.set(self.channels.len() as i64);
                }
            }
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(err!(
            InvalidChannelName,
            "channel names are 1-128 bytes of [A-Za-z0-9_.:@-]"
        ))
    }
}
