//! Projections in GraphQL, for operators (admin): `projections`, `rebuildProjection`, and the
//! `projectionStatus` subscription.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Enum, Object, SimpleObject, Subscription};
use chronicle_application::access::Action;
use chronicle_application::held::HeldMessages;
use chronicle_application::ports::held::HeldKind;
use chronicle_application::ports::projection_control::{
    ProjectionState as AppState, ProjectionStatus as AppStatus,
};
use chronicle_application::rebuild::Rebuilder;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};
use futures::stream::{self, Stream};

use super::context::ContextExt;
use super::error::to_graphql;
use chronicle_application::error_chain::Chain;

/// How often `projectionStatus` looks for a change.
const STATUS_POLL: Duration = Duration::from_millis(250);

/// Whether a projection's live consumer writes.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ProjectionState {
    /// Applying events as they arrive.
    Live,
    /// Being rebuilt; readers still read the current rows, the live consumer waits.
    Rebuilding,
    /// Held by an operator (`pauseProjection`) until `resumeProjection`. The projection
    /// consumer serves every projection, so it waits as a whole meanwhile.
    Paused,
}

impl From<AppState> for ProjectionState {
    fn from(state: AppState) -> Self {
        match state {
            AppState::Live => Self::Live,
            AppState::Rebuilding => Self::Rebuilding,
            AppState::Paused => Self::Paused,
        }
    }
}

/// A running rebuild's progress.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct RebuildProgress {
    /// Events folded so far.
    pub events_done: i64,
    /// Events in the rebuild's snapshot of the store.
    pub events_total: i64,
    /// `eventsDone / eventsTotal` (1 for an empty store).
    pub fraction: f64,
    /// When the rebuild started.
    pub started_at: DateTime<Utc>,
}

/// The last rebuild that finished.
#[derive(SimpleObject, Clone, PartialEq)]
pub(crate) struct LastRebuild {
    /// Events it folded.
    pub events: i64,
    /// How long it took, claim to swap.
    pub seconds: f64,
    /// When it swapped in.
    pub finished_at: DateTime<Utc>,
}

/// One projection as operators see it.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// `tasks`, `reports`.
    pub name: String,
    /// Version of the projection code that built the rows.
    pub version: i32,
    /// Live, rebuilding or paused.
    pub state: ProjectionState,
    /// Highest event-store position the rows reflect.
    pub position: i64,
    /// Events of its aggregate type in the store beyond `position` (an upper bound).
    pub lag: i64,
    /// The running rebuild, while there is one.
    pub rebuild: Option<RebuildProgress>,
    /// The last finished rebuild.
    pub last_rebuild: Option<LastRebuild>,
    /// Why the last rebuild failed or was abandoned.
    pub last_error: Option<String>,
    /// Events it could not apply, waiting in `projectionFailures`.
    pub failures: i64,
}

impl From<AppStatus> for ProjectionStatus {
    fn from(status: AppStatus) -> Self {
        let lag = status.lag();
        Self {
            name: status.name,
            version: status.version as i32,
            state: status.state.into(),
            position: status.position,
            lag,
            rebuild: status.rebuild.map(|p| RebuildProgress {
                events_done: p.done as i64,
                events_total: p.total as i64,
                fraction: if p.total == 0 {
                    1.0
                } else {
                    p.done as f64 / p.total as f64
                },
                started_at: p.started_at,
            }),
            last_rebuild: status
                .last_rebuild
                .map(|(events, seconds, finished_at)| LastRebuild {
                    events: events as i64,
                    seconds,
                    finished_at,
                }),
            last_error: status.last_error,
            failures: 0,
        }
    }
}

async fn statuses(
    rebuilder: &Rebuilder,
    held: &HeldMessages,
) -> Result<Vec<ProjectionStatus>, AppError> {
    let counts = held.counts(HeldKind::ProjectionFailure).await?;
    Ok(rebuilder
        .statuses()
        .await?
        .into_iter()
        .map(|status| {
            let mut status = ProjectionStatus::from(status);
            status.failures = counts
                .iter()
                .find(|(name, _)| *name == status.name)
                .map_or(0, |(_, n)| *n as i64);
            status
        })
        .collect())
}

/// Projection queries.
#[derive(Default)]
pub(crate) struct ProjectionQuery;

