//! Usage metering per tenant and key: messages and bytes in and out, connections (current and
//! peak), and persisted storage.
//!
//! The hot path adds to a key's atomic counters (a fan-out adds one delivery per subscriber to
//! the subscriber's key). Every `usage_flush_ms` the deltas go to the store, into one row per
//! tenant, key and hour, and to the per-tenant Prometheus series. Temporary keys count for the
//! original key that minted them, so a browser's refreshed keys add up in one place.

use crate::error::Result;
use crate::storage::{Database, UsageRow};
use dashmap::DashMap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use switchboard_protocol::Millis;

/// One key's counters since the last flush (connections: current and peak).
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages accepted from this key.
    pub messages_in: AtomicU64,
    /// Messages delivered to this key's connections.
    pub messages_out: AtomicU64,
    /// Message bytes accepted.
    pub bytes_in: AtomicU64,
    /// Frame bytes delivered.
    pub bytes_out: AtomicU64,
    connections: AtomicU64,
    peak: AtomicU64,
}

impl Counters {
    /// Counts one accepted message of `bytes`.
    pub fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts one delivery of a frame of `bytes`.
    pub fn delivered(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }
}

/// A connection counted in its key's current connections, until dropped.
pub struct Connected(Arc<Counters>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Relaxed);
    }
}

/// Label of the per-tenant series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// The tenant id.
    pub tenant: String,
}

/// The per-tenant Prometheus series.
#[derive(Default)]
pub struct TenantSeries {
    /// `switchboard_tenant_messages_in_total`.
    pub messages_in: Family<TenantLabel, Counter>,
    /// `switchboard_tenant_messages_out_total`.
    pub messages_out: Family<TenantLabel, Counter>,
    /// `switchboard_tenant_bytes_in_total`.
    pub bytes_in: Family<TenantLabel, Counter>,
    /// `switchboard_tenant_bytes_out_total`.
    pub bytes_out: Family<TenantLabel, Counter>,
    /// `switchboard_tenant_connections`.
    pub connections: Family<TenantLabel, Gauge>,
}

/// Every key's counters, and the way to the store.
pub struct Usage {
    store: Arc<dyn Database>,
    counters: DashMap<(Arc<str>, Arc<str>), Arc<Counters>>,
    series: Arc<TenantSeries>,
}

/// The hour a time falls in, ms.
pub fn hour_of(ms: Millis) -> Millis {
    ms - ms.rem_euclid(3_600_000)
}

impl Usage {
    /// Counters that flush into `store` and `series`.
    pub fn new(store: Arc<dyn Database>, series: Arc<TenantSeries>) -> Usage {
        Usage {
            store,
            counters: DashMap::new(),
            series,
        }
    }

    /// The counters of `key` (an original key: callers pass a temporary key's parent).
    pub fn counters(&self, tenant: &Arc<str>, key: &str) -> Arc<Counters> {
        if let Some(c) = self.counters.get(&(tenant.clone(), Arc::from(key))) {
            return c.clone();
        }
        self.counters
            .entry((tenant.clone(), key.into()))
            .or_default()
            .clone()
    }

    /// Counts a connection for `counters` until the guard drops.
    pub fn connect(counters: &Arc<Counters>) -> Connected {
        let now = counters.connections.fetch_add(1, Relaxed) + 1;
        counters.peak.fetch_max(now, Relaxed);
        Connected(counters.clone())
    }

    /// What was counted since the last flush, per tenant and key, without taking it.
    pub fn pending(&self, tenant: Option<&str>) -> Vec<UsageRow> {
        let period = hour_of(crate::now_ms());
        self.counters
            .iter()
            .filter(|e| tenant.is_none_or(|t| &*e.key().0 == t))
            .map(|e| {
                let c = e.value();
                UsageRow {
                    tenant_id: e.key().0.to_string(),
                    key_id: e.key().1.to_string(),
                    period_start: period,
                    messages_in: c.messages_in.load(Relaxed),
                    messages_out: c.messages_out.load(Relaxed),
                    bytes_in: c.bytes_in.load(Relaxed),
                    bytes_out: c.bytes_out.load(Relaxed),
                    peak_connections: c.peak.load(Relaxed),
                }
            })
            .collect()
    }

    /// Current connections per tenant.
    pub fn connections(&self, tenant: &str) -> u64 {
        self.counters
            .iter()
            .filter(|e| &*e.key().0 == tenant)
            .map(|e| e.value().connections.load(Relaxed))
            .sum()
    }

    /// Moves the deltas into the store (one row per tenant, key and hour) and the series.
    pub async fn flush(&self) -> Result<()> {
        let period = hour_of(crate::now_ms());
        let mut rows = Vec::new();
        let mut connections: std::collections::HashMap<String, u64> = Default::default();
        for e in self.counters.iter() {
            let c = e.value();
            let current = c.connections.load(Relaxed);
            *connections.entry(e.key().0.to_string()).or_default() += current;
            let row = UsageRow {
                tenant_id: e.key().0.to_string(),
                key_id: e.key().1.to_string(),
                period_start: period,
                messages_in: c.messages_in.swap(0, Relaxed),
                messages_out: c.messages_out.swap(0, Relaxed),
                bytes_in: c.bytes_in.swap(0, Relaxed),
                bytes_out: c.bytes_out.swap(0, Relaxed),
                // The peak of the next period starts from what is connected now.
                peak_connections: c.peak.swap(current, Relaxed),
            };
            let label = TenantLabel {
                tenant: row.tenant_id.clone(),
            };
            self.series
                .messages_in
                .get_or_create(&label)
                .inc_by(row.messages_in);
            self.series
                .messages_out
                .get_or_create(&label)
                .inc_by(row.messages_out);
            self.series
                .bytes_in
                .get_or_create(&label)
                .inc_by(row.bytes_in);
            self.series
                .bytes_out
                .get_or_create(&label)
                .inc_by(row.bytes_out);
            let idle = row.messages_in + row.messages_out + row.peak_connections == 0;
            if !idle {
                rows.push(row);
            }
        }
        for (tenant, current) in connections {
            self.series
                .connections
                .get_or_create(&TenantLabel { tenant })
                .set(current as i64);
        }
        // Keys with nothing connected and nothing counted are forgotten (they come back on use).
        self.counters.retain(|_, c| {
            Arc::strong_count(c) > 1
                || c.connections.load(Relaxed) > 0
                || c.messages_in.load(Relaxed) + c.messages_out.load(Relaxed) > 0
        });
        if rows.is_empty() {
            return Ok(());
        }
        self.store.add_usage(rows).await
    }
}
