//! Prometheus metrics, served at `/metrics`.
//!
//! Hot paths count locally and add once per batch (a fan-out adds its deliveries in one
//! increment), so metrics never become a point of contention.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Every series the server exports.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Channels loaded in memory.
    pub channels: Gauge,
    /// Messages accepted from clients.
    pub messages_in: Counter,
    /// Message deliveries to subscribers.
    pub messages_out: Counter,
    /// Bytes received in frames and HTTP bodies.
    pub bytes_in: Counter,
    /// Bytes written to sockets.
    pub bytes_out: Counter,
    /// Time from receiving a persisted publish to acknowledging it, in seconds.
    pub publish_ack_seconds: Histogram,
    /// Publishes covered by one group commit (one fsync).
    pub fsync_batch_size: Histogram,
    /// Time one group commit took, in seconds.
    pub fsync_seconds: Histogram,
    /// Log records the database has not copied yet (set when the metrics are read).
    pub database_lag_records: Gauge,
    /// Connections closed because their outbound queue overflowed.
    pub slow_consumers: Counter,
    /// Per-tenant usage series (added to when usage is flushed).
    pub tenants: std::sync::Arc<crate::usage::TenantSeries>,
    /// Webhook POSTs answered with 2xx.
    pub webhook_delivered: Counter,
    /// Webhook POSTs that failed (each attempt).
    pub webhook_failed: Counter,
    /// Webhook events dropped: the delivery queue was full, or retries ran out.
    pub webhook_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let latency = || {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ])
        };
        let m = Metrics {
            connections: Gauge::default(),
            channels: Gauge::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            publish_ack_seconds: latency(),
            fsync_batch_size: Histogram::new([
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
            fsync_seconds: latency(),
            database_lag_records: Gauge::default(),
            slow_consumers: Counter::default(),
            tenants: Default::default(),
            webhook_delivered: Counter::default(),
            webhook_failed: Counter::default(),
            webhook_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register("channels", "Channels loaded in memory", m.channels.clone());
        registry.register(
            "messages_in",
            "Messages accepted from clients",
            m.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Message deliveries to subscribers",
            m.messages_out.clone(),
        );
        registry.register("bytes_in", "Bytes received", m.bytes_in.clone());
        registry.register("bytes_out", "Bytes written to sockets", m.bytes_out.clone());
        registry.register(
            "publish_ack_seconds",
            "Time from receiving a persisted publish to acknowledging it",
            m.publish_ack_seconds.clone(),
        );
        registry.register(
            "fsync_batch_size",
            "Publishes covered by one group commit",
            m.fsync_batch_size.clone(),
        );
        registry.register(
            "fsync_seconds",
            "Duration of one group commit",
            m.fsync_seconds.clone(),
        );
        registry.register(
            "database_lag_records",
            "Log records the database has not copied yet",
            m.database_lag_records.clone(),
        );
        registry.register(
            "slow_consumers",
            "Connections closed because they could not keep up",
            m.slow_consumers.clone(),
        );
        registry.register(
            "webhook_delivered",
            "Webhook POSTs answered with a 2xx status",
            m.webhook_delivered.clone(),
        );
        registry.register(
            "webhook_failed",
            "Webhook POST attempts that failed",
            m.webhook_failed.clone(),
        );
        registry.register(
            "webhook_dropped",
            "Webhook events given up: the queue was full or the attempts ran out",
            m.webhook_dropped.clone(),
        );
        let t = &m.tenants;
        registry.register(
            "tenant_messages_in",
            "Messages accepted, per tenant",
            t.messages_in.clone(),
        );
        registry.register(
            "tenant_messages_out",
            "Messages delivered, per tenant",
            t.messages_out.clone(),
        );
        registry.register(
            "tenant_bytes_in",
            "Message bytes accepted, per tenant",
            t.bytes_in.clone(),
        );
        registry.register(
            "tenant_bytes_out",
            "Frame bytes delivered, per tenant",
            t.bytes_out.clone(),
        );
        registry.register(
            "tenant_connections",
            "Authenticated WebSocket connections, per tenant",
            t.connections.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
