//! Time travel: an aggregate as it was at a version or an instant, folded from the event store.
//!
//! The fold is the read model's own (the same [`ReadModel::apply`] the live projection runs), so
//! a past state has exactly the shape and the rules of the current one, and the read model is
//! never consulted: it only knows the present.

use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::access::{Action, Principal};
use crate::error::AppError;
use crate::ports::audit_log::AuditLog;
use crate::privacy::personal_data::PersonalData;
use crate::projection::read_model::{apply_stored, ReadModel};

/// The point of an aggregate's life to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointInTime {
    /// After this many events (1 is the creation).
    Version(u64),
    /// After every event recorded at or before this instant.
    Instant(DateTime<Utc>),
}

/// Past states of one read model's aggregates.
pub struct TimeTravel<M: ReadModel> {
    log: Arc<dyn AuditLog>,
    personal: Arc<PersonalData>,
    model: PhantomData<fn() -> M>,
}

impl<M: ReadModel> TimeTravel<M> {
    /// Time travel over `log`, opening personal values with `personal` (a past state of an
    /// erased person's work shows markers, as the present does).
    pub fn new(log: Arc<dyn AuditLog>, personal: Arc<PersonalData>) -> Self {
        Self {
            log,
            personal,
            model: PhantomData,
        }
    }

    /// The aggregate at `point`: `None` when it did not exist yet (or at all, or belongs to a
    /// team outside the caller's audit scope); `NOT_FOUND` for a version it never reached; the
    /// current state for an instant in the future.
    pub async fn at(
        &self,
        principal: &Principal,
        id: Uuid,
        point: PointInTime,
    ) -> Result<Option<M::View>, AppError> {
        let scope = principal.scope(Action::ReadAudit)?;
        if point == PointInTime::Version(0) {
            return Err(AppError::validation("atVersion", "must be at least 1"));
        }
        let mut events = self.log.stream(M::AGGREGATE_TYPE, &id.to_string()).await?;
        for record in &mut events {
            self.personal.open(&mut record.event).await?;
        }
        // The owner is read from the creation event itself (hash-chained), before anything
        // about the stream (its length, its past) can reach the caller.
        if let Some(first) = events.first() {
            let created = apply_stored::<M>(None, &first.event)?;
            if !M::team(&created).is_some_and(|team| scope.covers(team)) {
                return Ok(None);
            }
        }
        if let PointInTime::Version(version) = point {
            let latest = events.last().map_or(0, |r| r.event.sequence);
            if events.is_empty() {
                return Ok(None);
            }
            if version > latest {
                return Err(AppError::NotFound(format!(
                    "version {version} of {} {id} (the latest is {latest})",
                    M::AGGREGATE_TYPE
                )));
            }
        }
        let mut view = None;
        for record in &events {
            let event = &record.event;
            let included = match point {
                PointInTime::Version(version) => event.sequence <= version,
                PointInTime::Instant(instant) => event.recorded_at <= instant,
            };
            if !included {
                break;
            }
            view = Some(apply_stored::<M>(view, event)?);
        }
        Ok(view)
    }
}
