//! Read access to the task read model, and the filter it answers.

use async_trait::async_trait;
use chronicle_domain::task::{Priority, TaskStatus};
use uuid::Uuid;

use crate::data::views::TaskView;
use crate::ports::page::Page;
use crate::ports::store_error::StoreError;

/// Filters of the `tasks` query; all present filters must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Only these teams (`None`: every team). The use case narrows it to the caller's teams
    /// before the store sees it.
    pub teams: Option<Vec<String>>,
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
pub type TaskPage = Page<TaskView>;

/// Read access to the task read model.
#[async_trait]
pub trait TaskQueryStore: Send + Sync {
    /// One task by id.
    async fn get(&self, id: Uuid) -> Result<Option<TaskView>, StoreError>;

    /// A page of tasks in creation order after the cursor id.
    async fn list(
        &self,
        filter: &TaskFilter,
        first: usize,
        after: Option<Uuid>,
    ) -> Result<TaskPage, StoreError>;

    /// How many tasks match the filter in all: a scan of every match, so only run when a
    /// client asks for it.
    async fn count(&self, filter: &TaskFilter) -> Result<u64, StoreError>;
}
