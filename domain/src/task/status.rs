//! Task enumerations, spelled as the public API spells them.

use serde::{Deserialize, Serialize};

/// Where a task is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Created or reopened, not started.
    #[default]
    Open,
    /// Someone works on it.
    InProgress,
    /// Finished successfully (terminal until reopened).
    Completed,
    /// Finished unsuccessfully (terminal until reopened).
    Failed,
    /// Abandoned (terminal until reopened).
    Cancelled,
}

impl TaskStatus {
    /// The name the API and the read model use (`IN_PROGRESS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the API name back; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Open,
            Self::InProgress,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
    }

    /// Completed, failed and cancelled tasks accept only `reopen`.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// How urgent a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    /// Whenever there is time.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before normal work.
    High,
    /// Drop everything.
    Urgent,
}

impl Priority {
    /// The name the API and the read model use (`URGENT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Normal => "NORMAL",
            Self::High => "HIGH",
            Self::Urgent => "URGENT",
        }
    }

    /// Parses the API name back; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Low, Self::Normal, Self::High, Self::Urgent]
            .into_iter()
            .find(|priority| priority.as_str() == name)
    }
}
