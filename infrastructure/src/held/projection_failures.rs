//! Projection failures in Postgres (`projection_failures`), listed in the order they were
//! recorded and retried in the store's order.
//!
//! A failure's event is read from `events`, the truth, not from the failure's own `event`
//! column: the live projector and a rebuild record different shapes there (a rebuild keeps
//! only what it had decoded), and a retry must apply the event exactly as stored.

use chronicle_application::ports::held::{HeldContent, HeldMessage};
use chronicle_application::ports::store_error::StoreError;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::db::store_error;
use crate::event_store::stored_event;

/// A failure and its event's row (whose own columns keep their names). An event no longer
/// in the store (only tampering removes one; `audit verify` reports it) has nothing to retry
/// and is not listed.
const SELECT: &str = "SELECT f.id AS failure_id, f.projection, f.reason, f.attempts,
        f.first_failed_at, f.failed_at, e.event_id, e.aggregate_type, e.aggregate_id,
        e.sequence, e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at,
        e.hash, e.previous_hash
    FROM projection_failures f JOIN events e ON e.event_id = f.event_id";

fn held(row: &PgRow) -> HeldMessage {
    HeldMessage {
        id: row.get("failure_id"),
        holder: row.get("projection"),
        content: HeldContent::Event(stored_event(row)),
        reason: row.get("reason"),
        attempts: row.get::<i32, _>("attempts").max(0) as u32,
        first_held_at: row.get("first_failed_at"),
        last_held_at: row.get("failed_at"),
        retried: None,
    }
}

pub(super) async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as(
        "SELECT f.projection, count(*) FROM projection_failures f
         JOIN events e ON e.event_id = f.event_id GROUP BY f.projection",
    )
    .fetch_all(pool)
    .await
    .map_err(store_error)
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
    let order = if store_order { "e.position" } else { "f.id" };
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE f.projection = $1 AND f.id > $2
           AND ($3::bigint[] IS NULL OR f.id = ANY($3))
         ORDER BY {order} LIMIT $4"
    ))
    .bind(projection)
    .bind(after)
    .bind(ids)
    .bind(limit.map(|n| n as i64))
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(rows.iter().map(held).collect())
}

/// Removes `projection`'s failures of `(id, attempts)` whose attempts are still those.
pub(super) async fn release(
    pool: &PgPool,
    projection: &str,
    seen: &[(i64, u32)],
) -> Result<u64, StoreError> {
    let (ids, attempts): (Vec<i64>, Vec<i32>) = seen.iter().map(|(id, n)| (*id, *n as i32)).unzip();
    let removed = sqlx::query(
        "DELETE FROM projection_failures f
         USING unnest($2::bigint[], $3::int[]) AS s(id, attempts)
         WHERE f.projection = $1 AND f.id = s.id AND f.attempts = s.attempts",
    )
    .bind(projection)
    .bind(&ids)
    .bind(&attempts)
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
    let removed =
        sqlx::query("DELETE FROM projection_failures WHERE projection = $1 AND id = ANY($2)")
            .bind(projection)
            .bind(ids)
            .execute(pool)
            .await
            .map_err(store_error)?;
    Ok(removed.rows_affected())
}
