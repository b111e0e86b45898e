//! The DataSubject aggregate's state and rules.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::events::{DataSubjectEvent, Redactions};
use crate::error::DomainError;
use crate::validation;

/// The longest reason an officer may give: a ticket reference and a sentence, not a file.
pub const MAX_REASON_CHARS: usize = 500;

/// Commands on a data subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum DataSubjectCommand {
    /// Record the erasure of the person behind `pseudonym`.
    Erase {
        /// The person's pseudonym (the stream's id).
        pseudonym: String,
        /// Why.
        reason: String,
        /// The values stored in clear it replaced by markers, if any.
        redactions: Option<Redactions>,
    },
}

/// A data subject's state: whether they were erased.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSubject {
    /// Set by the erasure.
    pub pseudonym: Option<String>,
}

impl Aggregate for DataSubject {
    const TYPE: &'static str = "DataSubject";
    type Command = DataSubjectCommand;
    type Event = DataSubjectEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            // Erased already: the first erasure answers.
            DataSubjectCommand::Erase { .. } if self.pseudonym.is_some() => Ok(()),
            DataSubjectCommand::Erase {
                pseudonym,
                reason,
                redactions,
            } => {
                let reason = reason.trim().to_owned();
                if reason.is_empty() {
                    return Err(DomainError::validation(
                        "reason",
                        "must say why (cite a ticket, not the person)",
                    ));
                }
                validation::at_most("reason", &reason, MAX_REASON_CHARS)?;
                sink.write(
                    DataSubjectEvent::DataSubjectErased {
                        subject_pseudonym: pseudonym,
                        reason,
                        redactions,
                    },
                    self,
                )
                .await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DataSubjectEvent::DataSubjectErased {
                subject_pseudonym, ..
            } => self.pseudonym = Some(subject_pseudonym),
        }
    }
}
