//! Erasures of data subjects: the record of each, and the copies in clear an erasure rewrites
//! (docs/privacy.md). Destroying the subject's key is the [`SubjectKeys`] port's job; this one
//! finds what the key's values reached and records what was done.
//!
//! [`SubjectKeys`]: crate::ports::subject_keys::SubjectKeys

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::data::event_log::StoredEvent;
use crate::ports::store_error::StoreError;

/// One aggregate's stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRef {
    /// `Task`, `Report`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
}

/// An erasure as recorded. Holds no personal data of the erased subject: their pseudonym only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    /// The erased subject's pseudonym: what their values now read as (`erased:<pseudonym>`).
    pub pseudonym: String,
    /// When it was requested.
    pub erased_at: DateTime<Utc>,
    /// Who requested it (the privacy officer's id).
    pub erased_by: String,
    /// Why, as the officer wrote it.
    pub reason: String,
    /// Streams whose copies in clear were rewritten.
    pub streams: u64,
    /// Whether the copies in clear were rewritten (an interrupted erasure is not yet).
    pub scrubbed: bool,
}

/// The copies in clear of one erasure, to rewrite in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrub {
    /// The erasure.
    pub pseudonym: String,
    /// The subject's id, as the idempotency records hold it.
    pub subject_id: String,
    /// Every stream holding a value of the subject: their snapshots (aggregates in clear) go.
    pub streams: Vec<StreamRef>,
    /// Outbox envelopes of those streams' events as they read now (markers in place of the
    /// erased values), by event id; rows no longer in the outbox are skipped.
    pub envelopes: Vec<(Uuid, Value)>,
}

/// The replacement of a person's values stored in clear in one event (a row of the erasure
/// ledger, [`crate::privacy::redact`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Redaction {
    /// The event.
    pub event_id: Uuid,
    /// Its global position (the ledger's digest takes rows in this order).
    pub position: i64,
    /// The hash of its content now.
    pub prior_hash: String,
    /// The hash of its content after.
    pub redacted_hash: String,
    /// Its payload after.
    pub payload: Value,
    /// Its metadata after.
    pub metadata: Value,
}

/// An event with its global position.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionedEvent {
    /// Its global position.
    pub position: i64,
    /// The event as stored.
    pub event: StoredEvent,
}

/// Held while one erasure runs: erasures run one at a time across every process, so two
/// never plan changes to the same event from the same content. Released when dropped.
pub struct ErasureLock(pub Box<dyn std::any::Any + Send + Sync>);

/// Where erasures are recorded, and what they rewrite.
#[async_trait]
pub trait Erasures: Send + Sync {
    /// Records the start of the erasure of `subject_id` under `pseudonym` (nothing when that
    /// pseudonym's erasure was recorded before: a re-run).
    async fn begin(
        &self,
        subject_id: &str,
        pseudonym: &str,
        erased_by: &str,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// The latest erasure of `subject_id`, if any.
    async fn find(&self, subject_id: &str) -> Result<Option<ErasureRecord>, StoreError>;

    /// The erasures of `subject_id` begun and never finished (their copies in clear not yet
    /// rewritten), oldest first.
    async fn unfinished(&self, subject_id: &str) -> Result<Vec<ErasureRecord>, StoreError>;

    /// Waits until no other erasure runs, and keeps others waiting while held.
    async fn lock(&self) -> Result<ErasureLock, StoreError>;

    /// Every event stored in clear that names `subject_id` as its actor or in a field, in
    /// position order (a superset: [`crate::privacy::redact`] decides).
    async fn in_clear_naming(&self, subject_id: &str) -> Result<Vec<PositionedEvent>, StoreError>;

    /// Every report result that holds one of `names` (an id, a task's id), in position order.
    async fn reports_naming(&self, names: &[String]) -> Result<Vec<PositionedEvent>, StoreError>;

    /// Whether the erasure event of `pseudonym` is stored.
    async fn erasure_appended(&self, pseudonym: &str) -> Result<bool, StoreError>;

    /// Records the ledger rows `pseudonym`'s erasure will commit to, replacing any it planned
    /// before (a re-run after a crash plans again from the events as they are).
    async fn plan(&self, pseudonym: &str, redactions: &[Redaction]) -> Result<(), StoreError>;

    /// Applies every planned redaction whose erasure event is stored, in one transaction, and
    /// forgets plans whose erasure never got that far (their erasure plans again when run
    /// again); answers the events changed.
    async fn settle(&self) -> Result<u64, StoreError>;

    /// Every stream with an event holding a value of `pseudonym`: its actor, a reference to
    /// it, text sealed under its key, or its marker where a value in clear was replaced.
    async fn streams_of(&self, pseudonym: &str) -> Result<Vec<StreamRef>, StoreError>;

    /// Every event of `streams`, as stored, stream after stream, each in sequence order.
    async fn events_of(&self, streams: &[StreamRef]) -> Result<Vec<StoredEvent>, StoreError>;

    /// Rewrites the copies in clear (snapshots deleted, the subject's idempotency records
    /// deleted and others' on those streams kept without their fingerprints, which hash the
    /// commands' arguments; outbox rows, dead letters and projection failures of the events given the
    /// envelopes as they read now, their reasons withheld; the subject's id as the operator of
    /// a redrive or discard replaced by the marker) and marks the erasure scrubbed, in one
    /// transaction.
    async fn scrub(&self, scrub: &Scrub) -> Result<ErasureRecord, StoreError>;
}
