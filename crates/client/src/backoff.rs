//! Reconnect delays: exponential backoff with full jitter.
//!
//! Full jitter (a uniform delay between zero and the exponential bound) spreads the reconnects
//! of many clients that lost the same server at the same instant, so a restarted server is not
//! hit by all of them at once.

use std::time::Duration;

/// Exponential backoff with full jitter: attempt `n` waits a uniform random time in
/// `[0, min(max, initial × multiplier^n)]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The bound of the first retry.
    pub initial: Duration,
    /// The largest bound.
    pub max: Duration,
    /// How much the bound grows per attempt.
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// The upper bound of the delay before retry number `attempt` (0-based).
    pub fn bound(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delay before retry number `attempt`, with `unit` a uniform sample from `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        self.bound(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The delay before retry number `attempt`, jittered with the OS random source.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, random_unit())
    }
}

/// A uniform sample from `[0, 1)`.
fn random_unit() -> f64 {
    let bits = getrandom::u64().unwrap_or(u64::MAX / 2);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_and_cap() {
        let b = Backoff::default();
        assert_eq!(b.bound(0), Duration::from_millis(100));
        assert_eq!(b.bound(1), Duration::from_millis(200));
        assert_eq!(b.bound(3), Duration::from_millis(800));
        assert_eq!(b.bound(7), Duration::from_secs(10));
        assert_eq!(b.bound(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::default();
        assert_eq!(b.delay_with(2, 0.0), Duration::ZERO);
        assert_eq!(b.delay_with(2, 0.5), Duration::from_millis(200));
        assert_eq!(b.delay_with(2, 7.0), Duration::from_millis(400));
        for attempt in 0..40 {
            let d = b.delay(attempt);
            assert!(d <= b.bound(attempt), "{d:?} > {:?}", b.bound(attempt));
        }
        let samples: Vec<_> = (0..64).map(|_| b.delay(10)).collect();
        assert!(samples.iter().any(|d| *d != samples[0]), "jitter is random");
    }

    #[test]
    fn odd_multipliers() {
        let b = Backoff {
            multiplier: 0.5,
            ..Backoff::default()
        };
        assert_eq!(b.bound(5), Duration::from_millis(100));
        let b = Backoff {
            multiplier: f64::INFINITY,
            ..Backoff::default()
        };
        assert_eq!(b.bound(1), Duration::from_secs(10));
    }
}
