//! Projections: fold published events into read models.
//!
//! A read model says how one event changes one row ([`ReadModel::apply`], pure); the generic
//! [`Projector`] does the rest the same way for every model: decode, skip redeliveries by
//! sequence, report gaps, and load and save each batch's rows in one round trip each. Replay
//! reuses the same fold.

pub mod report;
pub mod task;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::event_log::{upcast, wrap_payload};
use crate::message::EventMessage;
use crate::ports::{EventHandler, HandlerError, StoreError, ViewStore};

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

/// Rebuilds cqrs-es's wrapped payload from an envelope so the domain enum can be read,
/// upcast to today's schema when an older release published it.
pub fn domain_payload(message: &EventMessage) -> Value {
    upcast(
        &message.event_type,
        &message.event_version,
        wrap_payload(&message.event_type, message.payload.clone()),
    )
}

/// Where an event sits, as far as a fold needs to know: its place in the aggregate's stream and
/// when it happened. Live projection, time travel and replay all build it from what they have
/// (a Kafka envelope, a stored event, a replayed row), so one `apply` serves all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventContext {
    /// 1-based position in the aggregate's stream.
    pub sequence: u64,
    /// When the store accepted the event.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

impl From<&EventMessage> for EventContext {
    fn from(message: &EventMessage) -> Self {
        Self {
            sequence: message.sequence,
            occurred_at: message.occurred_at,
        }
    }
}

/// One read model: which events it reads and how an event changes a row.
pub trait ReadModel: Send + Sync + 'static {
    /// The domain event type it folds.
    type Event: DeserializeOwned + Send;
    /// One row.
    type View: Clone + Send + Sync + 'static;
    /// The aggregate type whose events it reads (`Task`).
    const AGGREGATE_TYPE: &'static str;
    /// The projection's name, as operators see it (`tasks`).
    const NAME: &'static str;
    /// The version of this fold's code. Raise it whenever `apply` (or the row's shape) changes
    /// what a row holds: `chronicle serve` then rebuilds the projection from the store.
    const VERSION: u32;

    /// The row's aggregate id.
    fn id(view: &Self::View) -> Uuid;
    /// The last sequence folded into the row.
    fn version(view: &Self::View) -> u64;
    /// The team owning the row's aggregate: what access rules compare with the caller's teams.
    fn team(view: &Self::View) -> Option<&str>;
    /// The row after `event`, which is known to be the next in sequence.
    fn apply(current: Option<Self::View>, context: &EventContext, event: Self::Event)
        -> Self::View;
}

/// The result of folding one event into a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// The row changed.
    Applied,
    /// The row already reflects this sequence (a redelivery).
    AlreadyApplied,
    /// The event does not follow the row's version: an earlier event is missing.
    Gap {
        /// The row's version (0 when absent).
        have: u64,
        /// The event's sequence.
        got: u64,
    },
}

impl Fold {
    /// Why a gap could not be applied (recorded with the projection failure).
    pub fn gap_reason(have: u64, got: u64) -> String {
        format!("sequence {got} does not follow version {have}")
    }
}

/// Folds `event` into row `id` of `rows` if it is the next in sequence: the one rule of the
/// live projector and of replay. The row is moved through `apply`, never cloned.
pub fn fold<M: ReadModel>(
    rows: &mut HashMap<Uuid, M::View>,
    id: Uuid,
    context: &EventContext,
    event: M::Event,
) -> Fold {
    let have = rows.get(&id).map_or(0, M::version);
    if context.sequence <= have {
        return Fold::AlreadyApplied;
    }
    if context.sequence != have + 1 {
        return Fold::Gap {
            have,
            got: context.sequence,
        };
    }
    let current = rows.remove(&id);
    rows.insert(id, M::apply(current, context, event));
    Fold::Applied
}

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
