//! Webhooks: events of a tenant's channels POSTed to the URLs it registered.
//!
//! Channels call [`Webhooks::emit`] on their hot paths; it costs one map lookup when the
//! tenant has no webhook for the event, and otherwise a `try_send` into a bounded queue, so
//! a slow or dead receiver never slows message flow (a full queue drops the event and counts
//! it). A dispatcher POSTs deliveries, at most `concurrency` at a time, each signed with
//! HMAC-SHA256 over `"<timestamp>.<body>"`; failures are retried after an exponential
//! backoff, and every attempt goes to the webhook's delivery log, written in batches.

use crate::auth::random_id;
use crate::config::WebhooksConfig;
use crate::error::{Error, Result, err};
use crate::metrics::Metrics;
use crate::storage::{AttemptRow, Database, WebhookRow};
use bytes::Bytes;
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchboard_protocol::webhooks::{
    CreateWebhook, CreatedWebhook, DELIVERY_HEADER, DeliveryAttempt, DeliveryLog, EVENT_HEADER,
    MAX_URL_LEN, MAX_WEBHOOKS_PER_TENANT, SIGNATURE_HEADER, Webhook, WebhookEvent, channel_matches,
};
use switchboard_protocol::{limits::MAX_TYPE_LEN, valid_name};
use tokio::sync::{Semaphore, mpsc};

/// Most message types in a webhook's `types` filter.
const MAX_TYPES: usize = 64;

struct Hook {
    webhook: Webhook,
    secret: String,
    types: Option<HashSet<String>>,
    removed: AtomicBool,
}

impl Hook {
    fn wants(&self, channel: &str, event: WebhookEvent, message_type: Option<&str>) -> bool {
        self.webhook.events.contains(&event)
            && channel_matches(self.webhook.channel.as_deref(), channel)
            && match (&self.types, message_type) {
                (Some(types), Some(t)) => types.contains(t),
                _ => true,
            }
    }
}

struct Delivery {
    hook: Arc<Hook>,
    id: String,
    event: WebhookEvent,
    body: Bytes,
    attempt: u32,
}

