//! The traits through which use cases reach storage. Adapters implement them in
//! `chronicle-infrastructure`; nothing here knows about SQL or Kafka.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use crate::audit::{AuditFilter, AuditRecord};
use crate::event_log::{NewEvent, StoredEvent};
use crate::message::OutboxMessage;
use crate::projection::task::TaskView;
use crate::queries::{TaskFilter, TaskPage};
use crate::replay::{ProjectionStatus, RebuildClaim, ReplaySnapshot, SwapOutcome};

/// Why a storage call failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another writer appended to the same aggregate first.
    #[error("another writer appended to the aggregate first")]
    Conflict,
    /// The idempotency key was recorded by a concurrent request first.
    #[error("the idempotency key was used concurrently")]
    IdempotencyKeyTaken,
    /// The storage could not be reached or answered with an error.
    #[error("storage failure: {0}")]
    Backend(String),
    /// The storage cannot be reached now (down, restarting, out of connections); the same
    /// request succeeds once it is back.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The read model does not accept live writes right now (a rebuild or an operator paused
    /// it); nothing was written, and the same write succeeds once it is live again.
    #[error("projection {0} is paused")]
    Paused(String),
}

/// A snapshot of an aggregate's state after `last_sequence` events.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Serialized aggregate state.
    pub payload: Value,
    /// The last event folded into it.
    pub last_sequence: u64,
}

/// What loading an aggregate returns: a snapshot, if any, and the events after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadedStream {
    /// The newest snapshot.
    pub snapshot: Option<Snapshot>,
    /// Events from the snapshot's last sequence (inclusive, so its hash is known) onwards, in
    /// sequence order; all events when there is no snapshot.
    pub events: Vec<StoredEvent>,
}

/// The record that makes a retried command answer its first result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The token's subject: keys are scoped per actor.
    pub actor_id: String,
    /// The client's key.
    pub key: String,
    /// Which command it was (`createTask`), so a key reused for another command is refused.
    pub command: String,
    /// The aggregate it touched.
    pub aggregate_id: String,
    /// The version the command produced.
    pub version: u64,
}

/// Everything one command writes, in one transaction.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    /// Aggregate type (`Task`).
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// The owning team, stored beside every event so the audit trail can be scoped by team.
    pub team_id: Option<String>,
    /// New events, sequences consecutive after the loaded version.
    pub events: Vec<NewEvent>,
    /// One outbox row per event.
    pub outbox: Vec<OutboxMessage>,
    /// A snapshot to store, when the snapshot interval was crossed.
    pub snapshot: Option<Snapshot>,
    /// The idempotency record, when the client sent a key.
    pub idempotency: Option<IdempotencyRecord>,
}

