//! Task queries, including read-your-writes through `minVersion`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::access::{Action, Principal, TeamScope};
use crate::error::AppError;
use crate::ports::report_queries::{ReportFilter, ReportPage, ReportQueryStore};
use crate::ports::store_error::StoreError;
use crate::ports::task_queries::{TaskFilter, TaskPage, TaskQueryStore};
use crate::projection::read_model::ReadModel;
use crate::projection::report::{ReportReadModel, ReportView};
use crate::projection::task::{TaskReadModel, TaskView};

/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: usize = 100;
/// Page size when the client does not say.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Longest pause between two reads of a `minVersion` wait.
const MAX_READ_WAIT_PAUSE: Duration = Duration::from_millis(10);

/// Serves task reads from the read model.
pub struct TaskQueries {
    store: Arc<dyn TaskQueryStore>,
    max_wait: Duration,
}

impl TaskQueries {
    /// Queries over `store`; `minVersion` waits at most `max_wait` for the projection.
    pub fn new(store: Arc<dyn TaskQueryStore>, max_wait: Duration) -> Self {
        Self { store, max_wait }
    }

    /// One task of the caller's teams (another team's is `None`, as if it did not exist).
    /// With `min_version`, waits (bounded) until the read model reflects at least that version,
    /// then answers `STALE_READ` if it still does not.
    pub async fn get(
        &self,
        principal: &Principal,
        id: Uuid,
        min_version: Option<u64>,
    ) -> Result<Option<TaskView>, AppError> {
        let scope = principal.scope(Action::ReadWork)?;
        let store = &self.store;
        let read = || async {
            let view = store.get(id).await?;
            Ok(visible::<TaskReadModel>(&scope, view))
        };
        wait_for_version(self.max_wait, min_version, read, |v| v.version).await
    }

    /// A page of the caller's teams' tasks after the cursor; `first` must be 1..=100.
    pub async fn list(
        &self,
        principal: &Principal,
        filter: &TaskFilter,
        first: Option<i64>,
        after: Option<Uuid>,
    ) -> Result<TaskPage, AppError> {
        let filter = Self::in_scope(principal, filter)?;
        Ok(self.store.list(&filter, page_size(first)?, after).await?)
    }

    /// How many of the caller's teams' tasks match `filter` in all.
    pub async fn count(&self, principal: &Principal, filter: &TaskFilter) -> Result<u64, AppError> {
        let filter = Self::in_scope(principal, filter)?;
        Ok(self.store.count(&filter).await?)
    }

    /// `filter` narrowed to the teams the caller may read.
    fn in_scope(principal: &Principal, filter: &TaskFilter) -> Result<TaskFilter, AppError> {
        let scope = principal.scope(Action::ReadWork)?;
        Ok(TaskFilter {
            teams: scope.narrow(filter.teams.as_deref())?,
            ..filter.clone()
        })
    }
}

/// Validates a requested page size (1..=100, default 20).
pub fn page_size(first: Option<i64>) -> Result<usize, AppError> {
    match first {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if n < 1 => Err(AppError::validation("first", "must be at least 1")),
        Some(n) if n > MAX_PAGE_SIZE as i64 => Err(AppError::LimitExceeded(format!(
            "first: at most {MAX_PAGE_SIZE} items per page"
        ))),
        Some(n) => Ok(n as usize),
    }
}

/// Reads a row, and with `min_version` re-reads with growing pauses until it reflects that
/// version or `max_wait` passed (`STALE_READ`): read-your-writes over an asynchronous
/// projection.
async fn wait_for_version<V, F, Fut>(
    max_wait: Duration,
    min_version: Option<u64>,
    read: F,
    version_of: fn(&V) -> u64,
) -> Result<Option<V>, AppError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<V>, StoreError>>,
{
    let Some(wanted) = min_version else {
        return Ok(read().await?);
    };
    let deadline = Instant::now() + max_wait;
    let mut pause = Duration::from_millis(2);
    loop {
        let view = read().await?;
        let current = view.as_ref().map_or(0, version_of);
        if current >= wanted {
            return Ok(view);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(AppError::StaleRead { wanted, current });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        // Capped low: a read waits at most one pause longer than the projection took, and a
        // point read by primary key costs the database little.
        pause = (pause * 2).min(MAX_READ_WAIT_PAUSE);
    }
}

/// Serves report reads from the read model.
pub struct ReportQueries {
    store: Arc<dyn ReportQueryStore>,
    max_wait: Duration,
}

impl ReportQueries {
    /// Queries over `store`; `minVersion` waits at most `max_wait`.
    pub fn new(store: Arc<dyn ReportQueryStore>, max_wait: Duration) -> Self {
        Self { store, max_wait }
    }

    /// One report of the caller's teams (another team's is `None`), optionally waiting
    /// (bounded) for `min_version`.
    pub async fn get(
        &self,
        principal: &Principal,
        id: Uuid,
        min_version: Option<u64>,
    ) -> Result<Option<ReportView>, AppError> {
        let scope = principal.scope(Action::ReadWork)?;
        let store = &self.store;
        let read = || async {
            let view = store.get(id).await?;
            Ok(visible::<ReportReadModel>(&scope, view))
        };
        wait_for_version(self.max_wait, min_version, read, |v| v.version).await
    }

    /// A page of the caller's teams' reports after the cursor.
    pub async fn list(
        &self,
        principal: &Principal,
        filter: &ReportFilter,
        first: Option<i64>,
        after: Option<Uuid>,
    ) -> Result<ReportPage, AppError> {
        let filter = Self::in_scope(principal, filter)?;
        Ok(self.store.list(&filter, page_size(first)?, after).await?)
    }

    /// How many of the caller's teams' reports match `filter` in all.
    pub async fn count(
        &self,
        principal: &Principal,
        filter: &ReportFilter,
    ) -> Result<u64, AppError> {
        let filter = Self::in_scope(principal, filter)?;
        Ok(self.store.count(&filter).await?)
    }

    /// `filter` narrowed to the teams the caller may read.
    fn in_scope(principal: &Principal, filter: &ReportFilter) -> Result<ReportFilter, AppError> {
        let scope = principal.scope(Action::ReadWork)?;
        Ok(ReportFilter {
            teams: scope.narrow(filter.teams.as_deref())?,
            ..filter.clone()
        })
    }
}

/// A row the caller may see, or `None`: another team's row reads as a missing one.
fn visible<M: ReadModel>(scope: &TeamScope, view: Option<M::View>) -> Option<M::View> {
    view.filter(|view| M::team(view).is_some_and(|team| scope.covers(team)))
}
