//! Per-subject request rate limiting: a token bucket per token subject (per client address for
//! requests without valid credentials).
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; each GraphQL operation
//! takes one (a batch takes one per operation). An empty bucket answers how long until the
//! next token, which the edge returns as `Retry-After`. State is per instance: behind a load
//! balancer of N instances a subject gets up to N times the rate, which bounds abuse without a
//! shared store on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle (full) ones are dropped.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by subject.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_second` sustained, `burst` at once; `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes `cost` tokens from `key`'s bucket, or says how long until they would be there.
    pub fn acquire(&self, key: &str, cost: u32) -> Result<(), Duration> {
        self.acquire_at(key, cost, Instant::now())
    }

    fn acquire_at(&self, key: &str, cost: u32, now: Instant) -> Result<(), Duration> {
        let cost = f64::from(cost.max(1));
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(key) {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        let missing = cost.min(self.burst) - bucket.tokens;
        Err(Duration::from_secs_f64(missing / self.per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies_per_subject() {
        let limiter = RateLimiter::new(2, 3).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.acquire_at("u-1", 1, start).is_ok());
        }
        let wait = limiter.acquire_at("u-1", 1, start).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(
            limiter.acquire_at("u-2", 1, start).is_ok(),
            "buckets are per subject"
        );
        let later = start + Duration::from_millis(500);
        assert!(limiter.acquire_at("u-1", 1, later).is_ok());
        assert!(limiter.acquire_at("u-1", 1, later).is_err());
    }

    #[test]
    fn zero_turns_limiting_off() {
        assert!(RateLimiter::new(0, 10).is_none());
    }
}
