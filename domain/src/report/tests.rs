//! Given/when/then tests of the Report aggregate.

use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::error::DomainError;
use crate::ids::{TeamId, UserId};

type ReportTest = TestFramework<Report>;

fn id() -> Uuid {
    Uuid::from_u128(42)
}

fn request() -> ReportCommand {
    ReportCommand::Request {
        report_id: id(),
        kind: ReportKind::TeamSummary,
        team_id: "team-a".into(),
        from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        to: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
        requested_by: "u-1".into(),
    }
}

fn requested() -> ReportEvent {
    ReportEvent::ReportRequested {
        report_id: id(),
        kind: ReportKind::TeamSummary,
        team_id: TeamId::parse("teamId", "team-a").unwrap(),
        from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        to: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
        requested_by: UserId::parse("u", "u-1").unwrap(),
    }
}

fn started(attempt: u32) -> ReportEvent {
    ReportEvent::ReportGenerationStarted { attempt }
}

#[test]
fn a_request_is_recorded() {
    ReportTest::with(())
        .given_no_previous_events()
        .when(request())
        .then_expect_events(vec![requested()]);
}

#[test]
fn a_period_that_ends_before_it_starts_is_refused() {
    let ReportCommand::Request { from, .. } = request() else {
        unreachable!()
    };
    ReportTest::with(())
        .given_no_previous_events()
        .when(ReportCommand::Request {
            report_id: id(),
            kind: ReportKind::OverdueTasks,
            team_id: "team-a".into(),
            from,
            to: from,
            requested_by: "u-1".into(),
        })
        .then_expect_error(DomainError::validation("to", "must be after from"));
}

#[test]
fn a_malformed_team_is_refused() {
    let ReportCommand::Request { from, to, .. } = request() else {
        unreachable!()
    };
    ReportTest::with(())
        .given_no_previous_events()
        .when(ReportCommand::Request {
            report_id: id(),
            kind: ReportKind::TeamSummary,
            team_id: "no spaces".into(),
            from,
            to,
            requested_by: "u-1".into(),
        })
        .then_expect_error(DomainError::validation(
            "teamId",
            "may contain only letters, digits, '.', '_', '-', ':', '@' and '|'",
        ));
}

#[test]
fn generation_starts_counts_attempts_and_completes() {
    ReportTest::with(())
        .given(vec![requested()])
        .when(ReportCommand::StartGeneration)
        .then_expect_events(vec![started(1)]);
    ReportTest::with(())
        .given(vec![requested(), started(1)])
        .when(ReportCommand::StartGeneration)
        .then_expect_events(vec![started(2)]);
    ReportTest::with(())
        .given(vec![requested(), started(1)])
        .when(ReportCommand::Complete {
            result: json!({"total": 1}),
        })
        .then_expect_events(vec![ReportEvent::ReportCompleted {
            result: json!({"total": 1}),
        }]);
}

#[test]
fn commands_after_completion_are_recognised_as_done() {
    let done = vec![
        requested(),
        started(1),
        ReportEvent::ReportCompleted { result: json!({}) },
    ];
    for command in [
        ReportCommand::StartGeneration,
        ReportCommand::Complete {
            result: json!({"again": true}),
        },
        ReportCommand::Fail {
            reason: "late".into(),
        },
    ] {
        ReportTest::with(())
            .given(done.clone())
            .when(command)
            .then_expect_events(vec![]);
    }
}

#[test]
fn completing_without_generation_or_after_failure_is_invalid() {
    ReportTest::with(())
        .given(vec![requested()])
        .when(ReportCommand::Complete { result: json!({}) })
        .then_expect_error(DomainError::InvalidTransition {
            aggregate: "report",
            action: "complete",
            state: "REQUESTED",
        });
    ReportTest::with(())
        .given(vec![
            requested(),
            started(1),
            ReportEvent::ReportFailed {
                reason: "x".into(),
                attempts: 1,
            },
        ])
        .when(ReportCommand::Complete { result: json!({}) })
        .then_expect_error(DomainError::InvalidTransition {
            aggregate: "report",
            action: "complete",
            state: "FAILED",
        });
}

#[test]
fn failing_records_reason_and_attempts() {
    ReportTest::with(())
        .given(vec![requested(), started(1), started(2)])
        .when(ReportCommand::Fail {
            reason: " no data ".into(),
        })
        .then_expect_events(vec![ReportEvent::ReportFailed {
            reason: "no data".into(),
            attempts: 2,
        }]);
    ReportTest::with(())
        .given(vec![requested()])
        .when(ReportCommand::Fail { reason: " ".into() })
        .then_expect_error(DomainError::validation("reason", "must not be blank"));
}

#[test]
fn commands_on_a_missing_report_are_not_found() {
    ReportTest::with(())
        .given_no_previous_events()
        .when(ReportCommand::StartGeneration)
        .then_expect_error(DomainError::NotFound {
            aggregate: "report",
        });
}
