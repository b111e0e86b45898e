//! Given/when/then tests: every rule and every rejected transition of the Task aggregate.

use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::error::DomainError;
use crate::ids::{TeamId, UserId};

type TaskTest = TestFramework<Task>;

fn task_id() -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)
}

fn user(id: &str) -> UserId {
    UserId::parse("user", id).unwrap()
}

fn create_command() -> CreateTask {
    CreateTask {
        task_id: task_id(),
        title: "  Write the report ".into(),
        description: "Quarterly numbers".into(),
        team_id: "team-a".into(),
        creator_id: "u-1".into(),
        assignee_id: None,
        priority: Priority::High,
        due_at: None,
        labels: vec!["q3".into(), "finance".into(), "q3".into()],
        watchers: None,
    }
}

fn created() -> TaskEvent {
    TaskEvent::TaskCreated {
        task_id: task_id(),
        title: "Write the report".into(),
        description: "Quarterly numbers".into(),
        team_id: TeamId::parse("teamId", "team-a").unwrap(),
        creator_id: user("u-1"),
        assignee_id: None,
        priority: Priority::High,
        due_at: None,
        labels: vec!["finance".into(), "q3".into()],
        watchers: vec![user("u-1")],
    }
}

fn assigned(to: &str) -> TaskEvent {
    TaskEvent::TaskAssigned {
        assignee_id: user(to),
        previous_assignee_id: None,
    }
}

fn given_in(status: TaskStatus) -> Vec<TaskEvent> {
    let mut events = vec![created()];
    match status {
        TaskStatus::Open => {}
        TaskStatus::InProgress => events.push(TaskEvent::TaskStarted {}),
        TaskStatus::Completed => events.extend([
            TaskEvent::TaskStarted {},
            TaskEvent::TaskCompleted { result: None },
        ]),
        TaskStatus::Failed => events.extend([
            TaskEvent::TaskStarted {},
            TaskEvent::TaskFailed {
                error: "disk full".into(),
            },
        ]),
        TaskStatus::Cancelled => events.push(TaskEvent::TaskCancelled { reason: None }),
    }
    events
}

fn invalid(action: &'static str, status: TaskStatus) -> DomainError {
    DomainError::InvalidTransition {
        aggregate: "task",
        action,
        state: status.as_str(),
    }
}