/// Every tenant's webhooks and the delivery machinery.
pub struct Webhooks {
    store: Arc<dyn Database>,
    config: WebhooksConfig,
    metrics: Arc<Metrics>,
    by_tenant: DashMap<Arc<str>, Arc<[Arc<Hook>]>>,
    /// Webhooks registered over all tenants: with none, `emit` returns at once.
    registered: AtomicUsize,
    queue: mpsc::Sender<Delivery>,
    log: mpsc::UnboundedSender<AttemptRow>,
    /// Runs after a webhook is registered or deleted here (a cluster tells the others).
    on_change: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Webhooks {
    /// Loads the registered webhooks and starts delivering.
    pub async fn start(
        store: Arc<dyn Database>,
        config: WebhooksConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Webhooks>> {
        let rows = store.load_webhooks().await?;
        let (queue, deliveries) = mpsc::channel(config.queue.max(1));
        let (log, attempts) = mpsc::unbounded_channel();
        let webhooks = Arc::new(Webhooks {
            store,
            config,
            metrics,
            by_tenant: DashMap::new(),
            registered: AtomicUsize::new(0),
            queue,
            log,
            on_change: std::sync::OnceLock::new(),
        });
        for row in rows {
            match hook_from_row(&row) {
                Some(hook) => webhooks.insert(&row.tenant_id, Arc::new(hook)),
                None => tracing::warn!(id = row.id, "skipping an unreadable webhook"),
            }
        }
        tokio::spawn(webhooks.clone().dispatch(deliveries));
        tokio::spawn(write_log(
            webhooks.store.clone(),
            attempts,
            config.log_per_webhook.max(1),
        ));
        Ok(webhooks)
    }

    fn insert(&self, tenant: &str, hook: Arc<Hook>) {
        let mut entry = self
            .by_tenant
            .entry(tenant.into())
            .or_insert_with(|| Arc::new([]));
        let mut hooks = entry.to_vec();
        hooks.push(hook);
        *entry = hooks.into();
        self.registered.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues `event` of `channel` for each of `tenant`'s webhooks that wants it; `data` (JSON)
    /// is built only then. Never waits: with the queue full, the event is dropped.
    pub fn emit(
        &self,
        tenant: &str,
        channel: &str,
        event: WebhookEvent,
        message_type: Option<&str>,
        data: impl FnOnce() -> String,
    ) {
        // Every persisted publish, join and leave comes here: most servers have no webhook.
        if self.registered.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(hooks) = self.by_tenant.get(tenant).map(|h| h.clone()) else {
            return;
        };
        let mut data = Some(data);
        let mut built = String::new();
        let ts = crate::now_ms();
        for hook in hooks
            .iter()
            .filter(|h| h.wants(channel, event, message_type))
        {
            if let Some(data) = data.take() {
                built = data();
            }
            let id = format!("dlv_{}", random_id::<12>());
            let body = format!(
                r#"{{"id":{},"event":"{}","channel":{},"ts":{ts},"data":{built}}}"#,
                serde_json::Value::String(id.clone()),
                event.as_str(),
                serde_json::Value::String(channel.to_owned()),
            );
            let delivery = Delivery {
                hook: hook.clone(),
                id,
                event,
                body: Bytes::from(body),
                attempt: 1,
            };
            if self.queue.try_send(delivery).is_err() {
                self.metrics.webhook_dropped.inc();
            }
        }
    }

    /// Registers a webhook for `tenant`.
    pub async fn create(&self, tenant: &str, create: CreateWebhook) -> Result<CreatedWebhook> {
        validate(&create)?;
        if self
            .by_tenant
            .get(tenant)
            .is_some_and(|h| h.len() >= MAX_WEBHOOKS_PER_TENANT)
        {
            return Err(err!(
                RateLimited,
                "a tenant may register {MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first"
            ));
        }
        let mut events = create.events;
        events.sort_by_key(|e| e.as_str());
        events.dedup();
        let webhook = Webhook {
            id: format!("wh_{}", random_id::<8>()),
            url: create.url,
            events,
            channel: create.channel,
            types: create.types,
            created_at: crate::now_ms(),
        };
        let secret = format!("whsec_{}", random_id::<24>());
        let row = WebhookRow {
            id: webhook.id.clone(),
            tenant_id: tenant.to_owned(),
            url: webhook.url.clone(),
            secret: secret.clone(),
            events: serde_json::to_string(&webhook.events).expect("events serialize"),
            channel: webhook.channel.clone(),
            types: webhook
                .types
                .as_ref()
                .map(|t| serde_json::to_string(t).expect("strings serialize")),
            created_at: webhook.created_at,
        };
        self.store.insert_webhook(row).await?;
        let hook = Hook {
            types: webhook.types.as_ref().map(|t| t.iter().cloned().collect()),
            webhook: webhook.clone(),
            secret: secret.clone(),
            removed: AtomicBool::new(false),
        };
        self.insert(tenant, Arc::new(hook));
        self.changed();
        Ok(CreatedWebhook { webhook, secret })
    }

    /// Runs `f` after every webhook registered or deleted here.
    pub fn on_change(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_change.set(f);
    }

    fn changed(&self) {
        if let Some(f) = self.on_change.get() {
            f();
        }
    }

    /// Reads the registered webhooks again (another node changed them): new ones start
    /// receiving events, deleted ones stop.
    pub async fn reload(&self) -> Result<()> {
        let rows = self.store.load_webhooks().await?;
        let mut fresh: std::collections::HashMap<String, Vec<WebhookRow>> = Default::default();
        for row in rows {
            fresh.entry(row.tenant_id.clone()).or_default().push(row);
        }
        let tenants: Vec<Arc<str>> = self.by_tenant.iter().map(|e| e.key().clone()).collect();
        for tenant in tenants {
            if !fresh.contains_key(&*tenant) {
                self.replace(&tenant, Vec::new());
            }
        }
        for (tenant, rows) in fresh {
            self.replace(&tenant, rows);
        }
        Ok(())
    }

    /// Sets `tenant`'s webhooks to `rows`, keeping the hooks that stay as they are.
    fn replace(&self, tenant: &str, rows: Vec<WebhookRow>) {
        let mut entry = self
            .by_tenant
            .entry(tenant.into())
            .or_insert_with(|| Arc::new([]));
        let mut kept = Vec::with_capacity(rows.len());
        for row in &rows {
            match entry.iter().find(|h| h.webhook.id == row.id) {
                Some(hook) => kept.push(hook.clone()),
                None => match hook_from_row(row) {
                    Some(hook) => kept.push(Arc::new(hook)),
                    None => tracing::warn!(id = row.id, "skipping an unreadable webhook"),
                },
            }
        }
        for hook in entry.iter() {
            if !kept.iter().any(|k| Arc::ptr_eq(k, hook)) {
                hook.removed.store(true, Ordering::Relaxed);
            }
        }
        let (before, after) = (entry.len(), kept.len());
        *entry = kept.into();
        if after >= before {
            self.registered.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.registered.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// `tenant`'s webhooks.
    pub fn list(&self, tenant: &str) -> Vec<Webhook> {
        self.by_tenant
            .get(tenant)
            .map(|hooks| hooks.iter().map(|h| h.webhook.clone()).collect())
            .unwrap_or_default()
    }

    /// Deletes one of `tenant`'s webhooks, its log, and its pending retries.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<()> {
        let (t, i) = (tenant.to_owned(), id.to_owned());
        let deleted = self.store.delete_webhook(&t, &i).await?;
        if !deleted {
            return Err(not_found(id));
        }
        if let Some(mut hooks) = self.by_tenant.get_mut(tenant) {
            for hook in hooks.iter().filter(|h| h.webhook.id == id) {
                hook.removed.store(true, Ordering::Relaxed);
            }
            let kept: Vec<_> = hooks
                .iter()
                .filter(|h| h.webhook.id != id)
                .cloned()
                .collect();
            self.registered
                .fetch_sub(hooks.len() - kept.len(), Ordering::Relaxed);
            *hooks = kept.into();
        }
        self.changed();
        Ok(())
    }

    /// The newest `limit` attempts of one of `tenant`'s webhooks, newest first.
    pub async fn log(&self, tenant: &str, id: &str, limit: u32) -> Result<DeliveryLog> {
        if !(1..=1000).contains(&limit) {
            return Err(err!(InvalidPayload, "limit is 1-1000"));
        }
        if !self.list(tenant).iter().any(|w| w.id == id) {
            return Err(not_found(id));
        }
        let hook = id.to_owned();
        let rows = self.store.attempts(&hook, limit).await?;
        let attempts = rows
            .into_iter()
            .filter_map(|r| {
                Some(DeliveryAttempt {
                    event: serde_json::from_value(serde_json::Value::String(r.event)).ok()?,
                    delivery_id: r.delivery_id,
                    attempt: r.attempt,
                    ts: r.ts,
                    status: r.status,
                    error: r.error,
                    duration_ms: r.duration_ms,
                    will_retry: r.will_retry,
                })
            })
            .collect();
        Ok(DeliveryLog { attempts })
    }

    async fn dispatch(self: Arc<Self>, mut deliveries: mpsc::Receiver<Delivery>) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_millis(self.config.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
                return;
            }
        };
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        while let Some(delivery) = deliveries.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (me, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                me.attempt(&client, delivery).await;
                drop(slot);
            });
        }
    }

