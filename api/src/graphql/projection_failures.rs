//! Events a projection could not apply, in GraphQL, for operators (admin):
//! `projectionFailures` and `retryProjectionFailures`. The `projections` query shows each
//! projection's count.

use async_graphql::{Context, Object, SimpleObject, ID};
use chronicle_application::ports::projection_failures::ProjectionFailure as AppFailure;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::error::to_graphql;
use super::pagination::{connection, decode_cursor, PageInfo};

/// An event a projection could not apply.
#[derive(SimpleObject)]
pub struct ProjectionFailure {
    /// The event.
    pub event_id: ID,
    /// Its aggregate's type (`Task`, `Report`).
    pub aggregate_type: String,
    /// Its aggregate.
    pub aggregate_id: ID,
    /// Its sequence in the aggregate.
    pub sequence: i64,
    /// Its type (`TaskStarted`, ...).
    pub event_type: String,
    /// Why it was not applied (the last time): `sequence gap: have 0, got 2`, say.
    pub reason: String,
    /// Times it failed.
    pub attempts: i32,
    /// When it first failed.
    pub first_failed_at: DateTime<Utc>,
    /// When it last failed.
    pub last_failed_at: DateTime<Utc>,
}

impl From<AppFailure> for ProjectionFailure {
    fn from(failure: AppFailure) -> Self {
        let event = failure.event;
        Self {
            event_id: ID(event.event_id.to_string()),
            aggregate_type: event.aggregate_type,
            aggregate_id: ID(event.aggregate_id),
            sequence: event.sequence as i64,
            event_type: event.event_type,
            reason: failure.reason,
            attempts: i32::try_from(failure.attempts).unwrap_or(i32::MAX),
            first_failed_at: failure.first_failed_at,
            last_failed_at: failure.last_failed_at,
        }
    }
}

/// A projection failure with its cursor.
#[derive(SimpleObject)]
pub struct ProjectionFailureEdge {
    /// Pass it as `after` to continue after this one.
    pub cursor: String,
    /// The failure.
    pub node: ProjectionFailure,
}

/// A page of a projection's failures, oldest first.
#[derive(SimpleObject)]
pub struct ProjectionFailureConnection {
    /// The failures with their cursors.
    pub edges: Vec<ProjectionFailureEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

/// What `retryProjectionFailures` did.
#[derive(SimpleObject)]
pub struct ProjectionFailureRetry {
    /// Failures that applied now (or that the rows already reflected), removed.
    pub resolved: i64,
    /// Failures that failed again (one more attempt counted), still listed.
    pub remaining: i64,
}

/// Projection failure queries.
#[derive(Default)]
pub struct ProjectionFailureQuery;

#[Object]
impl ProjectionFailureQuery {
    /// The events a projection (`tasks`, `reports`) could not apply, oldest first (admin).
    async fn projection_failures(
        &self,
        ctx: &Context<'_>,
        name: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ProjectionFailureConnection> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let after = after
                .as_deref()
                .map(|c| decode_cursor("failure", c))
                .transpose()?;
            let page = ctx
                .services()
                .projection_failures
                .list(principal, &name, first.map(i64::from), after)
                .await?;
            Ok::<_, AppError>((page, after.is_some()))
        };
        let (page, paged) = run.await.map_err(|e| to_graphql(e, request))?;
        let (edges, page_info) =
            connection(page, "failure", paged, |f| f.id, ProjectionFailure::from);
        let edges = edges
            .into_iter()
            .map(|(cursor, node)| ProjectionFailureEdge { cursor, node })
            .collect();
        Ok(ProjectionFailureConnection { edges, page_info })
    }
}

/// Projection failure mutations.
#[derive(Default)]
pub struct ProjectionFailureMutation;

#[Object]
impl ProjectionFailureMutation {
    /// Applies a projection's failures again, in store order, once their cause is gone (the
    /// missing predecessor arrived, a fixed projection version runs) (admin). Those that
    /// apply are removed; those that fail again stay with one more attempt.
    async fn retry_projection_failures(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<ProjectionFailureRetry> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            ctx.services()
                .projection_failures
                .retry(principal, &name)
                .await
        };
        run.await
            .map(|outcome| ProjectionFailureRetry {
                resolved: outcome.resolved as i64,
                remaining: outcome.remaining as i64,
            })
            .map_err(|e| to_graphql(e, request))
    }
}
