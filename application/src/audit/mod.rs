//! The audit trail: who changed what, when and why, read straight from the event store.
//!
//! - [`AuditQueries`] pages the trail with combinable filters and follows one aggregate;
//! - [`chain`] checks the tamper-evidence hash chain, of one aggregate or of the whole store;
//! - [`time_travel`] folds an aggregate's events up to a version or an instant.
//!
//! Only auditors and admins may call these, on their teams' aggregates ([`crate::access`]).

pub mod chain;
pub mod checkpoints;
pub mod erasure_check;
pub mod export;
pub mod merkle;
pub mod signed_note;
pub mod signing;
pub mod store_check;
pub(crate) mod time_travel;
pub mod tree_check;

use std::collections::HashMap;
use std::sync::Arc;

use chronicle_domain::subject::DATA_SUBJECT_ERASED;
use chrono::SubsecRound;
use futures::stream::{BoxStream, StreamExt};

use crate::access::{Action, Principal};
use crate::aggregates;
use crate::data::event_log::StoredEvent;
use crate::data::hash_chain::event_hash;
use crate::error::AppError;
use crate::live::{LiveFeed, Start};
use crate::ports::audit_log::AuditFilter;
use crate::ports::audit_log::AuditLog;
use crate::ports::event_feed::FeedRecord;
use crate::privacy::personal_data::PersonalData;
use crate::privacy::seal::reference;
use crate::privacy::sealing::ErasedValue;
use crate::queries::page_size;
use chronicle_domain::ids::ERASED_PREFIX;

pub use chain::ChainCheck;
pub(crate) use chain::ChainVerifier;
use erasure_check::{Content, ErasureRef};
use signing::PublicKey;
use store_check::erasure_evidence;
pub use time_travel::{PointInTime, TimeTravel};

/// One event of the trail as an auditor reads it: opened, with what it is as stored beside.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Global position in the store.
    pub position: i64,
    /// The event with its personal values opened, or `erased:<pseudonym>` where they were
    /// erased.
    pub event: StoredEvent,
    /// The event as stored: what its hash covers, and what a client recomputes it from.
    pub stored: StoredEvent,
    /// The values that were erased.
    pub erased: Vec<ErasedValue>,
}

impl AuditEntry {
    /// An opened metadata field (`actor_id`, `correlation_id`, `causation_id`).
    pub fn metadata(&self, field: &str) -> Option<&str> {
        self.event.metadata.get(field).and_then(|v| v.as_str())
    }
}

/// A page of the trail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    /// Events in position order.
    pub items: Vec<AuditEntry>,
    /// Whether more events match after the last one.
    pub has_next_page: bool,
}

/// A record of the trail as an auditor reads it.
async fn open(personal: &PersonalData, record: FeedRecord) -> Result<AuditEntry, AppError> {
    let (event, opening) = personal.opened(&record.event).await?;
    Ok(AuditEntry {
        position: record.position,
        event,
        stored: record.event,
        erased: opening.erased,
    })
}

/// The trail's use cases.
pub struct AuditQueries {
    log: Arc<dyn AuditLog>,
    personal: Arc<PersonalData>,
    erasure_key: Option<PublicKey>,
}

impl AuditQueries {
    /// Queries over `log`, opening personal values with `personal`.
    pub fn new(log: Arc<dyn AuditLog>, personal: Arc<PersonalData>) -> Self {
        Self {
            log,
            personal,
            erasure_key: None,
        }
    }

    /// Checks erasures' signatures under `key` (the checkpoint key) when verifying.
    pub fn with_erasure_key(self, key: Option<PublicKey>) -> Self {
        Self {
            erasure_key: key,
            ..self
        }
    }