#[test]
fn create_normalises_title_and_labels() {
    TaskTest::with(())
        .given_no_previous_events()
        .when(TaskCommand::Create(create_command()))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_rejects_blank_and_oversized_titles() {
    for (title, message) in [
        ("   ", "must not be blank"),
        (&"x".repeat(201)[..], "must be at most 200 characters"),
    ] {
        TaskTest::with(())
            .given_no_previous_events()
            .when(TaskCommand::Create(CreateTask {
                title: title.into(),
                ..create_command()
            }))
            .then_expect_error(DomainError::validation("title", message));
    }
}

#[test]
fn create_rejects_malformed_team_and_assignee_ids() {
    TaskTest::with(())
        .given_no_previous_events()
        .when(TaskCommand::Create(CreateTask {
            team_id: "team a".into(),
            ..create_command()
        }))
        .then_expect_error(DomainError::validation(
            "teamId",
            "may contain only letters, digits, '.', '_', '-', ':', '@' and '|'",
        ));
    TaskTest::with(())
        .given_no_previous_events()
        .when(TaskCommand::Create(CreateTask {
            assignee_id: Some(String::new()),
            ..create_command()
        }))
        .then_expect_error(DomainError::validation(
            "assigneeId",
            "must be 1 to 64 characters",
        ));
}

#[test]
fn create_rejects_an_oversized_description() {
    TaskTest::with(())
        .given_no_previous_events()
        .when(TaskCommand::Create(CreateTask {
            description: "d".repeat(10_001),
            ..create_command()
        }))
        .then_expect_error(DomainError::validation(
            "description",
            "must be at most 10000 characters",
        ));
}

#[test]
fn create_twice_is_refused() {
    TaskTest::with(())
        .given(vec![created()])
        .when(TaskCommand::Create(create_command()))
        .then_expect_error(DomainError::AlreadyExists { aggregate: "task" });
}

#[test]
fn commands_on_a_missing_task_are_not_found() {
    for command in [
        TaskCommand::Start,
        TaskCommand::Reopen,
        TaskCommand::Assign {
            assignee_id: "u-2".into(),
        },
    ] {
        TaskTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(DomainError::NotFound { aggregate: "task" });
    }
}

#[test]
fn update_emits_only_changed_fields() {
    let due = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
    TaskTest::with(())
        .given(vec![created()])
        .when(TaskCommand::UpdateDetails(UpdateTaskDetails {
            title: Some("Write the report".into()),
            description: Some("New".into()),
            priority: Some(Priority::High),
            due_at: Some(Some(due)),
            labels: Some(vec!["q3".into(), "finance".into()]),
        }))
        .then_expect_events(vec![TaskEvent::TaskDetailsUpdated {
            title: None,
            description: Some("New".into()),
            priority: None,
            due_at: Some(Some(due)),
            labels: None,
        }]);
}

#[test]
fn update_that_changes_nothing_emits_nothing() {
    TaskTest::with(())
        .given(vec![created()])
        .when(TaskCommand::UpdateDetails(UpdateTaskDetails {
            title: Some(" Write the report".into()),
            due_at: Some(None),
            ..Default::default()
        }))
        .then_expect_events(vec![]);
}

#[test]
fn update_of_a_finished_task_is_an_invalid_transition() {
    for status in [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::UpdateDetails(UpdateTaskDetails {
                title: Some("Other".into()),
                ..Default::default()
            }))
            .then_expect_error(invalid("update", status));
    }
}

#[test]
fn update_validates_labels_naming_the_position() {
    TaskTest::with(())
        .given(vec![created()])
        .when(TaskCommand::UpdateDetails(UpdateTaskDetails {
            labels: Some(vec!["ok".into(), "x".repeat(51)]),
            ..Default::default()
        }))
        .then_expect_error(DomainError::validation(
            "labels[1]",
            "must be at most 50 characters",
        ));
}

#[test]
fn assign_records_the_previous_assignee() {
    TaskTest::with(())
        .given(vec![created(), assigned("u-2")])
        .when(TaskCommand::Assign {
            assignee_id: "u-3".into(),
        })
        .then_expect_events(vec![TaskEvent::TaskAssigned {
            assignee_id: user("u-3"),
            previous_assignee_id: Some(user("u-2")),
        }]);
}

#[test]
fn assigning_the_current_assignee_emits_nothing() {
    TaskTest::with(())
        .given(vec![created(), assigned("u-2")])
        .when(TaskCommand::Assign {
            assignee_id: "u-2".into(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn unassign_emits_only_when_someone_is_assigned() {
    TaskTest::with(())
        .given(vec![created(), assigned("u-2")])
        .when(TaskCommand::Unassign)
        .then_expect_events(vec![TaskEvent::TaskUnassigned {
            previous_assignee_id: user("u-2"),
        }]);
    TaskTest::with(())
        .given(vec![created()])
        .when(TaskCommand::Unassign)
        .then_expect_events(vec![]);
}

#[test]
fn assignment_changes_are_refused_on_finished_tasks() {
    for status in [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::Assign {
                assignee_id: "u-9".into(),
            })
            .then_expect_error(invalid("assign", status));
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::Unassign)
            .then_expect_error(invalid("unassign", status));
    }
}

#[test]
fn the_happy_path_open_start_complete() {
    TaskTest::with(())
        .given(given_in(TaskStatus::Open))
        .when(TaskCommand::Start)
        .then_expect_events(vec![TaskEvent::TaskStarted {}]);
    TaskTest::with(())
        .given(given_in(TaskStatus::InProgress))
        .when(TaskCommand::Complete {
            result: Some(" shipped ".into()),
        })
        .then_expect_events(vec![TaskEvent::TaskCompleted {
            result: Some("shipped".into()),
        }]);
    TaskTest::with(())
        .given(given_in(TaskStatus::InProgress))
        .when(TaskCommand::Fail {
            error: "no data".into(),
        })
        .then_expect_events(vec![TaskEvent::TaskFailed {
            error: "no data".into(),
        }]);
}

#[test]
fn start_is_refused_unless_open_and_repeats_are_no_ops() {
    TaskTest::with(())
        .given(given_in(TaskStatus::InProgress))
        .when(TaskCommand::Start)
        .then_expect_events(vec![]);
    for status in [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::Start)
            .then_expect_error(invalid("start", status));
    }
}

#[test]
fn complete_requires_in_progress() {
    for status in [TaskStatus::Open, TaskStatus::Failed, TaskStatus::Cancelled] {
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::Complete { result: None })
            .then_expect_error(invalid("complete", status));
    }
    TaskTest::with(())
        .given(given_in(TaskStatus::Completed))
        .when(TaskCommand::Complete { result: None })
        .then_expect_events(vec![]);
}

