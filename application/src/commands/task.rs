//! Task use cases: one method per public mutation.

use std::sync::Arc;

use chronicle_domain::task::{CreateTask, Task, TaskCommand, UpdateTaskDetails};
use uuid::Uuid;

use super::executor::{AggregateExecutor, CommandOutcome, ExecuteOptions};
use crate::access::{Action, Principal};
use crate::data::metadata::CommandMetadata;
use crate::error::AppError;
use crate::ports::event_store::EventStore;
use crate::privacy::personal_data::PersonalData;
use crate::topics::Topics;

/// Handles task commands for a [`Principal`], on its teams only. The actor always comes from
/// `metadata` (built from the principal at the edge), never from input.
pub struct TaskCommands {
    executor: AggregateExecutor<Task>,
}

impl TaskCommands {
    /// Task commands over `store`.
    pub fn new(
        store: Arc<dyn EventStore>,
        topics: Topics,
        snapshot_every: u64,
        personal: Arc<PersonalData>,
    ) -> Self {
        Self {
            executor: AggregateExecutor::new(store, topics, snapshot_every, personal),
        }
    }

    /// The executor, for reads of the write model in tests.
    #[cfg(test)]
    pub(crate) fn executor(&self) -> &AggregateExecutor<Task> {
        &self.executor
    }

    /// Creates a task under a new UUIDv7 in one of the caller's teams; the creator is the actor.
    pub async fn create(
        &self,
        principal: &Principal,
        input: NewTask,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let task_id = Uuid::now_v7();
        let command = TaskCommand::Create(CreateTask {
            task_id,
            title: input.title,
            description: input.description.unwrap_or_default(),
            team_id: input.team_id,
            creator_id: metadata.actor_id.clone(),
            assignee_id: input.assignee_id,
            priority: input.priority.unwrap_or_default(),
            due_at: input.due_at,
            labels: input.labels.unwrap_or_default(),
            watchers: input.watchers,
        });
        let options = ExecuteOptions {
            expected_version: None,
            command_name: "createTask",
            creates_aggregate: true,
            scope: principal.scope(Action::ChangeWork)?,
        };
        self.executor
            .execute(&task_id.to_string(), command, &options, metadata)
            .await
    }

    /// Runs any command on an existing task of the caller's teams (another team's task answers
    /// as if it did not exist); `command_name` is the mutation's name.
    pub async fn run(
        &self,
        principal: &Principal,
        task_id: Uuid,
        command: TaskCommand,
        command_name: &'static str,
        expected_version: Option<u64>,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let options = ExecuteOptions {
            expected_version,
            command_name,
            creates_aggregate: false,
            scope: principal.scope(Action::ChangeWork)?,
        };
        self.executor
            .execute(&task_id.to_string(), command, &options, metadata)
            .await
    }

    /// Changes details; only changed fields are recorded.
    pub async fn update(
        &self,
        principal: &Principal,
        task_id: Uuid,
        update: UpdateTaskDetails,
        expected_version: Option<u64>,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        self.run(
            principal,
            task_id,
            TaskCommand::UpdateDetails(update),
            "updateTask",
            expected_version,
            metadata,
        )
        .await
    }
}

/// Input of `createTask`, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Owning team.
    pub team_id: String,
    /// First assignee.
    pub assignee_id: Option<String>,
    /// Urgency (NORMAL when absent).
    pub priority: Option<chronicle_domain::task::Priority>,
    /// Deadline.
    pub due_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Labels.
    pub labels: Option<Vec<String>>,
    /// Who follows it (the creator when absent).
    pub watchers: Option<Vec<String>>,
}
