//! The audit trail's reads of the event store.

use async_trait::async_trait;
use chronicle_application::ports::audit_log::AuditLog;
use chronicle_application::ports::audit_log::{
    AuditFilter, AuditRecord, LedgerEntry, Misattribution,
};
use chronicle_application::ports::store_error::StoreError;
use chronicle_domain::ids::REFERENCE_PREFIX;
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};

use crate::event_store::append::store_error;
use crate::event_store::PositionedEventRow;

/// The audit log on a Postgres pool.
#[derive(Clone)]
pub struct PgAuditLog {
    pool: PgPool,
}

impl PgAuditLog {
    /// The log on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A record of the trail from its row, read by `query_as!`, or through `FromRow` where the
/// filters are built at run time.
fn record(row: PositionedEventRow) -> AuditRecord {
    let (position, event) = row.split();
    AuditRecord { position, event }
}

#[async_trait]
impl AuditLog for PgAuditLog {
    async fn team_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let team = sqlx::query_scalar!(
            "SELECT team_id FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
             ORDER BY sequence LIMIT 1",
            aggregate_type,
            aggregate_id,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(team.flatten())
    }

    async fn misattributed(
        &self,
        aggregate: Option<(&str, &str)>,
    ) -> Result<Option<Misattribution>, StoreError> {
        // Events whose team column disagrees with their stream's creation event (whose
        // payload names the team and is covered by the hash chain). Two statements rather than
        // one with `$1 IS NULL OR …`: a generic plan of that would scan the whole store for one
        // aggregate. For the whole store, both sides are fenced (`OFFSET 0`) so Postgres hashes
        // the 200-thousand-odd creation teams and scans the table once (1.4 s for 1M events
        // here) instead of walking the position index with a primary-key lookup per event
        // (3.8 s); for one aggregate, the unfenced join keeps to its primary-key range.
        let row =
            match aggregate {
                Some((aggregate_type, aggregate_id)) => {
                    sqlx::query_as!(
                        Misattributed,
                        r#"SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.team_id,
                              c.created_team
                       FROM (SELECT aggregate_type, aggregate_id,
                                    coalesce(payload -> 'TaskCreated' ->> 'teamId',
                                             payload -> 'ReportRequested' ->> 'teamId')
                                      AS created_team
                             FROM events c
                             WHERE sequence = 1 AND c.aggregate_type = $1
                               AND c.aggregate_id = $2) c
                       JOIN events e ON e.aggregate_type = c.aggregate_type
                                    AND e.aggregate_id = c.aggregate_id
                       WHERE e.team_id IS DISTINCT FROM c.created_team
                       ORDER BY e.position LIMIT 1"#,
                        aggregate_type,
                        aggregate_id,
                    )
                    .fetch_optional(&self.pool)
                    .await
                }
                None => sqlx::query_as!(
                    Misattributed,
                    r#"SELECT aggregate_type AS "aggregate_type!", aggregate_id AS "aggregate_id!",
                              sequence AS "sequence!", team_id, created_team
                       FROM (SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.team_id,
                                    c.created_team, e.position
                             FROM (SELECT aggregate_type, aggregate_id,
                                          coalesce(payload -> 'TaskCreated' ->> 'teamId',
                                                   payload -> 'ReportRequested' ->> 'teamId')
                                            AS created_team
                                   FROM events c WHERE sequence = 1 OFFSET 0) c
                             JOIN events e ON e.aggregate_type = c.aggregate_type
                                          AND e.aggregate_id = c.aggregate_id
                             WHERE e.team_id IS DISTINCT FROM c.created_team OFFSET 0) wrong
                       ORDER BY position LIMIT 1"#
                )
                .fetch_optional(&self.pool)
                .await,
            }
            .map_err(store_error)?;
        Ok(row.map(|row| Misattribution {
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence.max(0) as u64,
            recorded_team: row.team_id,
            created_team: row.created_team,
        }))
    }

    async fn stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query_as!(
            PositionedEventRow,
            "SELECT position, event_id, aggregate_type, aggregate_id, sequence, event_type,
                    event_version, payload, metadata, recorded_at, hash, previous_hash
             FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
            aggregate_type,
            aggregate_id,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(record).collect())
    }

    async fn erasure_ledger(
        &self,
        of_stream: Option<(&str, &str)>,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let (aggregate_type, aggregate_id) = of_stream.unzip();
        // A row whose event is gone drops out here, and its erasure's digest then fails.
        let rows = sqlx::query_as!(
            LedgerEntry,
            "SELECT l.event_id, e.position, l.pseudonym, l.prior_hash, l.redacted_hash
             FROM erased_events l JOIN events e ON e.event_id = l.event_id
             WHERE $1::text IS NULL OR l.pseudonym IN (
                 SELECT m.pseudonym FROM erased_events m
                 JOIN events o ON o.event_id = m.event_id
                 WHERE o.aggregate_type = $1 AND o.aggregate_id = $2)
             ORDER BY e.position, l.planned_at",
            aggregate_type,
            aggregate_id,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows)
    }

