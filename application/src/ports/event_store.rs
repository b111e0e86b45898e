//! The event store: append-only streams per aggregate, written with their outbox rows,
//! snapshots and idempotency records in one transaction.

use async_trait::async_trait;
use serde_json::Value;

use crate::data::event_log::StoredEvent;
use crate::data::message::OutboxMessage;
use crate::ports::store_error::StoreError;

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
    /// The first request's fingerprint (`commands::fingerprint`), so a retry that differs is
    /// refused; `None` for keys recorded before fingerprints were, which any retry of the same
    /// command and target matches.
    pub request_fingerprint: Option<String>,
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
    pub events: Vec<StoredEvent>,
    /// One outbox row per event.
    pub outbox: Vec<OutboxMessage>,
    /// A snapshot to store, when the snapshot interval was crossed.
    pub snapshot: Option<Snapshot>,
    /// The idempotency record, when the client sent a key.
    pub idempotency: Option<IdempotencyRecord>,
    /// The pseudonyms of the keys the events were sealed under: the append is refused
    /// ([`StoreError::SubjectErased`]) unless every one still exists, so nothing is stored
    /// under a key an erasure destroyed while this process held it.
    pub sealed_under: Vec<String>,
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