#[test]
fn fail_requires_in_progress_and_an_error() {
    for status in [
        TaskStatus::Open,
        TaskStatus::Completed,
        TaskStatus::Cancelled,
    ] {
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::Fail { error: "x".into() })
            .then_expect_error(invalid("fail", status));
    }
    TaskTest::with(())
        .given(given_in(TaskStatus::InProgress))
        .when(TaskCommand::Fail { error: "  ".into() })
        .then_expect_error(DomainError::validation("error", "must not be blank"));
}

#[test]
fn cancel_from_open_or_in_progress_only() {
    for status in [TaskStatus::Open, TaskStatus::InProgress] {
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::Cancel {
                reason: Some("dup".into()),
            })
            .then_expect_events(vec![TaskEvent::TaskCancelled {
                reason: Some("dup".into()),
            }]);
    }
    for status in [TaskStatus::Completed, TaskStatus::Failed] {
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::Cancel { reason: None })
            .then_expect_error(invalid("cancel", status));
    }
}

#[test]
fn reopen_from_finished_states_only() {
    for status in [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ] {
        TaskTest::with(())
            .given(given_in(status))
            .when(TaskCommand::Reopen)
            .then_expect_events(vec![TaskEvent::TaskReopened {}]);
    }
    TaskTest::with(())
        .given(given_in(TaskStatus::InProgress))
        .when(TaskCommand::Reopen)
        .then_expect_error(invalid("reopen", TaskStatus::InProgress));
    TaskTest::with(())
        .given(given_in(TaskStatus::Open))
        .when(TaskCommand::Reopen)
        .then_expect_events(vec![]);
}

#[test]
fn folding_tracks_status_and_clears_outcome_on_reopen() {
    use cqrs_es::Aggregate;
    let mut task = Task::default();
    for event in given_in(TaskStatus::Failed) {
        task.apply(event);
    }
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.error.as_deref(), Some("disk full"));
    task.apply(TaskEvent::TaskReopened {});
    assert_eq!(task.status, TaskStatus::Open);
    assert_eq!(task.error, None);
}

#[test]
fn details_update_json_distinguishes_cleared_from_unchanged_due_date() {
    let cleared: TaskEvent =
        serde_json::from_str(r#"{"TaskDetailsUpdated":{"dueAt":null}}"#).unwrap();
    let unchanged: TaskEvent =
        serde_json::from_str(r#"{"TaskDetailsUpdated":{"title":"t"}}"#).unwrap();
    assert!(matches!(
        cleared,
        TaskEvent::TaskDetailsUpdated {
            due_at: Some(None),
            ..
        }
    ));
    assert!(matches!(
        unchanged,
        TaskEvent::TaskDetailsUpdated { due_at: None, .. }
    ));
    assert_eq!(
        serde_json::to_string(&cleared).unwrap(),
        r#"{"TaskDetailsUpdated":{"dueAt":null}}"#
    );
}
