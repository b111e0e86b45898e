//! The Postgres event store: events, outbox rows, snapshot and idempotency record written by a
//! single statement, so a command costs one round trip to append and is atomic by construction.
//! The statement sends no `NOTIFY` (that would serialise every commit of the cluster): after the
//! commit the store raises the in-process [`OutboxSignal`] instead (see `outbox::signal`).

use async_trait::async_trait;
use chronicle_application::data::event_log::StoredEvent;
use chronicle_application::ports::event_store::{
    AppendBatch, EventStore, IdempotencyRecord, LoadedStream, Snapshot,
};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::outbox::signal::OutboxSignal;

/// The event store on a Postgres pool.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    appended: OutboxSignal,
}

impl PgEventStore {
    /// A store on `pool` that raises `appended` after every committed append.
    pub fn new(pool: PgPool, appended: OutboxSignal) -> Self {
        Self { pool, appended }
    }
}

/// Maps driver errors to store errors: a taken sequence is a concurrency conflict, a taken
/// idempotency key a concurrent retry; anything else is a backend failure.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        match db.constraint() {
            Some("events_pkey") => return StoreError::Conflict,
            Some("idempotency_keys_pkey") => return StoreError::IdempotencyKeyTaken,
            _ => {}
        }
    }
    crate::db::store_error(error)
}

/// The whole append in one statement: events, outbox rows, snapshot, idempotency key. The
/// `guard` writes nothing unless every key the events were sealed under still exists (`$24`):
/// an erasure that destroyed one while this process held it in its cache wins, and the
/// command is decided again under the keys as they are now.
const APPEND_SQL: &str = r#"
WITH guard AS (
    SELECT (SELECT count(*) FROM subject_keys WHERE pseudonym = ANY($24::text[]))
           = cardinality($24::text[]) AS keys_live
), new_events AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, event_id, recorded_at, hash, previous_hash, team_id)
    SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata,
           e.event_id, e.recorded_at, e.hash, e.previous_hash, $22
    FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::uuid[],
                $9::timestamptz[], $10::text[], $11::text[])
         AS e(sequence, event_type, event_version, payload, metadata, event_id, recorded_at,
              hash, previous_hash)
    WHERE (SELECT keys_live FROM guard)
    ORDER BY e.sequence
    RETURNING 1
), new_outbox AS (
    INSERT INTO outbox (event_id, topic, key, headers, payload)
    SELECT o.event_id, o.topic, $2, o.headers, o.payload
    FROM UNNEST($8::uuid[], $12::text[], $13::jsonb[], $14::jsonb[])
         WITH ORDINALITY AS o(event_id, topic, headers, payload, n)
    WHERE (SELECT keys_live FROM guard)
    ORDER BY o.n
    RETURNING 1
), new_snapshot AS (
    INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
    SELECT $1, $2, $15, $16, $17 WHERE $15::bigint IS NOT NULL AND (SELECT keys_live FROM guard)
    RETURNING 1
), old_snapshots AS (
    DELETE FROM snapshots
    WHERE $15::bigint IS NOT NULL AND aggregate_type = $1 AND aggregate_id = $2
      AND last_sequence < $15 AND (SELECT keys_live FROM guard)
    RETURNING 1
), new_key AS (
    INSERT INTO idempotency_keys (actor_id, key, command, aggregate_id, version,
                                  request_fingerprint)
    SELECT $18, $19, $20, $2, $21, $23 WHERE $19::text IS NOT NULL AND (SELECT keys_live FROM guard)
    RETURNING 1
)
SELECT (SELECT keys_live FROM guard) AS keys_live,
       (SELECT count(*) FROM new_events) AS events,
       (SELECT count(*) FROM new_outbox) AS outbox,
       (SELECT count(*) FROM new_snapshot) + (SELECT count(*) FROM old_snapshots)
         + (SELECT count(*) FROM new_key) AS other
"#;

