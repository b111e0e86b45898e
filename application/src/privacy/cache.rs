//! Subject keys held in memory for a while, so sealing a command's fields and opening a page of
//! the trail cost no round trip to the key store after a subject's first use.
//!
//! A cached key outlives its destruction in another process for at most the cache's time to
//! live; [`CachedSubjectKeys::destroy`] evicts at once in this one. A key known to be gone is
//! remembered for good: a pseudonym is never given to anyone again, so "erased" cannot go stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::ports::store_error::StoreError;
use crate::ports::subject_keys::{SubjectKey, SubjectKeys};

/// Entries kept at most; past it the cache starts over (a miss costs one lookup, not an error).
const CAPACITY: usize = 100_000;

/// A key found, and when it stops being trusted.
struct Live {
    key: SubjectKey,
    until: Instant,
}

#[derive(Default)]
struct Entries {
    /// By subject id.
    by_subject: HashMap<String, Live>,
    /// By pseudonym: the subject's key, or `None` once it is known to be destroyed.
    by_pseudonym: HashMap<String, Option<Live>>,
}

/// [`SubjectKeys`] with the answers of `inner` kept for `ttl`.
pub struct CachedSubjectKeys {
    inner: Arc<dyn SubjectKeys>,
    ttl: Duration,
    entries: Mutex<Entries>,
}

impl CachedSubjectKeys {
    /// Keys of `inner`, each trusted for `ttl` after it was read.
    pub fn new(inner: Arc<dyn SubjectKeys>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Forgets every cached key, destroyed ones included (another process erased someone).
    pub fn clear(&self) {
        *self.entries() = Entries::default();
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, key: &SubjectKey) {
        let until = Instant::now() + self.ttl;
        let mut entries = self.entries();
        // A lookup that was in flight while the key was destroyed must not bring it back.
        if matches!(entries.by_pseudonym.get(&key.pseudonym), Some(None)) {
            return;
        }
        if entries.by_subject.len() >= CAPACITY || entries.by_pseudonym.len() >= CAPACITY {
            *entries = Entries::default();
        }
        entries.by_subject.insert(
            key.subject_id.clone(),
            Live {
                key: key.clone(),
                until,
            },
        );
        entries.by_pseudonym.insert(
            key.pseudonym.clone(),
            Some(Live {
                key: key.clone(),
                until,
            }),
        );
    }

    /// Forgets the key named `pseudonym` for good: it was destroyed (by this process or, as
    /// its erasure event says, by another).
    pub fn forget(&self, pseudonym: &str) {
        let mut entries = self.entries();
        if let Some(Some(live)) = entries.by_pseudonym.get(pseudonym) {
            let subject = live.key.subject_id.clone();
            entries.by_subject.remove(&subject);
        }
        if entries.by_pseudonym.len() >= CAPACITY {
            *entries = Entries::default();
        }
        entries.by_pseudonym.insert(pseudonym.to_owned(), None);
    }

    fn cached_subject(&self, subject_id: &str) -> Option<SubjectKey> {
        let now = Instant::now();
        self.entries()
            .by_subject
            .get(subject_id)
            .filter(|live| live.until > now)
            .map(|live| live.key.clone())
    }
}

#[async_trait]
impl SubjectKeys for CachedSubjectKeys {
    async fn key_for(&self, subject_id: &str) -> Result<SubjectKey, StoreError> {
        if let Some(key) = self.cached_subject(subject_id) {
            return Ok(key);
        }
        let key = self.inner.key_for(subject_id).await?;
        self.remember(&key);
        Ok(key)
    }

    async fn find(&self, subject_id: &str) -> Result<Option<SubjectKey>, StoreError> {
        if let Some(key) = self.cached_subject(subject_id) {
            return Ok(Some(key));
        }
        let found = self.inner.find(subject_id).await?;
        if let Some(key) = &found {
            self.remember(key);
        }
        Ok(found)
    }

    async fn by_pseudonym(&self, pseudonym: &str) -> Result<Option<SubjectKey>, StoreError> {
        let now = Instant::now();
        match self.entries().by_pseudonym.get(pseudonym) {
            Some(None) => return Ok(None),
            Some(Some(live)) if live.until > now => return Ok(Some(live.key.clone())),
            _ => {}
        }
        let found = self.inner.by_pseudonym(pseudonym).await?;
        match &found {
            Some(key) => self.remember(key),
            None => self.forget(pseudonym),
        }
        Ok(found)
    }

