//! What operators do with the events a projection could not apply (admin): list them, and
//! apply them again once their cause is gone (the missing predecessor arrived, a fixed
//! projection version was deployed).

use std::sync::Arc;

use crate::access::{Action, Principal};
use crate::error::AppError;
use crate::event_log::StoredEvent;
use crate::message::EventMessage;
use crate::ports::page::Page;
use crate::ports::projection_failures::{ProjectionFailure, ProjectionFailureStore};
use crate::privacy::personal_data::PersonalData;
use crate::projection::projector::Reapply;
use crate::queries::page_size;

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOutcome {
    /// Failures that applied (or were already reflected) and were removed.
    pub resolved: u64,
    /// Failures still there (they failed again).
    pub remaining: u64,
}

/// The projection failures of every projection.
pub struct ProjectionFailures {
    store: Arc<dyn ProjectionFailureStore>,
    projectors: Vec<Arc<dyn Reapply>>,
    personal: Arc<PersonalData>,
}

impl ProjectionFailures {
    /// Over `store`, retrying through `projectors` (one per projection), opening the failed
    /// events' personal values with `personal`.
    pub fn new(
        store: Arc<dyn ProjectionFailureStore>,
        projectors: Vec<Arc<dyn Reapply>>,
        personal: Arc<PersonalData>,
    ) -> Self {
        Self {
            store,
            projectors,
            personal,
        }
    }

    /// A failure with its event opened, as the projection consumed it.
    async fn opened(
        &self,
        failure: ProjectionFailure<StoredEvent>,
    ) -> Result<ProjectionFailure, AppError> {
        let (event, _) = self.personal.opened(&failure.event).await?;
        let event = EventMessage::of_stored(&event).ok_or_else(|| {
            AppError::internal(format!(
                "event {}'s metadata is not readable",
                event.event_id
            ))
        })?;
        Ok(ProjectionFailure {
            id: failure.id,
            event,
            reason: failure.reason,
            attempts: failure.attempts,
            first_failed_at: failure.first_failed_at,
            last_failed_at: failure.last_failed_at,
        })
    }

    fn projector(&self, name: &str) -> Result<&Arc<dyn Reapply>, AppError> {
        self.projectors
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.projectors.iter().map(|p| p.name()).collect();
                AppError::validation(
                    "name",
                    format!("unknown projection; choose from {}", known.join(", ")),
                )
            })
    }

    /// How many failures each projection has (every projection named, 0 when none).
    pub async fn counts(&self) -> Result<Vec<(&'static str, u64)>, AppError> {
        let counts = self.store.counts().await?;
        Ok(self
            .projectors
            .iter()
            .map(|p| {
                let n = counts
                    .iter()
                    .find(|(name, _)| name == p.name())
                    .map_or(0, |(_, n)| *n);
                (p.name(), n)
            })
            .collect())
    }

    /// A page of `name`'s failures in the order they were first recorded.
    pub async fn list(
        &self,
        principal: &Principal,
        name: &str,
        first: Option<i64>,
        after: Option<i64>,
    ) -> Result<Page<ProjectionFailure>, AppError> {
        principal.scope(Action::Operate)?;
        self.projector(name)?;
        let page = self.store.list(name, after, page_size(first)?).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for failure in page.items {
            items.push(self.opened(failure).await?);
        }
        Ok(Page {
            items,
            has_next_page: page.has_next_page,
        })
    }

    /// Applies `name`'s failures again, in store order, through the projection's own fold;
    /// removes those that applied (or that its rows already reflect) and keeps, with one more
    /// attempt, those that fail again.
    pub async fn retry(&self, principal: &Principal, name: &str) -> Result<RetryOutcome, AppError> {
        principal.scope(Action::Operate)?;
        let projector = self.projector(name)?;
        let mut failures = Vec::new();
        for failure in self.store.all(name).await? {
            failures.push(self.opened(failure).await?);
        }
        if failures.is_empty() {
            return Ok(RetryOutcome {
                resolved: 0,
                remaining: 0,
            });
        }
        let events: Vec<_> = failures.iter().map(|f| f.event.clone()).collect();
        projector.reapply(&events).await?;
        let seen: Vec<_> = failures
            .iter()
            .map(|f| (f.event.event_id, f.attempts))
            .collect();
        let resolved = self.store.resolve(name, &seen).await?;
        let outcome = RetryOutcome {
            resolved,
            remaining: failures.len() as u64 - resolved,
        };
        tracing::info!(
            actor = principal.subject(),
            projection = name,
            resolved,
            remaining = outcome.remaining,
            "projection failures retried"
        );
        Ok(outcome)
    }
}
