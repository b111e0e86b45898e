//! The personal fields of task events (docs/privacy.md).

use crate::personal::{not_personal, personal, NotPersonal, Personal, PersonalField};

/// Fields that name or were written by a person.
pub const PERSONAL_FIELDS: &[PersonalField] = &[
    personal("TaskCreated", "creatorId", Personal::Subject),
    personal("TaskCreated", "assigneeId", Personal::Subject),
    personal("TaskCreated", "watchers", Personal::Subjects),
    personal("TaskCreated", "title", Personal::Authored),
    personal("TaskCreated", "description", Personal::Authored),
    personal("TaskDetailsUpdated", "title", Personal::Authored),
    personal("TaskDetailsUpdated", "description", Personal::Authored),
    personal("TaskAssigned", "assigneeId", Personal::Subject),
    personal("TaskAssigned", "previousAssigneeId", Personal::Subject),
    personal("TaskUnassigned", "previousAssigneeId", Personal::Subject),
    personal("TaskCompleted", "result", Personal::Authored),
    personal("TaskFailed", "error", Personal::Authored),
    personal("TaskCancelled", "reason", Personal::Authored),
];

/// Every other field, and why it names nobody.
pub const NOT_PERSONAL: &[NotPersonal] = &[
    not_personal("TaskCreated", "taskId", "an id the service generated"),
    not_personal("TaskCreated", "teamId", "a team: an organisation"),
    not_personal("TaskCreated", "priority", "a closed set"),
    not_personal("TaskCreated", "dueAt", "a date of the work"),
    not_personal("TaskCreated", "labels", "the team's taxonomy"),
    not_personal("TaskDetailsUpdated", "priority", "a closed set"),
    not_personal("TaskDetailsUpdated", "dueAt", "a date of the work"),
    not_personal("TaskDetailsUpdated", "labels", "the team's taxonomy"),
];

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::Value;

    use super::*;
    use crate::ids::{TeamId, UserId};
    use crate::personal::tests::assert_every_field_is_judged;
    use crate::task::{Priority, TaskEvent};

    /// One event of each kind, every optional field present.
    fn samples() -> Vec<TaskEvent> {
        let user = |id: &str| UserId::parse("user", id).unwrap();
        vec![
            TaskEvent::TaskCreated {
                task_id: uuid::Uuid::now_v7(),
                title: "t".into(),
                description: "d".into(),
                team_id: TeamId::parse("team", "team-a").unwrap(),
                creator_id: user("u-1"),
                assignee_id: Some(user("u-2")),
                priority: Priority::High,
                due_at: Some(Utc::now()),
                labels: vec!["l".into()],
                watchers: vec![user("u-3")],
            },
            TaskEvent::TaskDetailsUpdated {
                title: Some("t".into()),
                description: Some("d".into()),
                priority: Some(Priority::Low),
                due_at: Some(Some(Utc::now())),
                labels: Some(vec!["l".into()]),
            },
            TaskEvent::TaskAssigned {
                assignee_id: user("u-2"),
                previous_assignee_id: Some(user("u-1")),
            },
            TaskEvent::TaskUnassigned {
                previous_assignee_id: user("u-2"),
            },
            TaskEvent::TaskStarted {},
            TaskEvent::TaskCompleted {
                result: Some("r".into()),
            },
            TaskEvent::TaskFailed { error: "e".into() },
            TaskEvent::TaskCancelled {
                reason: Some("r".into()),
            },
            TaskEvent::TaskReopened {},
        ]
    }

    #[test]
    fn every_field_of_every_task_event_is_judged_personal_or_not() {
        let samples = samples();
        // Exhaustive: a new kind of event fails to compile here until it has a sample.
        let kinds: std::collections::BTreeSet<&str> = samples
            .iter()
            .map(|event| match event {
                TaskEvent::TaskCreated { .. }
                | TaskEvent::TaskDetailsUpdated { .. }
                | TaskEvent::TaskAssigned { .. }
                | TaskEvent::TaskUnassigned { .. }
                | TaskEvent::TaskStarted {}
                | TaskEvent::TaskCompleted { .. }
                | TaskEvent::TaskFailed { .. }
                | TaskEvent::TaskCancelled { .. }
                | TaskEvent::TaskReopened {} => event.name(),
            })
            .collect();
        assert_eq!(kinds.len(), 9, "one sample of each of the 9 kinds");
        let values: Vec<Value> = samples
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_every_field_is_judged(&values, PERSONAL_FIELDS, NOT_PERSONAL);
    }
}
