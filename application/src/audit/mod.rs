//! The audit trail: who changed what, when and why, read straight from the event store.
//!
//! - [`AuditQueries`] pages the trail with combinable filters and follows one aggregate;
//! - [`chain`] checks the tamper-evidence hash chain, of one aggregate or of the whole store;
//! - [`time_travel`] folds an aggregate's events up to a version or an instant.
//!
//! Only auditors and admins may call these, on their teams' aggregates ([`crate::access`]).

pub mod chain;
pub mod checkpoints;
pub mod export;
pub mod merkle;
pub mod signing;
pub mod store_check;
pub mod time_travel;
pub mod tree_check;

use std::sync::Arc;

use crate::access::{Action, Principal};
use crate::aggregates;
use crate::error::AppError;
use crate::event_log::StoredEvent;
use crate::ports::audit_log::AuditLog;
use crate::ports::audit_log::{AuditFilter, AuditRecord};
use crate::privacy::personal_data::PersonalData;
use crate::privacy::seal::reference;
use crate::privacy::sealing::ErasedValue;
use crate::queries::page_size;
use chronicle_domain::ids::ERASED_PREFIX;

pub use chain::{ChainCheck, ChainVerifier};
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

/// The trail's use cases.
pub struct AuditQueries {
    log: Arc<dyn AuditLog>,
    personal: Arc<PersonalData>,
}

impl AuditQueries {
    /// Queries over `log`, opening personal values with `personal`.
    pub fn new(log: Arc<dyn AuditLog>, personal: Arc<PersonalData>) -> Self {
        Self { log, personal }
    }

    /// A page of matching events after position `after`, in position order.
    ///
    /// Pages are stable while events are appended: new events only ever appear after the ones
    /// already served (the store shows an event once every transaction that started before it
    /// ended, so a late commit cannot slip in behind a page already read).
    /// Only events of the caller's teams' aggregates appear.
    pub async fn trail(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        first: Option<i64>,
        after: Option<i64>,
    ) -> Result<AuditPage, AppError> {
        let scope = principal.scope(Action::ReadAudit)?;
        validate(filter)?;
        let limit = page_size(first)?;
        let actor_forms = match &filter.actor_id {
            Some(actor) => Some(self.actor_forms(actor).await?),
            None => None,
        };
        let filter = AuditFilter {
            teams: scope.restriction().map(<[String]>::to_vec),
            actor_forms,
            ..filter.clone()
        };
        let mut records = self.log.trail(&filter, after, limit + 1).await?;
        let has_next_page = records.len() > limit;
        records.truncate(limit);
        let mut items = Vec::with_capacity(records.len());
        for record in records {
            items.push(self.open(record).await?);
        }
        Ok(AuditPage {
            items,
            has_next_page,
        })
    }

    /// The stored forms of an actor a client filters by: a user id in clear and as a
    /// reference to its key; an erased person's marker as the reference it replaced.
    async fn actor_forms(&self, actor: &str) -> Result<Vec<String>, AppError> {
        match actor.strip_prefix(ERASED_PREFIX) {
            Some(pseudonym) => Ok(vec![reference(pseudonym)]),
            None => self.personal.stored_forms(actor).await,
        }
    }

    async fn open(&self, record: AuditRecord) -> Result<AuditEntry, AppError> {
        let (event, opening) = self.personal.opened(&record.event).await?;
        Ok(AuditEntry {
            position: record.position,
            event,
            stored: record.event,
            erased: opening.erased,
        })
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
        let mut verifier = ChainVerifier::default();
        for record in &events {
            verifier.push(&record.event);
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
                events_checked: check.events_checked,
                first_invalid_sequence: Some(wrong.sequence),
                reason: Some(wrong.reason()),
            }),
            None => Ok(check),
        }
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
