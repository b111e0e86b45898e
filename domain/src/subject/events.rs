//! What can happen to a data subject.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// The event type of [`DataSubjectEvent::DataSubjectErased`], as stored and published.
pub const DATA_SUBJECT_ERASED: &str = "DataSubjectErased";

/// The schema version data-subject events are written with today.
pub const DATA_SUBJECT_EVENT_VERSION: &str = "1.0";

/// A change to a data subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum DataSubjectEvent {
    /// The person's key was destroyed at a privacy officer's request: every value of theirs
    /// reads `erased:<pseudonym>` from now on. Holds nothing of the person but the pseudonym.
    DataSubjectErased {
        /// What the person's values read as now (without the `erased:` prefix).
        subject_pseudonym: String,
        /// Why, as the officer wrote it (a ticket, not the person).
        reason: String,
    },
}

impl DomainEvent for DataSubjectEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DataSubjectErased { .. } => DATA_SUBJECT_ERASED.to_owned(),
        }
    }

    fn event_version(&self) -> String {
        DATA_SUBJECT_EVENT_VERSION.to_owned()
    }
}
