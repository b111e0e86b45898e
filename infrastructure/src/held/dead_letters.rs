//! Dead letters in Postgres (`dead_letters`): what consumer groups set aside, with who sent
//! what back and when. Consumers record them through [`PgDeadLetters`]; operators reach them as
//! held messages.

use async_trait::async_trait;
use chronicle_application::ports::dead_letters::{DeadLetterStore, RejectedMessage};
use chronicle_application::ports::held::{HeldContent, HeldMessage};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::db::store_error;

/// Where the consumers of `pool`'s service record their dead letters.
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

#[async_trait]
impl DeadLetterStore for PgDeadLetters {
    async fn record(&self, message: RejectedMessage) -> Result<i64, StoreError> {
        if let Some(id) = message.redrive_of {
            // Set aside again after a redrive: the same entry, its attempts counted on.
            let updated = sqlx::query_scalar!(
                "UPDATE dead_letters SET reason = $2, attempts = attempts + $3,
                        dead_lettered_at = now()
                 WHERE id = $1 RETURNING id",
                id,
                message.reason,
                message.attempts as i32,
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
            if let Some(id) = updated {
                return Ok(id);
            }
        }
        let (names, values): (Vec<String>, Vec<Option<Vec<u8>>>) =
            message.headers.iter().cloned().unzip();
        sqlx::query_scalar!(
            r#"INSERT INTO dead_letters (consumer_group, original_topic, original_partition,
                 original_offset, key, header_names, header_values, payload, reason, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (consumer_group, original_topic, original_partition, original_offset)
             DO UPDATE SET reason = EXCLUDED.reason
             RETURNING id"#,
            message.group,
            message.original_topic,
            message.original_partition,
            message.original_offset,
            message.key,
            &names,
            &values as &[Option<Vec<u8>>],
            message.payload,
            message.reason,
            message.attempts as i32,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)
    }
}

/// A `dead_letters` row as operators see it.
struct DeadLetterRow {
    id: i64,
    consumer_group: String,
    original_topic: String,
    original_partition: i32,
    original_offset: i64,
    key: Option<Vec<u8>>,
    header_names: Vec<String>,
    header_values: Vec<Option<Vec<u8>>>,
    payload: Option<Vec<u8>>,
    reason: String,
    attempts: i32,
    dead_lettered_at: DateTime<Utc>,
    redriven_at: Option<DateTime<Utc>>,
    redriven_by: Option<String>,
}

impl From<DeadLetterRow> for HeldMessage {
    fn from(row: DeadLetterRow) -> Self {
        let attempts = row.attempts.max(0) as u32;
        Self {
            id: row.id,
            holder: row.consumer_group.clone(),
            content: HeldContent::Message(RejectedMessage {
                group: row.consumer_group,
                original_topic: row.original_topic,
                original_partition: row.original_partition,
                original_offset: row.original_offset,
                key: row.key,
                headers: row
                    .header_names
                    .into_iter()
                    .zip(row.header_values)
                    .collect(),
                payload: row.payload,
                reason: row.reason.clone(),
                attempts,
                redrive_of: None,
            }),
            reason: row.reason,
            attempts,
            first_held_at: row.dead_lettered_at,
            last_held_at: row.dead_lettered_at,
            retried: row.redriven_at.zip(row.redriven_by),
        }
    }
}

pub(super) async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT consumer_group, count(*) AS "count!" FROM dead_letters
           WHERE discarded_at IS NULL GROUP BY consumer_group"#
    )
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|row| (row.consumer_group, row.count))
        .collect())
}

/// Up to `limit` (all when `None`) of `group`'s entries after `after`, in id order; of
/// `ids` when given; only those waiting for a redrive (never redriven, or set aside again
/// since) when `pending`.
pub(super) async fn select(
    pool: &PgPool,
    group: &str,
    after: i64,
    ids: Option<&[i64]>,
    pending: bool,
    limit: Option<usize>,
) -> Result<Vec<HeldMessage>, StoreError> {
    let rows = sqlx::query_as!(
        DeadLetterRow,
        r#"SELECT id, consumer_group, original_topic, original_partition, original_offset, key,
                  header_names, header_values AS "header_values: Vec<Option<Vec<u8>>>",
                  payload, reason, attempts, dead_lettered_at, redriven_at, redriven_by
           FROM dead_letters
           WHERE discarded_at IS NULL AND consumer_group = $1 AND id > $2
             AND ($3::bigint[] IS NULL OR id = ANY($3))
             AND (NOT $4 OR redriven_at IS NULL OR dead_lettered_at > redriven_at)
           ORDER BY id LIMIT $5"#,
        group,
        after,
        ids,
        pending,
        limit.map(|n| n as i64),
    )
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(rows.into_iter().map(HeldMessage::from).collect())
}

pub(super) async fn mark_redriven(
    pool: &PgPool,
    ids: &[i64],
    actor: &str,
) -> Result<u64, StoreError> {
    let marked = sqlx::query!(
        "UPDATE dead_letters SET redriven_at = clock_timestamp(), redriven_by = $2
         WHERE id = ANY($1)",
        ids,
        actor,
    )
    .execute(pool)
    .await
    .map_err(store_error)?;
    Ok(marked.rows_affected())
}

pub(super) async fn unmark_redriven(pool: &PgPool, ids: &[i64]) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE dead_letters SET redriven_at = NULL, redriven_by = NULL WHERE id = ANY($1)",
        ids,
    )
    .execute(pool)
    .await
    .map_err(store_error)?;
    Ok(())
}

pub(super) async fn discard(
    pool: &PgPool,
    group: &str,
    ids: &[i64],
    actor: &str,
) -> Result<u64, StoreError> {
    let discarded = sqlx::query!(
        "UPDATE dead_letters SET discarded_at = now(), discarded_by = $3
         WHERE consumer_group = $1 AND id = ANY($2) AND discarded_at IS NULL",
        group,
        ids,
        actor,
    )
    .execute(pool)
    .await
    .map_err(store_error)?;
    Ok(discarded.rows_affected())
}
