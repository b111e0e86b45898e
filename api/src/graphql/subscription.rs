//! Subscriptions over graphql-transport-ws, fed from the live event feed.

use async_graphql::{Context, Json, Object, Subscription, ID};
use chronicle_application::aggregates;
use chronicle_application::data::message::EventMessage;
use chronicle_application::live::Watch;
use chronicle_application::AppError;
use chronicle_domain::ids::TeamId;
use chrono::{DateTime, Utc};
use futures::stream::{self, Stream, StreamExt};
use serde_json::Value;
use uuid::Uuid;

use super::arguments::parse_id;
use super::context::ContextExt;
use super::error::to_graphql;
use super::report::ReportStatus;

/// One task change, as a subscriber sees it.
pub(crate) struct TaskEventNotification(EventMessage);

#[Object]
impl TaskEventNotification {
    /// The event's id.
    async fn event_id(&self) -> ID {
        ID(self.0.event_id.to_string())
    }
    /// `TaskCreated`, `TaskStarted`, ...
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// The task.
    async fn task_id(&self) -> ID {
        ID(self.0.aggregate_id.clone())
    }
    /// The task's version after this event.
    async fn sequence(&self) -> i64 {
        self.0.sequence as i64
    }
    /// When it happened.
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    /// Who did it.
    async fn actor_id(&self) -> &str {
        &self.0.actor_id
    }
    /// The user action it belongs to.
    async fn correlation_id(&self) -> &str {
        &self.0.correlation_id
    }
    /// The event's fields.
    async fn payload(&self) -> Json<Value> {
        Json(self.0.payload.clone())
    }
}

/// A report's status change.
pub(crate) struct ReportStatusNotification {
    report_id: Uuid,
    status: ReportStatus,
    version: u64,
    error: Option<String>,
}

#[Object]
impl ReportStatusNotification {
    /// The report.
    async fn report_id(&self) -> ID {
        ID(self.report_id.to_string())
    }
    /// Its status now.
    async fn status(&self) -> ReportStatus {
        self.status
    }
    /// Its version now.
    async fn version(&self) -> i64 {
        self.version as i64
    }
    /// Why it failed, when it did.
    async fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

fn report_status_of(message: &EventMessage) -> Option<(ReportStatus, Option<String>)> {
    match message.event_type.as_str() {
        "ReportRequested" => Some((ReportStatus::Requested, None)),
        "ReportGenerationStarted" => Some((ReportStatus::Generating, None)),
        "ReportCompleted" => Some((ReportStatus::Completed, None)),
        "ReportFailed" => Some((
            ReportStatus::Failed,
            message.payload["reason"].as_str().map(str::to_owned),
        )),
        _ => None,
    }
}

/// The subscription root.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Task changes as they happen, of one task (`taskId`) and/or one team (`teamId`), of the
    /// caller's teams only.
    async fn task_events(
        &self,
        ctx: &Context<'_>,
        task_id: Option<ID>,
        team_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = TaskEventNotification>> {
        let request = ctx.request();
        let setup = || -> Result<_, AppError> {
            let principal = request.principal()?;
            let aggregate_id = task_id
                .as_ref()
                .map(|id| parse_id("taskId", id).map(|id| id.to_string()))
                .transpose()?;
            let teams = team_id
                .as_ref()
                .map(|t| TeamId::parse("teamId", t).map(|t| vec![t.to_string()]))
                .transpose()?;
            let watch = Watch {
                aggregate_type: aggregates::TASK.type_name,
                aggregate_id,
                teams,
            };
            ctx.services().live.watch(principal, watch)
        };
        let events = setup().map_err(|e| to_graphql(e, request))?;
        request
            .subscription(events.map(TaskEventNotification))
            .map_err(|e| to_graphql(e, request))
    }

    /// A report's status: its current status first, then each change; ends when the report
    /// is completed or failed.
    async fn report_status(
        &self,
        ctx: &Context<'_>,
        report_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = ReportStatusNotification>> {
        let request = ctx.request();
        let services = ctx.services().clone();
        let principal = request.principal().map_err(|e| to_graphql(e, request))?;
        let report_id = parse_id("reportId", &report_id).map_err(|e| to_graphql(e, request))?;
        // Subscribe before reading the current state so no change falls in between. Both are
        // scoped: another team's report is silent, as one that does not exist.
        let watch = Watch {
            aggregate_type: aggregates::REPORT.type_name,
            aggregate_id: Some(report_id.to_string()),
            teams: None,
        };
        let changes = services
            .live
            .watch(principal, watch)
            .map_err(|e| to_graphql(e, request))?;
        let current = services
            .report_queries
            .get(principal, report_id, None)
            .await
            .map_err(|e| to_graphql(e, request))?;
        let first = current.map(|view| ReportStatusNotification {
            report_id,
            status: view.state.status.into(),
            version: view.version,
            error: view.state.error.clone(),
        });
        let last_version = first.as_ref().map_or(0, |n| n.version);
        let finished_already = first
            .as_ref()
            .is_some_and(|n| matches!(n.status, ReportStatus::Completed | ReportStatus::Failed));
        let live = stream::unfold(
            (changes, finished_already, last_version),
            move |(mut changes, finished, mut last_version)| async move {
                if finished {
                    return None;
                }
                loop {
                    let message = changes.next().await?;
                    if message.sequence <= last_version {
                        continue; // already reported (the initial state or a redelivery)
                    }
                    last_version = message.sequence;
                    let Some((status, error)) = report_status_of(&message) else {
                        continue;
                    };
                    let done = matches!(status, ReportStatus::Completed | ReportStatus::Failed);
                    let notification = ReportStatusNotification {
                        report_id,
                        status,
                        version: message.sequence,
                        error,
                    };
                    return Some((notification, (changes, done, last_version)));
                }
            },
        );
        request
            .subscription(stream::iter(first).chain(live))
            .map_err(|e| to_graphql(e, request))
    }
}
