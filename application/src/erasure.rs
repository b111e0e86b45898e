//! Erasing a data subject (`eraseDataSubject`, `chronicle erase`): their key is destroyed, so
//! every value sealed under it reads `erased:<pseudonym>` in every event, and the copies in
//! clear that Chronicle keeps beside the store are rewritten from it.
//!
//! The steps, each safe to repeat, so an erasure interrupted at any point (a crash, a kill -9)
//! is finished by asking again:
//! 1. record the erasure (`Erasures::begin`; the subject's id is stored only as a keyed hash);
//! 2. plan the replacement of the subject's values stored in clear by markers (events written
//!    before sealing was on, reports' results naming them: [`crate::privacy::redact`]), as rows of the
//!    erasure ledger;
//! 3. append `DataSubjectErased` to the subject's stream (`DataSubject`, its id the pseudonym
//!    as a UUID): hash-chained, checkpointed and published like every event, so auditors see
//!    who erased whom and why, and downstream consumers learn to erase what they kept; it
//!    commits to the plan with a digest signed under the checkpoint key; a second append
//!    decides nothing;
//! 4. destroy the key (this process forgets it at once; others within their key cache's
//!    time), and apply the plan;
//! 5. scrub: fold the read-model rows of every stream that held a value of the subject again
//!    from the store, rewrite the outbox envelopes, dead letters and projection failures still
//!    held, delete the streams' snapshots and the subject's idempotency records, and mark
//!    the erasure done.
//!
//! No sealed event changes, so every hash, inclusion proof and checkpoint stays valid; an event
//! stored in clear keeps its hash and links, and the verifier accepts its new content through
//! the signed ledger ([`crate::audit::erasure_check`]).
//!
//! Erasures run one at a time, across processes.

use std::collections::HashSet;
use std::sync::Arc;

use chronicle_domain::ids::UserId;
use chronicle_domain::subject::{DataSubject, DataSubjectCommand, Redactions, MAX_REASON_CHARS};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::access::{Action, Principal, TeamScope};
use crate::audit::erasure_check;
use crate::audit::signing::CheckpointSigner;
use crate::commands::{AggregateExecutor, ExecuteOptions};
use crate::data::event_log::StoredEvent;
use crate::data::hash_chain::event_hash;
use crate::data::message::EventMessage;
use crate::data::metadata::CommandMetadata;
use crate::error::AppError;
use crate::ports::erasures::{ErasureRecord, Erasures, PositionedEvent, Redaction, Scrub};
use crate::privacy::personal_data::PersonalData;
use crate::privacy::redact;
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
    signer: Option<Arc<CheckpointSigner>>,
}

/// Streams read, opened and folded again at once: a person with 10,000 tasks is rewritten in
/// ten round trips, not 10,000.
const STREAMS_PER_READ: usize = 1_000;

