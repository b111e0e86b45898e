//! GraphQL types of tasks.

use async_graphql::parser::types::Field;
use async_graphql::{
    Context, ContextSelectionSet, Enum, InputObject, MaybeUndefined, Object, Positioned, ID,
};
use chronicle_application::audit::TimeTravel;
use chronicle_application::data::table::ViewFilter;
use chronicle_application::projection::task::{TaskReadModel, TaskView};
use chronicle_application::queries::TaskQueries;
use chronicle_application::AppError;
use chronicle_domain::task;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::context::Services;
use super::in_place::ResolvesInPlace;
use super::view::{shows_a_column, FieldColumns, FilterInput, ViewNode};

/// Where a task is in its lifecycle.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TaskStatus {
    /// Created or reopened, not started.
    Open,
    /// Being worked on.
    InProgress,
    /// Finished successfully.
    Completed,
    /// Finished unsuccessfully.
    Failed,
    /// Abandoned.
    Cancelled,
}

impl From<task::TaskStatus> for TaskStatus {
    fn from(status: task::TaskStatus) -> Self {
        match status {
            task::TaskStatus::Open => Self::Open,
            task::TaskStatus::InProgress => Self::InProgress,
            task::TaskStatus::Completed => Self::Completed,
            task::TaskStatus::Failed => Self::Failed,
            task::TaskStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<TaskStatus> for task::TaskStatus {
    fn from(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Open => Self::Open,
            TaskStatus::InProgress => Self::InProgress,
            TaskStatus::Completed => Self::Completed,
            TaskStatus::Failed => Self::Failed,
            TaskStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// How urgent a task is.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Priority {
    /// Whenever there is time.
    Low,
    /// The default.
    Normal,
    /// Before normal work.
    High,
    /// Drop everything.
    Urgent,
}

impl From<task::Priority> for Priority {
    fn from(priority: task::Priority) -> Self {
        match priority {
            task::Priority::Low => Self::Low,
            task::Priority::Normal => Self::Normal,
            task::Priority::High => Self::High,
            task::Priority::Urgent => Self::Urgent,
        }
    }
}

impl From<Priority> for task::Priority {
    fn from(priority: Priority) -> Self {
        match priority {
            Priority::Low => Self::Low,
            Priority::Normal => Self::Normal,
            Priority::High => Self::High,
            Priority::Urgent => Self::Urgent,
        }
    }
}

/// A task, as the read model holds it.
pub struct Task(pub TaskView);

#[Object]
impl Task {
    /// The task's id (UUIDv7).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// How many events the task has; pass it as `expectedVersion` to pin a change to this state.
    async fn version(&self) -> i64 {
        self.0.version as i64
    }
    async fn title(&self) -> &str {
        &self.0.state.title
    }
    async fn description(&self) -> &str {
        &self.0.state.description
    }
    async fn status(&self) -> TaskStatus {
        self.0.state.status.into()
    }
    async fn team_id(&self) -> Option<String> {
        self.0.state.team_id.as_ref().map(ToString::to_string)
    }
    async fn creator_id(&self) -> Option<String> {
        self.0.state.creator_id.as_ref().map(ToString::to_string)
    }
    async fn assignee_id(&self) -> Option<String> {
        self.0.state.assignee_id.as_ref().map(ToString::to_string)
    }
    async fn priority(&self) -> Priority {
        self.0.state.priority.into()
    }
    async fn due_at(&self) -> Option<DateTime<Utc>> {
        self.0.state.due_at
    }
    async fn labels(&self) -> &[String] {
        &self.0.state.labels
    }
    /// Who follows the task.
    async fn watchers(&self) -> &[String] {
        &self.0.watchers
    }
    async fn result(&self) -> Option<&str> {
        self.0.state.result.as_deref()
    }
    async fn error(&self) -> Option<&str> {
        self.0.state.error.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The task's audit events in order (auditors and admins).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<super::audit::AuditEventConnection> {
        super::view::history::<TaskReadModel>(ctx, self.0.id, first, after).await
    }
}

/// The task's fields that show columns of its row, with those columns: a page reads only the
/// columns of the fields it asks for, and resolves these fields in place; the others
/// (`history`) read the store. A test checks the list against the schema and the table.
pub(crate) const TASK_COLUMNS: &[FieldColumns] = &[
    ("id", &["id"]),
    ("version", &["version"]),
    ("title", &["title"]),
    ("description", &["description"]),
    ("status", &["status"]),
    ("teamId", &["team_id"]),
    ("creatorId", &["creator_id"]),
    ("assigneeId", &["assignee_id"]),
    ("priority", &["priority"]),
    ("dueAt", &["due_at"]),
    ("labels", &["labels"]),
    ("watchers", &["watchers"]),
    ("result", &["result"]),
    ("error", &["error"]),
    ("createdAt", &["created_at"]),
    ("updatedAt", &["updated_at"]),
];

impl ResolvesInPlace for Task {
    fn in_place(field: &Positioned<Field>, _: &ContextSelectionSet<'_>) -> bool {
        shows_a_column(field, TASK_COLUMNS)
    }
}

impl ViewNode for Task {
    type Model = TaskReadModel;
    const CURSOR: &'static str = "task";
    const COLUMNS: &'static [FieldColumns] = TASK_COLUMNS;

    fn of(view: TaskView) -> Self {
        Self(view)
    }

    fn queries(services: &Services) -> &TaskQueries {
        &services.task_queries
    }

    fn history(services: &Services) -> &TimeTravel<TaskReadModel> {
        &services.task_history
    }
}

/// Filters of `tasks`; all given filters must match.
#[derive(InputObject, Default)]
pub struct TaskFilter {
    /// Only this team.
    pub team_id: Option<String>,
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this assignee.
    pub assignee_id: Option<String>,
    /// Only this priority.
    pub priority: Option<Priority>,
    /// Only tasks with this label.
    pub label: Option<String>,
    /// Case-insensitive text in title or description.
    pub text: Option<String>,
}

/// Longest `text` filter: longer is not a search a person types.
pub(crate) const MAX_TEXT_FILTER_CHARS: usize = 200;

impl FilterInput for TaskFilter {
    fn into_view_filter(self) -> Result<ViewFilter, AppError> {
        use chronicle_domain::ids::{TeamId, UserId};
        use chronicle_domain::validation::{at_most, MAX_LABEL_CHARS};
        let team = self
            .team_id
            .map(|t| TeamId::parse("filter.teamId", &t))
            .transpose()?;
        let assignee = self
            .assignee_id
            .map(|a| UserId::parse("filter.assigneeId", &a))
            .transpose()?;
        if let Some(label) = &self.label {
            at_most("filter.label", label, MAX_LABEL_CHARS)?;
        }
        if let Some(text) = &self.text {
            at_most("filter.text", text, MAX_TEXT_FILTER_CHARS)?;
        }
        Ok(chronicle_application::projection::task::TaskFilter {
            teams: team.map(|t| vec![t.to_string()]),
            status: self.status.map(Into::into),
            assignee_id: assignee.map(|a| a.to_string()),
            priority: self.priority.map(Into::into),
            label: self.label,
            text: self.text.filter(|t| !t.is_empty()),
        }
        .into())
    }
}

/// Input of `createTask`.
#[derive(InputObject)]
pub struct CreateTaskInput {
    /// 1 to 200 characters, not blank.
    pub title: String,
    /// Up to 10,000 characters.
    pub description: Option<String>,
    /// The owning team.
    pub team_id: String,
    /// First assignee.
    pub assignee_id: Option<String>,
    /// Urgency (NORMAL by default).
    pub priority: Option<Priority>,
    /// Deadline.
    pub due_at: Option<DateTime<Utc>>,
    /// Up to 20 labels of up to 50 characters.
    pub labels: Option<Vec<String>>,
    /// Up to 50 user ids who follow the task (the creator when absent).
    pub watchers: Option<Vec<String>>,
    /// Retrying with the same key answers the first result and writes nothing.
    pub idempotency_key: Option<String>,
}

/// Input of `updateTask`: absent fields stay as they are; `dueAt: null` clears the deadline.
#[derive(InputObject)]
pub struct UpdateTaskInput {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New deadline; `null` clears it.
    pub due_at: MaybeUndefined<DateTime<Utc>>,
    /// New labels (replace the current ones).
    pub labels: Option<Vec<String>>,
}

/// What a task mutation answers.
pub(crate) struct TaskPayload {
    /// The task's id.
    pub id: Uuid,
    /// Its version after the mutation.
    pub version: u64,
    /// Whether this is the stored answer of an earlier request with the same idempotency key.
    pub replayed: bool,
}

#[Object]
impl TaskPayload {
    /// The task's id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// The task's version after the mutation.
    async fn version(&self) -> i64 {
        self.version as i64
    }
    /// True when an earlier request with the same idempotency key produced this answer.
    async fn replayed(&self) -> bool {
        self.replayed
    }
    /// The task at (at least) this version: waits, bounded, for the read model to catch up.
    async fn task(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Task>> {
        super::view::written(ctx, self.id, self.version).await
    }
}
