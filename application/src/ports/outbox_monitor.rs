//! What operators watch of the outbox: how far Kafka is behind the store.

use async_trait::async_trait;

use crate::ports::store_error::StoreError;

/// The outbox's backlog: events committed and not yet published.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxBacklog {
    /// Unpublished events.
    pub events: u64,
    /// Age of the oldest unpublished event, in seconds (0 when there is none).
    pub oldest_seconds: f64,
}

/// What operators watch of the outbox (how far Kafka is behind the store).
#[async_trait]
pub trait OutboxMonitor: Send + Sync {
    /// The current backlog.
    async fn backlog(&self) -> Result<OutboxBacklog, StoreError>;
}