    /// A page of matching events after position `after`, in position order, read from `live`'s
    /// settled position.
    ///
    /// Pages are stable while events are appended: new events only ever appear after the ones
    /// already served, since a page ends before any event still committing (so an `endCursor`
    /// never passes over one), and a page shows every event committed before it was asked for
    /// (unless a transaction running long on the server held them back: docs/api.md).
    /// Only events of the caller's teams' aggregates appear.
    pub async fn trail(
        &self,
        live: &LiveFeed,
        principal: &Principal,
        filter: &AuditFilter,
        first: Option<i64>,
        after: Option<i64>,
    ) -> Result<AuditPage, AppError> {
        let filter = self.scoped(principal, filter).await?;
        let limit = page_size(first)?;
        let mut records = live
            .final_page(&filter, after.unwrap_or(0), limit + 1)
            .await?;
        let has_next_page = records.len() > limit;
        records.truncate(limit);
        let mut items = Vec::with_capacity(records.len());
        for record in records {
            items.push(open(&self.personal, record).await?);
        }
        Ok(AuditPage {
            items,
            has_next_page,
        })
    }

    /// The matching events after `start` as they become final, in position order, each once
    /// (docs/api.md, "Subscriptions"), of the caller's teams.
    pub async fn follow(
        &self,
        live: &LiveFeed,
        principal: &Principal,
        filter: &AuditFilter,
        start: Start,
    ) -> Result<BoxStream<'static, Result<AuditEntry, AppError>>, AppError> {
        let filter = self.scoped(principal, filter).await?;
        let personal = self.personal.clone();
        Ok(live
            .follow(filter, start)
            .then(move |record| {
                let personal = personal.clone();
                async move { open(&personal, record?).await }
            })
            .boxed())
    }

    /// `filter` as the store is asked it: checked, restricted to the caller's teams, its actor
    /// in every form it is stored under.
    async fn scoped(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
    ) -> Result<AuditFilter, AppError> {
        let scope = principal.scope(Action::ReadAudit)?;
        validate(filter)?;
        let actor_forms = match &filter.actor_id {
            Some(actor) => Some(self.actor_forms(actor).await?),
            None => None,
        };
        // At the store's precision, so a subscription's filter in memory and the store's in
        // SQL (which keeps microseconds) agree on an event at the edge.
        Ok(AuditFilter {
            teams: scope.restriction().map(<[String]>::to_vec),
            actor_forms,
            from: filter.from.map(|from| from.trunc_subsecs(6)),
            to: filter.to.map(|to| to.trunc_subsecs(6)),
            ..filter.clone()
        })
    }

    /// The stored forms of an actor a client filters by: a user id in clear and as a
    /// reference to its key; an erased person's marker as the reference it replaced.
    async fn actor_forms(&self, actor: &str) -> Result<Vec<String>, AppError> {
        match actor.strip_prefix(ERASED_PREFIX) {
            // Sealed events name them by reference; events stored in clear hold the marker.
            Some(pseudonym) => Ok(vec![reference(pseudonym), actor.to_owned()]),
            None => self.personal.stored_forms(actor).await,
        }
    }

    /// Checks one aggregate's chain; `NOT_FOUND` when it has no events and nothing saw any, or
    /// when it belongs to a team outside the caller's scope.
    pub async fn verify(
        &self,
        principal: &Principal,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<ChainCheck, AppError> {
        let scope = principal.scope(Action::ReadAudit)?;
        let not_found = || AppError::NotFound(format!("{aggregate_type} {aggregate_id}"));
        if let Some(team) = self.log.team_of(aggregate_type, aggregate_id).await? {
            if !scope.covers(&team) {
                return Err(not_found());
            }
        }
        let events = self.log.stream(aggregate_type, aggregate_id).await?;
        let witnessed = self
            .log
            .witnessed_version(aggregate_type, aggregate_id)
            .await?;
        if events.is_empty() && witnessed == 0 {
            return Err(not_found());
        }
        let evidence = erasure_evidence(
            self.log.as_ref(),
            Some((aggregate_type, aggregate_id)),
            self.erasure_key.as_ref(),
        )
        .await?;
        let mut erasures = HashMap::new();
        let mut verifier = ChainVerifier::default();
        for record in &events {
            let event = &record.event;
            let content = match evidence.judge(
                event.event_id,
                &event.hash,
                record.position,
                &event_hash(event),
            ) {
                Content::Intact => self.sealed_erasures(event, &mut erasures).await?,
                judged => judged,
            };
            verifier.push_judged(event, content);
        }
        let check = verifier.finish(witnessed);
        if !check.valid {
            return Ok(check);
        }
        match self
            .log
            .misattributed(Some((aggregate_type, aggregate_id)))
            .await?
        {
            Some(wrong) => Ok(ChainCheck {
                valid: false,
                first_invalid_sequence: Some(wrong.sequence),
                reason: Some(wrong.reason()),
                ..check
            }),
            None => Ok(self.with_officers_opened(check).await?),
        }
    }

    /// An intact event's standing once opened: erased when values sealed under a destroyed
    /// key read as markers, each named by the erasure event that destroyed it; edited when a
    /// key is gone and no erasure event records it (destroyed outside an erasure), or a value
    /// does not open.
    async fn sealed_erasures(
        &self,
        event: &StoredEvent,
        erasures: &mut HashMap<String, Option<ErasureRef>>,
    ) -> Result<Content, AppError> {
        let opening = match self.personal.opened(event).await {
            Ok((_, opening)) => opening,
            Err(e) => {
                return Ok(Content::Edited(format!(
                    "its sealed values do not open: {e}"
                )))
            }
        };
        let mut by: Vec<ErasureRef> = Vec::new();
        for erased in opening.erased {
            if by
                .iter()
                .any(|erasure| erasure.pseudonym == erased.pseudonym)
            {
                continue;
            }
            if !erasures.contains_key(&erased.pseudonym) {
                let found = self.erasure_of(&erased.pseudonym).await?;
                erasures.insert(erased.pseudonym.clone(), found);
            }
            match &erasures[&erased.pseudonym] {
                Some(erasure) => by.push(erasure.clone()),
                None => {
                    return Ok(Content::Edited(format!(
                        "values of {} read as erased, but no DataSubjectErased event records an \
                         erasure of them: their key was destroyed outside an erasure",
                        erased.pseudonym
                    )))
                }
            }
        }
        Ok(match by.is_empty() {
            true => Content::Intact,
            false => Content::Erased(by),
        })
    }

    /// The erasure event of `pseudonym`, if one is stored.
    async fn erasure_of(&self, pseudonym: &str) -> Result<Option<ErasureRef>, AppError> {
        let Ok(stream) = uuid::Uuid::parse_str(pseudonym) else {
            return Ok(None);
        };
        let events = self
            .log
            .stream(aggregates::DATA_SUBJECT.type_name, &stream.to_string())
            .await?;
        Ok(events
            .iter()
            .find(|record| record.event.event_type == DATA_SUBJECT_ERASED)
            .map(|record| ErasureRef::of(pseudonym, record)))
    }

    /// `check` with each erasure's officer as the trail shows them (their id, or their
    /// marker once erased themselves), not the sealed reference stored.
    async fn with_officers_opened(&self, mut check: ChainCheck) -> Result<ChainCheck, AppError> {
        let mut opened: HashMap<String, String> = HashMap::new();
        for (_, by) in &mut check.erased {
            for erasure in by {
                if !opened.contains_key(&erasure.erased_by) {
                    let actor = self.personal.actor_as_read(&erasure.erased_by).await?;
                    opened.insert(erasure.erased_by.clone(), actor);
                }
                erasure.erased_by = opened[&erasure.erased_by].clone();
            }
        }
        Ok(check)
    }
}

fn validate(filter: &AuditFilter) -> Result<(), AppError> {
    if let Some(kind) = &filter.aggregate_type {
        if aggregates::by_type(kind).is_none() {
            return Err(AppError::validation(
                "filter.aggregateType",
                format!("must be one of {}", aggregates::type_names().join(", ")),
            ));
        }
    }
    for (field, value) in [
        ("filter.aggregateId", &filter.aggregate_id),
        ("filter.actorId", &filter.actor_id),
        ("filter.correlationId", &filter.correlation_id),
        ("filter.eventType", &filter.event_type),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > 128)
        {
            return Err(AppError::validation(field, "must be 1 to 128 characters"));
        }
    }
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if to < from {
            return Err(AppError::validation(
                "filter.to",
                "must not precede filter.from",
            ));
        }
    }
    Ok(())
}
