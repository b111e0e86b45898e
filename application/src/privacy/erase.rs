//! Erasing a data subject (`eraseDataSubject`, `chronicle erase`): their key is destroyed, so
//! every value sealed under it reads `erased:<pseudonym>` in every event, and the copies in
//! clear that Chronicle keeps beside the store are rewritten from it.
//!
//! The steps, each safe to repeat, so an erasure interrupted at any point (a crash, a kill -9)
//! is finished by asking again:
//! 1. record the erasure (`Erasures::begin`; the subject's id is stored only as a keyed hash);
//! 2. destroy the key (this process forgets it at once; others within their key cache's time);
//! 3. scrub: fold the read-model rows of every stream that held a value of the subject again
//!    from the store, rewrite the outbox envelopes still held, delete the streams' snapshots
//!    and the subject's idempotency records, and mark the erasure done.
//!
//! No stored event changes, so every hash, inclusion proof and checkpoint stays valid.

use std::collections::BTreeMap;
use std::sync::Arc;

use chronicle_domain::ids::UserId;
use chrono::{DateTime, Utc};

use super::personal_data::PersonalData;
use crate::access::{Action, Principal};
use crate::error::AppError;
use crate::message::EventMessage;
use crate::ports::audit_log::AuditLog;
use crate::ports::erasures::{ErasureRecord, Erasures, Scrub};
use crate::projection::refold::Refold;

/// The longest reason an officer may give: a ticket reference and a sentence, not a file.
const MAX_REASON_CHARS: usize = 500;

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
    erasures: Arc<dyn Erasures>,
    log: Arc<dyn AuditLog>,
    read_models: Vec<Arc<dyn Refold>>,
}

impl Eraser {
    /// Destroying keys through `personal`, recording in `erasures`, reading events from `log`
    /// and rewriting `read_models`.
    pub fn new(
        personal: Arc<PersonalData>,
        erasures: Arc<dyn Erasures>,
        log: Arc<dyn AuditLog>,
        read_models: Vec<Arc<dyn Refold>>,
    ) -> Self {
        Self {
            personal,
            erasures,
            log,
            read_models,
        }
    }

    /// Erases `subject_id` (the `privacy` role, or `admin`). A second request for the same
    /// subject answers the first one's record and erases nothing more; an id Chronicle holds
    /// nothing of is `NOT_FOUND`.
    pub async fn erase(
        &self,
        principal: &Principal,
        subject_id: &str,
        reason: &str,
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
        let Some(key) = self.personal.keys().find(subject).await? else {
            return self.erased_before(subject).await;
        };
        if self.erasures.named_in_clear(subject).await? {
            return Err(AppError::InvalidTransition(
                "events stored in clear (before sealing was on) name this person; erasing them \
                 is not supported yet, and nothing was erased"
                    .to_owned(),
            ));
        }
        self.erasures
            .begin(subject, &key.pseudonym, principal.subject(), reason)
            .await?;
        self.personal.keys().destroy(subject).await?;
        let record = self.scrub(subject, &key.pseudonym).await?;
        tracing::info!(
            actor = principal.subject(),
            pseudonym = %record.pseudonym,
            streams = record.streams,
            "data subject erased"
        );
        Ok(DataSubjectErasure::of(record, false))
    }

    /// The answer for a subject without a key: the record of their erasure (finishing it when
    /// it was interrupted), or `NOT_FOUND`.
    async fn erased_before(&self, subject: &str) -> Result<DataSubjectErasure, AppError> {
        let Some(record) = self.erasures.find(subject).await? else {
            if self.erasures.named_in_clear(subject).await? {
                return Err(AppError::InvalidTransition(
                    "this person is named only in events stored in clear (before sealing was \
                     on); erasing them is not supported yet, and nothing was erased"
                        .to_owned(),
                ));
            }
            return Err(AppError::NotFound(format!("data subject {subject}")));
        };
        let record = match record.scrubbed {
            true => record,
            false => self.scrub(subject, &record.pseudonym).await?,
        };
        Ok(DataSubjectErasure::of(record, true))
    }

    /// Rewrites the copies in clear of every stream that held a value of `pseudonym`, whose
    /// key is gone: the store's events now read markers.
    async fn scrub(&self, subject: &str, pseudonym: &str) -> Result<ErasureRecord, AppError> {
        let streams = self.erasures.streams_of(pseudonym).await?;
        let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut envelopes = Vec::new();
        for stream in &streams {
            by_type
                .entry(stream.aggregate_type.as_str())
                .or_default()
                .push(stream.aggregate_id.clone());
            for mut record in self
                .log
                .stream(&stream.aggregate_type, &stream.aggregate_id)
                .await?
            {
                self.personal.open(&mut record.event).await?;
                let envelope = EventMessage::of_stored(&record.event).ok_or_else(|| {
                    AppError::internal(format!(
                        "event {}'s metadata is not readable",
                        record.event.event_id
                    ))
                })?;
                let envelope = serde_json::to_value(&envelope)
                    .map_err(|e| AppError::internal_from("encode envelope", e))?;
                envelopes.push((record.event.event_id, envelope));
            }
        }
        for read_model in &self.read_models {
            if let Some(ids) = by_type.get(read_model.aggregate_type()) {
                read_model.refold(ids).await?;
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
