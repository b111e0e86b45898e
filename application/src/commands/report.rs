//! Report use cases: requests from users, lifecycle commands from the worker.

use std::sync::Arc;

use chronicle_domain::report::{Report, ReportCommand, ReportKind};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::executor::{AggregateExecutor, CommandOutcome, ExecuteOptions, LoadedAggregate};
use crate::access::{Action, Principal, TeamScope};
use crate::data::metadata::CommandMetadata;
use crate::error::AppError;
use crate::ports::event_store::EventStore;
use crate::privacy::personal_data::PersonalData;
use crate::topics::Topics;

/// Handles report commands.
pub struct ReportCommands {
    executor: AggregateExecutor<Report>,
}

impl ReportCommands {
    /// Report commands over `store`.
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

    /// Records a request for one of the caller's teams under a new UUIDv7; the worker picks it
    /// up from Kafka.
    pub async fn request(
        &self,
        principal: &Principal,
        kind: ReportKind,
        team_id: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let report_id = Uuid::now_v7();
        let command = ReportCommand::Request {
            report_id,
            kind,
            team_id,
            from,
            to,
            requested_by: metadata.actor_id.clone(),
        };
        let options = ExecuteOptions {
            expected_version: None,
            command_name: "requestReport",
            creates_aggregate: true,
            scope: principal.scope(Action::ChangeWork)?,
        };
        self.executor
            .execute(&report_id.to_string(), command, &options, metadata)
            .await
    }

    /// The report as the event store has it (the worker decides from this, not the read model).
    pub async fn load(&self, report_id: Uuid) -> Result<LoadedAggregate<Report>, AppError> {
        self.executor.load(&report_id.to_string()).await
    }

    async fn run(
        &self,
        report_id: Uuid,
        command: ReportCommand,
        name: &'static str,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let options = ExecuteOptions {
            expected_version: None,
            command_name: name,
            creates_aggregate: false,
            // Lifecycle commands come from the worker only, acting for the service.
            scope: TeamScope::All,
        };
        self.executor
            .execute(&report_id.to_string(), command, &options, metadata)
            .await
    }

    /// Marks generation started (counts the attempt).
    pub(crate) async fn start_generation(
        &self,
        report_id: Uuid,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        self.run(
            report_id,
            ReportCommand::StartGeneration,
            "startReportGeneration",
            metadata,
        )
        .await
    }

    /// Stores the result.
    pub async fn complete(
        &self,
        report_id: Uuid,
        result: Value,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        self.run(
            report_id,
            ReportCommand::Complete { result },
            "completeReport",
            metadata,
        )
        .await
    }

    /// Gives up with a reason.
    pub async fn fail(
        &self,
        report_id: Uuid,
        reason: String,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        self.run(
            report_id,
            ReportCommand::Fail { reason },
            "failReport",
            metadata,
        )
        .await
    }
}
