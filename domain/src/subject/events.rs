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
        /// The values of the person that were stored in clear and replaced by markers, when
        /// there were any (absent otherwise, as in every erasure of sealed values only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redactions: Option<Redactions>,
    },
}

/// What an erasure commits to when it replaces values stored in clear (events written before
/// sealing was on, reports' results) by markers: the erasure ledger's rows of its pseudonym,
/// as a count and a digest, and a signature over them under the checkpoint key. Whoever can
/// write the database can redact an event; only the erasure that signed its ledger row makes
/// `chronicle audit verify` accept it (docs/privacy.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redactions {
    /// Events whose content changed.
    pub events: u64,
    /// SHA-256 (hex) of the ledger's rows, in the format the audit verifier recomputes.
    pub digest: String,
    /// The id of the key that signed, when a checkpoint key is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Ed25519 (hex) over the erasure's signed text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
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
