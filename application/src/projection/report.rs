//! The report read model: one row per report with its status and result. Like
//! `projection::task`, this file is the view's whole description: fold, columns, filters.

use chronicle_domain::ids::{TeamId, UserId};
use chronicle_domain::report::{Report, ReportEvent, ReportKind, ReportStatus};
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::read_model::{EventContext, ReadModel};
use crate::aggregates;
use crate::data::table::{
    Cell, Cells, Column, ColumnType, Condition, CorruptRow, TableRow, ViewFilter,
};

/// The projection's name.
pub const REPORT_PROJECTION: &str = aggregates::REPORTS.projection;

pub use crate::data::views::ReportView;

/// The `reports` read model.
pub struct ReportReadModel;

impl ReadModel for ReportReadModel {
    type Event = ReportEvent;
    type View = ReportView;
    const AGGREGATE_TYPE: &'static str = aggregates::REPORT.type_name;
    const NAME: &'static str = REPORT_PROJECTION;
    const VERSION: u32 = 1;

    fn id(view: &ReportView) -> Uuid {
        view.id
    }

    fn version(view: &ReportView) -> u64 {
        view.version
    }

    fn team(view: &ReportView) -> Option<&str> {
        view.state.team_id.as_ref().map(|team| team.as_str())
    }

    fn apply(
        current: Option<ReportView>,
        context: &EventContext,
        event: ReportEvent,
    ) -> ReportView {
        let at = context.occurred_at;
        let mut view = current.unwrap_or_else(|| ReportView {
            id: Uuid::nil(), // set by ReportRequested, always sequence 1
            version: 0,
            state: Report::default(),
            requested_at: at,
            completed_at: None,
            updated_at: at,
        });
        match &event {
            ReportEvent::ReportRequested { report_id, .. } => {
                view.id = *report_id;
                view.requested_at = at;
            }
            ReportEvent::ReportCompleted { .. } | ReportEvent::ReportFailed { .. } => {
                view.completed_at = Some(at);
            }
            ReportEvent::ReportGenerationStarted { .. } => {}
        }
        view.state.apply(event);
        view.version = context.sequence;
        view.updated_at = at;
        view
    }
}

impl TableRow for ReportView {
    const TABLE: &'static str = "reports";
    const COLUMNS: &'static [Column] = &[
        Column::required("id", ColumnType::Uuid),
        Column::required("version", ColumnType::BigInt),
        Column::required("kind", ColumnType::Text),
        Column::required("status", ColumnType::Text),
        Column::required("team_id", ColumnType::Text),
        Column::required("period_from", ColumnType::Timestamp),
        Column::required("period_to", ColumnType::Timestamp),
        Column::required("requested_by", ColumnType::Text),
        Column::required("attempts", ColumnType::Integer),
        Column::optional("result", ColumnType::Jsonb),
        Column::optional("error", ColumnType::Text),
        Column::required("requested_at", ColumnType::Timestamp),
        Column::optional("completed_at", ColumnType::Timestamp),
        Column::required("updated_at", ColumnType::Timestamp),
    ];
    const TEAM_COLUMN: &'static str = "team_id";

    fn cells(&self) -> Vec<Cell> {
        let report = &self.state;
        vec![
            Cell::Uuid(self.id),
            Cell::BigInt(self.version as i64),
            Cell::Text(report.kind.map(|kind| kind.as_str().to_owned())),
            Cell::Text(Some(report.status.as_str().to_owned())),
            Cell::Text(report.team_id.as_ref().map(ToString::to_string)),
            // A requested report always has its period; the fallback only keeps the column's
            // NOT NULL for a row folded from a stream missing its request.
            Cell::Timestamp(Some(report.from.unwrap_or(self.requested_at))),
            Cell::Timestamp(Some(report.to.unwrap_or(self.requested_at))),
            Cell::Text(report.requested_by.as_ref().map(ToString::to_string)),
            Cell::Integer(i32::try_from(report.attempts).unwrap_or(i32::MAX)),
            Cell::Jsonb(report.result.clone()),
            Cell::Text(report.error.clone()),
            Cell::Timestamp(Some(self.requested_at)),
            Cell::Timestamp(self.completed_at),
            Cell::Timestamp(Some(self.updated_at)),
        ]
    }

    fn from_cells(cells: &mut Cells) -> Result<Self, CorruptRow> {
        let id = cells.uuid()?;
        let version = cells.count()?;
        let state = Report {
            id: Some(id),
            kind: Some(cells.parsed(|s| ReportKind::parse(s).ok_or("not a report kind"))?),
            status: cells.parsed(|s| ReportStatus::parse(s).ok_or("not a report status"))?,
            team_id: Some(cells.parsed(|s| TeamId::parse("teamId", s))?),
            from: Some(cells.timestamp()?),
            to: Some(cells.timestamp()?),
            requested_by: Some(cells.parsed(|s| UserId::read_back("requestedBy", s))?),
            attempts: cells.small_count()?,
            result: cells.json()?,
            error: cells.optional_text()?,
        };
        Ok(Self {
            id,
            version,
            state,
            requested_at: cells.timestamp()?,
            completed_at: cells.optional_timestamp()?,
            updated_at: cells.timestamp()?,
        })
    }
}

/// Filters of the `reports` query; all present filters must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportFilter {
    /// Only these teams (`None`: every team the caller may read).
    pub teams: Option<Vec<String>>,
    /// Only this status.
    pub status: Option<ReportStatus>,
    /// Only this kind.
    pub kind: Option<ReportKind>,
}

impl From<ReportFilter> for ViewFilter {
    fn from(filter: ReportFilter) -> Self {
        let conditions = [
            filter.status.map(|status| Condition::Equals {
                column: "status",
                value: status.as_str().to_owned(),
            }),
            filter.kind.map(|kind| Condition::Equals {
                column: "kind",
                value: kind.as_str().to_owned(),
            }),
        ];
        ViewFilter {
            teams: filter.teams,
            conditions: conditions.into_iter().flatten().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    #[test]
    fn the_table_description_reads_back_every_column_and_names_only_its_columns() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
        let view = ReportView {
            id: Uuid::from_u128(7),
            version: 3,
            state: Report {
                id: Some(Uuid::from_u128(7)),
                status: ReportStatus::Completed,
                kind: Some(ReportKind::TeamSummary),
                team_id: Some(TeamId::parse("teamId", "team-a").unwrap()),
                from: Some(at),
                to: Some(at + chrono::Duration::days(1)),
                requested_by: Some(UserId::parse("requestedBy", "u-1").unwrap()),
                attempts: 2,
                result: Some(json!({"total": 3})),
                error: None,
            },
            requested_at: at,
            completed_at: Some(at),
            updated_at: at,
        };
        let filter = ViewFilter::from(ReportFilter {
            teams: None,
            status: Some(ReportStatus::Failed),
            kind: Some(ReportKind::OverdueTasks),
        });
        assert_eq!(filter.conditions.len(), 2, "every filter is a condition");
        crate::data::table::check_description(&view, &filter.conditions);
    }
}
