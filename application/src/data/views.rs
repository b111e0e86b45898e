//! What the read models hold of each aggregate, as queries answer it: the aggregate's folded
//! state and when things happened. The projections build these; the query ports return them.

use chronicle_domain::report::Report;
use chronicle_domain::task::Task;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A task as queries see it: the aggregate's state plus when things happened.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// Task id.
    pub id: Uuid,
    /// The last sequence folded in.
    pub version: u64,
    /// Folded state, computed by the aggregate's own `apply`, so the read model cannot drift
    /// from the write model's rules.
    pub state: Task,
    /// When `TaskCreated` was recorded.
    pub created_at: DateTime<Utc>,
    /// When the last event was recorded.
    pub updated_at: DateTime<Utc>,
    /// When work last started (cycle time starts here).
    pub started_at: Option<DateTime<Utc>>,
    /// When it last completed, failed or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Who follows it (the aggregate ignores followers; only the read model keeps them).
    pub watchers: Vec<String>,
}

/// A report as queries see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportView {
    /// Report id.
    pub id: Uuid,
    /// The last sequence folded in.
    pub version: u64,
    /// Folded state (the aggregate's own `apply`).
    pub state: Report,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When it completed or failed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When the last event was recorded.
    pub updated_at: DateTime<Utc>,
}