    async fn attempt(self: &Arc<Self>, client: &reqwest::Client, d: Delivery) {
        if d.hook.removed.load(Ordering::Relaxed) {
            return;
        }
        let ts = crate::now_ms();
        let started = Instant::now();
        let outcome = client
            .post(&d.hook.webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                format!("t={ts},v1={}", sign(&d.hook.secret, ts, &d.body)),
            )
            .header(EVENT_HEADER, d.event.as_str())
            .header(DELIVERY_HEADER, &d.id)
            .body(d.body.clone())
            .send()
            .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status, error) = match outcome {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(response) => {
                let status = response.status();
                (Some(status.as_u16()), Some(format!("HTTP {status}")))
            }
            Err(e) => (None, Some(describe(&e))),
        };
        let failed = error.is_some();
        let will_retry = failed && d.attempt < self.config.max_attempts;
        let _ = self.log.send(AttemptRow {
            webhook_id: d.hook.webhook.id.clone(),
            delivery_id: d.id.clone(),
            event: d.event.as_str().to_owned(),
            attempt: d.attempt,
            ts,
            status,
            error,
            duration_ms,
            will_retry,
        });
        if !failed {
            self.metrics.webhook_delivered.inc();
            return;
        }
        self.metrics.webhook_failed.inc();
        if !will_retry {
            self.metrics.webhook_dropped.inc();
            return;
        }
        let delay = backoff(&self.config, d.attempt);
        let queue = self.queue.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let next = Delivery {
                attempt: d.attempt + 1,
                ..d
            };
            if queue.try_send(next).is_err() {
                metrics.webhook_dropped.inc();
            }
        });
    }
}

