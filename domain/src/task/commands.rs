//! What a caller may ask of a task. Commands carry raw input; the aggregate validates it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::status::Priority;

/// Everything needed to create a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateTask {
    /// The id the service generated for it.
    pub task_id: Uuid,
    /// Raw title (validated and trimmed by the aggregate).
    pub title: String,
    /// Raw description (empty when none).
    pub description: String,
    /// Raw team id.
    pub team_id: String,
    /// The actor creating it, from the token.
    pub creator_id: String,
    /// Optional raw assignee id.
    pub assignee_id: Option<String>,
    /// Urgency.
    pub priority: Priority,
    /// Optional deadline.
    pub due_at: Option<DateTime<Utc>>,
    /// Raw watcher ids; `None` means the creator alone.
    pub watchers: Option<Vec<String>>,
    /// Raw labels.
    pub labels: Vec<String>,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct UpdateTaskDetails {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New priority.
    pub priority: Option<Priority>,
    /// `Some(None)` clears the deadline. Left out when `None`, so the serialized command tells
    /// "clear it" (`null`) from "leave it" (absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Option<DateTime<Utc>>>,
    /// New labels (replace the old set).
    pub labels: Option<Vec<String>>,
}

/// Every command the Task aggregate handles. `Serialize` lets the application fingerprint a
/// request, to tell an idempotent retry from a different request under the same key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TaskCommand {
    /// Create a new task.
    Create(CreateTask),
    /// Change details; only fields that differ produce an event.
    UpdateDetails(UpdateTaskDetails),
    /// Make someone responsible.
    Assign {
        /// Raw assignee id.
        assignee_id: String,
    },
    /// Make nobody responsible.
    Unassign,
    /// Begin work (Open → InProgress).
    Start,
    /// Finish successfully (InProgress → Completed).
    Complete {
        /// Optional outcome.
        result: Option<String>,
    },
    /// Finish unsuccessfully (InProgress → Failed).
    Fail {
        /// Why; required.
        error: String,
    },
    /// Abandon (Open or InProgress → Cancelled).
    Cancel {
        /// Optional reason.
        reason: Option<String>,
    },
    /// Open a finished task again.
    Reopen,
}
