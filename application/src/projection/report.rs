//! The report read model: one row per report with its status and result.

use chronicle_domain::report::{Report, ReportEvent};
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::read_model::{EventContext, ReadModel};
use crate::aggregates;

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
