//! What operators do with the events a projection could not apply (admin): list them, and
//! apply them again once their cause is gone (the missing predecessor arrived, a fixed
//! projection version was deployed).

use std::sync::Arc;

use crate::access::{Action, Principal};
use crate::error::AppError;
use crate::ports::page::Page;
use crate::ports::projection_failures::{ProjectionFailure, ProjectionFailureStore};
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
}

impl ProjectionFailures {
    /// Over `store`, retrying through `projectors` (one per projection).
    pub fn new(store: Arc<dyn ProjectionFailureStore>, projectors: Vec<Arc<dyn Reapply>>) -> Self {
        Self { store, projectors }
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
        Ok(self.store.list(name, after, page_size(first)?).await?)
    }

    /// Applies `name`'s failures again, in store order, through the projection's own fold;
    /// removes those that applied (or that its rows already reflect) and keeps, with one more
    /// attempt, those that fail again.
    pub async fn retry(&self, principal: &Principal, name: &str) -> Result<RetryOutcome, AppError> {
        principal.scope(Action::Operate)?;
        let projector = self.projector(name)?;
        let failures = self.store.all(name).await?;
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
