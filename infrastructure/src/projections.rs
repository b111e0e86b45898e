//! Projection lifecycle in Postgres: the `projections` status table, a rebuild's claim
//! (advisory locks plus state) and progress, its consistent read of the store, and its shadow
//! tables and swap.

use async_trait::async_trait;
use chronicle_application::aggregates;
use chronicle_application::ports::projection_control::ProjectionControl;
use chronicle_application::ports::projection_control::{
    ProjectionState, ProjectionStatus, RebuildClaim, RebuildEvent, RebuildProgress,
    RebuildSnapshot, SwapOutcome,
};
use chronicle_application::ports::store_error::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::read_model::{backend, REBUILD_LOCK_CLASS, SHADOW_SUFFIX};

/// Positions per range read from the snapshot (one batch each).
const SNAPSHOT_BATCH: i64 = 5_000;

/// How long the swap waits for readers to let go of a live table before giving up (the
/// rebuild then fails cleanly rather than queueing every reader behind it).
const SWAP_LOCK_TIMEOUT: &str = "10s";

/// The read-model table of a projection (from the registry of aggregates).
fn projection_table(name: &str) -> Result<&'static str, StoreError> {
    aggregates::by_projection(name)
        .and_then(|kind| kind.read_model)
        .map(|read_model| read_model.table)
        .ok_or_else(|| StoreError::corrupt(format!("no table for projection {name}")))
}

/// The projection lifecycle on a Postgres pool.
#[derive(Clone)]
pub struct PgProjections {
    pool: PgPool,
    /// Where a rebuild's advisory locks are held, each on a connection of its own.
    session: PgPool,
    /// The connection holding each running claim's advisory locks.
    claims: Arc<Mutex<HashMap<Uuid, PgConnection>>>,
}

impl PgProjections {
    /// Lifecycle control over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            session: pool.clone(),
            pool,
            claims: Arc::default(),
        }
    }

    /// Holding rebuilds' locks on connections from `session` (which must keep their session,
    /// not a transaction-mode pooler's).
    pub fn with_session(mut self, session: PgPool) -> Self {
        self.session = session;
        self
    }

    /// Closes the connection holding a claim's locks, releasing them.
    async fn release_locks(&self, claim: &RebuildClaim) {
        let connection = self
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&claim.id);
        if let Some(connection) = connection {
            let _ = connection.close().await;
        }
    }

    async fn status_of(&self, name: &str) -> Result<ProjectionStatus, StoreError> {
        self.statuses()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StoreError::corrupt(format!("projection {name} has no status row")))
    }
}

/// A `projections` row with its head and the oldest event it has not applied.
struct StatusRow {
    name: String,
    version: i32,
    state: String,
    position: i64,
    rebuild_done: i64,
    rebuild_total: i64,
    rebuild_started_at: Option<chrono::DateTime<chrono::Utc>>,
    last_rebuild_events: Option<i64>,
    last_rebuild_seconds: Option<f64>,
    last_rebuild_at: Option<chrono::DateTime<chrono::Utc>>,
    last_error: Option<String>,
    head: i64,
    oldest_unprojected_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn status_from_row(row: StatusRow) -> Result<ProjectionStatus, StoreError> {
    let state = ProjectionState::parse(&row.state)
        .ok_or_else(|| StoreError::corrupt(format!("unknown projection state {}", row.state)))?;
    Ok(ProjectionStatus {
        name: row.name,
        version: row.version as u32,
        state,
        position: row.position,
        head: row.head,
        rebuild: row
            .rebuild_started_at
            .filter(|_| state == ProjectionState::Rebuilding)
            .map(|started_at| RebuildProgress {
                done: row.rebuild_done as u64,
                total: row.rebuild_total as u64,
                started_at,
            }),
        last_rebuild: row.last_rebuild_at.map(|at| {
            (
                row.last_rebuild_events.unwrap_or(0) as u64,
                row.last_rebuild_seconds.unwrap_or(0.0),
                at,
            )
        }),
        last_error: row.last_error,
        oldest_unprojected_at: row.oldest_unprojected_at,
    })
}

/// The live table's indexes: (name, definition, backs the primary key).
async fn live_indexes(
    pool: &PgPool,
    table: &str,
) -> Result<Vec<(String, String, bool)>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT c.relname::text AS "name!", pg_get_indexdef(i.indexrelid) AS "def!",
                  i.indisprimary
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = $1::text::regclass ORDER BY c.relname"#,
        table,
    )
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.name, r.def, r.indisprimary))
        .collect())
}