impl Eraser {
    /// Destroying keys through `personal` (the process's own, whose cache forgets them at
    /// once), deciding and opening with `fresh` (keys read from the key store each time: an
    /// erasure must never act on a cached key another process destroyed), recording in
    /// `erasures` (and reading the events to rewrite from it), appending the erasure event
    /// through `subjects` and rewriting `read_models`; the changes to values stored in clear
    /// are signed by `signer`, the checkpoint key, when there is one.
    pub fn new(
        personal: Arc<PersonalData>,
        fresh: Arc<PersonalData>,
        erasures: Arc<dyn Erasures>,
        subjects: AggregateExecutor<DataSubject>,
        read_models: Vec<Arc<dyn Refold>>,
        signer: Option<Arc<CheckpointSigner>>,
    ) -> Self {
        Self {
            personal,
            fresh,
            erasures,
            subjects,
            read_models,
            signer,
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
        // One erasure at a time, across processes: two must never plan changes to the same
        // event from the same content. A plan an interrupted erasure left is applied, or
        // forgotten if its erasure event never got stored.
        let _one_at_a_time = self.erasures.lock().await?;
        self.erasures.settle().await?;
        let mut key = self.fresh.keys().find(subject).await?;
        let earlier = self.erasures.find(subject).await?;
        if key.is_none()
            && earlier.is_none()
            && !self.erasures.in_clear_naming(subject).await?.is_empty()
        {
            // Named only in clear (before sealing was on): a pseudonym is made for the
            // erasure to name them by. Once erased, asking again answers that erasure.
            key = Some(self.fresh.keys().key_for(subject).await?);
        }
        let (pseudonym, reason, replayed) = match (key, earlier) {
            // Interrupted before its key went: this request erases.
            (Some(key), Some(earlier)) if key.pseudonym == earlier.pseudonym => {
                (key.pseudonym, earlier.reason, false)
            }
            (None, Some(earlier)) => (earlier.pseudonym, earlier.reason, earlier.scrubbed),
            (Some(key), _) => {
                self.erasures
                    .begin(subject, &key.pseudonym, principal.subject(), reason)
                    .await?;
                (key.pseudonym, reason.to_owned(), false)
            }
            (None, None) => return Err(AppError::NotFound(format!("data subject {subject}"))),
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

    /// The steps after the record, each safe to repeat: the plan of the changes to values in
    /// clear, the event that commits to it, the key, the changes, the rewrite.
    async fn finish(
        &self,
        subject: &str,
        pseudonym: &str,
        reason: &str,
        metadata: &CommandMetadata,
    ) -> Result<ErasureRecord, AppError> {
        if !self.erasures.erasure_appended(pseudonym).await? {
            let redactions = self.plan_redactions(subject, pseudonym).await?;
            self.append_erasure(pseudonym, reason, redactions, metadata)
                .await?;
        }
        // Also when another process destroyed it: no key of the subject stays held here.
        self.personal.keys().destroy(subject).await?;
        self.erasures.settle().await?;
        self.scrub(subject, pseudonym).await
    }

    /// Plans the replacement of the subject's values stored in clear (events written before
    /// sealing, reports' results naming them or their tasks) and answers what the erasure
    /// event commits to; `None` when there are none.
    async fn plan_redactions(
        &self,
        subject: &str,
        pseudonym: &str,
    ) -> Result<Option<Redactions>, AppError> {
        let in_clear = self.erasures.in_clear_naming(subject).await?;
        let mut names: HashSet<String> = self
            .erasures
            .streams_of(pseudonym)
            .await?
            .into_iter()
            .map(|stream| stream.aggregate_id)
            .chain(in_clear.iter().map(|e| e.event.aggregate_id.clone()))
            .collect();
        names.insert(subject.to_owned());
        let names_list: Vec<String> = names.iter().cloned().collect();
        let reports = self.erasures.reports_naming(&names_list).await?;
        let mut candidates: Vec<PositionedEvent> = in_clear.into_iter().chain(reports).collect();
        candidates.sort_by_key(|candidate| candidate.position);
        candidates.dedup_by_key(|candidate| candidate.event.event_id);
        let whose = redact::Subject {
            id: subject,
            pseudonym,
            named_by: &names,
        };
        let mut planned = Vec::new();
        for PositionedEvent { position, event } in candidates {
            if let Some(redacted) = redact::redact(&event, &whose)? {
                planned.push(Redaction {
                    event_id: event.event_id,
                    position,
                    prior_hash: event_hash(&event),
                    redacted_hash: event_hash(&redacted),
                    payload: redacted.payload,
                    metadata: redacted.metadata,
                });
            }
        }
        self.erasures.plan(pseudonym, &planned).await?;
        if planned.is_empty() {
            return Ok(None);
        }
        Ok(Some(erasure_check::redactions(
            pseudonym,
            planned
                .iter()
                .map(|r| (&r.event_id, r.prior_hash.as_str(), r.redacted_hash.as_str())),
            planned.len() as u64,
            self.signer.as_deref(),
        )))
    }

    /// Appends `DataSubjectErased` to the subject's stream (nothing when it is there already).
    async fn append_erasure(
        &self,
        pseudonym: &str,
        reason: &str,
        redactions: Option<Redactions>,
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
            redactions,
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
