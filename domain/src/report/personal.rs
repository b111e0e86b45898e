//! The personal fields of report events (docs/privacy.md).

use crate::personal::{not_personal, personal, NotPersonal, Personal, PersonalField};

/// Fields that name or were computed from people.
pub const PERSONAL_FIELDS: &[PersonalField] = &[
    personal("ReportRequested", "requestedBy", Personal::Subject),
    // Team summaries and workloads name assignees; overdue-task lists copy titles.
    personal("ReportCompleted", "result", Personal::Derived),
];

/// Every other field, and why it names nobody.
pub const NOT_PERSONAL: &[NotPersonal] = &[
    not_personal("ReportRequested", "reportId", "an id the service generated"),
    not_personal("ReportRequested", "kind", "a closed set"),
    not_personal("ReportRequested", "teamId", "a team: an organisation"),
    not_personal("ReportRequested", "from", "a period of the team's work"),
    not_personal("ReportRequested", "to", "a period of the team's work"),
    not_personal("ReportGenerationStarted", "attempt", "a count"),
    not_personal(
        "ReportFailed",
        "reason",
        "the worker's own text, about the work",
    ),
    not_personal("ReportFailed", "attempts", "a count"),
];

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::{json, Value};

    use super::*;
    use crate::ids::{TeamId, UserId};
    use crate::personal::tests::assert_every_field_is_judged;
    use crate::report::{ReportEvent, ReportKind};

    #[test]
    fn every_field_of_every_report_event_is_judged_personal_or_not() {
        let samples = [
            ReportEvent::ReportRequested {
                report_id: uuid::Uuid::now_v7(),
                kind: ReportKind::TeamSummary,
                team_id: TeamId::parse("team", "team-a").unwrap(),
                from: Utc::now(),
                to: Utc::now(),
                requested_by: UserId::parse("user", "u-1").unwrap(),
            },
            ReportEvent::ReportGenerationStarted { attempt: 1 },
            ReportEvent::ReportCompleted {
                result: json!({"byAssignee": {"u-2": 1}}),
            },
            ReportEvent::ReportFailed {
                reason: "r".into(),
                attempts: 1,
            },
        ];
        // Exhaustive: a new kind of event fails to compile here until it has a sample.
        for event in &samples {
            match event {
                ReportEvent::ReportRequested { .. }
                | ReportEvent::ReportGenerationStarted { .. }
                | ReportEvent::ReportCompleted { .. }
                | ReportEvent::ReportFailed { .. } => {}
            }
        }
        let values: Vec<Value> = samples
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_every_field_is_judged(&values, PERSONAL_FIELDS, NOT_PERSONAL);
    }
}
