//! The task read model: one row per task, reflecting a known version of its stream. This file
//! is the whole of the view's description: its fold, its table's columns and the filters the
//! `tasks` query offers. Storing, paging and serving it are generic.

use chronicle_domain::ids::{TeamId, UserId};
use chronicle_domain::task::{Priority, Task, TaskEvent, TaskStatus};
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::read_model::{EventContext, ReadModel};
use crate::aggregates;
use crate::data::table::{
    Cell, Cells, Column, ColumnType, Condition, CorruptRow, TableRow, ViewFilter,
};

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

impl TableRow for TaskView {
    const TABLE: &'static str = "tasks";
    const COLUMNS: &'static [Column] = &[
        Column::required("id", ColumnType::Uuid),
        Column::required("version", ColumnType::BigInt),
        Column::required("title", ColumnType::Text).omissible(),
        Column::required("description", ColumnType::Text).omissible(),
        Column::required("status", ColumnType::Text),
        Column::required("team_id", ColumnType::Text),
        Column::required("creator_id", ColumnType::Text),
        Column::optional("assignee_id", ColumnType::Text),
        Column::required("priority", ColumnType::Text),
        Column::optional("due_at", ColumnType::Timestamp),
        Column::required("labels", ColumnType::TextArray),
        Column::optional("result", ColumnType::Text),
        Column::optional("error", ColumnType::Text),
        Column::required("created_at", ColumnType::Timestamp),
        Column::required("updated_at", ColumnType::Timestamp),
        Column::optional("started_at", ColumnType::Timestamp),
        Column::optional("finished_at", ColumnType::Timestamp),
        Column::required("watchers", ColumnType::TextArray),
    ];
    const TEAM_COLUMN: &'static str = "team_id";

    fn cells(&self) -> Vec<Cell> {
        let task = &self.state;
        let text = |value: &str| Cell::Text(Some(value.to_owned()));
        vec![
            Cell::Uuid(self.id),
            Cell::BigInt(self.version as i64),
            text(&task.title),
            text(&task.description),
            text(task.status.as_str()),
            Cell::Text(task.team_id.as_ref().map(ToString::to_string)),
            Cell::Text(task.creator_id.as_ref().map(ToString::to_string)),
            Cell::Text(task.assignee_id.as_ref().map(ToString::to_string)),
            text(task.priority.as_str()),
            Cell::Timestamp(task.due_at),
            Cell::TextArray(task.labels.clone()),
            Cell::Text(task.result.clone()),
            Cell::Text(task.error.clone()),
            Cell::Timestamp(Some(self.created_at)),
            Cell::Timestamp(Some(self.updated_at)),
            Cell::Timestamp(self.started_at),
            Cell::Timestamp(self.finished_at),
            Cell::TextArray(self.watchers.clone()),
        ]
    }

    fn from_cells(cells: &mut Cells) -> Result<Self, CorruptRow> {
        let id = cells.uuid()?;
        let version = cells.count()?;
        let state = Task {
            id: Some(id),
            title: cells.text()?,
            description: cells.text()?,
            status: cells.parsed(|s| TaskStatus::parse(s).ok_or("not a task status"))?,
            team_id: Some(cells.parsed(|s| TeamId::parse("teamId", s))?),
            creator_id: Some(cells.parsed(|s| UserId::read_back("creatorId", s))?),
            assignee_id: cells.parsed_optional(|s| UserId::read_back("assigneeId", s))?,
            priority: cells.parsed(|s| Priority::parse(s).ok_or("not a priority"))?,
            due_at: cells.optional_timestamp()?,
            labels: cells.text_array()?,
            result: cells.optional_text()?,
            error: cells.optional_text()?,
        };
        Ok(Self {
            id,
            version,
            state,
            created_at: cells.timestamp()?,
            updated_at: cells.timestamp()?,
            started_at: cells.optional_timestamp()?,
            finished_at: cells.optional_timestamp()?,
            watchers: cells.text_array()?,
        })
    }
}

/// Filters of the `tasks` query; all present filters must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Only these teams (`None`: every team the caller may read).
    pub teams: Option<Vec<String>>,
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this assignee.
    pub assignee_id: Option<String>,
    /// Only this priority.
    pub priority: Option<Priority>,
    /// Only tasks carrying this label.
    pub label: Option<String>,
    /// Case-insensitive substring of title or description.
    pub text: Option<String>,
}

impl From<TaskFilter> for ViewFilter {
    fn from(filter: TaskFilter) -> Self {
        let equals =
            |column, value: Option<String>| value.map(|value| Condition::Equals { column, value });
        let conditions = [
            equals("status", filter.status.map(|s| s.as_str().to_owned())),
            equals("assignee_id", filter.assignee_id),
            equals("priority", filter.priority.map(|p| p.as_str().to_owned())),
            filter.label.map(|value| Condition::Holds {
                column: "labels",
                value,
            }),
            filter.text.map(|text| Condition::ContainsText {
                columns: &["title", "description"],
                text,
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
    use crate::data::message::EventMessage;
    use crate::projection::read_model::{domain_payload, fold, Fold};
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
    fn the_table_description_reads_back_every_column_and_names_only_its_columns() {
        let mut rows = std::collections::HashMap::new();
        let id = Uuid::from_u128(9);
        fold::<TaskReadModel>(&mut rows, id, &(&created()).into(), decode(&created()));
        let mut view = rows.remove(&id).unwrap();
        view.state.assignee_id = Some(UserId::parse("assigneeId", "u-2").unwrap());
        view.state.labels = vec!["a".into(), "b c".into()];
        view.state.result = Some("done".into());
        view.started_at = Some(Utc::now());
        let filter = ViewFilter::from(TaskFilter {
            teams: None,
            status: Some(TaskStatus::Open),
            assignee_id: Some("u-2".into()),
            priority: Some(Priority::High),
            label: Some("a".into()),
            text: Some("t".into()),
        });
        assert_eq!(filter.conditions.len(), 5, "every filter is a condition");
        crate::data::table::check_description(&view, &filter.conditions);
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
