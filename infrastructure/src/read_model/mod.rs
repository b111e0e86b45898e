//! Read-model tables in Postgres.

pub mod reports;
pub mod tasks;

use chronicle_application::ports::StoreError;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

pub(crate) fn backend(error: sqlx::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

/// Records an event a projection could not apply (`projection_failures`), shared by every
/// read model so operators find all failures in one place.
pub(crate) async fn record_failure(
    pool: &PgPool,
    projection: &str,
    event_id: Uuid,
    reason: &str,
    event: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO projection_failures (projection, event_id, reason, event)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (projection, event_id) DO UPDATE SET reason = EXCLUDED.reason,
            failed_at = now()",
    )
    .bind(projection)
    .bind(event_id)
    .bind(reason)
    .bind(event)
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(())
}
