//! Erasing a data subject (`eraseDataSubject`, `chronicle erase`): their key is destroyed, so
//! every value sealed under it reads `erased:<pseudonym>` in every event, and the copies in
//! clear that Chronicle keeps beside the store are rewritten from it.
//!
//! The steps, each safe to repeat, so an erasure interrupted at any point (a crash, a kill -9)
//! is finished by asking again:
//! 1. record the erasure (`Erasures::begin`; the subject's id is stored only as a keyed hash);
//! 2. append `DataSubjectErased` to the subject's stream (`DataSubject`, its id the pseudonym
//!    as a UUID): hash-chained, checkpointed and published like every event, so auditors see
//!    who erased whom and why, and downstream consumers learn to erase what they kept; a
//!    second append decides nothing;
//! 3. destroy the key (this process forgets it at once; others within their key cache's time);
//! 4. scrub: fold the read-model rows of every stream that held a value of the subject again
//!    from the store, rewrite the outbox envelopes, dead letters and projection failures still
//!    held, delete the streams' snapshots and the subject's idempotency records, and mark
//!    the erasure done.
//!
//! No stored event changes, so every hash, inclusion proof and checkpoint stays valid.

use std::sync::Arc;

use chronicle_domain::ids::UserId;
use chronicle_domain::subject::{DataSubject, DataSubjectCommand, MAX_REASON_CHARS};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::personal_data::PersonalData;
use crate::access::{Action, Principal, TeamScope};
use crate::commands::{AggregateExecutor, ExecuteOptions};
use crate::error::AppError;
use crate::event_log::StoredEvent;
use crate::message::EventMessage;
use crate::metadata::CommandMetadata;
use crate::ports::erasures::{ErasureRecord, Erasures, Scrub};
use crate::projection::refold::Refold;

/// What an erasure answers: the same on every request for the same subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSubjectErasure {
    /// What the subject's values read as now: `erased:<pseudonym>`.
    pub subject_pseudonym: String,
    /// When it was first requested.
    pub erased_at: DateTime<Utc>,
    /// Who first requested it.
    pub erased_by: String,
    /// Why.
    pub reason: String,
    /// Streams (tasks, reports) that held a value of the subject.
    pub streams: u64,
    /// Whether this answer is the record of an earlier request, nothing erased now.
    pub replayed: bool,
}

/// Why a person named in values stored in clear is not erased.
fn in_clear() -> AppError {
    AppError::InvalidTransition(
        "events stored in clear (before sealing was on) or a report's result name this person \
         or list their tasks; erasing those is not supported yet, and nothing was erased"
            .to_owned(),
    )
}

impl DataSubjectErasure {
    fn of(record: ErasureRecord, replayed: bool) -> Self {
        Self {
            subject_pseudonym: record.pseudonym,
            erased_at: record.erased_at,
            erased_by: record.erased_by,
            reason: record.reason,
            streams: record.streams,
            replayed,
        }
    }
}

/// Erases data subjects.
pub struct Eraser {
    personal: Arc<PersonalData>,
    fresh: Arc<PersonalData>,
    erasures: Arc<dyn Erasures>,
    subjects: AggregateExecutor<DataSubject>,
    read_models: Vec<Arc<dyn Refold>>,
}

/// Streams read, opened and folded again at once: a person with 10,000 tasks is rewritten in
/// ten round trips, not 10,000.
const STREAMS_PER_READ: usize = 1_000;

impl Eraser {
    /// Destroying keys through `personal` (the process's own, whose cache forgets them at
    /// once), deciding and opening with `fresh` (keys read from the key store each time: an
    /// erasure must never act on a cached key another process destroyed), recording in
    /// `erasures` (and reading the events to rewrite from it), appending the erasure event
    /// through `subjects` and rewriting `read_models`.
    pub fn new(
        personal: Arc<PersonalData>,
        fresh: Arc<PersonalData>,
        erasures: Arc<dyn Erasures>,
        subjects: AggregateExecutor<DataSubject>,
        read_models: Vec<Arc<dyn Refold>>,
    ) -> Self {
        Self {
            personal,
            fresh,
            erasures,
            subjects,
            read_models,
        }
    }