#[Object]
impl ProjectionQuery {
    /// Every projection's state, position, lag and rebuild progress (admin).
    async fn projections(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProjectionStatus>> {
        let request = ctx.request();
        let run = async {
            request.may(Action::Operate)?;
            statuses(&ctx.services().rebuilder, &ctx.services().held).await
        };
        run.await.map_err(|e| to_graphql(e, request))
    }
}

/// Projection mutations.
#[derive(Default)]
pub(crate) struct ProjectionMutation;

#[Object]
impl ProjectionMutation {
    /// Rebuilds a projection (`tasks`, `reports`, or `all`) from the event store, in the
    /// background, while readers keep reading the current rows (admin). Answers once the
    /// projections are claimed (state REBUILDING); follow it with `projectionStatus`. Another
    /// rebuild of the same projection is refused with `INVALID_TRANSITION`.
    async fn rebuild_projection(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Vec<ProjectionStatus>> {
        let request = ctx.request();
        let rebuilder: Arc<Rebuilder> = ctx.services().rebuilder.clone();
        let run = async {
            request.may(Action::Operate)?;
            let actor = request.principal()?;
            let claimed = rebuilder.claim(&name).await?;
            let names: Vec<&'static str> = claimed.names().to_vec();
            tracing::info!(actor = %actor.subject(), projections = ?names, "rebuild requested");
            let background = rebuilder.clone();
            tokio::spawn(async move {
                match background.finish(claimed, &|_| {}).await {
                    Ok(summary) => tracing::info!(
                        projections = ?summary.projections,
                        events = summary.events,
                        seconds = summary.seconds,
                        "rebuild finished"
                    ),
                    Err(error) => tracing::warn!(error = %Chain(&error), "rebuild failed"),
                }
            });
            let all = statuses(&rebuilder, &ctx.services().held).await?;
            Ok(all
                .into_iter()
                .filter(|s| names.contains(&s.name.as_str()))
                .collect())
        };
        run.await.map_err(|e| to_graphql(e, request))
    }
}

#[Object]
impl ProjectionPauseMutation {
    /// Stops a live projection's consumer from writing (admin): events wait in Kafka, readers
    /// keep reading the rows as they are. `INVALID_TRANSITION` unless it is LIVE.
    async fn pause_projection(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<ProjectionStatus> {
        set_paused(ctx, &name, true).await
    }

    /// Lets a paused projection's consumer write again; it catches up from where it stopped
    /// (admin). `INVALID_TRANSITION` unless it is PAUSED.
    async fn resume_projection(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<ProjectionStatus> {
        set_paused(ctx, &name, false).await
    }
}

/// Pausing and resuming a projection's live consumer.
#[derive(Default)]
pub(crate) struct ProjectionPauseMutation;

async fn set_paused(
    ctx: &Context<'_>,
    name: &str,
    paused: bool,
) -> async_graphql::Result<ProjectionStatus> {
    let request = ctx.request();
    let rebuilder = &ctx.services().rebuilder;
    let run = async {
        request.may(Action::Operate)?;
        rebuilder.set_paused(name, paused).await?;
        statuses(rebuilder, &ctx.services().held)
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| AppError::NotFound(format!("projection {name}")))
    };
    run.await.map_err(|e| to_graphql(e, request))
}

/// Projection subscriptions.
#[derive(Default)]
pub(crate) struct ProjectionSubscription;

#[Subscription]
impl ProjectionSubscription {
    /// One projection's status now, then each time it changes (rebuild progress included;
    /// admin). Never ends on its own.
    async fn projection_status(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<impl Stream<Item = ProjectionStatus>> {
        let request = ctx.request();
        let rebuilder = ctx.services().rebuilder.clone();
        let failures = ctx.services().held.clone();
        (|| {
            request.may(Action::Operate)?;
            match rebuilder.select(&name)?.as_slice() {
                [_] => Ok(()),
                _ => Err(AppError::validation("name", "name one projection, not all")),
            }
        })()
        .map_err(|e| to_graphql(e, request))?;
        let state = (rebuilder, failures, name, None::<ProjectionStatus>);
        let statuses = stream::unfold(state, |(rebuilder, failures, name, last)| async move {
            loop {
                if last.is_some() {
                    tokio::time::sleep(STATUS_POLL).await;
                }
                let current = match statuses(&rebuilder, &failures).await {
                    Ok(all) => all.into_iter().find(|s| s.name == name),
                    Err(error) => {
                        tracing::warn!(error = %Chain(&error), "projection status unavailable");
                        None
                    }
                };
                match current {
                    Some(status) if last.as_ref() != Some(&status) => {
                        return Some((status.clone(), (rebuilder, failures, name, Some(status))));
                    }
                    _ if last.is_none() => {
                        tokio::time::sleep(STATUS_POLL).await;
                    }
                    _ => {}
                }
            }
        });
        request
            .subscription(statuses)
            .map_err(|e| to_graphql(e, request))
    }
}
