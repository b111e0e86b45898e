//! What reacts to published events (a projection, a worker), called by the consumer framework.

use async_trait::async_trait;
use thiserror::Error;

use crate::data::message::EventMessage;
use crate::error_chain::Chain;
use crate::ports::store_error::StoreError;

/// What a projector did with a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events applied to a row.
    pub applied: usize,
    /// Events skipped because the row already reflected them (redeliveries).
    pub skipped: usize,
    /// Messages that can never be applied (unknown type, unreadable payload), by index in the
    /// batch, with the reason: the consumer dead-letters them and moves on.
    pub rejected: Vec<(usize, String)>,
}

/// Why a consumer's handler could not process a batch.
#[derive(Debug, Error)]
pub enum HandlerError {
    /// Worth retrying after a pause (the database is down, a lock timed out).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed for these messages (the consumer dead-letters them).
    #[error("permanent: {0}")]
    Permanent(String),
    /// The database cannot be reached: retried with backoff for as long as the outage lasts,
    /// never counted against the attempts (an outage must not dead-letter valid messages).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The target is paused (a projection being rebuilt): wait and deliver the same batch
    /// again, for as long as it takes, without counting attempts or storing offsets.
    #[error("paused: {0}")]
    Paused(String),
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Paused(projection) => Self::Paused(projection.clone()),
            StoreError::Unavailable(_) => Self::Unavailable(Chain(&error).to_string()),
            _ => Self::Transient(Chain(&error).to_string()),
        }
    }
}

/// Something that reacts to published events: a projection or a worker. The consumer framework
/// decodes messages, calls the handler, retries or dead-letters, and commits offsets only after
/// the handler returned.
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// Processes a batch in order; per-message rejections go to the dead-letter topic.
    async fn handle(&self, batch: &[EventMessage]) -> Result<BatchOutcome, HandlerError>;
}
