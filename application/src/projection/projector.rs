//! The live projector: applies consumed batches to a read model through its
//! [`ViewStore`], the same way for every model.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::data::message::EventMessage;
use crate::ports::event_handler::{BatchOutcome, EventHandler, HandlerError};
use crate::ports::store_error::StoreError;
use crate::ports::view_store::ViewStore;
use crate::projection::read_model::{domain_payload, fold, EventContext, Fold, ReadModel};
use crate::projection::report::ReportReadModel;
use crate::projection::task::TaskReadModel;

/// Applies batches of events to a read model through its [`ViewStore`].
pub struct Projector<M: ReadModel> {
    store: Arc<dyn ViewStore<M::View>>,
}

impl<M: ReadModel> Projector<M> {
    /// A projector writing through `store`.
    pub fn new(store: Arc<dyn ViewStore<M::View>>) -> Self {
        Self { store }
    }

    /// Applies a batch: one load and one atomic save for all rows it touches. Messages of other
    /// aggregate types are ignored; undecodable ones are returned as rejected; gaps are recorded
    /// as projection failures (visible, retryable) and skipped.
    pub async fn apply(&self, messages: &[EventMessage]) -> Result<BatchOutcome, StoreError> {
        let mut outcome = BatchOutcome::default();
        let mut decoded = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            if message.aggregate_type != M::AGGREGATE_TYPE {
                continue;
            }
            let event = serde_json::from_value::<M::Event>(domain_payload(message));
            match (message.aggregate_id.parse::<Uuid>(), event) {
                (Ok(id), Ok(event)) => decoded.push((id, message, event)),
                (Err(_), _) => outcome
                    .rejected
                    .push((index, "aggregate id is not a UUID".to_owned())),
                (_, Err(error)) => outcome.rejected.push((
                    index,
                    format!(
                        "cannot read {} v{}: {error}",
                        message.event_type, message.event_version
                    ),
                )),
            }
        }
        // A stream's first event needs no read: its row cannot exist unless this is a
        // redelivery, and then the save below (which writes only over a lower version) keeps
        // the stored row, since the same events fold to the same row. Creations are most of a
        // busy projection's events, so most batches load nothing.
        let mut first_sequence: HashMap<Uuid, u64> = HashMap::with_capacity(decoded.len());
        for (id, message, _) in &decoded {
            first_sequence.entry(*id).or_insert(message.sequence);
        }
        let ids: Vec<Uuid> = first_sequence
            .into_iter()
            .filter(|(_, sequence)| *sequence > 1)
            .map(|(id, _)| id)
            .collect();
        let mut rows: HashMap<Uuid, M::View> = self
            .store
            .load_many(&ids)
            .await?
            .into_iter()
            .map(|view| (M::id(&view), view))
            .collect();
        let mut dirty: Vec<Uuid> = Vec::new();
        for (id, message, event) in decoded {
            match fold::<M>(&mut rows, id, &EventContext::from(message), event) {
                Fold::Applied => {
                    outcome.applied += 1;
                    if !dirty.contains(&id) {
                        dirty.push(id);
                    }
                }
                Fold::AlreadyApplied => outcome.skipped += 1,
                Fold::Gap { have, got } => {
                    let reason = Fold::gap_reason(have, got);
                    tracing::warn!(projection = M::NAME, aggregate_id = %id, %reason, "projection gap");
                    let event = serde_json::to_value(message).unwrap_or_default();
                    self.store
                        .record_failure(M::NAME, message.event_id, &reason, &event)
                        .await?;
                }
            }
        }
        let changed: Vec<M::View> = dirty.iter().filter_map(|id| rows.remove(id)).collect();
        if !changed.is_empty() {
            self.store.save_many(&changed).await?;
        }
        Ok(outcome)
    }
}

#[async_trait]
impl<M: ReadModel> EventHandler for Projector<M> {
    async fn handle(&self, batch: &[EventMessage]) -> Result<BatchOutcome, HandlerError> {
        Ok(self.apply(batch).await?)
    }
}

/// A projector as the retry of its failures sees it (`retryProjectionFailures`): it applies
/// stored events again, through the same fold and store as live events.
#[async_trait]
pub trait Reapply: Send + Sync {
    /// The projection's name (`tasks`, `reports`).
    fn name(&self) -> &'static str;

    /// Applies `events` (in store order); a gap that is still there is recorded again.
    async fn reapply(&self, events: &[EventMessage]) -> Result<BatchOutcome, StoreError>;
}

#[async_trait]
impl<M: ReadModel> Reapply for Projector<M> {
    fn name(&self) -> &'static str {
        M::NAME
    }

    async fn reapply(&self, events: &[EventMessage]) -> Result<BatchOutcome, StoreError> {
        self.apply(events).await
    }
}

/// Several handlers behind one consumer: each sees the whole batch (and ignores what is not
/// its aggregate type); rejections are merged so the consumer dead-letters each message once.
pub struct Handlers(pub Vec<Arc<dyn EventHandler>>);

#[async_trait]
impl EventHandler for Handlers {
    async fn handle(&self, batch: &[EventMessage]) -> Result<BatchOutcome, HandlerError> {
        let mut total = BatchOutcome::default();
        for handler in &self.0 {
            let outcome = handler.handle(batch).await?;
            total.applied += outcome.applied;
            total.skipped += outcome.skipped;
            for rejection in outcome.rejected {
                if !total
                    .rejected
                    .iter()
                    .any(|(index, _)| *index == rejection.0)
                {
                    total.rejected.push(rejection);
                }
            }
        }
        Ok(total)
    }
}

/// The task projector.
pub type TaskProjector = Projector<TaskReadModel>;

/// The report projector.
pub type ReportProjector = Projector<ReportReadModel>;
