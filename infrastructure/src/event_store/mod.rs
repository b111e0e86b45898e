//! The Postgres event store: events, outbox rows, snapshot and idempotency record written by a
//! single statement, so a command costs one round trip to append and is atomic by construction.
//! With group commit (`CHRONICLE_GROUP_COMMIT`, on by default), concurrent commands on different
//! aggregates share that round trip and its commit ([`group_commit`]); a command alone goes at once, by the same statement.
//! The statement sends no `NOTIFY` (that would serialise every commit of the cluster): after the
//! commit the store raises the in-process [`OutboxSignal`] instead (see `outbox::signal`).

pub(crate) mod append;
mod group_commit;

use async_trait::async_trait;
use chronicle_application::data::event_log::StoredEvent;
use chronicle_application::ports::event_store::{
    AppendBatch, EventStore, IdempotencyRecord, LoadedStream, Snapshot,
};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use self::append::{append_alone, store_error};
use self::group_commit::GroupCommit;
use crate::outbox::signal::OutboxSignal;

/// The event store on a Postgres pool.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    appended: OutboxSignal,
    /// Where appends go when they are committed in groups.
    group: Option<GroupCommit>,
}

impl PgEventStore {
    /// A store on `pool` that appends each command alone and raises `appended` after every
    /// committed append.
    pub fn new(pool: PgPool, appended: OutboxSignal) -> Self {
        Self {
            pool,
            appended,
            group: None,
        }
    }

    /// A store that appends concurrent commands on different aggregates in groups
    /// (`CHRONICLE_GROUP_COMMIT`), each judged on its own ([`group_commit`]).
    pub fn with_group_commit(pool: PgPool, appended: OutboxSignal) -> Self {
        Self {
            group: Some(GroupCommit::new(pool.clone(), appended.clone())),
            pool,
            appended,
        }
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<LoadedStream, StoreError> {
        let snapshot = sqlx::query!(
            "SELECT payload, last_sequence FROM snapshots
             WHERE aggregate_type = $1 AND aggregate_id = $2
             ORDER BY last_sequence DESC LIMIT 1",
            aggregate_type,
            aggregate_id,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(|row| Snapshot {
            payload: row.payload,
            last_sequence: row.last_sequence as u64,
        });
        let from = snapshot.as_ref().map_or(0, |s| s.last_sequence as i64);
        let events = sqlx::query_as!(
            EventRow,
            "SELECT event_id, aggregate_type, aggregate_id, sequence, event_type, event_version,
                    payload, metadata, recorded_at, hash, previous_hash
             FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3
             ORDER BY sequence",
            aggregate_type,
            aggregate_id,
            from,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(StoredEvent::from)
        .collect();
        Ok(LoadedStream { snapshot, events })
    }

    async fn append(&self, batch: AppendBatch) -> Result<(), StoreError> {
        if let Some(group) = &self.group {
            return group.append(batch).await;
        }
        append_alone(&self.pool, &batch).await?;
        self.appended.appended();
        Ok(())
    }

    async fn find_idempotent(
        &self,
        actor_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = sqlx::query!(
            "SELECT command, aggregate_id, version, request_fingerprint FROM idempotency_keys
             WHERE actor_id = $1 AND key = $2",
            actor_id,
            key,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.map(|row| IdempotencyRecord {
            actor_id: actor_id.to_owned(),
            key: key.to_owned(),
            command: row.command,
            aggregate_id: row.aggregate_id,
            version: row.version as u64,
            request_fingerprint: row.request_fingerprint,
        }))
    }
}

/// An `events` row as every reader of stored events selects it (`query_as!` maps the columns
/// of the statement to these fields by name, checked at compile time).
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub(crate) event_id: Uuid,
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) sequence: i64,
    pub(crate) event_type: String,
    pub(crate) event_version: String,
    pub(crate) payload: Value,
    pub(crate) metadata: Value,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) hash: String,
    pub(crate) previous_hash: String,
}

/// An `events` row with its global position, as the audit trail and an erasure's plan select
/// it.
#[derive(sqlx::FromRow)]
pub(crate) struct PositionedEventRow {
    pub(crate) position: i64,
    pub(crate) event_id: Uuid,
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) sequence: i64,
    pub(crate) event_type: String,
    pub(crate) event_version: String,
    pub(crate) payload: Value,
    pub(crate) metadata: Value,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) hash: String,
    pub(crate) previous_hash: String,
}

impl PositionedEventRow {
    /// Its position, and its event.
    pub(crate) fn split(self) -> (i64, StoredEvent) {
        let event = EventRow {
            event_id: self.event_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
            hash: self.hash,
            previous_hash: self.previous_hash,
        };
        (self.position, event.into())
    }
}

impl From<EventRow> for StoredEvent {
    fn from(row: EventRow) -> Self {
        Self {
            event_id: row.event_id,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence.max(0) as u64,
            event_type: row.event_type,
            event_version: row.event_version,
            payload: row.payload,
            metadata: row.metadata,
            recorded_at: row.recorded_at,
            hash: row.hash,
            previous_hash: row.previous_hash,
        }
    }
}