    /// Erases `subject_id` (the `privacy` role, or `admin`). A second request for the same
    /// subject answers the first one's record (`replayed`), appends nothing, and rewrites the
    /// copies in clear again (a sweep of what raced the first); an id Chronicle holds nothing
    /// of is `NOT_FOUND`. `metadata` is the request's (its actor the officer), recorded with
    /// the erasure event.
    pub async fn erase(
        &self,
        principal: &Principal,
        subject_id: &str,
        reason: &str,
        metadata: &CommandMetadata,
    ) -> Result<DataSubjectErasure, AppError> {
        principal.scope(Action::ErasePersonalData)?;
        let subject = UserId::parse("subjectId", subject_id)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(AppError::validation(
                "reason",
                format!(
                    "must be 1 to {MAX_REASON_CHARS} characters (cite a ticket, not the person)"
                ),
            ));
        }
        let subject = subject.as_str();
        let key = self.fresh.keys().find(subject).await?;
        let earlier = self.erasures.find(subject).await?;
        let (pseudonym, reason, replayed) = match (key, earlier) {
            // Interrupted before its key went: this request erases.
            (Some(key), Some(earlier)) if key.pseudonym == earlier.pseudonym => {
                (key.pseudonym, earlier.reason, false)
            }
            (None, Some(earlier)) => (earlier.pseudonym, earlier.reason, earlier.scrubbed),
            (Some(key), _) => {
                self.refuse_values_in_clear(subject, &key.pseudonym).await?;
                self.erasures
                    .begin(subject, &key.pseudonym, principal.subject(), reason)
                    .await?;
                (key.pseudonym, reason.to_owned(), false)
            }
            (None, None) => {
                return Err(match self.erasures.named_in_clear(subject).await? {
                    true => in_clear(),
                    false => AppError::NotFound(format!("data subject {subject}")),
                })
            }
        };
        // An earlier life of the person (erased, then given a new key) whose erasure was
        // interrupted after its key went: finished too.
        for older in self.erasures.unfinished(subject).await? {
            if older.pseudonym != pseudonym {
                self.finish(subject, &older.pseudonym, &older.reason, metadata)
                    .await?;
            }
        }
        let record = self.finish(subject, &pseudonym, &reason, metadata).await?;
        if !replayed {
            tracing::info!(
                actor = principal.subject(),
                pseudonym = %record.pseudonym,
                streams = record.streams,
                "data subject erased"
            );
        }
        Ok(DataSubjectErasure::of(record, replayed))
    }

    /// The steps after the record, each safe to repeat: the event, the key, the rewrite.
    async fn finish(
        &self,
        subject: &str,
        pseudonym: &str,
        reason: &str,
        metadata: &CommandMetadata,
    ) -> Result<ErasureRecord, AppError> {
        self.append_erasure(pseudonym, reason, metadata).await?;
        // Also when another process destroyed it: no key of the subject stays held here.
        self.personal.keys().destroy(subject).await?;
        self.scrub(subject, pseudonym).await
    }

    /// `INVALID_TRANSITION` when events stored in clear name the person, or a report copied
    /// what they wrote: destroying a key cannot erase those values, and an erasure in part
    /// would leave them behind unsaid.
    async fn refuse_values_in_clear(&self, subject: &str, pseudonym: &str) -> Result<(), AppError> {
        let streams = self.erasures.streams_of(pseudonym).await?;
        let copied = self.erasures.copied_into_reports(&streams).await?;
        if copied || self.erasures.named_in_clear(subject).await? {
            return Err(in_clear());
        }
        Ok(())
    }

    /// Appends `DataSubjectErased` to the subject's stream (nothing when it is there already).
    async fn append_erasure(
        &self,
        pseudonym: &str,
        reason: &str,
        metadata: &CommandMetadata,
    ) -> Result<(), AppError> {
        let stream = Uuid::parse_str(pseudonym)
            .map_err(|e| AppError::internal_from(format!("pseudonym {pseudonym}"), e))?;
        let options = ExecuteOptions {
            expected_version: None,
            command_name: "eraseDataSubject",
            creates_aggregate: false,
            scope: TeamScope::All,
        };
        let command = DataSubjectCommand::Erase {
            pseudonym: pseudonym.to_owned(),
            reason: reason.to_owned(),
        };
        let metadata = CommandMetadata {
            // A retried erasure is recognised by its subject, not by a key.
            idempotency_key: None,
            ..metadata.clone()
        };
        self.subjects
            .execute(&stream.to_string(), command, &options, &metadata)
            .await?;
        Ok(())
    }

    /// Rewrites the copies in clear of every stream that held a value of `pseudonym`, whose
    /// key is gone: the store's events now read markers.
    async fn scrub(&self, subject: &str, pseudonym: &str) -> Result<ErasureRecord, AppError> {
        let streams = self.erasures.streams_of(pseudonym).await?;
        let mut envelopes = Vec::new();
        for chunk in streams.chunks(STREAMS_PER_READ) {
            let mut events = self.erasures.events_of(chunk).await?;
            for event in &mut events {
                self.fresh.open(event).await?;
                let envelope = EventMessage::of_stored(event).ok_or_else(|| {
                    AppError::internal(format!(
                        "event {}'s metadata is not readable",
                        event.event_id
                    ))
                })?;
                let envelope = serde_json::to_value(&envelope)
                    .map_err(|e| AppError::internal_from("encode envelope", e))?;
                envelopes.push((event.event_id, envelope));
            }
            for read_model in &self.read_models {
                let of_its_type: Vec<StoredEvent> = events
                    .iter()
                    .filter(|event| event.aggregate_type == read_model.aggregate_type())
                    .cloned()
                    .collect();
                if !of_its_type.is_empty() {
                    read_model.refold(&of_its_type).await?;
                }
            }
        }
        Ok(self
            .erasures
            .scrub(&Scrub {
                pseudonym: pseudonym.to_owned(),
                subject_id: subject.to_owned(),
                streams,
                envelopes,
            })
            .await?)
    }
}
