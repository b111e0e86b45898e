//! Parked outbox records: `outbox` rows with `parked_at` set and not published, read with
//! their partial index (`outbox_parked_idx`). Their id is the outbox row's.

use chronicle_application::held::OUTBOX;
use chronicle_application::ports::held::{HeldContent, HeldMessage};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::store_error;
use crate::outbox::OUTBOX_CHANNEL;

/// A parked row as read: the envelope's own aggregate type and sequence.
struct ParkedRow {
    id: i64,
    aggregate_type: String,
    aggregate_id: String,
    event_id: Uuid,
    sequence: i64,
    attempts: i32,
    last_error: Option<String>,
    parked_at: DateTime<Utc>,
}

impl From<ParkedRow> for HeldMessage {
    fn from(row: ParkedRow) -> Self {
        Self {
            id: row.id,
            holder: OUTBOX.to_owned(),
            content: HeldContent::Outbox {
                aggregate_type: row.aggregate_type,
                aggregate_id: row.aggregate_id,
                event_id: row.event_id,
                sequence: row.sequence,
            },
            reason: row.last_error.unwrap_or_default(),
            attempts: row.attempts.max(0) as u32,
            first_held_at: row.parked_at,
            last_held_at: row.parked_at,
            retried: None,
        }
    }
}

pub(super) async fn count(pool: &PgPool) -> Result<u64, StoreError> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM outbox
           WHERE parked_at IS NOT NULL AND published_at IS NULL"#
    )
    .fetch_one(pool)
    .await
    .map_err(store_error)?;
    Ok(count.max(0) as u64)
}

/// Up to `limit` (all when `None`) parked rows after `after`, of `ids` when given, in
/// outbox order.
pub(super) async fn select(
    pool: &PgPool,
    after: i64,
    ids: Option<&[i64]>,
    limit: Option<usize>,
) -> Result<Vec<HeldMessage>, StoreError> {
    let rows = sqlx::query_as!(
        ParkedRow,
        r#"SELECT id, payload->>'aggregateType' AS "aggregate_type!", key AS aggregate_id,
                  event_id, (payload->>'sequence')::bigint AS "sequence!", attempts, last_error,
                  parked_at AS "parked_at!"
           FROM outbox
           WHERE parked_at IS NOT NULL AND published_at IS NULL
             AND id > $1 AND ($2::bigint[] IS NULL OR id = ANY($2))
           ORDER BY id LIMIT $3"#,
        after,
        ids,
        limit.map(|n| n as i64),
    )
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(rows.into_iter().map(HeldMessage::from).collect())
}

/// Unparks `ids` (every parked row when `None`) and wakes the relay; answers how many were
/// unparked.
pub(super) async fn unpark(pool: &PgPool, ids: Option<&[i64]>) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(store_error)?;
    // Attempts start over, so a record refused again is parked again only after as many
    // refusals as the first time.
    let unparked = sqlx::query!(
        "UPDATE outbox SET parked_at = NULL, attempts = 0
         WHERE parked_at IS NOT NULL AND published_at IS NULL
           AND ($1::bigint[] IS NULL OR id = ANY($1))",
        ids,
    )
    .execute(&mut *tx)
    .await
    .map_err(store_error)?
    .rows_affected();
    if unparked > 0 {
        // Delivered at commit: the active relay, in whichever process, reads at once.
        sqlx::query!("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)?;
    Ok(unparked)
}
