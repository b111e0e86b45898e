//! The Task aggregate's state, rules and event folding.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{CreateTask, TaskCommand, UpdateTaskDetails};
use super::events::TaskEvent;
use super::status::{Priority, TaskStatus};
use crate::error::DomainError;
use crate::ids::{TeamId, UserId};
use crate::validation::{self, MAX_DESCRIPTION_CHARS, MAX_OUTCOME_CHARS};

const AGGREGATE: &str = "task";

/// A task's current state, folded from its events.
///
/// Fields are public for reading (time travel turns this state into an API object); they change
/// only through [`Aggregate::apply`], which is what keeps the event stream the truth.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// `None` until `TaskCreated` was applied: the aggregate does not exist yet.
    pub id: Option<Uuid>,
    /// Lifecycle state.
    pub status: TaskStatus,
    /// Current title.
    pub title: String,
    /// Current description.
    pub description: String,
    /// Owning team (set by creation).
    pub team_id: Option<TeamId>,
    /// Creator (set by creation).
    pub creator_id: Option<UserId>,
    /// Current assignee.
    pub assignee_id: Option<UserId>,
    /// Current urgency.
    pub priority: Priority,
    /// Current deadline.
    pub due_at: Option<DateTime<Utc>>,
    /// Canonical labels.
    pub labels: Vec<String>,
    /// Outcome of the last completion (cleared by reopen).
    pub result: Option<String>,
    /// Error of the last failure (cleared by reopen).
    pub error: Option<String>,
}

impl Task {
    /// Whether a `TaskCreated` event has been applied.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    fn invalid(&self, action: &'static str) -> DomainError {
        DomainError::InvalidTransition {
            aggregate: AGGREGATE,
            action,
            state: self.status.as_str(),
        }
    }

    /// Details and assignment may change only while work is not finished.
    fn require_unfinished(&self, action: &'static str) -> Result<(), DomainError> {
        if self.status.is_finished() {
            return Err(self.invalid(action));
        }
        Ok(())
    }

    fn decide(&self, command: TaskCommand) -> Result<Vec<TaskEvent>, DomainError> {
        if !self.exists() && !matches!(command, TaskCommand::Create(_)) {
            return Err(DomainError::NotFound {
                aggregate: AGGREGATE,
            });
        }
        match command {
            TaskCommand::Create(create) => {
                if self.exists() {
                    return Err(DomainError::AlreadyExists {
                        aggregate: AGGREGATE,
                    });
                }
                Ok(vec![created(create)?])
            }
            TaskCommand::UpdateDetails(update) => self.update_details(update),
            TaskCommand::Assign { assignee_id } => self.assign(&assignee_id),
            TaskCommand::Unassign => self.unassign(),
            TaskCommand::Start => match self.status {
                TaskStatus::Open => Ok(vec![TaskEvent::TaskStarted {}]),
                TaskStatus::InProgress => Ok(vec![]),
                _ => Err(self.invalid("start")),
            },
            TaskCommand::Complete { result } => {
                let result = optional_text("result", result, MAX_OUTCOME_CHARS)?;
                match self.status {
                    TaskStatus::InProgress => Ok(vec![TaskEvent::TaskCompleted { result }]),
                    TaskStatus::Completed => Ok(vec![]),
                    _ => Err(self.invalid("complete")),
                }
            }
            TaskCommand::Fail { error } => {
                let error = optional_text("error", Some(error), MAX_OUTCOME_CHARS)?
                    .ok_or_else(|| DomainError::validation("error", "must not be blank"))?;
                match self.status {
                    TaskStatus::InProgress => Ok(vec![TaskEvent::TaskFailed { error }]),
                    TaskStatus::Failed => Ok(vec![]),
                    _ => Err(self.invalid("fail")),
                }
            }
            TaskCommand::Cancel { reason } => {
                let reason = optional_text("reason", reason, MAX_OUTCOME_CHARS)?;
                match self.status {
                    TaskStatus::Open | TaskStatus::InProgress => {
                        Ok(vec![TaskEvent::TaskCancelled { reason }])
                    }
                    TaskStatus::Cancelled => Ok(vec![]),
                    _ => Err(self.invalid("cancel")),
                }
            }
            TaskCommand::Reopen => match self.status {
                TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled => {
                    Ok(vec![TaskEvent::TaskReopened {}])
                }
                TaskStatus::Open => Ok(vec![]),
                TaskStatus::InProgress => Err(self.invalid("reopen")),
            },
        }
    }

    fn update_details(&self, update: UpdateTaskDetails) -> Result<Vec<TaskEvent>, DomainError> {
        // Validate every field before looking at the state, so bad input is reported as such
        // even on a finished task.
        let title = update
            .title
            .map(|raw| validation::title("title", &raw))
            .transpose()?;
        if let Some(description) = &update.description {
            validation::at_most("description", description, MAX_DESCRIPTION_CHARS)?;
        }
        let labels = update
            .labels
            .map(|raw| validation::labels("labels", &raw))
            .transpose()?;
        self.require_unfinished("update")?;

        let changed = TaskEvent::TaskDetailsUpdated {
            title: title.filter(|t| *t != self.title),
            description: update.description.filter(|d| *d != self.description),
            priority: update.priority.filter(|p| *p != self.priority),
            due_at: update.due_at.filter(|d| *d != self.due_at),
            labels: labels.filter(|l| *l != self.labels),
        };
        let nothing_changed = matches!(
            &changed,
            TaskEvent::TaskDetailsUpdated {
                title: None,
                description: None,
                priority: None,
                due_at: None,
                labels: None,
            }
        );
        Ok(if nothing_changed {
            vec![]
        } else {
            vec![changed]
        })
    }

    fn assign(&self, raw_assignee: &str) -> Result<Vec<TaskEvent>, DomainError> {
        let assignee_id = UserId::parse("assigneeId", raw_assignee)?;
        self.require_unfinished("assign")?;
        if self.assignee_id.as_ref() == Some(&assignee_id) {
            return Ok(vec![]);
        }
        Ok(vec![TaskEvent::TaskAssigned {
            assignee_id,
            previous_assignee_id: self.assignee_id.clone(),
        }])
    }

    fn unassign(&self) -> Result<Vec<TaskEvent>, DomainError> {
        self.require_unfinished("unassign")?;
        Ok(match &self.assignee_id {
            Some(previous) => vec![TaskEvent::TaskUnassigned {
                previous_assignee_id: previous.clone(),
            }],
            None => vec![],
        })
    }
}

