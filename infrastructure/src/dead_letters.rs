//! Dead letters in Postgres (`dead_letters`): what consumer groups set aside, with who sent
//! what back and when.

use async_trait::async_trait;
use chronicle_application::ports::dead_letters::{DeadLetter, DeadLetterStore, RejectedMessage};
use chronicle_application::ports::page::Page;
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::db::store_error;

/// The dead letters on `pool`.
#[derive(Clone)]
pub struct PgDeadLetters {
    pool: PgPool,
}

impl PgDeadLetters {
    /// Over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const COLUMNS: &str = "id, consumer_group, original_topic, original_partition, original_offset,
    key, header_names, header_values, payload, reason, attempts, dead_lettered_at, redriven_at,
    redriven_by";

fn dead_letter(row: &PgRow) -> DeadLetter {
    let names: Vec<String> = row.get("header_names");
    let values: Vec<Option<Vec<u8>>> = row.get("header_values");
    let redriven_at: Option<DateTime<Utc>> = row.get("redriven_at");
    let redriven_by: Option<String> = row.get("redriven_by");
    DeadLetter {
        id: row.get("id"),
        message: RejectedMessage {
            group: row.get("consumer_group"),
            original_topic: row.get("original_topic"),
            original_partition: row.get("original_partition"),
            original_offset: row.get("original_offset"),
            key: row.get("key"),
            headers: names.into_iter().zip(values).collect(),
            payload: row.get("payload"),
            reason: row.get("reason"),
            attempts: row.get::<i32, _>("attempts").max(0) as u32,
            redrive_of: None,
        },
        dead_lettered_at: row.get("dead_lettered_at"),
        redriven: redriven_at.zip(redriven_by),
    }
}

#[async_trait]
impl DeadLetterStore for PgDeadLetters {
    async fn record(&self, message: RejectedMessage) -> Result<i64, StoreError> {
        if let Some(id) = message.redrive_of {
            // Set aside again after a redrive: the same entry, its attempts counted on.
            let updated: Option<i64> = sqlx::query_scalar(
                "UPDATE dead_letters SET reason = $2, attempts = attempts + $3,
                        dead_lettered_at = now()
                 WHERE id = $1 RETURNING id",
            )
            .bind(id)
            .bind(&message.reason)
            .bind(message.attempts as i32)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
            if let Some(id) = updated {
                return Ok(id);
            }
        }
        let (names, values): (Vec<String>, Vec<Option<Vec<u8>>>) =
            message.headers.iter().cloned().unzip();
        sqlx::query_scalar(
            "INSERT INTO dead_letters (consumer_group, original_topic, original_partition,
                 original_offset, key, header_names, header_values, payload, reason, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (consumer_group, original_topic, original_partition, original_offset)
             DO UPDATE SET reason = EXCLUDED.reason
             RETURNING id",
        )
        .bind(&message.group)
        .bind(&message.original_topic)
        .bind(message.original_partition)
        .bind(message.original_offset)
        .bind(&message.key)
        .bind(&names)
        .bind(&values)
        .bind(&message.payload)
        .bind(&message.reason)
        .bind(message.attempts as i32)
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn list(
        &self,
        group: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<DeadLetter>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dead_letters
             WHERE consumer_group = $1 AND discarded_at IS NULL AND id > $2
             ORDER BY id LIMIT $3"
        ))
        .bind(group)
        .bind(after.unwrap_or(0))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(Page::of_one_extra(
            rows.iter().map(dead_letter).collect(),
            limit,
        ))
    }

    async fn pending(
        &self,
        group: &str,
        ids: Option<&[i64]>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dead_letters
             WHERE consumer_group = $1 AND discarded_at IS NULL
               AND (redriven_at IS NULL OR dead_lettered_at > redriven_at)
               AND ($2::bigint[] IS NULL OR id = ANY($2))
             ORDER BY id"
        ))
        .bind(group)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.iter().map(dead_letter).collect())
    }

    async fn mark_redriven(&self, ids: &[i64], actor: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE dead_letters SET redriven_at = clock_timestamp(), redriven_by = $2
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(actor)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn unmark_redriven(&self, ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE dead_letters SET redriven_at = NULL, redriven_by = NULL WHERE id = ANY($1)",
        )
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn discard(&self, group: &str, ids: &[i64], actor: &str) -> Result<u64, StoreError> {
        let discarded = sqlx::query(
            "UPDATE dead_letters SET discarded_at = now(), discarded_by = $3
             WHERE consumer_group = $1 AND id = ANY($2) AND discarded_at IS NULL",
        )
        .bind(group)
        .bind(ids)
        .bind(actor)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(discarded.rows_affected())
    }
}
