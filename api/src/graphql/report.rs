//! GraphQL types of reports.

use async_graphql::parser::types::Field;
use async_graphql::{
    Context, ContextSelectionSet, Enum, InputObject, Json, Object, Positioned, SimpleObject, ID,
};
use chronicle_application::audit::TimeTravel;
use chronicle_application::data::table::ViewFilter;
use chronicle_application::projection::report::{ReportReadModel, ReportView};
use chronicle_application::queries::ReportQueries;
use chronicle_application::AppError;
use chronicle_domain::report;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::context::Services;
use super::in_place::ResolvesInPlace;
use super::view::{shows_a_column, FieldColumns, FilterInput, ViewNode};

/// What a report computes.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ReportKind {
    /// Tasks by status and assignee, completion rate, median cycle time.
    TeamSummary,
    /// Unfinished work per assignee.
    AssigneeWorkload,
    /// Unfinished tasks past their due date.
    OverdueTasks,
}

impl From<ReportKind> for report::ReportKind {
    fn from(kind: ReportKind) -> Self {
        match kind {
            ReportKind::TeamSummary => Self::TeamSummary,
            ReportKind::AssigneeWorkload => Self::AssigneeWorkload,
            ReportKind::OverdueTasks => Self::OverdueTasks,
        }
    }
}

impl From<report::ReportKind> for ReportKind {
    fn from(kind: report::ReportKind) -> Self {
        match kind {
            report::ReportKind::TeamSummary => Self::TeamSummary,
            report::ReportKind::AssigneeWorkload => Self::AssigneeWorkload,
            report::ReportKind::OverdueTasks => Self::OverdueTasks,
        }
    }
}

/// Where a report is in its lifecycle.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ReportStatus {
    /// Waiting for the worker.
    Requested,
    /// Being computed.
    Generating,
    /// Ready.
    Completed,
    /// Given up.
    Failed,
}

impl From<report::ReportStatus> for ReportStatus {
    fn from(status: report::ReportStatus) -> Self {
        match status {
            report::ReportStatus::Requested => Self::Requested,
            report::ReportStatus::Generating => Self::Generating,
            report::ReportStatus::Completed => Self::Completed,
            report::ReportStatus::Failed => Self::Failed,
        }
    }
}

impl From<ReportStatus> for report::ReportStatus {
    fn from(status: ReportStatus) -> Self {
        match status {
            ReportStatus::Requested => Self::Requested,
            ReportStatus::Generating => Self::Generating,
            ReportStatus::Completed => Self::Completed,
            ReportStatus::Failed => Self::Failed,
        }
    }
}

/// The parameters a report was requested with.
#[derive(SimpleObject)]
pub(crate) struct ReportParameters {
    /// The team.
    pub team_id: Option<String>,
    /// Period start.
    pub from: Option<DateTime<Utc>>,
    /// Period end.
    pub to: Option<DateTime<Utc>>,
}

/// A report, as the read model holds it.
pub struct Report(pub ReportView);

#[Object]
impl Report {
    /// The report's id (UUIDv7).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// How many events the report has.
    async fn version(&self) -> i64 {
        self.0.version as i64
    }
    async fn kind(&self) -> Option<ReportKind> {
        self.0.state.kind.map(Into::into)
    }
    async fn status(&self) -> ReportStatus {
        self.0.state.status.into()
    }
    async fn parameters(&self) -> ReportParameters {
        ReportParameters {
            team_id: self.0.state.team_id.as_ref().map(ToString::to_string),
            from: self.0.state.from,
            to: self.0.state.to,
        }
    }
    /// The computed result (shape per kind), once completed.
    async fn result(&self) -> Option<Json<Value>> {
        self.0.state.result.clone().map(Json)
    }
    /// Why it failed, if it did.
    async fn error(&self) -> Option<&str> {
        self.0.state.error.as_deref()
    }
    /// Generation attempts so far.
    async fn attempts(&self) -> i32 {
        self.0.state.attempts as i32
    }
    async fn requested_by(&self) -> Option<String> {
        self.0.state.requested_by.as_ref().map(ToString::to_string)
    }
    async fn requested_at(&self) -> DateTime<Utc> {
        self.0.requested_at
    }
    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.0.completed_at
    }
    /// The report's audit events in order (auditors and admins).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<super::audit::AuditEventConnection> {
        super::view::history::<ReportReadModel>(ctx, self.0.id, first, after).await
    }
}

