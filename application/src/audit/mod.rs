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
use crate::ports::audit_log::AuditLog;
use crate::ports::audit_log::{AuditFilter, AuditRecord};
use crate::queries::page_size;

pub use chain::{ChainCheck, ChainVerifier};
pub use time_travel::{PointInTime, TimeTravel};

/// A page of the trail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    /// Events in position order.
    pub items: Vec<AuditRecord>,
    /// Whether more events match after the last one.
    pub has_next_page: bool,
}

/// The trail's use cases.
pub struct AuditQueries {
    log: Arc<dyn AuditLog>,
}

impl AuditQueries {
    /// Queries over `log`.
    pub fn new(log: Arc<dyn AuditLog>) -> Self {
        Self { log }
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
        let filter = AuditFilter {
            teams: scope.restriction().map(<[String]>::to_vec),
            ..filter.clone()
        };
        let mut items = self.log.trail(&filter, after, limit + 1).await?;
        let has_next_page = items.len() > limit;
        items.truncate(limit);
        Ok(AuditPage {
            items,
            has_next_page,
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
