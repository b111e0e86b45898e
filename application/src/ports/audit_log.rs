//! Read access to the event store for auditors, and the types the trail speaks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::data::event_log::StoredEvent;
use crate::ports::store_error::StoreError;

/// Which events to show; every set field must match (they combine with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// `Task` or `Report`.
    pub aggregate_type: Option<String>,
    /// One aggregate's id.
    pub aggregate_id: Option<String>,
    /// The token subject that caused the events, as the client gave it (a user id, or the
    /// `erased:<pseudonym>` marker of someone erased).
    pub actor_id: Option<String>,
    /// The forms `actor_id` is stored under (in clear, and as a reference to its subject's
    /// key); set by [`AuditQueries::trail`], never by a client. When set, an event matches
    /// if its actor is any of them.
    ///
    /// [`AuditQueries::trail`]: crate::audit::AuditQueries::trail
    pub actor_forms: Option<Vec<String>>,
    /// Every event of one user action, including reactions to it.
    pub correlation_id: Option<String>,
    /// One event type (`TaskAssigned`).
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
    /// Only aggregates of these teams (`None`: every team); set from the caller's scope by
    /// [`AuditQueries::trail`], never by a client.
    pub teams: Option<Vec<String>>,
}

/// One event of the trail with its global position (the trail's order and cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Global position in the store.
    pub position: i64,
    /// The event as stored.
    pub event: StoredEvent,
}

impl AuditRecord {
    /// A metadata field (`actor_id`, `correlation_id`, `causation_id`).
    pub fn metadata(&self, field: &str) -> Option<&str> {
        self.event.metadata.get(field).and_then(|v| v.as_str())
    }
}

/// A row of the erasure ledger: an event stored in clear whose content an erasure changed,
/// replacing a person's values by markers (docs/privacy.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The event changed.
    pub event_id: uuid::Uuid,
    /// Its global position.
    pub position: i64,
    /// Whose values were replaced: the erasure's pseudonym.
    pub pseudonym: String,
    /// The content hash before (the event's stored `hash`, for the first erasure of it).
    pub prior_hash: String,
    /// The content hash after.
    pub redacted_hash: String,
}

/// An event filed under another team than its stream's creation event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misattribution {
    /// `Task` or `Report`.
    pub aggregate_type: String,
    /// The aggregate.
    pub aggregate_id: String,
    /// The event's sequence.
    pub sequence: u64,
    /// The team recorded beside the event.
    pub recorded_team: Option<String>,
    /// The team of the creation event.
    pub created_team: Option<String>,
}

impl Misattribution {
    /// Why the trail is not to be trusted here.
    pub fn reason(&self) -> String {
        format!(
            "the event is filed under team {:?} but its stream was created in team {:?} (the team column was altered)",
            self.recorded_team.as_deref().unwrap_or("none"),
            self.created_team.as_deref().unwrap_or("none"),
        )
    }
}

/// Read access to the event store for auditors: whole streams, and what else has seen an
/// aggregate (to catch a truncated stream). The trail's pages are read from the event feed,
/// up to its settled position.
#[async_trait]
pub trait AuditLog: Send + Sync {
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
    ) -> Result<Option<Misattribution>, StoreError>;

    /// Every event of one aggregate, in sequence order.
    async fn stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The erasure ledger, in position order: every row (`None`), or every row of the
    /// pseudonyms that changed an event of one stream (so their digests can be recomputed).
    async fn erasure_ledger(
        &self,
        of_stream: Option<(&str, &str)>,
    ) -> Result<Vec<LedgerEntry>, StoreError>;

    /// Pseudonyms that events name as their actor, whose key is gone, and that no erasure
    /// event records: a key destroyed outside an erasure, which makes values unreadable with
    /// nothing in the chained history to say who did it or why.
    async fn keys_destroyed_unrecorded(&self) -> Result<Vec<String>, StoreError>;

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