/// The wait after failed attempt `attempt` (1-based): doubling from `initial_backoff_ms`.
fn backoff(config: &WebhooksConfig, attempt: u32) -> Duration {
    let factor = 1u64 << (attempt.saturating_sub(1)).min(30);
    Duration::from_millis(
        config
            .initial_backoff_ms
            .saturating_mul(factor)
            .min(config.max_backoff_ms.max(1)),
    )
}

/// Hex HMAC-SHA256 of `"<ts>.<body>"` under `secret`.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        let mut text = e.to_string();
        text.truncate(200);
        text
    }
}

fn not_found(id: &str) -> Error {
    err!(NotFound, "no webhook {id:?} in this tenant")
}

fn validate(create: &CreateWebhook) -> Result<()> {
    let url = &create.url;
    if url.len() > MAX_URL_LEN {
        return Err(err!(InvalidPayload, "url is at most {MAX_URL_LEN} bytes"));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| err!(InvalidPayload, "url {url:?} does not parse: {e}"))?;
    match parsed.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => {
            return Err(err!(
                InvalidPayload,
                "this server was built without TLS: use an http:// URL (e.g. a local \
                 TLS-terminating proxy), or build with --features tls"
            ));
        }
        other => {
            return Err(err!(
                InvalidPayload,
                "url scheme {other:?}: use http:// or https://"
            ));
        }
    }
    if create.events.is_empty() {
        return Err(err!(InvalidPayload, "events: name at least one"));
    }
    if let Some(channel) = &create.channel {
        // `*` alone is every channel; else a name, or a name's prefix before a `*`.
        let name = channel.strip_suffix('*').unwrap_or(channel);
        let every = channel == "*";
        if !every && !valid_name(name) {
            return Err(err!(
                InvalidPayload,
                "channel: a channel name, or a prefix followed by *"
            ));
        }
    }
    if let Some(types) = &create.types {
        if types.is_empty() || types.len() > MAX_TYPES {
            return Err(err!(InvalidPayload, "types: 1-{MAX_TYPES} message types"));
        }
        if types.iter().any(|t| t.is_empty() || t.len() > MAX_TYPE_LEN) {
            return Err(err!(InvalidPayload, "types: each 1-{MAX_TYPE_LEN} bytes"));
        }
    }
    Ok(())
}

fn hook_from_row(row: &WebhookRow) -> Option<Hook> {
    let events: Vec<WebhookEvent> = serde_json::from_str(&row.events).ok()?;
    let types: Option<Vec<String>> = match &row.types {
        Some(t) => Some(serde_json::from_str(t).ok()?),
        None => None,
    };
    Some(Hook {
        types: types.as_ref().map(|t| t.iter().cloned().collect()),
        webhook: Webhook {
            id: row.id.clone(),
            url: row.url.clone(),
            events,
            channel: row.channel.clone(),
            types,
            created_at: row.created_at,
        },
        secret: row.secret.clone(),
        removed: AtomicBool::new(false),
    })
}

/// Writes delivery attempts in batches: one transaction for whatever queued meanwhile.
async fn write_log(
    store: Arc<dyn Database>,
    mut attempts: mpsc::UnboundedReceiver<AttemptRow>,
    keep: u64,
) {
    while let Some(first) = attempts.recv().await {
        let mut rows = vec![first];
        while rows.len() < 512
            && let Ok(row) = attempts.try_recv()
        {
            rows.push(row);
        }
        if let Err(e) = store.insert_attempts(rows, keep).await {
            tracing::warn!(error = %e, "writing the webhook delivery log failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_backoff() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(sign("k", 5, b"{}"), sign("k", 5, b"{}"));
        assert_ne!(sign("k", 5, b"{}"), sign("k", 6, b"{}"));
        let config = crate::config::Config::default().webhooks;
        assert_eq!(backoff(&config, 1), Duration::from_millis(1000));
        assert_eq!(backoff(&config, 3), Duration::from_millis(4000));
        assert_eq!(backoff(&config, 40), Duration::from_millis(300_000));
    }
}