#[async_trait]
impl EventStore for PgEventStore {
    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<LoadedStream, StoreError> {
        let snapshot = sqlx::query(
            "SELECT payload, last_sequence FROM snapshots
             WHERE aggregate_type = $1 AND aggregate_id = $2
             ORDER BY last_sequence DESC LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(|row| Snapshot {
            payload: row.get("payload"),
            last_sequence: row.get::<i64, _>("last_sequence") as u64,
        });
        let from = snapshot.as_ref().map_or(0, |s| s.last_sequence as i64);
        let events = sqlx::query(
            "SELECT event_id, aggregate_type, aggregate_id, sequence, event_type, event_version,
                    payload, metadata, recorded_at, hash, previous_hash
             FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3
             ORDER BY sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(from)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(stored_event)
        .collect();
        Ok(LoadedStream { snapshot, events })
    }

    async fn append(&self, batch: AppendBatch) -> Result<(), StoreError> {
        let events = &batch.events;
        let snapshot = batch.snapshot.as_ref();
        let idempotency: Option<&IdempotencyRecord> = batch.idempotency.as_ref();
        let written = sqlx::query(APPEND_SQL)
            .bind(&batch.aggregate_type)
            .bind(&batch.aggregate_id)
            .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.event_type.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|e| e.event_version.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|e| e.payload.clone())
                    .collect::<Vec<Value>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|e| e.metadata.clone())
                    .collect::<Vec<Value>>(),
            )
            .bind(events.iter().map(|e| e.event_id).collect::<Vec<Uuid>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.recorded_at)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .bind(events.iter().map(|e| e.hash.clone()).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.previous_hash.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                batch
                    .outbox
                    .iter()
                    .map(|o| o.topic.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                batch
                    .outbox
                    .iter()
                    .map(|o| headers_json(&o.headers))
                    .collect::<Vec<Value>>(),
            )
            .bind(
                batch
                    .outbox
                    .iter()
                    .map(|o| o.payload.clone())
                    .collect::<Vec<Value>>(),
            )
            .bind(snapshot.map(|s| s.last_sequence as i64))
            .bind(snapshot.map(|s| s.last_sequence as i64))
            .bind(snapshot.map(|s| s.payload.clone()))
            .bind(idempotency.map(|i| i.actor_id.clone()))
            .bind(idempotency.map(|i| i.key.clone()))
            .bind(idempotency.map(|i| i.command.clone()))
            .bind(idempotency.map(|i| i.version as i64))
            .bind(&batch.team_id)
            .bind(idempotency.and_then(|i| i.request_fingerprint.clone()))
            .bind(&batch.sealed_under)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        if !written.get::<bool, _>("keys_live") {
            return Err(StoreError::SubjectErased(batch.sealed_under));
        }
        self.appended.appended();
        Ok(())
    }

    async fn find_idempotent(
        &self,
        actor_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT command, aggregate_id, version, request_fingerprint FROM idempotency_keys
             WHERE actor_id = $1 AND key = $2",
        )
        .bind(actor_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.map(|row| IdempotencyRecord {
            actor_id: actor_id.to_owned(),
            key: key.to_owned(),
            command: row.get("command"),
            aggregate_id: row.get("aggregate_id"),
            version: row.get::<i64, _>("version") as u64,
            request_fingerprint: row.get("request_fingerprint"),
        }))
    }
}

/// Headers as a JSON array of `[name, value]` pairs: order-preserving, unlike an object.
pub(crate) fn headers_json(headers: &[(String, String)]) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|(k, v)| Value::Array(vec![Value::String(k.clone()), Value::String(v.clone())]))
            .collect(),
    )
}

/// Reads an event row (the columns of `events` by name).
pub(crate) fn stored_event(row: &sqlx::postgres::PgRow) -> StoredEvent {
    StoredEvent {
        event_id: row.get("event_id"),
        aggregate_type: row.get("aggregate_type"),
        aggregate_id: row.get("aggregate_id"),
        sequence: row.get::<i64, _>("sequence") as u64,
        event_type: row.get("event_type"),
        event_version: row.get("event_version"),
        payload: row.get("payload"),
        metadata: row.get("metadata"),
        recorded_at: row.get("recorded_at"),
        hash: row.get("hash"),
        previous_hash: row.get("previous_hash"),
    }
}
