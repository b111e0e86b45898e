//! Subscriptions over graphql-transport-ws, fed from the event store: from a cursor or from
//! now, in store order, each event once (docs/api.md, "Subscriptions").

use async_graphql::{Context, Json, Object, Subscription, ID};
use chronicle_application::aggregates;
use chronicle_application::data::message::EventMessage;
use chronicle_application::live::{LiveEvent, Start, Watch};
use chronicle_application::AppError;
use chronicle_domain::ids::TeamId;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use serde_json::Value;
use uuid::Uuid;

use super::arguments::parse_id;
use super::audit::{AuditEvent, AuditEventEdge, AuditFilter};
use super::context::{ContextExt, RequestContext};
use super::cursor::{encode_position, subscription_start};
use super::error::to_graphql;
use super::report::ReportStatus;

/// One task change, as a subscriber sees it.
pub(crate) struct TaskEventNotification(LiveEvent);

impl TaskEventNotification {
    fn message(&self) -> &EventMessage {
        &self.0.message
    }
}

#[Object]
impl TaskEventNotification {
    /// Pass it as `after` to resume after this event, on any instance.
    async fn cursor(&self) -> String {
        encode_position(self.0.position)
    }
    /// The event's id.
    async fn event_id(&self) -> ID {
        ID(self.message().event_id.to_string())
    }
    /// `TaskCreated`, `TaskStarted`, ...
    async fn event_type(&self) -> &str {
        &self.message().event_type
    }
    /// The task.
    async fn task_id(&self) -> ID {
        ID(self.message().aggregate_id.clone())
    }
    /// The task's version after this event.
    async fn sequence(&self) -> i64 {
        self.message().sequence as i64
    }
    /// When it happened.
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.message().occurred_at
    }
    /// Who did it.
    async fn actor_id(&self) -> &str {
        &self.message().actor_id
    }
    /// The user action it belongs to.
    async fn correlation_id(&self) -> &str {
        &self.message().correlation_id
    }
    /// The event's fields.
    async fn payload(&self) -> Json<Value> {
        Json(self.message().payload.clone())
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

/// Opens a subscription over `events`, each turned into its notification by `notify`; a
/// failure to read them ends it with that error, coded like any other.
fn notifications<T, N>(
    request: &RequestContext,
    events: BoxStream<'static, Result<T, AppError>>,
    notify: impl Fn(T) -> N + Send + 'static,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<N>>> {
    let for_errors = request.clone();
    let notifications =
        events.map(move |event| event.map(&notify).map_err(|e| to_graphql(e, &for_errors)));
    request
        .subscription(notifications)
        .map_err(|e| to_graphql(e, request))
}

/// The subscription root.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Task changes of one task (`taskId`) and/or one team (`teamId`), of the caller's teams
    /// only, in store order, each once: after the event whose `cursor` is `after` (`"0"`: from
    /// the beginning), caught up from the store and then live; without `after`, from now.
    async fn task_events(
        &self,
        ctx: &Context<'_>,
        task_id: Option<ID>,
        team_id: Option<ID>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<TaskEventNotification>>>
    {
        let request = ctx.request();
        let setup = || -> Result<_, AppError> {
            let principal = request.principal()?;
            let start = subscription_start(after.as_deref())?;
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
            ctx.services().live.watch(principal, watch, start)
        };
        let events = setup().map_err(|e| to_graphql(e, request))?;
        notifications(request, events, TaskEventNotification)
    }

    /// The audit trail's events matching `filter` (the fields of `auditTrail`'s), of the
    /// caller's teams, in store order, each once: after `after` (a cursor of a notification
    /// or of `auditTrail`; `"0"`: from the beginning), caught up from the store and then live;
    /// without `after`, from now. Needs the `auditor` or `admin` role.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilter>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<AuditEventEdge>>> {
        let request = ctx.request();
        let services = ctx.services().clone();
        let setup = async {
            let principal = request.principal()?;
            let start = subscription_start(after.as_deref())?;
            let filter = filter.map(AuditFilter::into_app).transpose()?;
            services
                .audit
                .follow(
                    services.live.feed(),
                    principal,
                    &filter.unwrap_or_default(),
                    start,
                )
                .await
        };
        let events = setup.await.map_err(|e| to_graphql(e, request))?;
        notifications(request, events, |entry| AuditEventEdge {
            cursor: encode_position(entry.position),
            node: AuditEvent(entry),
        })
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
        // The report's whole stream from the store (a few events), not from now: the read
        // model read below may lag the store, and a change it does not show yet must still
        // come; what it shows is skipped by version.
        let changes = services
            .live
            .watch(principal, watch, Start::After(0))
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
                    // A store that cannot be read ends the subscription; the client asks again.
                    let message = changes.next().await?.ok()?.message;
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