    async fn keys_destroyed_unrecorded(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar!(
            r#"SELECT DISTINCT substr(metadata ->> 'actor_id', length($1) + 1) AS "pseudonym!"
               FROM events WHERE metadata ->> 'actor_id' LIKE $1 || '%'
               EXCEPT SELECT pseudonym FROM subject_keys
               EXCEPT SELECT replace(aggregate_id, '-', '') FROM events
                      WHERE aggregate_type = 'DataSubject' AND event_type = 'DataSubjectErased'
               ORDER BY 1"#,
            REFERENCE_PREFIX,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn witnessed_version(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<u64, StoreError> {
        // Versions that something other than the events table has seen: snapshots and read
        // models.
        let version = sqlx::query_scalar!(
            r#"WITH witnessed (aggregate_type, aggregate_id, version) AS (
                   SELECT aggregate_type, aggregate_id, last_sequence FROM snapshots
                   UNION ALL SELECT 'Task', id::text, version FROM tasks
                   UNION ALL SELECT 'Report', id::text, version FROM reports)
               SELECT coalesce(max(version), 0)::bigint AS "version!" FROM witnessed
               WHERE aggregate_type = $1 AND aggregate_id = $2"#,
            aggregate_type,
            aggregate_id,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(version as u64)
    }

    async fn witnessed_versions(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        // The same witnesses as `witnessed_version`, for every stream.
        let rows = sqlx::query!(
            r#"WITH witnessed (aggregate_type, aggregate_id, version) AS (
                   SELECT aggregate_type, aggregate_id, last_sequence FROM snapshots
                   UNION ALL SELECT 'Task', id::text, version FROM tasks
                   UNION ALL SELECT 'Report', id::text, version FROM reports)
               SELECT aggregate_type AS "aggregate_type!", aggregate_id AS "aggregate_id!",
                      max(version)::bigint AS "version!"
               FROM witnessed GROUP BY aggregate_type, aggregate_id"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.aggregate_type, row.aggregate_id, row.version as u64))
            .collect())
    }

    async fn event_count(&self) -> Result<u64, StoreError> {
        let count = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM events"#)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(count as u64)
    }

    fn scan(&self) -> BoxStream<'static, Result<AuditRecord, StoreError>> {
        scan_in_position_order(self.pool.clone())
    }
}

/// Appends the conditions of `filter` to a statement that already has a `WHERE`: only the
/// filters that are set, so each query gets the plan of its own index rather than a generic
/// plan with `$n IS NULL OR ...` branches.
pub(crate) fn push_filter<'a>(query: &mut QueryBuilder<'a, Postgres>, filter: &'a AuditFilter) {
    if let Some(kind) = &filter.aggregate_type {
        query.push(" AND aggregate_type = ").push_bind(kind);
    }
    if let Some(id) = &filter.aggregate_id {
        query.push(" AND aggregate_id = ").push_bind(id);
    }
    match (&filter.actor_forms, &filter.actor_id) {
        (Some(forms), _) => {
            query
                .push(" AND metadata ->> 'actor_id' = ANY(")
                .push_bind(forms.clone())
                .push(")");
        }
        (None, Some(actor)) => {
            query
                .push(" AND metadata ->> 'actor_id' = ")
                .push_bind(actor);
        }
        (None, None) => {}
    }
    if let Some(correlation) = &filter.correlation_id {
        query
            .push(" AND metadata ->> 'correlation_id' = ")
            .push_bind(correlation);
    }
    if let Some(event_type) = &filter.event_type {
        query.push(" AND event_type = ").push_bind(event_type);
    }
    if let Some(from) = filter.from {
        query.push(" AND recorded_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND recorded_at < ").push_bind(to);
    }
    if let Some(teams) = &filter.teams {
        query
            .push(" AND team_id = ANY(")
            .push_bind(teams.clone())
            .push(")");
    }
}

/// A row of the misattribution check.
struct Misattributed {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    team_id: Option<String>,
    created_team: Option<String>,
}

/// Rows handed from the reading task to the consumer at once: one channel hop per batch, not
/// per row (a hop per row cost more than decoding the row).
const SCAN_BATCH: usize = 1_024;

/// Streams the events table in position order over one connection: rows arrive as Postgres
/// sends them, so memory stays flat whatever the store's size. A task reads and decodes while
/// the consumer works on the previous batches.
fn scan_in_position_order(pool: PgPool) -> BoxStream<'static, Result<AuditRecord, StoreError>> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<_>>(8);
    tokio::spawn(async move {
        // Rows are decoded (JSON parsing is most of the cost) on blocking threads, two
        // batches at once, in order, while the connection keeps receiving. So the statement
        // is not a `query_as!`, whose rows decode where they are fetched: its rows are read
        // through `PositionedEventRow`'s `FromRow` on those threads.
        let mut decoded = sqlx::query(
            "SELECT position, event_id, aggregate_type, aggregate_id, sequence, event_type,
                    event_version, payload, metadata, recorded_at, hash, previous_hash
             FROM events ORDER BY position",
        )
        .fetch(&pool)
        .ready_chunks(SCAN_BATCH)
        .map(|rows| {
            tokio::task::spawn_blocking(move || {
                rows.into_iter()
                    .map(|row| {
                        row.and_then(|row| PositionedEventRow::from_row(&row))
                            .map(record)
                            .map_err(store_error)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .buffered(2);
        while let Some(batch) = decoded.next().await {
            let batch = batch
                .unwrap_or_else(|e| vec![Err(StoreError::backend("decoding thread failed", e))]);
            let failed = batch.iter().any(Result::is_err);
            if sender.send(batch).await.is_err() || failed {
                return;
            }
        }
    });
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
        .flat_map(futures::stream::iter)
        .boxed()
}
