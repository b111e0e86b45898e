//! What can happen to a report.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::kind::ReportKind;
use crate::ids::{TeamId, UserId};

/// The schema version report events are written with today.
pub const REPORT_EVENT_VERSION: &str = "1.0";

/// A change to a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum ReportEvent {
    /// Someone asked for a report; the worker acts on this event.
    ReportRequested {
        /// The service-generated id.
        report_id: Uuid,
        /// What to compute.
        kind: ReportKind,
        /// Whose tasks.
        team_id: TeamId,
        /// Start of the period (inclusive).
        from: DateTime<Utc>,
        /// End of the period (exclusive).
        to: DateTime<Utc>,
        /// Who asked.
        requested_by: UserId,
    },
    /// The worker began computing it.
    ReportGenerationStarted {
        /// Which delivery attempt of the request this is (1-based).
        attempt: u32,
    },
    /// The report is ready.
    ReportCompleted {
        /// The computed result (shape per kind, see docs/api.md).
        result: Value,
    },
    /// The report could not be computed.
    ReportFailed {
        /// Why.
        reason: String,
        /// How many attempts were made.
        attempts: u32,
    },
}

impl ReportEvent {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ReportRequested { .. } => "ReportRequested",
            Self::ReportGenerationStarted { .. } => "ReportGenerationStarted",
            Self::ReportCompleted { .. } => "ReportCompleted",
            Self::ReportFailed { .. } => "ReportFailed",
        }
    }
}

impl DomainEvent for ReportEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        REPORT_EVENT_VERSION.to_owned()
    }
}