    fn evict(&self, pseudonym: &str) {
        let mut entries = self.entries();
        if let Some(Some(live)) = entries.by_pseudonym.remove(pseudonym) {
            let subject = live.key.subject_id;
            entries.by_subject.remove(&subject);
        }
    }

    async fn destroy(&self, subject_id: &str) -> Result<Option<String>, StoreError> {
        let destroyed = self.inner.destroy(subject_id).await;
        // Whatever happened (a failed destroy may still have committed, and another process
        // may have destroyed the key first): no key of this subject is trusted any more.
        self.forget_subject(subject_id);
        let destroyed = destroyed?;
        if let Some(pseudonym) = &destroyed {
            self.forget(pseudonym);
        }
        Ok(destroyed)
    }
}

impl CachedSubjectKeys {
    /// Marks every cached key of `subject_id` as gone, whichever life of theirs it was.
    fn forget_subject(&self, subject_id: &str) {
        let mut entries = self.entries();
        entries.by_subject.remove(subject_id);
        for entry in entries.by_pseudonym.values_mut() {
            if entry
                .as_ref()
                .is_some_and(|live| live.key.subject_id == subject_id)
            {
                *entry = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::subject_keys::MemorySubjectKeys;

    fn cached(inner: &Arc<MemorySubjectKeys>, ttl: Duration) -> CachedSubjectKeys {
        CachedSubjectKeys::new(inner.clone(), ttl)
    }

    #[tokio::test]
    async fn a_key_is_read_once_then_served_from_memory() {
        let inner = Arc::new(MemorySubjectKeys::default());
        let keys = cached(&inner, Duration::from_secs(60));
        let first = keys.key_for("u-7").await.unwrap();
        // Gone behind the cache's back (another process): still served until the TTL ends.
        inner.destroy("u-7").await.unwrap();
        assert_eq!(keys.key_for("u-7").await.unwrap(), first);
        assert_eq!(
            keys.by_pseudonym(&first.pseudonym).await.unwrap(),
            Some(first)
        );
    }

    #[tokio::test]
    async fn an_expired_key_is_read_again() {
        let inner = Arc::new(MemorySubjectKeys::default());
        let keys = cached(&inner, Duration::ZERO);
        let first = keys.key_for("u-7").await.unwrap();
        inner.destroy("u-7").await.unwrap();
        assert_eq!(keys.by_pseudonym(&first.pseudonym).await.unwrap(), None);
        assert_eq!(keys.find("u-7").await.unwrap(), None);
        assert_ne!(
            keys.key_for("u-7").await.unwrap().pseudonym,
            first.pseudonym
        );
    }

    #[tokio::test]
    async fn destroying_through_the_cache_forgets_at_once_and_for_good() {
        let inner = Arc::new(MemorySubjectKeys::default());
        let keys = cached(&inner, Duration::from_secs(60));
        let first = keys.key_for("u-7").await.unwrap();
        assert_eq!(
            keys.destroy("u-7").await.unwrap().as_deref(),
            Some(first.pseudonym.as_str())
        );
        assert_eq!(keys.by_pseudonym(&first.pseudonym).await.unwrap(), None);
        assert_eq!(keys.find("u-7").await.unwrap(), None);
        let again = keys.key_for("u-7").await.unwrap();
        assert_ne!(again.pseudonym, first.pseudonym, "a new life, a new name");
        assert_eq!(keys.by_pseudonym(&first.pseudonym).await.unwrap(), None);
    }

    #[tokio::test]
    async fn destroying_a_key_another_process_destroyed_first_still_forgets_it_here() {
        let inner = Arc::new(MemorySubjectKeys::default());
        let keys = cached(&inner, Duration::from_secs(60));
        let first = keys.key_for("u-7").await.unwrap();
        inner.destroy("u-7").await.unwrap(); // the other process
        assert_eq!(
            keys.destroy("u-7").await.unwrap(),
            None,
            "nothing left to destroy"
        );
        assert_eq!(keys.by_pseudonym(&first.pseudonym).await.unwrap(), None);
        assert_eq!(keys.find("u-7").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_lookup_in_flight_while_the_key_is_destroyed_does_not_bring_it_back() {
        let inner = Arc::new(MemorySubjectKeys::default());
        let keys = cached(&inner, Duration::from_secs(60));
        let read_before = inner.key_for("u-7").await.unwrap(); // its answer not cached yet
        keys.destroy("u-7").await.unwrap();
        keys.remember(&read_before); // the lookup finishes after the destroy
        assert_eq!(
            keys.by_pseudonym(&read_before.pseudonym).await.unwrap(),
            None
        );
        assert_eq!(keys.find("u-7").await.unwrap(), None);
    }
}
