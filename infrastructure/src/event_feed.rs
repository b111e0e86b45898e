//! The event store as a feed for subscriptions: a settled position, and reads below it.
//!
//! The settled position follows [`crate::settling`]'s proof, with one statement per round: it
//! reads the oldest running transaction and the highest position from one snapshot and, when
//! that position is above what is already waiting to settle, takes a transaction id in the
//! same statement. That id is given out after the statement's snapshot was taken, so it is
//! higher than that of every transaction holding a position the snapshot could see; once a
//! later round's oldest running transaction is above it, every position up to the read's
//! highest is final. The id's transaction writes nothing and commits without waiting for its
//! commit record to reach the disk (`synchronous_commit` off for it alone).

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use chronicle_application::ports::audit_log::AuditFilter;
use chronicle_application::ports::event_feed::{EventFeed, FeedRecord, Settled};
use chronicle_application::ports::store_error::StoreError;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};

use crate::audit_log::push_filter;
use crate::db::store_error;
use crate::event_store::PositionedEventRow;
use crate::settling::Settling;

/// The feed on a Postgres pool (the primary's: a replica's snapshots do not prove what the
/// primary may still commit).
pub struct PgEventFeed {
    pool: PgPool,
    settling: Mutex<Settling>,
}

impl PgEventFeed {
    /// Over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            settling: Mutex::default(),
        }
    }

    fn settling(&self) -> std::sync::MutexGuard<'_, Settling> {
        self.settling.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An `events` row with its team.
#[derive(FromRow)]
struct FeedRow {
    #[sqlx(flatten)]
    event: PositionedEventRow,
    team_id: Option<String>,
}

#[async_trait]
impl EventFeed for PgEventFeed {
    async fn settle(&self) -> Result<Settled, StoreError> {
        let (covered, awaited) = {
            let settling = self.settling();
            (settling.covered(), settling.awaited().unwrap_or(i64::MIN))
        };
        // A transaction id only when it will be kept: while the pending read's own id is still
        // above the oldest running transaction (one running long), each round would otherwise
        // burn one.
        let marks = sqlx::query!(
            r#"SELECT marks.oldest_running AS "oldest_running!", marks.top AS "top!",
                      CASE WHEN marks.top > $1 AND marks.oldest_running > $2
                           THEN pg_current_xact_id()::text::bigint END AS later
               FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                                AS oldest_running,
                            (SELECT coalesce(max(position), 0) FROM events) AS top,
                            set_config('synchronous_commit', 'off', true) AS relaxed) AS marks"#,
            covered,
            awaited,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        let mut settling = self.settling();
        let through = settling.read(marks.oldest_running, marks.top);
        if let Some(later) = marks.later {
            settling.later_transaction(later);
        }
        Ok(Settled {
            through: settling.proved().then_some(through),
            waiting: settling.waiting(),
        })
    }

    async fn top(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar!(r#"SELECT coalesce(max(position), 0) AS "top!" FROM events"#)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)
    }

    async fn read(
        &self,
        filter: &AuditFilter,
        after: i64,
        through: i64,
        limit: usize,
    ) -> Result<Vec<FeedRecord>, StoreError> {
        let mut query: QueryBuilder<'_, Postgres> = QueryBuilder::new(
            "SELECT position, event_id, aggregate_type, aggregate_id, sequence, event_type,
                    event_version, payload, metadata, recorded_at, hash, previous_hash, team_id
             FROM events WHERE position > ",
        );
        query
            .push_bind(after)
            .push(" AND position <= ")
            .push_bind(through);
        push_filter(&mut query, filter);
        query
            .push(" ORDER BY position LIMIT ")
            .push_bind(limit as i64);
        // Planned for each call, with the bounds' values: a plan cached for any bounds takes
        // `position > $1 AND position <= $2` for a narrow range (Postgres's default guess),
        // walks the whole store in position order for a rare actor or team, and made the
        // trail's pages by actor 10-70x slower (docs/performance.md).
        let rows: Vec<FeedRow> = query
            .build_query_as()
            .persistent(false)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let (position, event) = row.event.split();
                FeedRecord {
                    position,
                    team: row.team_id,
                    event,
                }
            })
            .collect())
    }
}
