//! Who may do what, on which teams' data: the one place access is decided.
//!
//! A caller is a [`Principal`]: the token's subject, its roles and its teams. Roles grant kinds
//! of [`Action`]; teams bound the data those actions reach. Every use case asks
//! [`Principal::scope`] for the [`TeamScope`] of what it is about to do and applies it to what it
//! reads or changes, so the edge (GraphQL, subscriptions) cannot forget a check by omission:
//! the use cases take the principal, not a pre-filtered query.
//!
//! Rules:
//! - `member`: reads and changes tasks and reports of its teams;
//! - `auditor`: reads tasks and reports, the audit trail and past states of its teams;
//! - `admin`: everything, every team, and operates projections (replay, pause);
//! - the team `*` in a token stands for every team (an organisation-wide auditor);
//! - unknown roles grant nothing (an identity provider may issue roles of other services).
//!
//! Something outside the caller's scope is answered exactly as something that does not exist
//! (null, an empty page, `NOT_FOUND`), so ids of other teams' work cannot be probed.

use std::collections::BTreeSet;

use crate::error::AppError;

/// The team that stands for every team in a token's `teams`.
pub const ALL_TEAMS: &str = "*";

/// A role a token can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Works on its teams' tasks and reports.
    Member,
    /// Inspects its teams' audit trail and past states.
    Auditor,
    /// Everything, including operations.
    Admin,
    /// Erases people's personal data on request (a privacy officer); reads no work.
    Privacy,
}

impl Role {
    /// The role a token names, if Chronicle knows it.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "member" => Some(Self::Member),
            "auditor" => Some(Self::Auditor),
            "admin" => Some(Self::Admin),
            "privacy" => Some(Self::Privacy),
            _ => None,
        }
    }
}

/// What a use case is about to do; each needs a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read current tasks and reports (`member`, `auditor`).
    ReadWork,
    /// Create or change tasks, request reports (`member`).
    ChangeWork,
    /// Read the audit trail, verify chains, travel in time (`auditor`).
    ReadAudit,
    /// Operate the service: projections (status, rebuild, pause), parked outbox records
    /// (`admin` only).
    Operate,
    /// Erase a data subject's personal data (`privacy`).
    ErasePersonalData,
}

impl Action {
    fn allowed_to(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::Admin)
                | (Self::ReadWork, Role::Member | Role::Auditor)
                | (Self::ChangeWork, Role::Member)
                | (Self::ReadAudit, Role::Auditor)
                | (Self::ErasePersonalData, Role::Privacy)
        )
    }

    fn refusal(self) -> &'static str {
        match self {
            Self::ReadWork => "reading tasks and reports needs the member, auditor or admin role",
            Self::ChangeWork => "changing tasks and reports needs the member or admin role",
            Self::ReadAudit => "the audit trail and past states need the auditor or admin role",
            Self::Operate => "projections and the outbox are operated by the admin role",
            Self::ErasePersonalData => "erasing personal data needs the privacy or admin role",
        }
    }
}

/// The teams an action may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamScope {
    /// Every team (admins, `*` tokens, the service's own workers).
    All,
    /// Only these teams (sorted, distinct; possibly none).
    Teams(Vec<String>),
}

impl TeamScope {
    /// Whether data of `team` is within reach.
    pub fn covers(&self, team: &str) -> bool {
        match self {
            Self::All => true,
            Self::Teams(teams) => teams.binary_search_by(|t| t.as_str().cmp(team)).is_ok(),
        }
    }

    /// The teams a query must be restricted to; `None` means no restriction.
    pub(crate) fn restriction(&self) -> Option<&[String]> {
        match self {
            Self::All => None,
            Self::Teams(teams) => Some(teams),
        }
    }

    /// Narrows a filter's teams: the requested ones if all are in reach (`FORBIDDEN` naming the
    /// first that is not, so a typo is not mistaken for an empty team), else every team in
    /// reach. `None` in the answer means no restriction.
    pub(crate) fn narrow(
        &self,
        requested: Option<&[String]>,
    ) -> Result<Option<Vec<String>>, AppError> {
        match requested {
            Some(teams) => match teams.iter().find(|team| !self.covers(team)) {
                Some(team) => Err(AppError::Forbidden(format!(
                    "team {team:?} is not one of your teams"
                ))),
                None => Ok(Some(teams.to_vec())),
            },
            None => Ok(self.restriction().map(<[String]>::to_vec)),
        }
    }
}

/// An authenticated caller: the token's subject, roles and teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: String,
    roles: BTreeSet<Role>,
    teams: TeamScope,
}

