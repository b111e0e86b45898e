//! What a read model is: a pure fold of one aggregate type's events into one row per
//! aggregate, and the sequence rules every projection shares (skip redeliveries, report gaps).
//! The live [`Projector`](crate::projection::projector::Projector) and replay's
//! [`Rebuilder`](crate::rebuild::Rebuilder) both fold through [`fold`].

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::data::event_log::{deserialize_event, upcast, wrap_payload, StoredEvent};
use crate::data::message::EventMessage;
use crate::error::AppError;

/// Rebuilds cqrs-es's wrapped payload from an envelope so the domain enum can be read,
/// upcast to today's schema when an older release published it.
pub(crate) fn domain_payload(message: &EventMessage) -> Value {
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
    pub(crate) fn gap_reason(have: u64, got: u64) -> String {
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

/// Folds one stored event into `current` through `M`'s own fold: what time travel and an
/// erasure's refold do with events read from the store rather than consumed.
pub(crate) fn apply_stored<M: ReadModel>(
    current: Option<M::View>,
    event: &StoredEvent,
) -> Result<M::View, AppError> {
    let domain = deserialize_event::<M::Event>(event)?;
    let context = EventContext {
        sequence: event.sequence,
        occurred_at: event.recorded_at,
    };
    Ok(M::apply(current, &context, domain))
}