fn created(create: CreateTask) -> Result<TaskEvent, DomainError> {
    let title = validation::title("title", &create.title)?;
    validation::at_most("description", &create.description, MAX_DESCRIPTION_CHARS)?;
    let team_id = TeamId::parse("teamId", &create.team_id)?;
    let creator_id = UserId::parse("creatorId", &create.creator_id)?;
    let assignee_id = create
        .assignee_id
        .as_deref()
        .map(|raw| UserId::parse("assigneeId", raw))
        .transpose()?;
    let labels = validation::labels("labels", &create.labels)?;
    let watchers = match &create.watchers {
        Some(raw) => validation::user_ids("watchers", raw)?,
        None => vec![creator_id.clone()],
    };
    Ok(TaskEvent::TaskCreated {
        task_id: create.task_id,
        title,
        description: create.description,
        team_id,
        creator_id,
        assignee_id,
        priority: create.priority,
        due_at: create.due_at,
        labels,
        watchers,
    })
}

/// Trims optional free text; blank becomes `None`.
fn optional_text(
    field: &str,
    raw: Option<String>,
    max: usize,
) -> Result<Option<String>, DomainError> {
    let Some(raw) = raw else { return Ok(None) };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    validation::at_most(field, trimmed, max)?;
    Ok(Some(trimmed.to_owned()))
}

impl Aggregate for Task {
    const TYPE: &'static str = "Task";
    type Command = TaskCommand;
    type Event = TaskEvent;
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
            TaskEvent::TaskCreated {
                task_id,
                title,
                description,
                team_id,
                creator_id,
                assignee_id,
                priority,
                due_at,
                labels,
                // Followers do not take part in any decision: the read model keeps them.
                watchers: _,
            } => {
                *self = Task {
                    id: Some(task_id),
                    status: TaskStatus::Open,
                    title,
                    description,
                    team_id: Some(team_id),
                    creator_id: Some(creator_id),
                    assignee_id,
                    priority,
                    due_at,
                    labels,
                    result: None,
                    error: None,
                };
            }
            TaskEvent::TaskDetailsUpdated {
                title,
                description,
                priority,
                due_at,
                labels,
            } => {
                if let Some(title) = title {
                    self.title = title;
                }
                if let Some(description) = description {
                    self.description = description;
                }
                if let Some(priority) = priority {
                    self.priority = priority;
                }
                if let Some(due_at) = due_at {
                    self.due_at = due_at;
                }
                if let Some(labels) = labels {
                    self.labels = labels;
                }
            }
            TaskEvent::TaskAssigned { assignee_id, .. } => self.assignee_id = Some(assignee_id),
            TaskEvent::TaskUnassigned { .. } => self.assignee_id = None,
            TaskEvent::TaskStarted {} => self.status = TaskStatus::InProgress,
            TaskEvent::TaskCompleted { result } => {
                self.status = TaskStatus::Completed;
                self.result = result;
            }
            TaskEvent::TaskFailed { error } => {
                self.status = TaskStatus::Failed;
                self.error = Some(error);
            }
            TaskEvent::TaskCancelled { .. } => self.status = TaskStatus::Cancelled,
            TaskEvent::TaskReopened {} => {
                self.status = TaskStatus::Open;
                self.result = None;
                self.error = None;
            }
        }
    }
}