impl Principal {
    /// A caller as its token describes it; unknown roles are ignored.
    pub fn new(subject: impl Into<String>, roles: &[String], teams: &[String]) -> Self {
        let teams = if teams.iter().any(|t| t == ALL_TEAMS) {
            TeamScope::All
        } else {
            let set: BTreeSet<&String> = teams.iter().collect();
            TeamScope::Teams(set.into_iter().cloned().collect())
        };
        Self {
            subject: subject.into(),
            roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
            teams,
        }
    }

    /// The service acting on its own behalf (the report worker), on every team.
    pub fn system(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            roles: BTreeSet::from([Role::Admin]),
            teams: TeamScope::All,
        }
    }

    /// The token's subject: the actor recorded in every event this caller causes.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The teams `action` may reach for this caller (every team for admins), or `FORBIDDEN`
    /// when none of its roles allows the action.
    pub fn scope(&self, action: Action) -> Result<TeamScope, AppError> {
        if !self.roles.iter().any(|role| action.allowed_to(*role)) {
            return Err(AppError::Forbidden(action.refusal().to_owned()));
        }
        if self.roles.contains(&Role::Admin) {
            return Ok(TeamScope::All);
        }
        Ok(self.teams.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[&str], teams: &[&str]) -> Principal {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let teams: Vec<String> = teams.iter().map(|t| t.to_string()).collect();
        Principal::new("u-1", &roles, &teams)
    }

    #[test]
    fn members_work_on_their_teams_only() {
        let member = principal(&["member"], &["team-b", "team-a", "team-a"]);
        let scope = member.scope(Action::ChangeWork).unwrap();
        assert_eq!(
            scope,
            TeamScope::Teams(vec!["team-a".into(), "team-b".into()])
        );
        assert!(scope.covers("team-a") && !scope.covers("team-c"));
        assert!(matches!(
            member.scope(Action::ReadAudit),
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            member.scope(Action::Operate),
            Err(AppError::Forbidden(_))
        ));
    }

    #[test]
    fn auditors_read_but_do_not_change() {
        let auditor = principal(&["auditor"], &["team-a"]);
        assert!(auditor.scope(Action::ReadAudit).unwrap().covers("team-a"));
        assert!(!auditor.scope(Action::ReadWork).unwrap().covers("team-b"));
        assert!(matches!(
            auditor.scope(Action::ChangeWork),
            Err(AppError::Forbidden(_))
        ));
    }

    #[test]
    fn admins_and_star_tokens_reach_every_team() {
        let admin = principal(&["admin"], &[]);
        assert_eq!(admin.scope(Action::Operate).unwrap(), TeamScope::All);
        assert_eq!(admin.scope(Action::ChangeWork).unwrap(), TeamScope::All);
        let org_auditor = principal(&["auditor"], &["*"]);
        assert_eq!(
            org_auditor.scope(Action::ReadAudit).unwrap(),
            TeamScope::All
        );
        assert!(org_auditor.scope(Action::Operate).is_err());
    }

    #[test]
    fn unknown_roles_grant_nothing() {
        let stranger = principal(&["superuser", "Admin"], &["team-a"]);
        assert!(stranger.scope(Action::ReadWork).is_err());
    }

    #[test]
    fn a_filter_is_narrowed_to_the_callers_teams() {
        let scope = TeamScope::Teams(vec!["team-a".into()]);
        let team_a = vec!["team-a".to_owned()];
        assert_eq!(scope.narrow(Some(&team_a)).unwrap(), Some(team_a.clone()));
        assert!(matches!(
            scope.narrow(Some(&["team-b".to_owned()])),
            Err(AppError::Forbidden(_))
        ));
        assert_eq!(scope.narrow(None).unwrap(), Some(vec!["team-a".to_owned()]));
        assert_eq!(TeamScope::All.narrow(None).unwrap(), None);
    }

    #[test]
    fn only_privacy_officers_and_admins_erase_and_officers_read_no_work() {
        let officer = principal(&["privacy"], &[]);
        assert!(officer.scope(Action::ErasePersonalData).is_ok());
        assert!(principal(&["admin"], &[])
            .scope(Action::ErasePersonalData)
            .is_ok());
        for role in ["member", "auditor"] {
            assert!(matches!(
                principal(&[role], &["team-a"]).scope(Action::ErasePersonalData),
                Err(AppError::Forbidden(_))
            ));
        }
        for action in [Action::ReadWork, Action::ReadAudit, Action::ChangeWork] {
            assert!(officer.scope(action).is_err(), "{action:?}");
        }
    }
}
