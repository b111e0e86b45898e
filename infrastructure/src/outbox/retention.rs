//! Removes published outbox rows after the retention period, in bounded batches so the delete
//! never holds long locks or bloats the table in one go.

use std::time::Duration;

use sqlx::PgPool;

use crate::InfraError;

/// Rows deleted per statement.
const DELETE_BATCH: i64 = 10_000;

/// Deletes rows published more than `retention` ago; returns how many.
pub(crate) async fn purge_published(pool: &PgPool, retention: Duration) -> Result<u64, InfraError> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox
                 WHERE published_at IS NOT NULL
                   AND published_at < now() - make_interval(secs => $1)
                 ORDER BY published_at LIMIT $2)",
            retention.as_secs_f64(),
            DELETE_BATCH,
        )
        .execute(pool)
        .await
        .map_err(InfraError::db("purge published outbox rows"))?
        .rows_affected();
        total += deleted;
        if deleted < DELETE_BATCH as u64 {
            return Ok(total);
        }
    }
}
