//! Where a projection keeps its rows.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use crate::ports::store_error::StoreError;

/// Where a projection keeps its rows (one implementation per read-model table).
#[async_trait]
pub trait ViewStore<V: Send + Sync + 'static>: Send + Sync {
    /// The current rows of these aggregates (missing ones are absent).
    async fn load_many(&self, ids: &[Uuid]) -> Result<Vec<V>, StoreError>;

    /// Writes rows atomically; a row is replaced only by a higher version, so a stale writer
    /// (a consumer that lost its partition mid-batch) can never move a row backwards.
    async fn save_many(&self, views: &[V]) -> Result<(), StoreError>;

    /// Writes rows that replace those at the same version too: rows folded again from the
    /// store after an erasure, whose values changed though their version did not.
    async fn replace_many(&self, views: &[V]) -> Result<(), StoreError>;

    /// Appends rows to the read model's shadow table, the target of a rebuild (created empty by
    /// [`ProjectionControl::prepare_shadows`], swapped in by [`ProjectionControl::swap`]).
    async fn write_shadow(&self, views: &[V]) -> Result<(), StoreError>;

    /// Records an event the projection could not apply, so it is visible and retryable.
    async fn record_failure(
        &self,
        projection: &str,
        event_id: Uuid,
        reason: &str,
        event: &Value,
    ) -> Result<(), StoreError>;
}