/// The live index's definition, re-pointed at the shadow table under the shadow's name.
fn shadow_index_sql(name: &str, definition: &str, shadow_table: &str) -> Option<String> {
    let using = definition.find(" USING ")?;
    let unique = if definition.starts_with("CREATE UNIQUE") {
        "UNIQUE "
    } else {
        ""
    };
    Some(format!(
        "CREATE {unique}INDEX {name}{SHADOW_SUFFIX} ON {shadow_table}{}",
        &definition[using..]
    ))
}

#[async_trait]
impl ProjectionControl for PgProjections {
    async fn register(&self, names: &[&'static str]) -> Result<(), StoreError> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        sqlx::query!(
            "INSERT INTO projections (name, version) SELECT unnest($1::text[]), 0
             ON CONFLICT (name) DO NOTHING",
            &names,
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn set_version(&self, name: &str, version: u32) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE projections SET version = $2, updated_at = now() WHERE name = $1",
            name,
            version as i32,
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Result<(), ProjectionStatus>, StoreError> {
        let (from, to) = if paused {
            ("LIVE", "PAUSED")
        } else {
            ("PAUSED", "LIVE")
        };
        let moved = sqlx::query!(
            "UPDATE projections SET state = $3, updated_at = now() WHERE name = $1 AND state = $2",
            name,
            from,
            to,
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if moved.rows_affected() == 1 {
            Ok(Ok(()))
        } else {
            Ok(Err(self.status_of(name).await?))
        }
    }

    async fn statuses(&self) -> Result<Vec<ProjectionStatus>, StoreError> {
        // The head per aggregate type: a backward walk of the position index to the newest
        // event of that type.
        let (names, types): (Vec<String>, Vec<String>) = aggregates::ALL
            .iter()
            .filter_map(|kind| {
                let projection = kind.read_model?.projection;
                Some((projection.to_owned(), kind.type_name.to_owned()))
            })
            .unzip();
        let rows = sqlx::query_as!(
            StatusRow,
            r#"SELECT p.name, p.version, p.state, p.position, p.rebuild_done, p.rebuild_total,
                      p.rebuild_started_at, p.last_rebuild_events, p.last_rebuild_seconds,
                      p.last_rebuild_at, p.last_error,
                      COALESCE((SELECT max(e.position) FROM events e
                                WHERE e.aggregate_type = m.aggregate_type), 0) AS "head!",
                      (SELECT e.recorded_at FROM events e
                       WHERE e.aggregate_type = m.aggregate_type AND e.position > p.position
                       ORDER BY e.position LIMIT 1) AS oldest_unprojected_at
               FROM projections p
               LEFT JOIN UNNEST($1::text[], $2::text[]) AS m(name, aggregate_type)
                   ON m.name = p.name
               ORDER BY p.name"#,
            &names,
            &types,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(status_from_row).collect()
    }

    async fn claim(
        &self,
        names: &[&'static str],
    ) -> Result<Result<RebuildClaim, ProjectionStatus>, StoreError> {
        let id = Uuid::now_v7();
        // The locks first, on a connection that lives as long as the rebuild.
        let mut locks = self.session.acquire().await.map_err(backend)?.detach();
        for name in names {
            let taken = sqlx::query_scalar!(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                REBUILD_LOCK_CLASS,
                name,
            )
            .fetch_one(&mut locks)
            .await
            .map_err(backend)?;
            if taken != Some(true) {
                let _ = locks.close().await;
                return Ok(Err(self.status_of(name).await?));
            }
        }
        // Then the state: waits for a live batch in flight on these rows, and pauses their
        // live writers from then on.
        let owned: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let result = sqlx::query!(
            "UPDATE projections SET state = 'REBUILDING', rebuild_id = $2, rebuild_done = 0,
                 rebuild_total = 0, rebuild_started_at = now(),
                 last_error = NULL, updated_at = now()
             WHERE name = ANY($1)",
            &owned,
            id,
        )
        .execute(&self.pool)
        .await;
        if let Err(error) = result {
            let _ = locks.close().await;
            return Err(backend(error));
        }
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, locks);
        Ok(Ok(RebuildClaim {
            id,
            names: names.to_vec(),
        }))
    }

    async fn record_progress(
        &self,
        claim: &RebuildClaim,
        done: u64,
        total: u64,
    ) -> Result<bool, StoreError> {
        let names = claim_names(claim);
        let updated = sqlx::query!(
            "UPDATE projections SET rebuild_done = $3, rebuild_total = $4,
                 updated_at = now()
             WHERE name = ANY($1) AND rebuild_id = $2 AND state = 'REBUILDING'",
            &names,
            claim.id,
            done as i64,
            total as i64,
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(updated.rows_affected() == claim.names.len() as u64)
    }

    async fn prepare_shadows(&self, claim: &RebuildClaim) -> Result<(), StoreError> {
        for name in &claim.names {
            let table = projection_table(name)?;
            for statement in [
                format!("DROP TABLE IF EXISTS {table}{SHADOW_SUFFIX}"),
                format!(
                    "CREATE TABLE {table}{SHADOW_SUFFIX} (LIKE {table} INCLUDING DEFAULTS
                     INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)"
                ),
            ] {
                sqlx::query(&statement)
                    .execute(&self.pool)
                    .await
                    .map_err(backend)?;
            }
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        aggregate_types: &[&'static str],
    ) -> Result<RebuildSnapshot, StoreError> {
        let types: Vec<String> = aggregate_types.iter().map(|t| (*t).to_owned()).collect();
        // One REPEATABLE READ snapshot: positions are not commit order, so "every position
        // below N" is not "every event committed so far"; a snapshot is. Two connections read
        // it (the second imports the first's exported snapshot), alternating position ranges:
        // while the rebuild takes in one range, the server already produces the next.
        let mut first = self.pool.acquire().await.map_err(backend)?.detach();
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut first)
            .await
            .map_err(backend)?;
        let exported = sqlx::query_scalar!(r#"SELECT pg_export_snapshot() AS "snapshot!""#)
            .fetch_one(&mut first)
            .await
            .map_err(backend)?;
        let bounds = sqlx::query!(
            r#"SELECT aggregate_type, count(*) AS "total!", min(position) AS "first!",
                      max(position) AS "head!"
               FROM events WHERE aggregate_type = ANY($1) GROUP BY aggregate_type"#,
            &types,
        )
        .fetch_all(&mut first)
        .await
        .map_err(backend)?;
        let total = bounds.iter().map(|row| row.total as u64).sum();
        let low = bounds.iter().map(|row| row.first).min().unwrap_or(1);
        let heads: Vec<(String, i64)> = bounds
            .into_iter()
            .map(|row| (row.aggregate_type, row.head))
            .collect();
        let high = heads.iter().map(|(_, head)| *head).max().unwrap_or(0);

        let mut second = self.pool.acquire().await.map_err(backend)?.detach();
        for statement in [
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY".to_owned(),
            format!("SET TRANSACTION SNAPSHOT '{exported}'"),
        ] {
            sqlx::query(&statement)
                .execute(&mut second)
                .await
                .map_err(backend)?;
        }
        let ranges = SnapshotRanges { low, high, types };
        let (even_sender, even) = tokio::sync::mpsc::channel(4);
        let (odd_sender, odd) = tokio::sync::mpsc::channel(4);
        tokio::spawn(read_ranges(first, ranges.clone(), 0, even_sender));
        tokio::spawn(read_ranges(second, ranges.clone(), 1, odd_sender));
        // Range k comes from reader k % 2: taking them alternately restores position order.
        let batches = futures::stream::unfold(
            (0usize, even, odd),
            |(range, mut even, mut odd)| async move {
                let next = if range % 2 == 0 {
                    even.recv().await
                } else {
                    odd.recv().await
                };
                next.map(|batch| (batch, (range + 1, even, odd)))
            },
        )
        .filter(|batch| std::future::ready(!matches!(batch, Ok(events) if events.is_empty())));
        Ok(RebuildSnapshot {
            total,
            heads,
            events: batches.boxed(),
        })
    }

    async fn index_shadows(&self, claim: &RebuildClaim) -> Result<(), StoreError> {
        let mut builds = Vec::new();
        let mut finishing = Vec::new();
        for name in &claim.names {
            let table = projection_table(name)?;
            let shadow = format!("{table}{SHADOW_SUFFIX}");
            for (index, definition, primary) in live_indexes(&self.pool, table).await? {
                builds.push(
                    shadow_index_sql(&index, &definition, &shadow).ok_or_else(|| {
                        StoreError::corrupt(format!("cannot read index definition {definition}"))
                    })?,
                );
                if primary {
                    finishing.push(format!(
                        "ALTER TABLE {shadow} ADD CONSTRAINT {index}{SHADOW_SUFFIX}
                         PRIMARY KEY USING INDEX {index}{SHADOW_SUFFIX}"
                    ));
                }
            }
            finishing.push(format!("ANALYZE {shadow}"));
        }
        // Two builds at once, each on its own connection, the slow GIN builds first so the
        // B-trees run beside them rather than after. Builds share their table (SHARE locks);
        // the primary key's ALTER TABLE and ANALYZE would wait for every build of the table,
        // so they come after all of them.
        builds.sort_by_key(|sql| !sql.contains(" USING gin "));
        let results: Vec<_> = futures::stream::iter(builds)
            .map(|sql| tokio::spawn(run_steps(self.pool.clone(), vec![sql])))
            .buffer_unordered(2)
            .collect()
            .await;
        for result in results {
            result.map_err(|e| StoreError::backend("index build task failed", e))??;
        }
        run_steps(self.pool.clone(), finishing).await
    }

    async fn swap(&self, claim: &RebuildClaim, outcome: &SwapOutcome) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let names = claim_names(claim);
        let held = sqlx::query_scalar!(
            "SELECT name FROM projections
             WHERE name = ANY($1) AND rebuild_id = $2 AND state = 'REBUILDING' FOR UPDATE",
            &names,
            claim.id,
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        if held.len() != claim.names.len() {
            return Ok(false);
        }
        for rebuilt in &outcome.projections {
            let table = projection_table(rebuilt.name)?;
            let indexes = live_indexes(&self.pool, table).await?;
            let mut ddl = vec![
                format!("DROP TABLE {table}"),
                format!("ALTER TABLE {table}{SHADOW_SUFFIX} RENAME TO {table}"),
            ];
            for (index, _, _) in indexes {
                ddl.push(format!(
                    "ALTER INDEX {index}{SHADOW_SUFFIX} RENAME TO {index}"
                ));
            }
            for statement in ddl {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            sqlx::query!(
                "UPDATE projections SET state = 'LIVE', version = $2, position = $3,
                     rebuild_id = NULL, rebuild_started_at = NULL,
                     last_rebuild_events = $4, last_rebuild_seconds = $5,
                     last_rebuild_at = now(), last_error = NULL, updated_at = now()
                 WHERE name = $1",
                rebuilt.name,
                rebuilt.version as i32,
                rebuilt.position,
                rebuilt.events as i64,
                outcome.seconds,
            )
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        self.release_locks(claim).await;
        Ok(true)
    }

    async fn abandon(&self, claim: &RebuildClaim, reason: &str) -> Result<(), StoreError> {
        for name in &claim.names {
            let table = projection_table(name)?;
            sqlx::query(&format!("DROP TABLE IF EXISTS {table}{SHADOW_SUFFIX}"))
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        }
        let names = claim_names(claim);
        sqlx::query!(
            "UPDATE projections SET state = 'LIVE', rebuild_id = NULL,
                 rebuild_started_at = NULL, last_error = $3, updated_at = now()
             WHERE name = ANY($1) AND rebuild_id = $2",
            &names,
            claim.id,
            format!("rebuild failed: {reason}"),
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        self.release_locks(claim).await;
        Ok(())
    }
}

/// The position ranges a snapshot is read in.
#[derive(Clone)]
struct SnapshotRanges {
    low: i64,
    high: i64,
    types: Vec<String>,
}

/// Reads every other position range of the snapshot (`parity` 0: the first, third, ...), one
/// batch per range, empty ones included so the two readers' batches stay in step; then ends its
/// transaction.
async fn read_ranges(
    mut connection: PgConnection,
    ranges: SnapshotRanges,
    parity: i64,
    sender: tokio::sync::mpsc::Sender<Result<Vec<RebuildEvent>, StoreError>>,
) {
    let mut start = ranges.low + parity * SNAPSHOT_BATCH;
    while start <= ranges.high {
        let batch = sqlx::query!(
            r#"SELECT position, event_id, aggregate_type, aggregate_id, sequence,
                      event_type, event_version, payload::text AS "payload!", recorded_at,
                      metadata ->> 'sealed' AS sealed, metadata ->> 'actor_id' AS actor_id
               FROM events
               WHERE aggregate_type = ANY($1) AND position >= $2 AND position < $3
               ORDER BY position"#,
            &ranges.types,
            start,
            start + SNAPSHOT_BATCH,
        )
        .fetch_all(&mut connection)
        .await
        .map(|rows| {
            rows.into_iter()
                .map(|row| RebuildEvent {
                    position: row.position,
                    event_id: row.event_id,
                    aggregate_type: row.aggregate_type,
                    aggregate_id: row.aggregate_id,
                    sequence: row.sequence as u64,
                    event_type: row.event_type,
                    event_version: row.event_version,
                    payload: row.payload,
                    recorded_at: row.recorded_at,
                    sealed: row.sealed,
                    actor_id: row.actor_id,
                })
                .collect::<Vec<_>>()
        })
        .map_err(backend);
        let failed = batch.is_err();
        if sender.send(batch).await.is_err() || failed {
            break;
        }
        start += 2 * SNAPSHOT_BATCH;
    }
    let _ = sqlx::query("COMMIT").execute(&mut connection).await;
    let _ = connection.close().await;
}

/// Runs one index build's statements on a connection of its own.
async fn run_steps(pool: PgPool, steps: Vec<String>) -> Result<(), StoreError> {
    let mut connection = pool.acquire().await.map_err(backend)?;
    sqlx::query("SET maintenance_work_mem = '256MB'")
        .execute(&mut *connection)
        .await
        .map_err(backend)?;
    for step in steps {
        sqlx::query(&step)
            .execute(&mut *connection)
            .await
            .map_err(backend)?;
    }
    sqlx::query("RESET maintenance_work_mem")
        .execute(&mut *connection)
        .await
        .map_err(backend)?;
    Ok(())
}

/// A claim's projection names as the statements bind them.
fn claim_names(claim: &RebuildClaim) -> Vec<String> {
    claim.names.iter().map(|name| (*name).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::shadow_index_sql;

    #[test]
    fn shadow_indexes_copy_the_live_definition() {
        assert_eq!(
            shadow_index_sql(
                "tasks_text_idx",
                "CREATE INDEX tasks_text_idx ON public.tasks USING gin (((title || ' '::text) || description) gin_trgm_ops)",
                "tasks__rebuild"
            )
            .as_deref(),
            Some("CREATE INDEX tasks_text_idx__rebuild ON tasks__rebuild USING gin (((title || ' '::text) || description) gin_trgm_ops)")
        );
        assert_eq!(
            shadow_index_sql(
                "tasks_pkey",
                "CREATE UNIQUE INDEX tasks_pkey ON public.tasks USING btree (id)",
                "tasks__rebuild"
            )
            .as_deref(),
            Some("CREATE UNIQUE INDEX tasks_pkey__rebuild ON tasks__rebuild USING btree (id)")
        );
    }
}
