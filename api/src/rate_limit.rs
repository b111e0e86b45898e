//! Per-subject request rate limiting: a token bucket per token subject (per client address for
//! requests without valid credentials).
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; each GraphQL operation
//! takes one (a batch takes one per operation). An empty bucket answers how long until the
//! next token, which the edge returns as `Retry-After`. State is per instance: behind a load
//! balancer of N instances a subject gets up to N times the rate, which bounds abuse without a
//! shared store on every request.
//!
//! Memory is bounded whatever the clients do: at most [`MAX_TRACKED`] buckets, in shards with
//! a lock each; a full shard forgets refilled buckets first, then the least recently used.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Buckets kept at most, over all shards: about 100 bytes each, so some 10 MB at the bound.
const MAX_TRACKED: usize = 100_000;

/// Independent maps, each behind its own lock, so requests of different subjects rarely wait
/// for each other and an eviction scans one shard, not the whole map.
const SHARDS: usize = 16;

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
    /// Most buckets one shard keeps.
    shard_capacity: usize,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl RateLimiter {
    /// `per_second` sustained, `burst` at once; `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Self::with_capacity(per_second, burst, MAX_TRACKED)
    }

    fn with_capacity(per_second: u32, burst: u32, capacity: usize) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    /// Takes `cost` tokens from `key`'s bucket, or says how long until they would be there.
    pub fn acquire(&self, key: &str, cost: u32) -> Result<(), Duration> {
        self.acquire_at(key, cost, Instant::now())
    }

    fn acquire_at(&self, key: &str, cost: u32, now: Instant) -> Result<(), Duration> {
        let cost = f64::from(cost.max(1));
        let mut buckets = self.shard(key);
        if buckets.len() >= self.shard_capacity && !buckets.contains_key(key) {
            self.make_room(&mut buckets, now);
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

    /// How many buckets are kept now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        (0..SHARDS)
            .map(|index| {
                self.shards[index]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Bucket>> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = (hasher.finish() % SHARDS as u64) as usize;
        self.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Frees a quarter of a full shard at least: first the buckets that refilled (forgetting
    /// them changes nothing), then the ones least recently used. Forgetting a bucket in use
    /// gives its subject a fresh burst; the bound on memory holds whatever the clients do.
    fn make_room(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        buckets.retain(|_, b| {
            b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < burst
        });
        let target = self.shard_capacity - self.shard_capacity / 4;
        if buckets.len() <= target {
            return;
        }
        let mut ages: Vec<Instant> = buckets.values().map(|b| b.updated).collect();
        let evict = buckets.len() - target;
        let (_, cutoff, _) = ages.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        let mut left = evict;
        buckets.retain(|_, b| {
            if left > 0 && b.updated <= cutoff {
                left -= 1;
                false
            } else {
                true
            }
        });
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
    fn a_hundred_thousand_distinct_clients_cannot_grow_the_map_past_its_bound() {
        let limiter = RateLimiter::with_capacity(1, 5, 1_600).unwrap();
        let start = Instant::now();
        for n in 0..100_000u32 {
            let at = start + Duration::from_micros(u64::from(n));
            assert!(limiter.acquire_at(&format!("addr:{n}"), 1, at).is_ok());
            // One busy subject keeps hitting in between and stays limited.
            let _ = limiter.acquire_at("sub:busy", 1, at);
        }
        assert!(limiter.tracked() <= 1_600, "{} buckets", limiter.tracked());
        let end = start + Duration::from_micros(100_000);
        assert!(
            limiter.acquire_at("sub:busy", 1, end).is_err(),
            "the busy subject's recent bucket was not the one forgotten"
        );
    }

    #[test]
    fn zero_turns_limiting_off() {
        assert!(RateLimiter::new(0, 10).is_none());
    }
}
