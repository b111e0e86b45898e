//! The outbox's parked records in GraphQL, for operators (admin): `parkedEvents` and
//! `retryParkedEvents`.

use async_graphql::{Context, Object, SimpleObject, ID};
use chronicle_application::ports::parked_events::ParkedEvent as AppParkedEvent;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::context::ContextExt;
use super::error::to_graphql;
use super::pagination::{connection, decode_cursor, PageInfo};

/// An event the broker or the producer refused for good: it and its aggregate's later events
/// wait for `retryParkedEvents`; every other aggregate keeps flowing.
#[derive(SimpleObject)]
pub struct ParkedEvent {
    /// `TASK` or `REPORT`'s type name (`Task`, `Report`).
    pub aggregate_type: String,
    /// The aggregate (the Kafka key).
    pub aggregate_id: ID,
    /// The event.
    pub event_id: ID,
    /// Its sequence in the aggregate.
    pub sequence: i64,
    /// The last refusal (`Broker: Message size too large`, say).
    pub error: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

impl From<AppParkedEvent> for ParkedEvent {
    fn from(event: AppParkedEvent) -> Self {
        Self {
            aggregate_type: event.aggregate_type,
            aggregate_id: ID(event.aggregate_id),
            event_id: ID(event.event_id.to_string()),
            sequence: event.sequence,
            error: event.error,
            parked_at: event.parked_at,
        }
    }
}

/// A parked record with its cursor.
#[derive(SimpleObject)]
pub struct ParkedEventEdge {
    /// Pass it as `after` to continue after this record.
    pub cursor: String,
    /// The record.
    pub node: ParkedEvent,
}

/// A page of parked records, oldest first.
#[derive(SimpleObject)]
pub struct ParkedEventConnection {
    /// The records with their cursors.
    pub edges: Vec<ParkedEventEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

/// Outbox queries.
#[derive(Default)]
pub struct OutboxQuery;

#[Object]
impl OutboxQuery {
    /// Outbox records parked after the broker refused them for good, oldest first (admin).
    async fn parked_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ParkedEventConnection> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let after = after
                .as_deref()
                .map(|c| decode_cursor("parked", c))
                .transpose()?;
            let page = ctx
                .services()
                .parked
                .list(principal, first.map(i64::from), after)
                .await?;
            Ok::<_, AppError>((page, after.is_some()))
        };
        let (page, paged) = run.await.map_err(|e| to_graphql(e, request))?;
        let (edges, page_info) =
            connection(page, "parked", paged, |e| e.event_id, ParkedEvent::from);
        Ok(ParkedEventConnection {
            edges: edges
                .into_iter()
                .map(|(cursor, node)| ParkedEventEdge { cursor, node })
                .collect(),
            page_info,
        })
    }
}

/// Outbox mutations.
#[derive(Default)]
pub struct OutboxMutation;

#[Object]
impl OutboxMutation {
    /// Sends parked records back to the relay once their cause is fixed: one aggregate's, or
    /// every one when `aggregateId` is absent (admin). Answers how many were unparked; they
    /// and the events that waited behind them are published in order. One refused again is
    /// parked again after its attempts.
    async fn retry_parked_events(
        &self,
        ctx: &Context<'_>,
        aggregate_id: Option<ID>,
    ) -> async_graphql::Result<i64> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let aggregate_id = aggregate_id
                .map(|id| {
                    id.parse::<Uuid>()
                        .map_err(|_| AppError::validation("aggregateId", "is not a UUID"))
                })
                .transpose()?;
            ctx.services().parked.retry(principal, aggregate_id).await
        };
        run.await
            .map(|n| n as i64)
            .map_err(|e| to_graphql(e, request))
    }
}
