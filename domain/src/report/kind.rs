//! What a report computes: the kinds a client can request.

use serde::{Deserialize, Serialize};

/// What a report computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportKind {
    /// Tasks by status and assignee, completion rate, median cycle time.
    TeamSummary,
    /// Open and in-progress work per assignee.
    AssigneeWorkload,
    /// Unfinished tasks past their due date.
    OverdueTasks,
}

impl ReportKind {
    /// The API name (`TEAM_SUMMARY`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TeamSummary => "TEAM_SUMMARY",
            Self::AssigneeWorkload => "ASSIGNEE_WORKLOAD",
            Self::OverdueTasks => "OVERDUE_TASKS",
        }
    }

    /// Parses the API name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::TeamSummary,
            Self::AssigneeWorkload,
            Self::OverdueTasks,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}
