//! The outbox backlog, for operators.

use async_trait::async_trait;
use chronicle_application::ports::outbox_monitor::{OutboxBacklog, OutboxMonitor};
use chronicle_application::ports::store_error::StoreError;
use sqlx::PgPool;

use crate::db::store_error;

/// Reads the backlog with the relay's own partial index (`outbox_queue_idx`, which holds
/// exactly those rows), so the cost follows the backlog, not the table. Parked records are not
/// backlog: they wait for an operator, not for the relay, and have a gauge of their own.
#[derive(Clone)]
pub struct PgOutboxMonitor {
    pool: PgPool,
}

impl PgOutboxMonitor {
    /// The monitor on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl OutboxMonitor for PgOutboxMonitor {
    async fn backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let backlog = sqlx::query!(
            r#"SELECT count(*) AS "events!",
                      coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
                        AS "oldest_seconds!"
               FROM outbox WHERE published_at IS NULL AND parked_at IS NULL"#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(OutboxBacklog {
            events: backlog.events.max(0) as u64,
            oldest_seconds: backlog.oldest_seconds.max(0.0),
        })
    }
}
