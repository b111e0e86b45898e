//! The report worker: reacts to `ReportRequested`, generates, completes or fails the report.
//!
//! It decides from the event store (not the read model), so a redelivered request for a report
//! that is already finished is recognised and skipped: processing a message twice never
//! completes a report twice. Attempts are counted durably by `ReportGenerationStarted` events,
//! so the retry bound survives crashes too. Commands carry the request's correlation id and the
//! `ReportRequested` event id as causation, linking the whole chain in the audit trail.

use std::sync::Arc;

use async_trait::async_trait;
use chronicle_domain::report::{ReportEvent, ReportStatus};
use chrono::Utc;
use uuid::Uuid;

use super::compute::compute;
use crate::aggregates;
use crate::commands::ReportCommands;
use crate::data::message::EventMessage;
use crate::data::metadata::CommandMetadata;
use crate::data::trace::TraceContext;
use crate::error::AppError;
use crate::error_chain::Chain;
use crate::ports::event_handler::BatchOutcome;
use crate::ports::event_handler::{EventHandler, HandlerError};
use crate::ports::report_data::ReportDataSource;
use crate::projection::read_model::domain_payload;
use tracing::Instrument as _;

/// The actor of the worker's commands.
pub(crate) const WORKER_ACTOR: &str = chronicle_domain::ids::REPORT_WORKER;

/// Generates reports requested on the report topic.
pub struct ReportWorker {
    commands: Arc<ReportCommands>,
    data: Arc<dyn ReportDataSource>,
    max_attempts: u32,
}

impl ReportWorker {
    /// A worker issuing `commands`, reading `data`, giving up after `max_attempts` generations.
    pub fn new(
        commands: Arc<ReportCommands>,
        data: Arc<dyn ReportDataSource>,
        max_attempts: u32,
    ) -> Self {
        Self {
            commands,
            data,
            max_attempts,
        }
    }

    async fn generate(
        &self,
        report_id: Uuid,
        message: &EventMessage,
        trace: &TraceContext,
    ) -> Result<(), HandlerError> {
        let metadata = CommandMetadata {
            actor_id: WORKER_ACTOR.to_owned(),
            correlation_id: message.correlation_id.clone(),
            causation_id: message.event_id.to_string(),
            traceparent: Some(trace.header()),
            idempotency_key: None,
        };
        let loaded = self.commands.load(report_id).await.map_err(transient)?;
        let report = loaded.aggregate;
        if report.status.is_finished() {
            tracing::debug!(%report_id, "report already finished; redelivery skipped");
            return Ok(());
        }
        if report.status == ReportStatus::Generating && report.attempts >= self.max_attempts {
            let reason = format!("generation failed {} times; giving up", report.attempts);
            self.commands
                .fail(report_id, reason, &metadata)
                .await
                .map_err(transient)?;
            return Ok(());
        }
        self.commands
            .start_generation(report_id, &metadata)
            .await
            .map_err(transient)?;
        let (Some(kind), Some(team), Some(from), Some(to)) =
            (report.kind, report.team_id.as_ref(), report.from, report.to)
        else {
            let reason = "the request lacks its kind, team or period".to_owned();
            self.commands
                .fail(report_id, reason, &metadata)
                .await
                .map_err(transient)?;
            return Ok(());
        };
        let tasks = self
            .data
            .team_tasks(team.as_str())
            .await
            .map_err(HandlerError::from)?;
        let result = compute(kind, &tasks, from, to, Utc::now());
        self.commands
            .complete(report_id, result, &metadata)
            .await
            .map_err(transient)?;
        Ok(())
    }
}

/// A failed command of the worker: retried, and without limit while the database is away.
fn transient(error: AppError) -> HandlerError {
    let reason = Chain(&error).to_string();
    match error {
        AppError::Unavailable(_) => HandlerError::Unavailable(reason),
        _ => HandlerError::Transient(reason),
    }
}

#[async_trait]
impl EventHandler for ReportWorker {
    async fn handle(&self, batch: &[EventMessage]) -> Result<BatchOutcome, HandlerError> {
        let mut outcome = BatchOutcome::default();
        for (index, message) in batch.iter().enumerate() {
            if message.aggregate_type != aggregates::REPORT.type_name
                || message.event_type != "ReportRequested"
            {
                outcome.skipped += 1;
                continue;
            }
            let request = serde_json::from_value::<ReportEvent>(domain_payload(message));
            let report_id = match (request, message.aggregate_id.parse::<Uuid>()) {
                (Ok(ReportEvent::ReportRequested { report_id, .. }), Ok(id)) if report_id == id => {
                    id
                }
                (Err(error), _) => {
                    outcome
                        .rejected
                        .push((index, format!("unreadable ReportRequested: {error}")));
                    continue;
                }
                _ => {
                    outcome.rejected.push((
                        index,
                        "report id does not match the aggregate id".to_owned(),
                    ));
                    continue;
                }
            };
            // The generation is a span of the request's trace; the report's events name it.
            let trace = TraceContext::continue_from(message.traceparent.as_deref());
            let span = tracing::info_span!(
                "generate_report",
                otel.kind = "internal",
                %report_id,
                correlation_id = %message.correlation_id,
                trace_id = trace.trace_id(),
                span_id = trace.span_id(),
                parent_span_id = trace.parent_span_id(),
                sampled = trace.sampled(),
            );
            self.generate(report_id, message, &trace)
                .instrument(span)
                .await?;
            outcome.applied += 1;
        }
        Ok(outcome)
    }
}
