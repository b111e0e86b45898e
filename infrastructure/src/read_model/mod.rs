//! Read-model tables in Postgres: one generic adapter ([`views::PgViews`]) for every table a
//! view describes (`chronicle_application::data::table`), and the statement that keeps a
//! projection's writes out of a rebuild's way.

mod cells;
mod copy;
mod filter;
pub mod report_data;
pub mod views;

use chronicle_application::ports::store_error::StoreError;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Appended to a read model's table name to name its shadow (`tasks__rebuild`); its indexes
/// carry the same suffix until the swap renames them.
pub(crate) const SHADOW_SUFFIX: &str = "__rebuild";

/// The advisory-lock class of rebuild claims (the object is `hashtext(projection name)`). A
/// rebuild holds its projections' locks on a connection of its own for as long as it runs, so
/// a rebuild that died (process killed, connection lost) releases them at once: the live
/// consumer takes the projection back on its next write, and a new rebuild may claim it.
pub(crate) const REBUILD_LOCK_CLASS: i32 = 0x4348_524E;

pub(crate) fn backend(error: sqlx::Error) -> StoreError {
    crate::db::store_error(error)
}

/// Which existing row a write may replace.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Replace {
    /// Only an older one: a projection's write (a stale writer never moves a row backwards).
    Newer,
    /// Also one at the same version: an erasure's rewrite of a row folded again from the store.
    SameOrNewer,
}

impl Replace {
    /// The comparison `existing.version OP new.version` that allows the write.
    pub(crate) fn operator(self) -> &'static str {
        match self {
            Self::Newer => "<",
            Self::SameOrNewer => "<=",
        }
    }
}

/// Wraps a live projection's upsert so it writes only while the projection is live, in the same
/// statement (one round trip, atomic):
///
/// - the `live` step locks the projection's status row: a rebuild's claim waits for a write in
///   flight, and a write waits for a claim being taken, then sees it and writes nothing;
/// - it takes back a projection whose rebuild died (its claim's advisory lock is free),
///   recording why;
/// - it advances the projection's position to the highest store position the rows now reflect,
///   finding each row's event by the primary key of `events`, one lookup per row. (As a join,
///   planned under statistics taken while the store was a tenth of its size, it read every
///   event of the type into a hash instead: 54,000 rows for a batch of 500, 140 ms a batch,
///   growing with the store. The `LIMIT` keeps the lookup a subquery the planner cannot turn
///   back into that join.)
///
/// `upsert` reads its rows from `$1` (ids, `uuid[]`) and `$2` (versions, `bigint[]`) onwards and
/// must select them `WHERE EXISTS (SELECT 1 FROM live)`. The statement answers one boolean,
/// `live`: false means nothing was written ([`StoreError::Paused`]).
pub(crate) fn live_write(projection: &str, aggregate_type: &str, upsert: &str) -> String {
    format!(
        "WITH live AS (
            UPDATE projections SET
                state = 'LIVE',
                rebuild_id = NULL,
                last_error = CASE WHEN state = 'REBUILDING'
                    THEN 'rebuild abandoned: its process stopped at ' || rebuild_done || ' of '
                         || rebuild_total || ' events'
                    ELSE last_error END,
                position = GREATEST(position, COALESCE((
                    SELECT max(e.position)
                    FROM UNNEST($1::uuid[], $2::bigint[]) AS w(id, version),
                         LATERAL (SELECT e.position FROM events e
                                  WHERE e.aggregate_type = '{aggregate_type}'
                                    AND e.aggregate_id = w.id::text AND e.sequence = w.version
                                  LIMIT 1) AS e), 0)),
                updated_at = now()
            WHERE name = '{projection}'
              AND (state = 'LIVE' OR (state = 'REBUILDING'
                   AND pg_try_advisory_xact_lock({REBUILD_LOCK_CLASS}, hashtext(name))))
            RETURNING 1
         ), written AS ({upsert})
         SELECT EXISTS (SELECT 1 FROM live) AS live"
    )
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
    sqlx::query!(
        "INSERT INTO projection_failures (projection, event_id, reason, event)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (projection, event_id) DO UPDATE SET reason = EXCLUDED.reason,
            failed_at = clock_timestamp(), attempts = projection_failures.attempts + 1",
        projection,
        event_id,
        reason,
        event,
    )
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(())
}
