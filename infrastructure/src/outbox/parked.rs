//! The parked outbox records, in Postgres: `outbox` rows with `parked_at` set and not
//! published, read with their partial index (`outbox_parked_idx`).

use async_trait::async_trait;
use chronicle_application::ports::page::Page;
use chronicle_application::ports::parked_events::{ParkedEvent, ParkedEvents};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::signal::OUTBOX_CHANNEL;
use crate::db::store_error;

/// Parked records on `pool`.
#[derive(Clone)]
pub struct PgParkedEvents {
    pool: PgPool,
}

impl PgParkedEvents {
    /// Over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

type ParkedRow = (String, String, Uuid, i64, Option<String>, DateTime<Utc>);

#[async_trait]
impl ParkedEvents for PgParkedEvents {
    async fn count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(count.max(0) as u64)
    }

    async fn list(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Page<ParkedEvent>, StoreError> {
        // The aggregate's type and the event's sequence are the envelope's own fields.
        let rows: Vec<ParkedRow> = sqlx::query_as(
            "SELECT payload->>'aggregateType', key, event_id, (payload->>'sequence')::bigint,
                    last_error, parked_at
             FROM outbox
             WHERE parked_at IS NOT NULL AND published_at IS NULL
               AND id > coalesce((SELECT id FROM outbox WHERE event_id = $1), 0)
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let parked = rows
            .into_iter()
            .map(
                |(aggregate_type, aggregate_id, event_id, sequence, error, parked_at)| {
                    ParkedEvent {
                        aggregate_type,
                        aggregate_id,
                        event_id,
                        sequence,
                        error: error.unwrap_or_default(),
                        parked_at,
                    }
                },
            )
            .collect();
        Ok(Page::of_one_extra(parked, limit))
    }

    async fn retry(&self, aggregate_id: Option<Uuid>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // Attempts start over, so a record refused again is parked again only after as many
        // refusals as the first time.
        let unparked = sqlx::query(
            "UPDATE outbox SET parked_at = NULL, attempts = 0
             WHERE parked_at IS NOT NULL AND published_at IS NULL
               AND ($1::text IS NULL OR key = $1)",
        )
        .bind(aggregate_id.map(|id| id.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .rows_affected();
        if unparked > 0 {
            // Delivered at commit: the active relay, in whichever process, reads at once.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(OUTBOX_CHANNEL)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(unparked)
    }
}
