//! Projection failures in Postgres (`projection_failures`), listed in the order they were
//! recorded and retried in the store's order.
//!
//! A failure's event is read from `events`, the truth, not from the failure's own `event`
//! column: the live projector and a rebuild record different shapes there (a rebuild keeps
//! only what it had decoded), and a retry must apply the event exactly as stored.

use chronicle_application::ports::held::{HeldContent, HeldMessage};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::store_error;
use crate::event_store::EventRow;

/// A failure and its event's row. An event no longer in the store (only tampering removes
/// one; `audit verify` reports it) has nothing to retry and is not listed.
struct FailureRow {
    failure_id: i64,
    projection: String,
    reason: String,
    attempts: i32,
    first_failed_at: DateTime<Utc>,
    failed_at: DateTime<Utc>,
    event_id: Uuid,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    recorded_at: DateTime<Utc>,
    hash: String,
    previous_hash: String,
}

impl From<FailureRow> for HeldMessage {
    fn from(row: FailureRow) -> Self {
        Self {
            id: row.failure_id,
            holder: row.projection,
            content: HeldContent::Event(
                EventRow {
                    event_id: row.event_id,
                    aggregate_type: row.aggregate_type,
                    aggregate_id: row.aggregate_id,
                    sequence: row.sequence,
                    event_type: row.event_type,
                    event_version: row.event_version,
                    payload: row.payload,
                    metadata: row.metadata,
                    recorded_at: row.recorded_at,
                    hash: row.hash,
                    previous_hash: row.previous_hash,
                }
                .into(),
            ),
            reason: row.reason,
            attempts: row.attempts.max(0) as u32,
            first_held_at: row.first_failed_at,
            last_held_at: row.failed_at,
            retried: None,
        }
    }
}

pub(super) async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT f.projection, count(*) AS "count!" FROM projection_failures f
           JOIN events e ON e.event_id = f.event_id GROUP BY f.projection"#
    )
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|row| (row.projection, row.count))
        .collect())
}

/// Up to `limit` (all when `None`) of `projection`'s failures after `after`, of `ids` when
/// given; in the order they were recorded, or in store order (the events' positions, as a
/// retry applies them) when `store_order`.
pub(super) async fn select(
    pool: &PgPool,
    projection: &str,
    after: i64,
    ids: Option<&[i64]>,
    store_order: bool,
    limit: Option<usize>,
) -> Result<Vec<HeldMessage>, StoreError> {
    // Failure lists are short: one statement, ordered either way, checked whole.
    let rows = sqlx::query_as!(
        FailureRow,
        r#"SELECT f.id AS failure_id, f.projection, f.reason, f.attempts, f.first_failed_at,
                  f.failed_at, e.event_id, e.aggregate_type, e.aggregate_id, e.sequence,
                  e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at, e.hash,
                  e.previous_hash
           FROM projection_failures f JOIN events e ON e.event_id = f.event_id
           WHERE f.projection = $1 AND f.id > $2 AND ($3::bigint[] IS NULL OR f.id = ANY($3))
           ORDER BY CASE WHEN $4 THEN e.position ELSE f.id END LIMIT $5"#,
        projection,
        after,
        ids,
        store_order,
        limit.map(|n| n as i64),
    )
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(rows.into_iter().map(HeldMessage::from).collect())
}

/// Removes `projection`'s failures of `(id, attempts)` whose attempts are still those.
pub(super) async fn release(
    pool: &PgPool,
    projection: &str,
    seen: &[(i64, u32)],
) -> Result<u64, StoreError> {
    let (ids, attempts): (Vec<i64>, Vec<i32>) = seen.iter().map(|(id, n)| (*id, *n as i32)).unzip();
    let removed = sqlx::query!(
        "DELETE FROM projection_failures f
         USING unnest($2::bigint[], $3::int[]) AS s(id, attempts)
         WHERE f.projection = $1 AND f.id = s.id AND f.attempts = s.attempts",
        projection,
        &ids,
        &attempts,
    )
    .execute(pool)
    .await
    .map_err(store_error)?;
    Ok(removed.rows_affected())
}

/// Removes `ids` of `projection`: the read model goes on without those events until a
/// rebuild.
pub(super) async fn discard(
    pool: &PgPool,
    projection: &str,
    ids: &[i64],
) -> Result<u64, StoreError> {
    let removed = sqlx::query!(
        "DELETE FROM projection_failures WHERE projection = $1 AND id = ANY($2)",
        projection,
        ids,
    )
    .execute(pool)
    .await
    .map_err(store_error)?;
    Ok(removed.rows_affected())
}
