//! The Report aggregate's state and rules.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::events::ReportEvent;
use super::kind::ReportKind;
use crate::error::DomainError;
use crate::ids::{TeamId, UserId};
use crate::validation::{self, MAX_OUTCOME_CHARS};

const AGGREGATE: &str = "report";

/// Longest period a report may cover; longer ones are almost certainly input mistakes and
/// would scan a team's whole history.
pub const MAX_PERIOD_DAYS: i64 = 3 * 366;

/// Where a report is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportStatus {
    /// Waiting for the worker.
    #[default]
    Requested,
    /// The worker is computing it.
    Generating,
    /// Ready.
    Completed,
    /// Given up.
    Failed,
}

impl ReportStatus {
    /// The API name (`GENERATING`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Generating => "GENERATING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses the API name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Requested,
            Self::Generating,
            Self::Completed,
            Self::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
    }

    /// Completed or failed: no command changes it any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// Commands on a report. `Serialize` lets the application fingerprint a request, to tell an
/// idempotent retry from a different request under the same key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ReportCommand {
    /// Ask for a report.
    Request {
        /// The id generated for it.
        report_id: Uuid,
        /// What to compute.
        kind: ReportKind,
        /// Raw team id.
        team_id: String,
        /// Period start.
        from: DateTime<Utc>,
        /// Period end; must be after `from`.
        to: DateTime<Utc>,
        /// The actor.
        requested_by: String,
    },
    /// The worker starts (or, after a redelivery, restarts) generation.
    StartGeneration,
    /// The worker finished.
    Complete {
        /// The result.
        result: Value,
    },
    /// The worker gave up.
    Fail {
        /// Why.
        reason: String,
    },
}

/// A report's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `None` until requested.
    pub id: Option<Uuid>,
    /// Lifecycle state.
    pub status: ReportStatus,
    /// What it computes.
    pub kind: Option<ReportKind>,
    /// Whose tasks.
    pub team_id: Option<TeamId>,
    /// Period start.
    pub from: Option<DateTime<Utc>>,
    /// Period end.
    pub to: Option<DateTime<Utc>>,
    /// Who asked.
    pub requested_by: Option<UserId>,
    /// Generation attempts so far.
    pub attempts: u32,
    /// The result, once completed.
    pub result: Option<Value>,
    /// The failure reason, once failed.
    pub error: Option<String>,
}

impl Report {
    fn decide(&self, command: ReportCommand) -> Result<Vec<ReportEvent>, DomainError> {
        let exists = self.id.is_some();
        if !exists && !matches!(command, ReportCommand::Request { .. }) {
            return Err(DomainError::NotFound {
                aggregate: AGGREGATE,
            });
        }
        match command {
            ReportCommand::Request {
                report_id,
                kind,
                team_id,
                from,
                to,
                requested_by,
            } => {
                if exists {
                    return Err(DomainError::AlreadyExists {
                        aggregate: AGGREGATE,
                    });
                }
                let team_id = TeamId::parse("teamId", &team_id)?;
                let requested_by = UserId::parse("requestedBy", &requested_by)?;
                if to <= from {
                    return Err(DomainError::validation("to", "must be after from"));
                }
                if to - from > Duration::days(MAX_PERIOD_DAYS) {
                    return Err(DomainError::validation(
                        "to",
                        format!("the period may span at most {MAX_PERIOD_DAYS} days"),
                    ));
                }
                Ok(vec![ReportEvent::ReportRequested {
                    report_id,
                    kind,
                    team_id,
                    from,
                    to,
                    requested_by,
                }])
            }
            ReportCommand::StartGeneration => match self.status {
                ReportStatus::Requested | ReportStatus::Generating => {
                    Ok(vec![ReportEvent::ReportGenerationStarted {
                        attempt: self.attempts + 1,
                    }])
                }
                // Already done: a redelivered request is recognised, not repeated.
                ReportStatus::Completed | ReportStatus::Failed => Ok(vec![]),
            },
            ReportCommand::Complete { result } => match self.status {
                ReportStatus::Generating => Ok(vec![ReportEvent::ReportCompleted { result }]),
                ReportStatus::Completed => Ok(vec![]),
                ReportStatus::Requested | ReportStatus::Failed => {
                    Err(DomainError::InvalidTransition {
                        aggregate: AGGREGATE,
                        action: "complete",
                        state: self.status.as_str(),
                    })
                }
            },
            ReportCommand::Fail { reason } => {
                let reason = reason.trim().to_owned();
                if reason.is_empty() {
                    return Err(DomainError::validation("reason", "must not be blank"));
                }
                validation::at_most("reason", &reason, MAX_OUTCOME_CHARS)?;
                match self.status {
                    ReportStatus::Requested | ReportStatus::Generating => {
                        Ok(vec![ReportEvent::ReportFailed {
                            reason,
                            attempts: self.attempts,
                        }])
                    }
                    ReportStatus::Failed | ReportStatus::Completed => Ok(vec![]),
                }
            }
        }
    }
}

impl Aggregate for Report {
    const TYPE: &'static str = "Report";
    type Command = ReportCommand;
    type Event = ReportEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ReportEvent::ReportRequested {
                report_id,
                kind,
                team_id,
                from,
                to,
                requested_by,
            } => {
                *self = Report {
                    id: Some(report_id),
                    status: ReportStatus::Requested,
                    kind: Some(kind),
                    team_id: Some(team_id),
                    from: Some(from),
                    to: Some(to),
                    requested_by: Some(requested_by),
                    attempts: 0,
                    result: None,
                    error: None,
                };
            }
            ReportEvent::ReportGenerationStarted { attempt } => {
                self.status = ReportStatus::Generating;
                self.attempts = attempt;
            }
            ReportEvent::ReportCompleted { result } => {
                self.status = ReportStatus::Completed;
                self.result = Some(result);
            }
            ReportEvent::ReportFailed { reason, .. } => {
                self.status = ReportStatus::Failed;
                self.error = Some(reason);
            }
        }
    }
}
