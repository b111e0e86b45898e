//! Held messages in Postgres: parked outbox rows, `dead_letters` and `projection_failures`,
//! behind the one port operators use. Each kind's SQL is in its own module; this one only
//! chooses.

pub mod dead_letters;
mod parked;
mod projection_failures;

use async_trait::async_trait;
use chronicle_application::held::OUTBOX;
use chronicle_application::ports::held::{HeldKind, HeldMessage, HeldStore};
use chronicle_application::ports::page::Page;
use chronicle_application::ports::store_error::StoreError;
use sqlx::PgPool;

/// The held messages on `pool`.
#[derive(Clone)]
pub struct PgHeld {
    pool: PgPool,
}

impl PgHeld {
    /// Over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Up to `limit` (all when `None`) of `kind` held by `holder` after `after`: of `ids`
    /// when given, only those waiting for a retry and in retry order when `pending`.
    async fn select(
        &self,
        kind: HeldKind,
        holder: &str,
        after: i64,
        ids: Option<&[i64]>,
        pending: bool,
        limit: Option<usize>,
    ) -> Result<Vec<HeldMessage>, StoreError> {
        let pool = &self.pool;
        match kind {
            HeldKind::Parked => parked::select(pool, after, ids, limit).await,
            HeldKind::DeadLetter => {
                dead_letters::select(pool, holder, after, ids, pending, limit).await
            }
            HeldKind::ProjectionFailure => {
                projection_failures::select(pool, holder, after, ids, pending, limit).await
            }
        }
    }
}

#[async_trait]
impl HeldStore for PgHeld {
    async fn counts(&self, kind: HeldKind) -> Result<Vec<(String, u64)>, StoreError> {
        let counts = match kind {
            HeldKind::Parked => vec![(OUTBOX.to_owned(), parked::count(&self.pool).await? as i64)],
            HeldKind::DeadLetter => dead_letters::counts(&self.pool).await?,
            HeldKind::ProjectionFailure => projection_failures::counts(&self.pool).await?,
        };
        Ok(counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(holder, n)| (holder, n as u64))
            .collect())
    }

    async fn total(&self, kind: HeldKind) -> Result<u64, StoreError> {
        match kind {
            // The partial index answers this one without a group.
            HeldKind::Parked => parked::count(&self.pool).await,
            _ => Ok(self.counts(kind).await?.iter().map(|(_, n)| n).sum()),
        }
    }

    async fn list(
        &self,
        kind: HeldKind,
        holder: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<HeldMessage>, StoreError> {
        let rows = self
            .select(
                kind,
                holder,
                after.unwrap_or(0),
                None,
                false,
                Some(limit + 1),
            )
            .await?;
        Ok(Page::of_one_extra(rows, limit))
    }

    async fn pending(
        &self,
        kind: HeldKind,
        holder: &str,
        ids: Option<&[i64]>,
    ) -> Result<Vec<HeldMessage>, StoreError> {
        self.select(kind, holder, 0, ids, true, None).await
    }

    async fn mark_retried(
        &self,
        kind: HeldKind,
        ids: Option<&[i64]>,
        actor: &str,
    ) -> Result<u64, StoreError> {
        match kind {
            HeldKind::Parked => parked::unpark(&self.pool, ids).await,
            HeldKind::DeadLetter => {
                dead_letters::mark_redriven(&self.pool, ids.unwrap_or_default(), actor).await
            }
            // A failure's retry is its removal once it applied (`release`).
            HeldKind::ProjectionFailure => Ok(0),
        }
    }

    async fn unmark_retried(&self, kind: HeldKind, ids: &[i64]) -> Result<(), StoreError> {
        match kind {
            HeldKind::DeadLetter => dead_letters::unmark_redriven(&self.pool, ids).await,
            HeldKind::Parked | HeldKind::ProjectionFailure => Ok(()),
        }
    }

    async fn release(
        &self,
        kind: HeldKind,
        holder: &str,
        seen: &[(i64, u32)],
    ) -> Result<u64, StoreError> {
        match kind {
            HeldKind::ProjectionFailure => {
                projection_failures::release(&self.pool, holder, seen).await
            }
            // Published records leave the parked list, redriven dead letters stay listed.
            HeldKind::Parked | HeldKind::DeadLetter => Ok(0),
        }
    }

    async fn discard(
        &self,
        kind: HeldKind,
        holder: &str,
        ids: &[i64],
        actor: &str,
    ) -> Result<u64, StoreError> {
        match kind {
            HeldKind::DeadLetter => dead_letters::discard(&self.pool, holder, ids, actor).await,
            HeldKind::ProjectionFailure => {
                projection_failures::discard(&self.pool, holder, ids).await
            }
            // The use case refuses it; nothing is discarded here either.
            HeldKind::Parked => Ok(0),
        }
    }
}
