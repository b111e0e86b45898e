//! The personal fields of data-subject events (docs/privacy.md).

use crate::personal::{not_personal, personal, NotPersonal, Personal, PersonalField};

/// Fields that name or were written by people.
pub const PERSONAL_FIELDS: &[PersonalField] = &[
    // The privacy officer's words: sealed under their key like any text a person writes.
    personal("DataSubjectErased", "reason", Personal::Authored),
];

/// Every other field, and why it names nobody.
pub const NOT_PERSONAL: &[NotPersonal] = &[
    not_personal(
        "DataSubjectErased",
        "subjectPseudonym",
        "a random name whose link to the person was destroyed with their key",
    ),
    not_personal(
        "DataSubjectErased",
        "redactions",
        "a count, a digest of content hashes, a key id and a signature",
    ),
];

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::personal::tests::assert_every_field_is_judged;
    use crate::subject::DataSubjectEvent;

    #[test]
    fn every_field_of_every_data_subject_event_is_judged_personal_or_not() {
        let samples = [DataSubjectEvent::DataSubjectErased {
            subject_pseudonym: "3f9a".into(),
            reason: "ticket GDPR-42".into(),
            redactions: Some(crate::subject::Redactions {
                events: 1,
                digest: "ab".repeat(32),
                key_id: Some("7c1e".into()),
                signature: Some("00".repeat(64)),
            }),
        }];
        for event in &samples {
            match event {
                DataSubjectEvent::DataSubjectErased { .. } => {}
            }
        }
        let values: Vec<Value> = samples
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_every_field_is_judged(&values, PERSONAL_FIELDS, NOT_PERSONAL);
    }
}
