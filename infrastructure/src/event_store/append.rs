//! One command's append by the single statement of `sql/append.sql`, and how the store's
//! statements turn driver errors into store errors (a taken sequence, a taken key).

use chronicle_application::ports::event_store::{AppendBatch, IdempotencyRecord};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

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

/// Appends one command alone, by the single statement of `sql/append.sql`.
/// On `executor`: the pool, or a connection a writer keeps (`db::kept`).
pub(crate) async fn append_alone<'c, E>(executor: E, batch: &AppendBatch) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let events = &batch.events;
    let snapshot = batch.snapshot.as_ref();
    let idempotency: Option<&IdempotencyRecord> = batch.idempotency.as_ref();
    let last_sequence = snapshot.map(|s| s.last_sequence as i64);
    // Borrowed from the batch, which outlives the statement: nothing is copied to be encoded.
    // The macro's compile-time check knows the borrowed forms only as owned types, so the
    // `as` overrides skip it for those parameters; every lone append runs the statement.
    let written = sqlx::query_file!(
        "sql/append.sql",
        &batch.aggregate_type,
        &batch.aggregate_id,
        &events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>(),
        &events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>() as &[&str],
        &events
            .iter()
            .map(|e| e.event_version.as_str())
            .collect::<Vec<_>>() as &[&str],
        &events.iter().map(|e| &e.payload).collect::<Vec<_>>() as &[&Value],
        &events.iter().map(|e| &e.metadata).collect::<Vec<_>>() as &[&Value],
        &events.iter().map(|e| e.event_id).collect::<Vec<Uuid>>(),
        &events
            .iter()
            .map(|e| e.recorded_at)
            .collect::<Vec<DateTime<Utc>>>(),
        &events.iter().map(|e| e.hash.as_str()).collect::<Vec<_>>() as &[&str],
        &events
            .iter()
            .map(|e| e.previous_hash.as_str())
            .collect::<Vec<_>>() as &[&str],
        &batch
            .outbox
            .iter()
            .map(|o| o.topic.as_str())
            .collect::<Vec<_>>() as &[&str],
        &batch
            .outbox
            .iter()
            .map(|o| outbox_headers(&o.headers))
            .collect::<Vec<_>>() as &[OutboxHeaders<'_>],
        &batch
            .outbox
            .iter()
            .map(|o| outbox_payload(&o.payload))
            .collect::<Vec<_>>() as &[OutboxPayload<'_>],
        last_sequence,
        last_sequence,
        snapshot.map(|s| &s.payload) as Option<&Value>,
        idempotency.map(|i| i.actor_id.as_str()),
        idempotency.map(|i| i.key.as_str()),
        idempotency.map(|i| i.command.as_str()),
        idempotency.map(|i| i.version as i64),
        batch.team_id.as_deref(),
        idempotency.and_then(|i| i.request_fingerprint.as_deref()),
        &batch.sealed_under,
    )
    .fetch_one(executor)
    .await
    .map_err(store_error)?;
    if written.keys_live != Some(true) {
        return Err(StoreError::SubjectErased(batch.sealed_under.clone()));
    }
    Ok(())
}

/// An outbox row's headers as its `headers` column holds them: a JSON array of `[name, value]`
/// pairs (order-preserving, unlike an object), encoded straight from the pairs.
pub(crate) type OutboxHeaders<'a> = sqlx::types::Json<&'a [(String, String)]>;

/// [`OutboxHeaders`] of `headers`.
pub(crate) fn outbox_headers(headers: &[(String, String)]) -> OutboxHeaders<'_> {
    sqlx::types::Json(headers)
}

/// An outbox row's payload as its `payload` column takes it: the envelope's text, already
/// encoded (`OutboxMessage::payload`), written as it is.
pub(crate) type OutboxPayload<'a> = sqlx::types::Json<&'a RawValue>;

/// [`OutboxPayload`] of `payload`.
pub(crate) fn outbox_payload(payload: &RawValue) -> OutboxPayload<'_> {
    sqlx::types::Json(payload)
}
