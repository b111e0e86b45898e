//! Mutations: each becomes one command with the request's metadata.

use async_graphql::{Context, MaybeUndefined, Object, ID};
use chronicle_application::commands::{CommandOutcome, NewTask};
use chronicle_application::AppError;
use chronicle_domain::task::{TaskCommand, UpdateTaskDetails};

use super::arguments::{parse_id, parse_version};
use super::context::ContextExt;
use super::error::to_graphql;
use super::report::{ReportPayload, RequestReportInput};
use super::task::{CreateTaskInput, TaskPayload, UpdateTaskInput};

/// The mutation root.
#[derive(Default)]
pub struct MutationRoot;

fn payload(outcome: CommandOutcome) -> Result<TaskPayload, AppError> {
    Ok(TaskPayload {
        id: outcome
            .aggregate_id
            .parse()
            .map_err(|_| AppError::internal("task id is not a UUID"))?,
        version: outcome.version,
        replayed: outcome.replayed,
    })
}

impl MutationRoot {
    /// Runs a command on an existing task with the request's metadata.
    async fn run(
        ctx: &Context<'_>,
        name: &'static str,
        id: &ID,
        command: TaskCommand,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let metadata = request.metadata(idempotency_key)?;
            let id = parse_id("id", id)?;
            let expected = parse_version("expectedVersion", expected_version)?;
            let outcome = ctx
                .services()
                .task_commands
                .run(principal, id, command, name, expected, &metadata)
                .await?;
            payload(outcome)
        };
        run.await.map_err(|e| to_graphql(e, request))
    }
}

#[Object]
impl MutationRoot {
    /// Creates a task in a team; the creator is the caller.
    async fn create_task(
        &self,
        ctx: &Context<'_>,
        input: CreateTaskInput,
    ) -> async_graphql::Result<TaskPayload> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let metadata = request.metadata(input.idempotency_key)?;
            let outcome = ctx
                .services()
                .task_commands
                .create(
                    principal,
                    NewTask {
                        title: input.title,
                        description: input.description,
                        team_id: input.team_id,
                        assignee_id: input.assignee_id,
                        priority: input.priority.map(Into::into),
                        due_at: input.due_at,
                        labels: input.labels,
                        watchers: input.watchers,
                    },
                    &metadata,
                )
                .await?;
            payload(outcome)
        };
        run.await.map_err(|e| to_graphql(e, request))
    }

    /// Changes details; fields left out stay as they are. Changing nothing writes nothing.
    async fn update_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateTaskInput,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let due_at = match input.due_at {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(at) => Some(Some(at)),
        };
        let command = TaskCommand::UpdateDetails(UpdateTaskDetails {
            title: input.title,
            description: input.description,
            priority: input.priority.map(Into::into),
            due_at,
            labels: input.labels,
        });
        Self::run(
            ctx,
            "updateTask",
            &id,
            command,
            expected_version,
            idempotency_key,
        )
        .await
    }

    /// Makes someone responsible for the task.
    async fn assign_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        assignee_id: String,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let command = TaskCommand::Assign { assignee_id };
        Self::run(
            ctx,
            "assignTask",
            &id,
            command,
            expected_version,
            idempotency_key,
        )
        .await
    }

    /// Makes nobody responsible for the task.
    async fn unassign_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let command = TaskCommand::Unassign;
        Self::run(
            ctx,
            "unassignTask",
            &id,
            command,
            expected_version,
            idempotency_key,
        )
        .await
    }

    /// Open → in progress.
    async fn start_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let command = TaskCommand::Start;
        Self::run(
            ctx,
            "startTask",
            &id,
            command,
            expected_version,
            idempotency_key,
        )
        .await
    }

    /// In progress → completed, with an optional result.
    async fn complete_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        result: Option<String>,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let command = TaskCommand::Complete { result };
        Self::run(
            ctx,
            "completeTask",
            &id,
            command,
            expected_version,
            idempotency_key,
        )
        .await
    }

    /// In progress → failed, with the error.
    async fn fail_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        error: String,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let command = TaskCommand::Fail { error };
        Self::run(
            ctx,
            "failTask",
            &id,
            command,
            expected_version,
            idempotency_key,
        )
        .await
    }

    /// Open or in progress → cancelled.
    async fn cancel_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let command = TaskCommand::Cancel { reason };
        Self::run(
            ctx,
            "cancelTask",
            &id,
            command,
            expected_version,
            idempotency_key,
        )
        .await
    }

    /// Completed, failed or cancelled → open; clears the outcome.
    async fn reopen_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<TaskPayload> {
        let command = TaskCommand::Reopen;
        Self::run(
            ctx,
            "reopenTask",
            &id,
            command,
            expected_version,
            idempotency_key,
        )
        .await
    }

    /// Requests a report; answers at once with the report in status REQUESTED. The worker
    /// generates it in the background.
    async fn request_report(
        &self,
        ctx: &Context<'_>,
        input: RequestReportInput,
    ) -> async_graphql::Result<ReportPayload> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let metadata = request.metadata(input.idempotency_key)?;
            let outcome = ctx
                .services()
                .report_commands
                .request(
                    principal,
                    input.kind.into(),
                    input.team_id,
                    input.from,
                    input.to,
                    &metadata,
                )
                .await?;
            Ok::<_, AppError>(ReportPayload {
                id: outcome
                    .aggregate_id
                    .parse()
                    .map_err(|_| AppError::internal("report id is not a UUID"))?,
                version: outcome.version,
                replayed: outcome.replayed,
            })
        };
        run.await.map_err(|e| to_graphql(e, request))
    }
}
