//! Projection failures in Postgres (`projection_failures`), in the store's order for a retry.

use async_trait::async_trait;
use chronicle_application::message::EventMessage;
use chronicle_application::ports::page::Page;
use chronicle_application::ports::projection_failures::{
    ProjectionFailure, ProjectionFailureStore,
};
use chronicle_application::ports::store_error::StoreError;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::db::store_error;

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

const COLUMNS: &str = "f.id, f.event, f.reason, f.attempts, f.first_failed_at, f.failed_at";

fn failure(row: &PgRow) -> Result<ProjectionFailure, StoreError> {
    let event: EventMessage = serde_json::from_value(row.get("event"))
        .map_err(|e| StoreError::corrupt(format!("a stored projection failure's event: {e}")))?;
    Ok(ProjectionFailure {
        id: row.get("id"),
        event,
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
            "SELECT projection, count(*) FROM projection_failures GROUP BY projection",
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
    ) -> Result<Page<ProjectionFailure>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM projection_failures f
             WHERE f.projection = $1 AND f.id > $2 ORDER BY f.id LIMIT $3"
        ))
        .bind(projection)
        .bind(after.unwrap_or(0))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let has_next_page = rows.len() > limit;
        Ok(Page {
            items: rows
                .iter()
                .take(limit)
                .map(failure)
                .collect::<Result<_, _>>()?,
            has_next_page,
        })
    }

    async fn all(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError> {
        // Store order: the events' positions (an event no longer in the store, last).
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM projection_failures f
             LEFT JOIN events e ON e.event_id = f.event_id
             WHERE f.projection = $1
             ORDER BY e.position NULLS LAST, f.id"
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
