//! The lifecycle of read models: their status, and the steps of a rebuild that need the
//! database (claiming, the consistent read, shadow tables, the swap).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use uuid::Uuid;

use crate::ports::store_error::StoreError;

/// Whether a projection's live consumer may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionState {
    /// The live consumer applies events as they arrive.
    Live,
    /// A rebuild holds it; the live consumer waits (readers still read the current rows).
    Rebuilding,
    /// An operator stopped the live consumer's writes.
    Paused,
}

impl ProjectionState {
    /// The stored (and GraphQL) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "LIVE",
            Self::Rebuilding => "REBUILDING",
            Self::Paused => "PAUSED",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "LIVE" => Some(Self::Live),
            "REBUILDING" => Some(Self::Rebuilding),
            "PAUSED" => Some(Self::Paused),
            _ => None,
        }
    }
}

/// What operators see of one projection.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// `tasks`, `reports`.
    pub name: String,
    /// The code version that built the rows.
    pub version: u32,
    /// Live, rebuilding or paused.
    pub state: ProjectionState,
    /// Highest event-store position the rows reflect.
    pub position: i64,
    /// The store's highest position (the lag is the difference).
    pub head: i64,
    /// The running rebuild's progress, while there is one.
    pub rebuild: Option<RebuildProgress>,
    /// Events, seconds and end of the last finished rebuild.
    pub last_rebuild: Option<(u64, f64, DateTime<Utc>)>,
    /// Why the last rebuild failed or was abandoned, if it did.
    pub last_error: Option<String>,
    /// When the oldest event the rows do not reflect yet was recorded (`None`: caught up).
    pub oldest_unprojected_at: Option<DateTime<Utc>>,
}

impl ProjectionStatus {
    /// How far behind the store the rows are in time: the age of the oldest event they do not
    /// reflect yet (0 when caught up).
    pub fn lag_seconds(&self, now: DateTime<Utc>) -> f64 {
        self.oldest_unprojected_at.map_or(0.0, |at| {
            ((now - at).num_milliseconds() as f64 / 1000.0).max(0.0)
        })
    }

    /// Events in the store beyond what the rows reflect (positions can skip numbers after a
    /// rolled-back append, so this is an upper bound).
    pub fn lag(&self) -> i64 {
        (self.head - self.position).max(0)
    }
}

/// A rebuild's claim on its projections; progress, shadows and swap go by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildClaim {
    /// Unique per run: a run that lost its claim cannot swap over a newer one.
    pub id: Uuid,
    /// The claimed projections.
    pub names: Vec<&'static str>,
}

/// One stored event as replay reads it: the payload stays text until a decoder, on a worker
/// thread, turns it straight into the domain event.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildEvent {
    /// Global position.
    pub position: i64,
    /// Globally unique id (recorded with a failure).
    pub event_id: Uuid,
    /// `Task`, `Report`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// 1-based position in the aggregate's stream.
    pub sequence: u64,
    /// `TaskCreated`.
    pub event_type: String,
    /// The payload's schema version (older ones are upcast while decoding).
    pub event_version: String,
    /// cqrs-es's serialized payload (`{"TaskCreated": {...}}`), as JSON text.
    pub payload: String,
    /// When the store accepted it.
    pub recorded_at: DateTime<Utc>,
    /// The metadata's `sealed` flag (`pd1`): whether the payload's personal values are sealed
    /// and must be opened before decoding.
    pub sealed: Option<String>,
    /// The metadata's `actor_id`, as stored: opening needs to know whether the service wrote it.
    pub actor_id: Option<String>,
}

/// A consistent view of the store for one rebuild.
pub struct RebuildSnapshot {
    /// Events the stream will yield (the progress bar's total).
    pub total: u64,
    /// The highest position of each aggregate type in the snapshot: a rebuilt projection
    /// reflects everything of its type up to it.
    pub heads: Vec<(String, i64)>,
    /// The events, in position order, in batches.
    pub events: BoxStream<'static, Result<Vec<RebuildEvent>, StoreError>>,
}

/// What a successful rebuild records when it swaps its shadows in.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapOutcome {
    /// Each rebuilt projection.
    pub projections: Vec<Rebuilt>,
    /// Seconds from claim to swap.
    pub seconds: f64,
}

/// One projection a rebuild swaps in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebuilt {
    /// `tasks`.
    pub name: &'static str,
    /// The code version that built the rows.
    pub version: u32,
    /// The snapshot's head for its aggregate type.
    pub position: i64,
    /// Events of its aggregate type folded.
    pub events: u64,
}

/// A running rebuild's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Events folded so far.
    pub done: u64,
    /// Events in the snapshot.
    pub total: u64,
    /// When the rebuild claimed its projections.
    pub started_at: DateTime<Utc>,
}

/// The lifecycle of read models: their status, and the steps of a rebuild that need the
/// database (claiming, the consistent read, shadow tables, the swap). The rebuild's logic —
/// decoding and folding — is [`crate::rebuild::Rebuilder`]'s.
#[async_trait]
pub trait ProjectionControl: Send + Sync {
    /// Makes sure every projection has a status row; one seen for the first time starts at
    /// version 0, so the next start builds it from the store.
    async fn register(&self, names: &[&'static str]) -> Result<(), StoreError>;

    /// Records that `name`'s rows are what projection code `version` builds, without a
    /// rebuild: right when the store holds no event the projection reads.
    async fn set_version(&self, name: &str, version: u32) -> Result<(), StoreError>;

    /// Moves a projection between LIVE and PAUSED (an operator holding its live consumer, say
    /// while investigating a bad event); waits for a batch in flight. `Ok(Err(status))` when it
    /// is not in the state the move starts from.
    async fn set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Result<(), ProjectionStatus>, StoreError>;

    /// Every projection's status, with the store's head position (for the lag).
    async fn statuses(&self) -> Result<Vec<ProjectionStatus>, StoreError>;

    /// Claims projections for a rebuild and pauses their live writers (waiting for a batch in
    /// flight). `Ok(Err(status))` names a projection another running rebuild holds; a claim
    /// whose rebuild died is free again.
    async fn claim(
        &self,
        names: &[&'static str],
    ) -> Result<Result<RebuildClaim, ProjectionStatus>, StoreError>;

    /// Records progress; `false` when the claim was lost (its lock connection dropped and the
    /// live consumer took the projection back).
    async fn record_progress(
        &self,
        claim: &RebuildClaim,
        done: u64,
        total: u64,
    ) -> Result<bool, StoreError>;

    /// Creates empty shadow tables shaped like the live ones (dropping a failed run's).
    async fn prepare_shadows(&self, claim: &RebuildClaim) -> Result<(), StoreError>;

    /// One consistent snapshot of the store's events of these aggregate types, opened after
    /// the claim, streamed in position order.
    async fn snapshot(
        &self,
        aggregate_types: &[&'static str],
    ) -> Result<RebuildSnapshot, StoreError>;

    /// Builds the shadow tables' indexes (after the load: much faster than maintaining them).
    async fn index_shadows(&self, claim: &RebuildClaim) -> Result<(), StoreError>;

    /// Swaps the shadows in and makes the projections live again, in one transaction; `false`
    /// (and nothing swapped) when the claim was lost.
    async fn swap(&self, claim: &RebuildClaim, outcome: &SwapOutcome) -> Result<bool, StoreError>;

    /// Gives a failed rebuild up: drops its shadows and makes the projections live again with
    /// the reason recorded. The live tables were never touched.
    async fn abandon(&self, claim: &RebuildClaim, reason: &str) -> Result<(), StoreError>;
}
