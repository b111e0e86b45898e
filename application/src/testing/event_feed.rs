//! The event feed in memory: events appended by the test, settled when the test says so (the
//! Postgres adapter proves it from transaction ids; here the test plays that part).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::live::filter::admits;
use crate::ports::audit_log::AuditFilter;
use crate::ports::event_feed::{EventFeed, FeedRecord, Settled};
use crate::ports::store_error::StoreError;

/// Events in position order, and how far they are final.
#[derive(Default)]
pub struct MemoryEventFeed {
    events: Mutex<Vec<FeedRecord>>,
    settled: Mutex<Option<i64>>,
    reads: AtomicUsize,
    settles: AtomicUsize,
}

impl MemoryEventFeed {
    /// Adds an event (positions must rise); it is not final until [`Self::settle_through`].
    pub fn append(&self, record: FeedRecord) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }

    /// Declares every event up to `position` final.
    pub fn settle_through(&self, position: i64) {
        *self
            .settled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(position);
    }

    /// How many reads of events were made (the tail's and the subscriptions').
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// How many settling rounds the tail ran.
    pub fn settles(&self) -> usize {
        self.settles.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl EventFeed for MemoryEventFeed {
    async fn settle(&self) -> Result<Settled, StoreError> {
        self.settles.fetch_add(1, Ordering::Relaxed);
        let through = *self
            .settled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let top = self.top().await?;
        Ok(Settled {
            through,
            waiting: through.is_none_or(|through| top > through),
        })
    }

    async fn top(&self) -> Result<i64, StoreError> {
        Ok(self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|r| r.position)
            .max()
            .unwrap_or(0))
    }

    async fn read(
        &self,
        filter: &AuditFilter,
        after: i64,
        through: i64,
        limit: usize,
    ) -> Result<Vec<FeedRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|r| r.position > after && r.position <= through && admits(filter, r))
            .take(limit)
            .cloned()
            .collect())
    }
}
