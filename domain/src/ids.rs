//! Identifiers that come from outside the service (teams and users).
//!
//! Task and report ids are UUIDs the service generates; team and user ids are opaque strings
//! issued by the identity provider (Auth0 writes `auth0|5f7c...`, others an e-mail address or a
//! URN, hence `|`, `@` and `:`). They are validated once, at construction, so the rest of the
//! code can trust them.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::DomainError;

/// Longest accepted team or user id; longer ones are almost certainly not ids.
pub const MAX_EXTERNAL_ID_LEN: usize = 64;

fn validate_external_id(field: &str, value: &str) -> Result<(), DomainError> {
    if value.is_empty() || value.len() > MAX_EXTERNAL_ID_LEN {
        return Err(DomainError::validation(
            field,
            format!("must be 1 to {MAX_EXTERNAL_ID_LEN} characters"),
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '|'))
    {
        return Err(DomainError::validation(
            field,
            "may contain only letters, digits, '.', '_', '-', ':', '@' and '|'",
        ));
    }
    Ok(())
}

/// A user id may not look like what personal data is stored as, nor be the service's own.
fn refuse_reserved(field: &str, value: &str) -> Result<(), DomainError> {
    if SERVICE_IDS.contains(&value) {
        return Err(DomainError::validation(
            field,
            format!("{value:?} is the service's own id, not a user's"),
        ));
    }
    match RESERVED_PREFIXES.iter().find(|p| value.starts_with(**p)) {
        Some(prefix) => Err(DomainError::validation(
            field,
            format!("may not start with {prefix:?}: it marks a stored reference to a person"),
        )),
        None => Ok(()),
    }
}

/// The report worker's id: the actor of the events it causes.
pub const REPORT_WORKER: &str = "chronicle-report-worker";

/// Ids the service acts under. No user may have one: a token naming one would pass for the
/// service in the audit trail, and its data would be treated as the service's, not a person's.
pub const SERVICE_IDS: &[&str] = &[REPORT_WORKER];

/// What a user id is stored as: a reference to its subject, the same in every event, so a
/// filter by person still finds their events; it resolves to the id only while the subject's
/// key exists.
pub const REFERENCE_PREFIX: &str = "subject:";

/// What every sealed text starts with (the seal's format and version).
pub const SEALED_PREFIX: &str = "pd1:";

/// What stands in for a personal value whose subject's key was destroyed.
pub const ERASED_PREFIX: &str = "erased:";

/// Prefixes of what personal data is stored as (`subject:<pseudonym>` for an id,
/// `pd1:<pseudonym>:...` for sealed text, `erased:<pseudonym>` once forgotten): no id may start
/// with one, so none can pass for another person's reference. Defined here, where ids are
/// validated; the sealing reads the same constants.
pub const RESERVED_PREFIXES: &[&str] = &[REFERENCE_PREFIX, SEALED_PREFIX, ERASED_PREFIX];

macro_rules! external_id {
    ($(#[$doc:meta])* $name:ident, reserved: $reserved:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as an id; `field` names the input for the error message.
            pub fn parse(field: &str, value: &str) -> Result<Self, DomainError> {
                validate_external_id(field, value)?;
                if $reserved {
                    refuse_reserved(field, value)?;
                }
                Ok(Self(value.to_owned()))
            }

            /// An id read back from Chronicle's own storage (a read-model row): it was checked
            /// when it was first accepted, and may since have become an erased person's marker
            /// (`erased:<pseudonym>`), which [`Self::parse`] refuses from clients. Still not
            /// empty and not over-long, so a corrupt row is caught.
            pub fn read_back(field: &str, value: &str) -> Result<Self, DomainError> {
                validate_external_id(field, value)?;
                Ok(Self(value.to_owned()))
            }

            /// The id as the identity provider wrote it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

external_id!(
    /// A team, as the identity provider names it (`team-a`). Not a person: no reserved
    /// prefixes.
    TeamId,
    reserved: false
);
external_id!(
    /// A user, as the identity provider names it (`u-7`); also the actor of every event.
    UserId,
    reserved: true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_may_not_pass_for_a_stored_reference_to_a_person() {
        for reserved in ["subject:3f9a", "pd1:3f9a:abc", "erased:3f9a"] {
            assert!(UserId::parse("sub", reserved).is_err(), "{reserved}");
        }
        assert!(UserId::parse("sub", "urn:subject:7").is_ok());
        assert!(
            UserId::read_back("creatorId", "erased:3f9a").is_ok(),
            "a stored id may have been erased since"
        );
        assert!(
            TeamId::parse("team", "subject:7").is_ok(),
            "a team is not a person"
        );
    }

    #[test]
    fn accepts_ids_of_the_documented_alphabet() {
        assert_eq!(
            TeamId::parse("teamId", "team-a.b_c").unwrap().as_str(),
            "team-a.b_c"
        );
    }

    #[test]
    fn accepts_the_subjects_identity_providers_issue() {
        for subject in [
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "google-oauth2|1234",
            "ann@example.com",
            "urn:user:7",
        ] {
            assert_eq!(UserId::parse("sub", subject).unwrap().as_str(), subject);
        }
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters_naming_the_field() {
        for bad in ["", "a b", "ü", &"x".repeat(65), "a/b"] {
            match UserId::parse("assigneeId", bad) {
                Err(DomainError::Validation { field, .. }) => assert_eq!(field, "assigneeId"),
                other => panic!("{bad:?} was accepted: {other:?}"),
            }
        }
    }
}
