//! Given/when/then tests of the DataSubject aggregate.

use cqrs_es::test::TestFramework;

use super::*;
use crate::error::DomainError;

type SubjectTest = TestFramework<DataSubject>;

fn erase(reason: &str) -> DataSubjectCommand {
    DataSubjectCommand::Erase {
        pseudonym: "3f9a".into(),
        reason: reason.into(),
        redactions: None,
    }
}

fn erased() -> DataSubjectEvent {
    DataSubjectEvent::DataSubjectErased {
        subject_pseudonym: "3f9a".into(),
        reason: "ticket GDPR-42".into(),
        redactions: None,
    }
}

#[test]
fn erasing_records_the_pseudonym_and_the_reason() {
    SubjectTest::with(())
        .given_no_previous_events()
        .when(erase("  ticket GDPR-42 "))
        .then_expect_events(vec![erased()]);
}

#[test]
fn erasing_again_decides_nothing() {
    SubjectTest::with(())
        .given(vec![erased()])
        .when(erase("another ticket"))
        .then_expect_events(vec![]);
}

#[test]
fn an_erasure_says_why() {
    SubjectTest::with(())
        .given_no_previous_events()
        .when(erase("   "))
        .then_expect_error(DomainError::validation(
            "reason",
            "must say why (cite a ticket, not the person)",
        ));
}

#[test]
fn an_erasure_of_values_in_clear_carries_what_it_commits_to() {
    let redactions = Redactions {
        events: 3,
        digest: "ab".repeat(32),
        key_id: Some("7c1e".into()),
        signature: Some("00".repeat(64)),
    };
    SubjectTest::with(())
        .given_no_previous_events()
        .when(DataSubjectCommand::Erase {
            pseudonym: "3f9a".into(),
            reason: "ticket GDPR-42".into(),
            redactions: Some(redactions.clone()),
        })
        .then_expect_events(vec![DataSubjectEvent::DataSubjectErased {
            subject_pseudonym: "3f9a".into(),
            reason: "ticket GDPR-42".into(),
            redactions: Some(redactions),
        }]);
}
