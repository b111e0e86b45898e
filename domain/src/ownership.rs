//! Which team an aggregate belongs to: the unit of access control.
//!
//! A task or report belongs to the team named at its creation, for its whole life (no command
//! moves it). Access rules (in the application layer) compare this team with the caller's; the
//! event store records it beside every event so the audit trail can be scoped without folding.

use crate::ids::TeamId;

/// An aggregate owned by one team.
pub trait TeamOwned {
    /// The owning team; `None` while the aggregate does not exist yet.
    fn owning_team(&self) -> Option<&TeamId>;
}

impl TeamOwned for crate::task::Task {
    fn owning_team(&self) -> Option<&TeamId> {
        self.team_id.as_ref()
    }
}

impl TeamOwned for crate::report::Report {
    fn owning_team(&self) -> Option<&TeamId> {
        self.team_id.as_ref()
    }
}

/// A data subject is a person, not a team's work: no team owns their erasure, so only
/// auditors and admins of every team see it in the trail.
impl TeamOwned for crate::subject::DataSubject {
    fn owning_team(&self) -> Option<&TeamId> {
        None
    }
}
