//! What can happen to a task. Events are facts: past tense, never rejected once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::status::Priority;
use crate::ids::{TeamId, UserId};

/// The schema version task events are written with today, except [`TASK_CREATED_VERSION`].
/// Older versions are upcast on load (see [`super::upcast`]).
pub const TASK_EVENT_VERSION: &str = "1.0";

/// `TaskCreated`'s schema version: 2.0 added `watchers`.
pub const TASK_CREATED_VERSION: &str = "2.0";

/// A change to a task. Payload fields are camelCase so Kafka consumers in any language read the
/// same names as GraphQL clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum TaskEvent {
    /// The task exists; carries every initial field so the stream alone rebuilds it.
    TaskCreated {
        /// The service-generated id (UUIDv7).
        task_id: Uuid,
        /// Trimmed, 1 to 200 characters.
        title: String,
        /// Up to 10,000 characters, possibly empty.
        description: String,
        /// The owning team.
        team_id: TeamId,
        /// Who created it (the actor of the command).
        creator_id: UserId,
        /// Optional first assignee.
        assignee_id: Option<UserId>,
        /// Urgency.
        priority: Priority,
        /// Optional deadline.
        due_at: Option<DateTime<Utc>>,
        /// Canonical (sorted, deduplicated) labels.
        labels: Vec<String>,
        /// Who follows the task (sorted, deduplicated). Since version 2.0; version 1.0
        /// events are upcast with the creator as the only watcher, the rule when they were
        /// written.
        watchers: Vec<UserId>,
    },
    /// Some details changed; only the changed fields are present.
    TaskDetailsUpdated {
        /// New title, when it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// New description, when it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// New priority, when it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<Priority>,
        /// `Some(None)` clears the deadline (`"dueAt": null`); absent means unchanged.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present_or_null"
        )]
        due_at: Option<Option<DateTime<Utc>>>,
        /// New labels, when they changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<String>>,
    },
    /// Someone is now responsible; `previousAssigneeId` keeps the audit trail readable alone.
    TaskAssigned {
        /// The new assignee.
        assignee_id: UserId,
        /// Who was assigned before, if anyone.
        previous_assignee_id: Option<UserId>,
    },
    /// Nobody is responsible any more.
    TaskUnassigned {
        /// Who was assigned.
        previous_assignee_id: UserId,
    },
    /// Work began.
    TaskStarted {},
    /// Work finished successfully.
    TaskCompleted {
        /// Optional free-text outcome.
        result: Option<String>,
    },
    /// Work finished unsuccessfully.
    TaskFailed {
        /// Why it failed.
        error: String,
    },
    /// The task was abandoned.
    TaskCancelled {
        /// Optional reason.
        reason: Option<String>,
    },
    /// A finished task is open again; its outcome is cleared.
    TaskReopened {},
}

/// Maps a present JSON field (even `null`) to `Some(..)`, so `null` means "cleared".
fn present_or_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl TaskEvent {
    /// The event's name, as stored in `event_type` and sent as CloudEvents `ce_type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TaskCreated { .. } => "TaskCreated",
            Self::TaskDetailsUpdated { .. } => "TaskDetailsUpdated",
            Self::TaskAssigned { .. } => "TaskAssigned",
            Self::TaskUnassigned { .. } => "TaskUnassigned",
            Self::TaskStarted {} => "TaskStarted",
            Self::TaskCompleted { .. } => "TaskCompleted",
            Self::TaskFailed { .. } => "TaskFailed",
            Self::TaskCancelled { .. } => "TaskCancelled",
            Self::TaskReopened {} => "TaskReopened",
        }
    }
}

impl DomainEvent for TaskEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            Self::TaskCreated { .. } => TASK_CREATED_VERSION,
            _ => TASK_EVENT_VERSION,
        }
        .to_owned()
    }
}