/// The report's fields that show columns of its row, with those columns: a page reads only the
/// columns of the fields it asks for, and resolves these fields in place; the others
/// (`history`) read the store. A test checks the list against the schema and the table.
pub(crate) const REPORT_COLUMNS: &[FieldColumns] = &[
    ("id", &["id"]),
    ("version", &["version"]),
    ("kind", &["kind"]),
    ("status", &["status"]),
    ("parameters", &["team_id", "period_from", "period_to"]),
    ("result", &["result"]),
    ("error", &["error"]),
    ("attempts", &["attempts"]),
    ("requestedBy", &["requested_by"]),
    ("requestedAt", &["requested_at"]),
    ("completedAt", &["completed_at"]),
];

impl ResolvesInPlace for Report {
    fn in_place(field: &Positioned<Field>, _: &ContextSelectionSet<'_>) -> bool {
        shows_a_column(field, REPORT_COLUMNS)
    }
}

impl ViewNode for Report {
    type Model = ReportReadModel;
    const CURSOR: &'static str = "report";
    const COLUMNS: &'static [FieldColumns] = REPORT_COLUMNS;

    fn of(view: ReportView) -> Self {
        Self(view)
    }

    fn queries(services: &Services) -> &ReportQueries {
        &services.report_queries
    }

    fn history(services: &Services) -> &TimeTravel<ReportReadModel> {
        &services.report_history
    }
}

/// Input of `requestReport`.
#[derive(InputObject)]
pub struct RequestReportInput {
    /// What to compute.
    pub kind: ReportKind,
    /// The team.
    pub team_id: String,
    /// Period start (inclusive).
    pub from: DateTime<Utc>,
    /// Period end (exclusive); must be after `from`.
    pub to: DateTime<Utc>,
    /// Retrying with the same key answers the first result and writes nothing.
    pub idempotency_key: Option<String>,
}

/// Filters of `reports`.
#[derive(InputObject, Default)]
pub struct ReportFilter {
    /// Only this team.
    pub team_id: Option<String>,
    /// Only this status.
    pub status: Option<ReportStatus>,
    /// Only this kind.
    pub kind: Option<ReportKind>,
}

impl FilterInput for ReportFilter {
    fn into_view_filter(self) -> Result<ViewFilter, AppError> {
        let team = self
            .team_id
            .map(|t| chronicle_domain::ids::TeamId::parse("filter.teamId", &t))
            .transpose()?;
        Ok(chronicle_application::projection::report::ReportFilter {
            teams: team.map(|t| vec![t.to_string()]),
            status: self.status.map(Into::into),
            kind: self.kind.map(Into::into),
        }
        .into())
    }
}

/// What `requestReport` answers.
pub(crate) struct ReportPayload {
    /// The report's id.
    pub id: Uuid,
    /// Its version (1 right after the request).
    pub version: u64,
    /// Whether this repeats an earlier answer for the same idempotency key.
    pub replayed: bool,
}

#[Object]
impl ReportPayload {
    /// The report's id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// Its version.
    async fn version(&self) -> i64 {
        self.version as i64
    }
    /// True when an earlier request with the same idempotency key produced this answer.
    async fn replayed(&self) -> bool {
        self.replayed
    }
    /// The report at (at least) this version, from the read model.
    async fn report(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Report>> {
        super::view::written(ctx, self.id, self.version).await
    }
}
