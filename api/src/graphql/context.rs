//! What every resolver can reach: the services and the request's identity and tracing context.

use std::sync::Arc;

use async_graphql::Context;
use chronicle_application::access::{Action, Principal, TeamScope};
use chronicle_application::audit::checkpoints::AuditProofs;
use chronicle_application::audit::{AuditQueries, TimeTravel};
use chronicle_application::commands::{ReportCommands, TaskCommands};
use chronicle_application::data::metadata::CommandMetadata;
use chronicle_application::erasure::Eraser;
use chronicle_application::held::HeldMessages;
use chronicle_application::live::LiveWatch;
use chronicle_application::projection::report::ReportReadModel;
use chronicle_application::projection::task::TaskReadModel;
use chronicle_application::queries::{ReportQueries, TaskQueries};
use chronicle_application::rebuild::Rebuilder;
use chronicle_application::AppError;

pub use super::slots::SubscriptionSlots;

/// The use cases the schema serves.
#[derive(Clone)]
pub struct Services {
    /// Task commands.
    pub task_commands: Arc<TaskCommands>,
    /// Task queries.
    pub task_queries: Arc<TaskQueries>,
    /// Report commands.
    pub report_commands: Arc<ReportCommands>,
    /// Report queries.
    pub report_queries: Arc<ReportQueries>,
    /// Events as this instance reads them, for subscriptions (scoped to the caller's teams).
    pub live: LiveWatch,
    /// The audit trail and chain verification.
    pub audit: Arc<AuditQueries>,
    /// Tasks as they were.
    pub task_history: Arc<TimeTravel<TaskReadModel>>,
    /// Reports as they were.
    pub report_history: Arc<TimeTravel<ReportReadModel>>,
    /// Projection status and rebuilds.
    pub rebuilder: Arc<Rebuilder>,
    /// Held messages: parked outbox records, dead letters, projection failures.
    pub held: Arc<HeldMessages>,
    /// Signed checkpoints and proofs of the audit trail.
    pub audit_proofs: Arc<AuditProofs>,
    /// Erasing data subjects.
    pub eraser: Arc<Eraser>,
}

/// One HTTP request's context, built by the HTTP handler before the schema runs.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The authenticated caller, if the request carried valid credentials.
    pub principal: Option<Principal>,
    /// When the credentials of a subscription connection expire: its streams end then, so a
    /// socket cannot outlive its token. `None` for single requests (checked on arrival).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The subscriptions open on this WebSocket connection, against its limit (`None` for
    /// single requests).
    pub subscriptions: Option<SubscriptionSlots>,
    /// Why credentials were refused, if they were.
    pub auth_error: Option<String>,
    /// From `X-Correlation-Id`, or generated; returned in the response header.
    pub correlation_id: String,
    /// Unique per request; in logs and in `INTERNAL` errors.
    pub request_id: String,
    /// W3C trace context from the request.
    pub traceparent: Option<String>,
}

impl RequestContext {
    /// The caller, or `UNAUTHENTICATED`. What it may do is decided by the use cases it is
    /// handed to ([`chronicle_application::access`]).
    pub fn principal(&self) -> Result<&Principal, AppError> {
        self.principal.as_ref().ok_or(AppError::Unauthenticated)
    }

    /// The teams `action` reaches for the caller, for edge operations without a use case of
    /// their own (projection operations); `FORBIDDEN` when no role allows it.
    pub fn may(&self, action: Action) -> Result<TeamScope, AppError> {
        self.principal()?.scope(action)
    }

    /// Opens a subscription: takes one of the connection's slots (`LIMIT_EXCEEDED` when all
    /// are taken; given back when the stream is dropped) and ends `stream` when the
    /// connection's token expires, so a socket cannot outlive its credentials.
    pub fn subscription<S: futures::Stream>(
        &self,
        stream: S,
    ) -> Result<impl futures::Stream<Item = S::Item>, AppError> {
        use futures::StreamExt;
        let slot = match &self.subscriptions {
            Some(slots) => Some(slots.take()?),
            None => None,
        };
        let left = self
            .expires_at
            .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
        let expiry = async move {
            match left {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending::<()>().await,
            }
        };
        Ok(stream.take_until(expiry).map(move |item| {
            let _held = &slot;
            item
        }))
    }

    /// Metadata for a command issued by this request.
    /// The actor is always the token's subject: no input can set it.
    pub fn metadata(&self, idempotency_key: Option<String>) -> Result<CommandMetadata, AppError> {
        let principal = self.principal()?;
        if let Some(key) = &idempotency_key {
            if key.is_empty() || key.chars().count() > 128 {
                return Err(AppError::validation(
                    "idempotencyKey",
                    "must be 1 to 128 characters",
                ));
            }
        }
        Ok(CommandMetadata {
            actor_id: principal.subject().to_owned(),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.request_id.clone(),
            traceparent: self.traceparent.clone(),
            idempotency_key,
        })
    }
}

/// Shorthand accessors for resolvers.
pub(crate) trait ContextExt {
    /// The services.
    fn services(&self) -> &Services;
    /// The request context.
    fn request(&self) -> &RequestContext;
}

impl ContextExt for Context<'_> {
    fn services(&self) -> &Services {
        self.data_unchecked::<Services>()
    }

    fn request(&self) -> &RequestContext {
        self.data_unchecked::<RequestContext>()
    }
}
