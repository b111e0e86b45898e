//! Read-model tables in Postgres.

pub mod reports;
pub mod tasks;

use chronicle_application::ports::StoreError;
use chronicle_application::queries::Page;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
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

/// One keyset page of `table` in id order after `after`, with the filter's total count.
/// `push_filter` appends ` WHERE ...` (at least ` WHERE TRUE`) so the page and the count apply
/// exactly the same filter.
pub(crate) async fn keyset_page<V>(
    pool: &PgPool,
    table: &str,
    columns: &str,
    push_filter: impl Fn(&mut QueryBuilder<'static, Postgres>),
    first: usize,
    after: Option<Uuid>,
    view_from_row: fn(&PgRow) -> Result<V, StoreError>,
) -> Result<Page<V>, StoreError> {
    let mut page = QueryBuilder::new(format!("SELECT {columns} FROM {table}"));
    push_filter(&mut page);
    if let Some(after) = after {
        page.push(" AND id > ").push_bind(after);
    }
    page.push(" ORDER BY id LIMIT ").push_bind(first as i64 + 1);
    let rows = page.build().fetch_all(pool).await.map_err(backend)?;

    let mut count = QueryBuilder::new(format!("SELECT count(*) FROM {table}"));
    push_filter(&mut count);
    let total: i64 = count.build().fetch_one(pool).await.map_err(backend)?.get(0);

    let has_next_page = rows.len() > first;
    let items = rows
        .iter()
        .take(first)
        .map(view_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        items,
        total_count: total as u64,
        has_next_page,
    })
}
