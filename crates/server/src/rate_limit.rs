//! Abuse limits: token buckets on publishes per connection, key and tenant; a cap on each
//! tenant's connections; unauthenticated connections per IP; password attempts per channel and IP.
//!
//! Every bucket is its own small lock, touched once per publish; tenants never share one, so a
//! tenant at its limit slows nobody else. Over a limit the caller gets `rate_limited` with
//! `retry_after_ms`: when enough tokens will be back.

use crate::config::Limits;
use crate::error::{Result, err};
use dashmap::DashMap;
use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, holding at most `burst` (one second's worth).
/// A rate of 0 means no limit.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` per second.
    pub fn new(rate: u64) -> TokenBucket {
        TokenBucket {
            rate: rate as f64,
            state: Mutex::new((rate as f64, Instant::now())),
        }
    }

    /// Takes `n` tokens, or says how long until they are there (taking none).
    pub fn take(&self, n: f64, now: Instant) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let mut state = self.state.lock();
        let (tokens, last) = &mut *state;
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate)
            .min(self.rate.max(n));
        *last = now;
        if *tokens >= n {
            *tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - *tokens) / self.rate))
        }
    }

    /// Whether the bucket is full (nothing to remember about it).
    fn is_full(&self, now: Instant) -> bool {
        let (tokens, last) = *self.state.lock();
        self.rate == 0.0
            || tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate >= self.rate
    }
}

/// A message bucket and a byte bucket.
#[derive(Debug)]
pub struct Buckets {
    messages: TokenBucket,
    bytes: TokenBucket,
}

impl Buckets {
    fn new(messages: u64, bytes: u64) -> Buckets {
        Buckets {
            messages: TokenBucket::new(messages),
            bytes: TokenBucket::new(bytes),
        }
    }

    fn take(&self, bytes: usize, now: Instant, who: &str) -> Result<()> {
        let over = |wait: Duration, what: &str| {
            let mut e = err!(
                RateLimited,
                "over the {who} limit on {what} per second; retry after the hint"
            );
            e.retry_after_ms = Some(wait.as_millis().max(1) as u64);
            e
        };
        self.messages
            .take(1.0, now)
            .map_err(|wait| over(wait, "messages"))?;
        self.bytes
            .take(bytes as f64, now)
            .map_err(|wait| over(wait, "bytes"))
    }
}

/// The server's shared limit state.
pub struct RateLimits {
    limits: Limits,
    keys: DashMap<Arc<str>, Arc<Buckets>>,
    tenants: DashMap<Arc<str>, Arc<Buckets>>,
    tenant_connections: DashMap<Arc<str>, usize>,
    unauthenticated: DashMap<IpAddr, usize>,
    password_failures: DashMap<(i64, IpAddr), (u32, Instant)>,
}

/// The window password attempts are counted in.
const PASSWORD_WINDOW: Duration = Duration::from_secs(60);

impl RateLimits {
    /// Limits from the configuration.
    pub fn new(limits: &Limits) -> RateLimits {
        RateLimits {
            limits: limits.clone(),
            keys: DashMap::new(),
            tenants: DashMap::new(),
            tenant_connections: DashMap::new(),
            unauthenticated: DashMap::new(),
            password_failures: DashMap::new(),
        }
    }

    /// The buckets a publisher draws from: its connection's (fresh), its key's and its
    /// tenant's (shared).
    pub fn meter(&self, tenant: &Arc<str>, key: &Arc<str>) -> Meter {
        let l = &self.limits;
        let (key, tenant) = self.shared(tenant, key);
        Meter {
            connection: Buckets::new(l.connection_messages_per_sec, l.connection_bytes_per_sec),
            key,
            tenant,
        }
    }

    /// Points a connection's meter at another key (after an `auth` with a fresh key); the
    /// connection's own bucket carries over, so re-authenticating does not refill it.
    pub fn rebind(&self, meter: &mut Meter, tenant: &Arc<str>, key: &Arc<str>) {
        (meter.key, meter.tenant) = self.shared(tenant, key);
    }

    /// A publish over HTTP: the key's and the tenant's buckets.
    pub fn http_publish(&self, tenant: &Arc<str>, key: &Arc<str>, bytes: usize) -> Result<()> {
        let (key, tenant) = self.shared(tenant, key);
        let now = Instant::now();
        key.take(bytes, now, "key")?;
        tenant.take(bytes, now, "tenant")
    }

