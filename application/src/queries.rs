//! Task queries, including read-your-writes through `minVersion`.

use std::sync::Arc;
use std::time::Duration;

use chronicle_domain::task::{Priority, TaskStatus};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::AppError;
use crate::ports::TaskQueryStore;
use crate::projection::task::TaskView;

/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: usize = 100;
/// Page size when the client does not say.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Filters of the `tasks` query; all present filters must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Only this team.
    pub team_id: Option<String>,
    /// Only these statuses.
    pub status: Option<TaskStatus>,
    /// Only this assignee.
    pub assignee_id: Option<String>,
    /// Only this priority.
    pub priority: Option<Priority>,
    /// Only tasks carrying this label.
    pub label: Option<String>,
    /// Case-insensitive substring of title or description.
    pub text: Option<String>,
}

/// One page of tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPage {
    /// The tasks, in creation order.
    pub items: Vec<TaskView>,
    /// How many tasks match the filter in all.
    pub total_count: u64,
    /// Whether more match after the last item.
    pub has_next_page: bool,
}

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

    /// One task. With `min_version`, waits (bounded) until the read model reflects at least that
    /// version, then answers `STALE_READ` if it still does not.
    pub async fn get(
        &self,
        id: Uuid,
        min_version: Option<u64>,
    ) -> Result<Option<TaskView>, AppError> {
        let Some(wanted) = min_version else {
            return Ok(self.store.get(id).await?);
        };
        let deadline = Instant::now() + self.max_wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let view = self.store.get(id).await?;
            let current = view.as_ref().map_or(0, |v| v.version);
            if current >= wanted {
                return Ok(view);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(AppError::StaleRead { wanted, current });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// A page of tasks after the cursor; `first` must be 1..=100.
    pub async fn list(
        &self,
        filter: &TaskFilter,
        first: Option<i64>,
        after: Option<Uuid>,
    ) -> Result<TaskPage, AppError> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if n < 1 => return Err(AppError::validation("first", "must be at least 1")),
            Some(n) if n as u64 > MAX_PAGE_SIZE as u64 => {
                return Err(AppError::LimitExceeded(format!(
                    "first: at most {MAX_PAGE_SIZE} items per page"
                )))
            }
            Some(n) => n as usize,
        };
        Ok(self.store.list(filter, first, after).await?)
    }
}
