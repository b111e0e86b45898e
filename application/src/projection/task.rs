//! The task read model: one row per task, reflecting a known version of its stream.

use std::collections::HashMap;
use std::sync::Arc;

use chronicle_domain::task::{Task, TaskEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::{domain_payload, BatchOutcome};
use crate::message::EventMessage;
use crate::ports::{StoreError, TaskViewStore};

/// The projection's name, as operators and `projections` see it.
pub const TASK_PROJECTION: &str = "tasks";

/// A task as queries see it: the aggregate's state plus when things happened.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// Task id.
    pub id: Uuid,
    /// The last sequence folded in.
    pub version: u64,
    /// Folded state, computed by the aggregate's own `apply`, so the read model cannot drift
    /// from the write model's rules.
    pub state: Task,
    /// When `TaskCreated` was recorded.
    pub created_at: DateTime<Utc>,
    /// When the last event was recorded.
    pub updated_at: DateTime<Utc>,
    /// When work last started (cycle time starts here).
    pub started_at: Option<DateTime<Utc>>,
    /// When it last completed, failed or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The result of folding one event into a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Fold {
    /// The row changed (boxed: rows are large, the other outcomes tiny).
    Applied(Box<TaskView>),
    /// The row already reflects this sequence (a redelivery).
    AlreadyApplied,
    /// The event does not follow the row's version: an earlier event is missing.
    Gap {
        /// The row's version (0 when absent).
        have: u64,
        /// The event's sequence.
        got: u64,
    },
}

/// Folds `event` (carried by `message`) into `current`.
pub fn fold(current: Option<&TaskView>, message: &EventMessage, event: TaskEvent) -> Fold {
    let have = current.map_or(0, |view| view.version);
    if message.sequence <= have {
        return Fold::AlreadyApplied;
    }
    if message.sequence != have + 1 {
        return Fold::Gap {
            have,
            got: message.sequence,
        };
    }
    let at = message.occurred_at;
    let mut view = match current {
        Some(view) => view.clone(),
        None => TaskView {
            id: Uuid::nil(), // set by TaskCreated, always sequence 1
            version: 0,
            state: Task::default(),
            created_at: at,
            updated_at: at,
            started_at: None,
            finished_at: None,
        },
    };
    match &event {
        TaskEvent::TaskCreated { task_id, .. } => {
            view.id = *task_id;
            view.created_at = at;
        }
        TaskEvent::TaskStarted {} => view.started_at = Some(at),
        TaskEvent::TaskCompleted { .. }
        | TaskEvent::TaskFailed { .. }
        | TaskEvent::TaskCancelled { .. } => view.finished_at = Some(at),
        TaskEvent::TaskReopened {} => view.finished_at = None,
        _ => {}
    }
    view.state.apply(event);
    view.version = message.sequence;
    view.updated_at = at;
    Fold::Applied(Box::new(view))
}

/// Applies batches of task events to the read model through a [`TaskViewStore`].
pub struct TaskProjector {
    store: Arc<dyn TaskViewStore>,
}

impl TaskProjector {
    /// A projector writing through `store`.
    pub fn new(store: Arc<dyn TaskViewStore>) -> Self {
        Self { store }
    }

    /// Applies a batch: one load and one atomic save for all tasks it touches. Messages of other
    /// aggregate types are ignored; undecodable ones are returned as rejected.
    pub async fn apply(&self, messages: &[EventMessage]) -> Result<BatchOutcome, StoreError> {
        let mut outcome = BatchOutcome::default();
        let mut decoded = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            if message.aggregate_type != "Task" {
                continue;
            }
            match serde_json::from_value::<TaskEvent>(domain_payload(message)) {
                Ok(event) => decoded.push((message, event)),
                Err(error) => outcome.rejected.push((
                    index,
                    format!(
                        "cannot read {} v{}: {error}",
                        message.event_type, message.event_version
                    ),
                )),
            }
        }
        let mut ids: Vec<Uuid> = decoded
            .iter()
            .filter_map(|(message, _)| message.aggregate_id.parse().ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows: HashMap<Uuid, TaskView> = self
            .store
            .load_many(&ids)
            .await?
            .into_iter()
            .map(|view| (view.id, view))
            .collect();
        let mut dirty: Vec<Uuid> = Vec::new();
        for (message, event) in decoded {
            let Ok(id) = message.aggregate_id.parse::<Uuid>() else {
                self.store
                    .record_failure(
                        TASK_PROJECTION,
                        message.event_id,
                        "aggregate id is not a UUID",
                        &serde_json::to_value(message).unwrap_or_default(),
                    )
                    .await?;
                continue;
            };
            match fold(rows.get(&id), message, event) {
                Fold::Applied(view) => {
                    outcome.applied += 1;
                    if !dirty.contains(&id) {
                        dirty.push(id);
                    }
                    rows.insert(id, *view);
                }
                Fold::AlreadyApplied => outcome.skipped += 1,
                Fold::Gap { have, got } => {
                    let reason = format!("sequence {got} does not follow version {have}");
                    tracing::warn!(task_id = %id, %reason, "task projection gap");
                    self.store
                        .record_failure(
                            TASK_PROJECTION,
                            message.event_id,
                            &reason,
                            &serde_json::to_value(message).unwrap_or_default(),
                        )
                        .await?;
                }
            }
        }
        let changed: Vec<TaskView> = dirty.iter().filter_map(|id| rows.remove(id)).collect();
        if !changed.is_empty() {
            self.store.save_many(&changed).await?;
        }
        Ok(outcome)
    }
}

#[async_trait::async_trait]
impl crate::ports::EventHandler for TaskProjector {
    async fn handle(
        &self,
        batch: &[EventMessage],
    ) -> Result<BatchOutcome, crate::ports::HandlerError> {
        Ok(self.apply(batch).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronicle_domain::task::TaskStatus;
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
        let first = created();
        let Fold::Applied(view) = fold(None, &first, decode(&first)) else {
            panic!("create not applied")
        };
        assert_eq!((view.version, view.state.title.as_str()), (1, "t"));
        assert_eq!(
            fold(Some(&view), &first, decode(&first)),
            Fold::AlreadyApplied
        );
        let third = message(3, "TaskStarted", json!({}));
        assert_eq!(
            fold(Some(&view), &third, decode(&third)),
            Fold::Gap { have: 1, got: 3 }
        );
        let second = message(2, "TaskStarted", json!({}));
        let Fold::Applied(started) = fold(Some(&view), &second, decode(&second)) else {
            panic!("start not applied")
        };
        assert_eq!(started.state.status, TaskStatus::InProgress);
        assert_eq!(started.started_at, Some(second.occurred_at));
    }
}
