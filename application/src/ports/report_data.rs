//! What report generation reads: facts about a team's tasks.

use async_trait::async_trait;
use chronicle_domain::task::{Priority, TaskStatus};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ports::store_error::StoreError;

/// The facts about one task that reports need.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFacts {
    /// Task id.
    pub id: Uuid,
    /// Title, for listings.
    pub title: String,
    /// Current status.
    pub status: TaskStatus,
    /// Current assignee.
    pub assignee_id: Option<String>,
    /// Urgency.
    pub priority: Priority,
    /// Deadline.
    pub due_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last start.
    pub started_at: Option<DateTime<Utc>>,
    /// Last finish.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What report generation reads: facts about a team's tasks from the task read model.
#[async_trait]
pub trait ReportDataSource: Send + Sync {
    /// Every task of `team_id`.
    async fn team_tasks(&self, team_id: &str) -> Result<Vec<TaskFacts>, StoreError>;
}
