//! The task read model: one row per task, reflecting a known version of its stream.

use chronicle_domain::task::{Task, TaskEvent};
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::read_model::{EventContext, ReadModel};
use crate::aggregates;

/// The projection's name, as operators and `projections` see it.
pub const TASK_PROJECTION: &str = aggregates::TASKS.projection;

pub use crate::data::views::TaskView;

/// The `tasks` read model.
pub struct TaskReadModel;

impl ReadModel for TaskReadModel {
    type Event = TaskEvent;
    type View = TaskView;
    const AGGREGATE_TYPE: &'static str = aggregates::TASK.type_name;
    const NAME: &'static str = TASK_PROJECTION;
    // 2: rows gained `watchers`.
    const VERSION: u32 = 2;

    fn id(view: &TaskView) -> Uuid {
        view.id
    }

    fn version(view: &TaskView) -> u64 {
        view.version
    }

    fn team(view: &TaskView) -> Option<&str> {
        view.state.team_id.as_ref().map(|team| team.as_str())
    }

    fn apply(current: Option<TaskView>, context: &EventContext, event: TaskEvent) -> TaskView {
        let at = context.occurred_at;
        let mut view = current.unwrap_or_else(|| TaskView {
            id: Uuid::nil(), // set by TaskCreated, always sequence 1
            version: 0,
            state: Task::default(),
            created_at: at,
            updated_at: at,
            started_at: None,
            finished_at: None,
            watchers: Vec::new(),
        });
        match &event {
            TaskEvent::TaskCreated {
                task_id, watchers, ..
            } => {
                view.id = *task_id;
                view.created_at = at;
                view.watchers = watchers.iter().map(|w| w.as_str().to_owned()).collect();
            }
            TaskEvent::TaskStarted {} => view.started_at = Some(at),
            TaskEvent::TaskCompleted { .. }
            | TaskEvent::TaskFailed { .. }
            | TaskEvent::TaskCancelled { .. } => view.finished_at = Some(at),
            TaskEvent::TaskReopened {} => view.finished_at = None,
            _ => {}
        }
        view.state.apply(event);
        view.version = context.sequence;
        view.updated_at = at;
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::message::EventMessage;
    use crate::projection::read_model::{domain_payload, fold, Fold};
    use chronicle_domain::task::TaskStatus;
    use chrono::Utc;
    use serde_json::json;

    fn message(sequence: u64, event_type: &str, payload: serde_json::Value) -> EventMessage {
        EventMessage {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            event_version: "1.0".into(),
            aggregate_type: "Task".into(),
            aggregate_id: Uuid::from_u128(9).to_string(),
            sequence,
            occurred_at: Utc::now(),
            actor_id: "u-1".into(),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            source_service: "chronicle".into(),
            payload,
            personal_data: None,
            traceparent: None,
        }
    }

    fn created() -> EventMessage {
        message(
            1,
            "TaskCreated",
            json!({"taskId": Uuid::from_u128(9), "title": "t", "description": "", "teamId": "team-a",
                   "creatorId": "u-1", "assigneeId": null, "priority": "LOW", "dueAt": null, "labels": []}),
        )
    }

    fn decode(message: &EventMessage) -> TaskEvent {
        serde_json::from_value(domain_payload(message)).unwrap()
    }

    #[test]
    fn folds_in_order_skips_redeliveries_and_reports_gaps() {
        let id = Uuid::from_u128(9);
        let mut rows = std::collections::HashMap::new();
        let first = created();
        let apply = |rows: &mut std::collections::HashMap<Uuid, TaskView>,
                     message: &EventMessage| {
            fold::<TaskReadModel>(rows, id, &message.into(), decode(message))
        };
        assert_eq!(
            apply(&mut rows, &first),
            Fold::Applied,
            "create not applied"
        );
        let view = &rows[&id];
        assert_eq!((view.version, view.state.title.as_str()), (1, "t"));
        assert_eq!(apply(&mut rows, &first), Fold::AlreadyApplied);
        let third = message(3, "TaskStarted", json!({}));
        assert_eq!(apply(&mut rows, &third), Fold::Gap { have: 1, got: 3 });
        let second = message(2, "TaskStarted", json!({}));
        assert_eq!(
            apply(&mut rows, &second),
            Fold::Applied,
            "start not applied"
        );
        let started = &rows[&id];
        assert_eq!(started.state.status, TaskStatus::InProgress);
        assert_eq!(started.started_at, Some(second.occurred_at));
    }
}
