//! Projection failures in Postgres (`projection_failures`), in the store's order for a retry.
//!
//! A failure's event is read from `events`, the truth, not from the failure's own `event`
//! column: the live projector and a rebuild record different shapes there (a rebuild keeps
//! only what it had decoded), and a retry must apply the event exactly as stored.

use async_trait::async_trait;
use chronicle_application::event_log::StoredEvent;
use chronicle_application::ports::page::Page;
use chronicle_application::ports::projection_failures::{
    ProjectionFailure, ProjectionFailureStore,
};
use chronicle_application::ports::store_error::StoreError;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::db::store_error;
use crate::event_store::stored_event;

/// The projection failures on `pool`.
#[derive(Clone)]
pub struct PgProjectionFailures {
    pool: PgPool,
}

impl PgProjectionFailures {
    /// Over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A failure and its event's row (whose own columns keep their names).
const COLUMNS: &str = "f.id, f.reason, f.attempts, f.first_failed_at, f.failed_at, e.event_id,
    e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload,
    e.metadata, e.recorded_at, e.hash, e.previous_hash";

/// Failures joined to their events. An event no longer in the store (only tampering removes
/// one; `audit verify` reports it) has nothing to retry and is not listed.
const FROM: &str = "projection_failures f JOIN events e ON e.event_id = f.event_id";

fn failure(row: &PgRow) -> Result<ProjectionFailure<StoredEvent>, StoreError> {
    Ok(ProjectionFailure {
        id: row.get("id"),
        event: stored_event(row),
        reason: row.get("reason"),
        attempts: row.get::<i32, _>("attempts").max(0) as u32,
        first_failed_at: row.get("first_failed_at"),
        last_failed_at: row.get("failed_at"),
    })
}

#[async_trait]
impl ProjectionFailureStore for PgProjectionFailures {
    async fn counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT f.projection, count(*) FROM projection_failures f
             JOIN events e ON e.event_id = f.event_id GROUP BY f.projection",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(name, n)| (name, n.max(0) as u64))
            .collect())
    }

    async fn list(
        &self,
        projection: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<ProjectionFailure<StoredEvent>>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {FROM}
             WHERE f.projection = $1 AND f.id > $2 ORDER BY f.id LIMIT $3"
        ))
        .bind(projection)
        .bind(after.unwrap_or(0))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let failures = rows.iter().map(failure).collect::<Result<_, _>>()?;
        Ok(Page::of_one_extra(failures, limit))
    }

    async fn all(
        &self,
        projection: &str,
    ) -> Result<Vec<ProjectionFailure<StoredEvent>>, StoreError> {
        // Store order: the events' positions.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE f.projection = $1 ORDER BY e.position"
        ))
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(failure).collect()
    }

    async fn resolve(&self, projection: &str, seen: &[(Uuid, u32)]) -> Result<u64, StoreError> {
        let (ids, attempts): (Vec<Uuid>, Vec<i32>) =
            seen.iter().map(|(id, n)| (*id, *n as i32)).unzip();
        let removed = sqlx::query(
            "DELETE FROM projection_failures f
             USING unnest($2::uuid[], $3::int[]) AS s(event_id, attempts)
             WHERE f.projection = $1 AND f.event_id = s.event_id AND f.attempts = s.attempts",
        )
        .bind(projection)
        .bind(&ids)
        .bind(&attempts)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(removed.rows_affected())
    }
}