    fn shared(&self, tenant: &Arc<str>, key: &Arc<str>) -> (Arc<Buckets>, Arc<Buckets>) {
        let l = &self.limits;
        let key = self
            .keys
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Buckets::new(l.key_messages_per_sec, l.key_bytes_per_sec)))
            .clone();
        let tenant = self
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| {
                Arc::new(Buckets::new(
                    l.tenant_messages_per_sec,
                    l.tenant_bytes_per_sec,
                ))
            })
            .clone();
        (key, tenant)
    }

    /// Counts an authenticated connection against its tenant's cap; the guard gives it back.
    pub fn connect(self: &Arc<Self>, tenant: &Arc<str>) -> Result<TenantConnection> {
        let max = self.limits.max_connections_per_tenant;
        let mut count = self.tenant_connections.entry(tenant.clone()).or_insert(0);
        if max > 0 && *count >= max {
            return Err(err!(
                TooManyConnections,
                "the tenant holds its maximum of {max} connections; close some or retry later"
            ));
        }
        *count += 1;
        Ok(TenantConnection {
            limits: self.clone(),
            tenant: tenant.clone(),
        })
    }

    /// Counts a connection that has not authenticated yet against its IP's cap.
    pub fn unauthenticated(self: &Arc<Self>, ip: IpAddr) -> Result<Unauthenticated> {
        let max = self.limits.max_unauthenticated_per_ip;
        let mut count = self.unauthenticated.entry(ip).or_insert(0);
        if max > 0 && *count >= max {
            let mut e = err!(
                RateLimited,
                "too many connections from this address have not authenticated yet"
            );
            e.retry_after_ms = Some(1000);
            return Err(e);
        }
        *count += 1;
        Ok(Unauthenticated {
            limits: self.clone(),
            ip,
        })
    }

    /// Refuses a password attempt on `channel` from `ip` after too many recent failures.
    pub fn password_allowed(&self, channel: i64, ip: IpAddr) -> Result<()> {
        let max = self.limits.password_attempts_per_minute;
        if max == 0 {
            return Ok(());
        }
        if let Some(entry) = self.password_failures.get(&(channel, ip)) {
            let (failures, since) = *entry;
            let elapsed = since.elapsed();
            if failures >= max && elapsed < PASSWORD_WINDOW {
                let mut e = err!(
                    RateLimited,
                    "too many wrong passwords for this channel from this address"
                );
                e.retry_after_ms = Some((PASSWORD_WINDOW - elapsed).as_millis() as u64);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Records a wrong password on `channel` from `ip`.
    pub fn password_failed(&self, channel: i64, ip: IpAddr) {
        let now = Instant::now();
        let mut entry = self
            .password_failures
            .entry((channel, ip))
            .or_insert((0, now));
        if now.duration_since(entry.1) >= PASSWORD_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// Forgets what no longer limits anyone: full buckets nobody holds, old password failures.
    pub fn prune(&self) {
        let now = Instant::now();
        let idle = |b: &Arc<Buckets>| {
            Arc::strong_count(b) == 1 && b.messages.is_full(now) && b.bytes.is_full(now)
        };
        self.keys.retain(|_, b| !idle(b));
        self.tenants.retain(|_, b| !idle(b));
        self.password_failures
            .retain(|_, (_, since)| now.duration_since(*since) < PASSWORD_WINDOW);
    }
}

/// A connection's buckets.
#[derive(Debug)]
pub struct Meter {
    connection: Buckets,
    key: Arc<Buckets>,
    tenant: Arc<Buckets>,
}

impl Meter {
    /// Takes one message of `bytes` from the connection's, the key's and the tenant's buckets.
    pub fn publish(&self, bytes: usize) -> Result<()> {
        let now = Instant::now();
        self.connection.take(bytes, now, "connection")?;
        self.key.take(bytes, now, "key")?;
        self.tenant.take(bytes, now, "tenant")
    }
}

/// An authenticated connection counted against its tenant's cap, until dropped.
pub struct TenantConnection {
    limits: Arc<RateLimits>,
    tenant: Arc<str>,
}

impl Drop for TenantConnection {
    fn drop(&mut self) {
        if let Some(mut count) = self.limits.tenant_connections.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
        }
        self.limits
            .tenant_connections
            .remove_if(&self.tenant, |_, count| *count == 0);
    }
}

/// A connection counted against its IP's unauthenticated cap, until dropped (on
/// authentication or close).
pub struct Unauthenticated {
    limits: Arc<RateLimits>,
    ip: IpAddr,
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        if let Some(mut count) = self.limits.unauthenticated.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
        }
        self.limits
            .unauthenticated
            .remove_if(&self.ip, |_, count| *count == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_their_rate_and_say_when() {
        let bucket = TokenBucket::new(10);
        let t0 = Instant::now();
        for _ in 0..10 {
            bucket.take(1.0, t0).unwrap();
        }
        let wait = bucket.take(1.0, t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        bucket.take(1.0, t0 + Duration::from_millis(100)).unwrap();
        assert!(bucket.take(1.0, t0 + Duration::from_millis(100)).is_err());
        // Idle time never stores more than one second's worth.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            bucket.take(1.0, later).unwrap();
        }
        assert!(bucket.take(1.0, later).is_err());
        // A rate of 0 is no limit.
        let open = TokenBucket::new(0);
        for _ in 0..1000 {
            open.take(1e9, t0).unwrap();
        }
    }

    #[test]
    fn a_request_larger_than_the_burst_waits_for_it() {
        let bytes = TokenBucket::new(100);
        let t0 = Instant::now();
        let wait = bytes.take(250.0, t0).unwrap_err();
        assert!(wait > Duration::from_millis(1490) && wait <= Duration::from_millis(1500));
        assert!(bytes.take(250.0, t0 + Duration::from_millis(1500)).is_ok());
    }
}
