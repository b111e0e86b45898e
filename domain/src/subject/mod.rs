//! The DataSubject aggregate: a person whose personal data was erased, one stream per
//! pseudonym. Its one event, `DataSubjectErased`, is how the erasure itself enters the
//! hash-chained, checkpointed and published history, so an auditor sees who erased whom (by
//! pseudonym), when and why, and downstream consumers learn to erase what they kept.
//!
//! Erasing twice decides nothing the second time: the request is answered by the first.

mod aggregate;
mod events;
pub mod personal;

pub use aggregate::{DataSubject, DataSubjectCommand, MAX_REASON_CHARS};
pub use events::{DataSubjectEvent, Redactions, DATA_SUBJECT_ERASED, DATA_SUBJECT_EVENT_VERSION};

#[cfg(test)]
mod tests;