/// The event store: append-only streams per aggregate plus the outbox, written atomically.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Loads an aggregate's newest snapshot and the events after it.
    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<LoadedStream, StoreError>;

    /// Appends events, outbox rows, snapshot and idempotency record in one transaction.
    /// Fails with [`StoreError::Conflict`] when a sequence is already taken.
    async fn append(&self, batch: AppendBatch) -> Result<(), StoreError>;

    /// The first result of a command sent with this actor's idempotency key, if any.
    async fn find_idempotent(
        &self,
        actor_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// Read access to the event store for auditors: the trail, whole streams, and what else has
/// seen an aggregate (to catch a truncated stream).
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Matching events after position `after`, in position order, at most `limit`; only
    /// events no running transaction can still precede.
    async fn trail(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The team that owns an aggregate, as recorded beside its events (`None` when it has no
    /// events).
    async fn team_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<String>, StoreError>;

    /// The first event (in position order; of one aggregate, or of the whole store) whose
    /// recorded team differs from the team its stream's creation event names. The creation
    /// event is hash-chained and the team column is not: this is what makes the column,
    /// which scopes auditors, as trustworthy as the chain.
    async fn misattributed(
        &self,
        aggregate: Option<(&str, &str)>,
    ) -> Result<Option<crate::audit::Misattribution>, StoreError>;

    /// Every event of one aggregate, in sequence order.
    async fn stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The highest version of an aggregate that a snapshot or a read-model row reflects
    /// (0 when none does).
    async fn witnessed_version(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<u64, StoreError>;

    /// The same for every aggregate that has one: (aggregate type, id, version).
    async fn witnessed_versions(&self) -> Result<Vec<(String, String, u64)>, StoreError>;

    /// How many events the store holds (the total of a progress bar).
    async fn event_count(&self) -> Result<u64, StoreError>;

    /// Every event in position order, streamed (the store may hold millions).
    fn scan(&self) -> BoxStream<'static, Result<AuditRecord, StoreError>>;
}

/// Where a projection keeps its rows (one implementation per read-model table).
#[async_trait]
pub trait ViewStore<V: Send + Sync + 'static>: Send + Sync {
    /// The current rows of these aggregates (missing ones are absent).
    async fn load_many(&self, ids: &[Uuid]) -> Result<Vec<V>, StoreError>;

    /// Writes rows atomically; a row is replaced only by a higher version, so a stale writer
    /// (a consumer that lost its partition mid-batch) can never move a row backwards.
    async fn save_many(&self, views: &[V]) -> Result<(), StoreError>;

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

/// The lifecycle of read models: their status, and the steps of a rebuild that need the
/// database (claiming, the consistent read, shadow tables, the swap). The rebuild's logic —
/// decoding and folding — is [`crate::replay::Rebuilder`]'s.
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
    ) -> Result<ReplaySnapshot, StoreError>;

    /// Builds the shadow tables' indexes (after the load: much faster than maintaining them).
    async fn index_shadows(&self, claim: &RebuildClaim) -> Result<(), StoreError>;

    /// Swaps the shadows in and makes the projections live again, in one transaction; `false`
    /// (and nothing swapped) when the claim was lost.
    async fn swap(&self, claim: &RebuildClaim, outcome: &SwapOutcome) -> Result<bool, StoreError>;

    /// Gives a failed rebuild up: drops its shadows and makes the projections live again with
    /// the reason recorded. The live tables were never touched.
    async fn abandon(&self, claim: &RebuildClaim, reason: &str) -> Result<(), StoreError>;
}

/// Read access to the task read model.
#[async_trait]
pub trait TaskQueryStore: Send + Sync {
    /// One task by id.
    async fn get(&self, id: Uuid) -> Result<Option<TaskView>, StoreError>;

    /// A page of tasks in creation order after the cursor id.
    async fn list(
        &self,
        filter: &TaskFilter,
        first: usize,
        after: Option<Uuid>,
    ) -> Result<TaskPage, StoreError>;

    /// How many tasks match the filter in all: a scan of every match, so only run when a
    /// client asks for it.
    async fn count(&self, filter: &TaskFilter) -> Result<u64, StoreError>;
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
        match error {
            StoreError::Paused(projection) => Self::Paused(projection),
            StoreError::Unavailable(detail) => Self::Unavailable(detail),
            other => Self::Transient(other.to_string()),
        }
    }
}

/// Something that reacts to published events: a projection or a worker. The consumer framework
/// decodes messages, calls the handler, retries or dead-letters, and commits offsets only after
/// the handler returned.
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// Processes a batch in order; per-message rejections go to the dead-letter topic.
    async fn handle(
        &self,
        batch: &[crate::message::EventMessage],
    ) -> Result<crate::projection::BatchOutcome, HandlerError>;
}

/// What report generation reads: facts about a team's tasks from the task read model.
#[async_trait]
pub trait ReportDataSource: Send + Sync {
    /// Every task of `team_id`.
    async fn team_tasks(&self, team_id: &str)
        -> Result<Vec<crate::reports::TaskFacts>, StoreError>;
}

/// Read access to the report read model.
#[async_trait]
pub trait ReportQueryStore: Send + Sync {
    /// One report by id.
    async fn get(
        &self,
        id: Uuid,
    ) -> Result<Option<crate::projection::report::ReportView>, StoreError>;

    /// A page of reports in request order after the cursor id.
    async fn list(
        &self,
        filter: &crate::queries::ReportFilter,
        first: usize,
        after: Option<Uuid>,
    ) -> Result<crate::queries::ReportPage, StoreError>;

    /// How many reports match the filter in all (only run when a client asks for it).
    async fn count(&self, filter: &crate::queries::ReportFilter) -> Result<u64, StoreError>;
}

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
