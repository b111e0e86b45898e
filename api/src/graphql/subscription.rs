//! Subscriptions over graphql-transport-ws, fed from the live event feed.

use std::collections::HashMap;

use async_graphql::{Context, Json, Object, Subscription, ID};
use chronicle_application::message::EventMessage;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};
use futures::stream::{self, Stream, StreamExt};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::context::ContextExt;
use super::error::to_graphql;
use super::query::parse_id;
use super::report::ReportStatus;

/// One task change, as a subscriber sees it.
pub struct TaskEventNotification(EventMessage);

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
pub struct ReportStatusNotification {
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
    /// Task changes as they happen, of one task (`taskId`) and/or one team (`teamId`).
    async fn task_events(
        &self,
        ctx: &Context<'_>,
        task_id: Option<ID>,
        team_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = TaskEventNotification>> {
        let request = ctx.request();
        let services = ctx.services().clone();
        let setup = || -> Result<_, AppError> {
            request.actor()?;
            let task_id = task_id
                .as_ref()
                .map(|id| parse_id("taskId", id))
                .transpose()?;
            Ok(task_id)
        };
        let task_id = setup().map_err(|e| to_graphql(e, request))?;
        let team_id = team_id.map(|t| t.0);
        let receiver = services.live_feed.subscribe();
        // Team of each task seen, so later events (which do not repeat the team) can be
        // filtered without a query per event; the read model answers for older tasks.
        let teams: HashMap<String, String> = HashMap::new();
        let state = (receiver, teams, services);
        Ok(stream::unfold(
            state,
            move |(mut receiver, mut teams, services)| {
                let team_id = team_id.clone();
                async move {
                    loop {
                        let message = match receiver.recv().await {
                            Ok(message) => message,
                            Err(RecvError::Lagged(missed)) => {
                                tracing::warn!(missed, "subscriber too slow; events skipped");
                                continue;
                            }
                            Err(RecvError::Closed) => return None,
                        };
                        if message.aggregate_type != "Task" {
                            continue;
                        }
                        if task_id.is_some_and(|id| id.to_string() != message.aggregate_id) {
                            continue;
                        }
                        if let Some(wanted) = &team_id {
                            if let Some(team) = message.payload["teamId"].as_str() {
                                teams.insert(message.aggregate_id.clone(), team.to_owned());
                            }
                            if !teams.contains_key(&message.aggregate_id) {
                                if let Ok(id) = message.aggregate_id.parse::<Uuid>() {
                                    if let Ok(Some(view)) =
                                        services.task_queries.get(id, None).await
                                    {
                                        if let Some(team) = view.state.team_id {
                                            teams.insert(
                                                message.aggregate_id.clone(),
                                                team.to_string(),
                                            );
                                        }
                                    }
                                }
                            }
                            if teams.get(&message.aggregate_id) != Some(wanted) {
                                continue;
                            }
                        }
                        return Some((TaskEventNotification(message), (receiver, teams, services)));
                    }
                }
            },
        ))
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
        let report_id = (|| {
            request.actor()?;
            parse_id("reportId", &report_id)
        })()
        .map_err(|e| to_graphql(e, request))?;
        // Subscribe before reading the current state so no change falls in between.
        let receiver = services.live_feed.subscribe();
        let current = services
            .report_queries
            .get(report_id, None)
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
            (receiver, finished_already, last_version),
            move |(mut receiver, finished, mut last_version)| async move {
                if finished {
                    return None;
                }
                loop {
                    let message = match receiver.recv().await {
                        Ok(message) => message,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    };
                    if message.aggregate_id != report_id.to_string() {
                        continue;
                    }
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
                    return Some((notification, (receiver, done, last_version)));
                }
            },
        );
        Ok(stream::iter(first).chain(live))
    }
}
