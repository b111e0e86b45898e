//! Events a projection could not apply (a gap: the event before it never arrived), kept so
//! operators see them and apply them again once the cause is gone.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::event_log::StoredEvent;
use crate::message::EventMessage;
use crate::ports::page::Page;
use crate::ports::store_error::StoreError;

/// One event a projection could not apply: its event as stored (`E` = [`StoredEvent`], what
/// the store answers), or opened and as it was consumed (an [`EventMessage`], what the use
/// case answers once personal values are opened).
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionFailure<E = EventMessage> {
    /// Its id (per store), the list's cursor.
    pub id: i64,
    /// The event.
    pub event: E,
    /// Why it was not applied (the last time).
    pub reason: String,
    /// Times it failed.
    pub attempts: u32,
    /// When it first failed.
    pub first_failed_at: DateTime<Utc>,
    /// When it last failed.
    pub last_failed_at: DateTime<Utc>,
}

/// The projection failures of every projection.
#[async_trait]
pub trait ProjectionFailureStore: Send + Sync {
    /// How many failures each projection has (projections without any are absent).
    async fn counts(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Up to `limit` failures of `projection` in id order, after `after`.
    async fn list(
        &self,
        projection: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<ProjectionFailure<StoredEvent>>, StoreError>;

    /// Every failure of `projection`, in store order (the events' positions).
    async fn all(
        &self,
        projection: &str,
    ) -> Result<Vec<ProjectionFailure<StoredEvent>>, StoreError>;

    /// Removes the failures of `projection` named by `(event id, attempts)` whose attempts
    /// are still those (they did not fail again meanwhile); answers how many were removed.
    async fn resolve(&self, projection: &str, seen: &[(Uuid, u32)]) -> Result<u64, StoreError>;
}
