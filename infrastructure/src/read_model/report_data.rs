//! The task facts report generation reads, from the task read model.

use async_trait::async_trait;
use chronicle_application::ports::report_data::{ReportDataSource, TaskFacts};
use chronicle_application::ports::store_error::StoreError;
use chronicle_domain::task::{Priority, TaskStatus};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::backend;

/// Task facts for report generation, read from `tasks`.
#[derive(Clone)]
pub struct PgReportData {
    pool: PgPool,
}

impl PgReportData {
    /// Reads `tasks` on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One task's facts as stored.
struct FactsRow {
    id: Uuid,
    title: String,
    status: String,
    assignee_id: Option<String>,
    priority: String,
    due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl FactsRow {
    fn facts(self) -> Result<TaskFacts, StoreError> {
        let unknown = |what: &str, value: &str| {
            StoreError::corrupt(format!(
                "tasks row {} has an unknown {what} {value:?}",
                self.id
            ))
        };
        Ok(TaskFacts {
            status: TaskStatus::parse(&self.status)
                .ok_or_else(|| unknown("status", &self.status))?,
            priority: Priority::parse(&self.priority)
                .ok_or_else(|| unknown("priority", &self.priority))?,
            id: self.id,
            title: self.title,
            assignee_id: self.assignee_id,
            due_at: self.due_at,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

#[async_trait]
impl ReportDataSource for PgReportData {
    async fn team_tasks(&self, team_id: &str) -> Result<Vec<TaskFacts>, StoreError> {
        let rows = sqlx::query_as!(
            FactsRow,
            "SELECT id, title, status, assignee_id, priority, due_at, created_at, started_at,
                    finished_at
             FROM tasks WHERE team_id = $1",
            team_id
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(FactsRow::facts).collect()
    }
}
