//! What operators do with the outbox's parked records (admin): list them with their error,
//! and send them again once the cause is fixed.

use std::sync::Arc;

use uuid::Uuid;

use crate::access::{Action, Principal};
use crate::error::AppError;
use crate::ports::page::Page;
use crate::ports::parked_events::{ParkedEvent, ParkedEvents};
use crate::queries::page_size;

/// The parked records, for admins.
pub struct ParkedOutbox {
    store: Arc<dyn ParkedEvents>,
}

impl ParkedOutbox {
    /// Over `store`.
    pub fn new(store: Arc<dyn ParkedEvents>) -> Self {
        Self { store }
    }

    /// A page of parked records in outbox order; `first` as every page (1..=100).
    pub async fn list(
        &self,
        principal: &Principal,
        first: Option<i64>,
        after: Option<Uuid>,
    ) -> Result<Page<ParkedEvent>, AppError> {
        principal.scope(Action::Operate)?;
        Ok(self.store.list(after, page_size(first)?).await?)
    }

    /// Unparks one aggregate's records, or all; answers how many. The relay then publishes
    /// them, with what waited behind them, in order; one refused again is parked again after
    /// its attempts.
    pub async fn retry(
        &self,
        principal: &Principal,
        aggregate_id: Option<Uuid>,
    ) -> Result<u64, AppError> {
        principal.scope(Action::Operate)?;
        let unparked = self.store.retry(aggregate_id).await?;
        tracing::info!(
            actor = %principal.subject(),
            aggregate_id = ?aggregate_id,
            unparked,
            "parked outbox records sent back to the relay"
        );
        Ok(unparked)
    }
}
