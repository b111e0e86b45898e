//! Outbox records the broker refused for good and the relay parked: what operators list and
//! send again once the cause is fixed (a larger `KAFKA_MESSAGE_MAX_BYTES`, a granted ACL).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ports::page::Page;
use crate::ports::store_error::StoreError;

/// A parked record: one event that did not reach Kafka, holding back its aggregate's later
/// events (which wait unparked behind it).
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedEvent {
    /// The event's aggregate type (`Task`, `Report`).
    pub aggregate_type: String,
    /// The aggregate, which is the record's key.
    pub aggregate_id: String,
    /// The event.
    pub event_id: Uuid,
    /// The event's sequence in its aggregate.
    pub sequence: i64,
    /// The last refusal.
    pub error: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

/// The parked records of the outbox.
#[async_trait]
pub trait ParkedEvents: Send + Sync {
    /// How many records are parked.
    async fn count(&self) -> Result<u64, StoreError>;

    /// Up to `limit` parked records in outbox order, after the one of event `after`.
    async fn list(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Page<ParkedEvent>, StoreError>;

    /// Unparks the records of one aggregate, or every one, and wakes the relay; answers how
    /// many were unparked. The relay publishes them, and what waited behind them, in order.
    async fn retry(&self, aggregate_id: Option<Uuid>) -> Result<u64, StoreError>;
}
