//! The names held messages shipped with before `held` (one per kind), kept working and marked
//! deprecated: `parkedEvents`, `retryParkedEvents`, `deadLetters`, `redriveDeadLetters`,
//! `discardDeadLetters`, `projectionFailures` and `retryProjectionFailures`. Each answers
//! through the same use case as `held`, in its first shape. docs/api.md says when they go.

use async_graphql::{Context, Object, SimpleObject, ID};
use chronicle_application::held::OUTBOX;
use chronicle_application::ports::held::{HeldKind, HeldMessage};
use chronicle_application::AppError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{discard, held_ids, held_page, retry, HeldMessage as Held};
use crate::graphql::context::ContextExt;
use crate::graphql::error::to_graphql;
use crate::graphql::pagination::{connection, PageInfo};

/// An event the broker or the producer refused for good: it and its aggregate's later events
/// wait for `retryHeld(kind: PARKED)`; every other aggregate keeps flowing.
#[derive(SimpleObject)]
pub(crate) struct ParkedEvent {
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

impl From<HeldMessage> for ParkedEvent {
    fn from(held: HeldMessage) -> Self {
        let held = Held::from(held);
        Self {
            aggregate_type: held.aggregate_type.unwrap_or_default(),
            aggregate_id: held.aggregate_id.unwrap_or_default(),
            event_id: held.event_id.unwrap_or_default(),
            sequence: held.sequence.unwrap_or_default(),
            error: held.reason,
            parked_at: held.first_held_at,
        }
    }
}

/// A parked record with its cursor.
#[derive(SimpleObject)]
pub(crate) struct ParkedEventEdge {
    /// Pass it as `after` to continue after this record.
    pub cursor: String,
    /// The record.
    pub node: ParkedEvent,
}

/// A page of parked records, oldest first.
#[derive(SimpleObject)]
pub(crate) struct ParkedEventConnection {
    /// The records with their cursors.
    pub edges: Vec<ParkedEventEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

/// A message a consumer group set aside, with why and what was done since.
#[derive(SimpleObject)]
pub struct DeadLetter {
    /// Pass it to `retryHeld` or `discardHeld` with kind `DEAD_LETTER`.
    pub id: ID,
    /// The event topic it was consumed from.
    pub original_topic: String,
    /// Its partition there.
    pub original_partition: i32,
    /// Its offset there.
    pub original_offset: i64,
    /// Its key (the aggregate id), as text.
    pub key: Option<String>,
    /// Why it was set aside (the last time).
    pub reason: String,
    /// Attempts made at it, over every delivery and redrive.
    pub attempts: i32,
    /// When it was (last) set aside.
    pub dead_lettered_at: DateTime<Utc>,
    /// Its value as text, cut at 16 KiB (see `payloadTruncated`).
    pub payload: Option<String>,
    /// Whether `payload` was cut.
    pub payload_truncated: bool,
    /// When it was last sent back to its group; a later `deadLetteredAt` means it was set
    /// aside again since.
    pub redriven_at: Option<DateTime<Utc>>,
    /// Who sent it back.
    pub redriven_by: Option<String>,
}

impl From<HeldMessage> for DeadLetter {
    fn from(held: HeldMessage) -> Self {
        let held = Held::from(held);
        Self {
            id: held.id,
            original_topic: held.topic.unwrap_or_default(),
            original_partition: held.partition.unwrap_or_default(),
            original_offset: held.offset.unwrap_or_default(),
            key: held.key,
            reason: held.reason,
            attempts: held.attempts,
            dead_lettered_at: held.last_held_at,
            payload: held.payload,
            payload_truncated: held.payload_truncated,
            redriven_at: held.retried_at,
            redriven_by: held.retried_by,
        }
    }
}

/// A dead letter with its cursor.
#[derive(SimpleObject)]
pub(crate) struct DeadLetterEdge {
    /// Pass it as `after` to continue after this one.
    pub cursor: String,
    /// The dead letter.
    pub node: DeadLetter,
}

/// A page of a group's dead letters, oldest first.
#[derive(SimpleObject)]
pub(crate) struct DeadLetterConnection {
    /// The dead letters with their cursors.
    pub edges: Vec<DeadLetterEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

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

impl From<HeldMessage> for ProjectionFailure {
    fn from(held: HeldMessage) -> Self {
        let held = Held::from(held);
        Self {
            event_id: held.event_id.unwrap_or_default(),
            aggregate_type: held.aggregate_type.unwrap_or_default(),
            aggregate_id: held.aggregate_id.unwrap_or_default(),
            sequence: held.sequence.unwrap_or_default(),
            event_type: held.event_type.unwrap_or_default(),
            reason: held.reason,
            attempts: held.attempts,
            first_failed_at: held.first_held_at,
            last_failed_at: held.last_held_at,
        }
    }
}

/// A projection failure with its cursor.
#[derive(SimpleObject)]
pub(crate) struct ProjectionFailureEdge {
    /// Pass it as `after` to continue after this one.
    pub cursor: String,
    /// The failure.
    pub node: ProjectionFailure,
}

/// A page of a projection's failures, oldest first.
#[derive(SimpleObject)]
pub(crate) struct ProjectionFailureConnection {
    /// The failures with their cursors.
    pub edges: Vec<ProjectionFailureEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

/// What `retryProjectionFailures` did.
#[derive(SimpleObject)]
pub(crate) struct ProjectionFailureRetry {
    /// Failures that applied now (or that the rows already reflected), removed.
    pub resolved: i64,
    /// Failures that failed again (one more attempt counted), still listed.
    pub remaining: i64,
}

/// What a dead letter's id must be, as errors say.
const DEAD_LETTER_ID: &str = "a dead letter's id";

/// `error` as the first names answered it: the argument naming the holder was `group` or
/// `name`, and a validation error names it in `extensions.field` and its message.
fn renamed_holder(mut error: async_graphql::Error, argument: &str) -> async_graphql::Error {
    let Some(extensions) = error.extensions.as_mut() else {
        return error;
    };
    if extensions.get("field") == Some(&async_graphql::Value::from("holder")) {
        extensions.set("field", argument);
        if let Some(rest) = error.message.strip_prefix("holder: ") {
            error.message = format!("{argument}: {rest}");
        }
    }
    error
}

/// The deprecated queries of held messages.
#[derive(Default)]
pub(crate) struct DeprecatedHeldQuery;

#[Object]
impl DeprecatedHeldQuery {
    /// Outbox records parked after the broker refused them for good, oldest first (admin).
    #[graphql(
        deprecation = "Use `held(kind: PARKED)`; removed in Chronicle 2.0 (docs/api.md, Deprecations)."
    )]
    async fn parked_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ParkedEventConnection> {
        let kind = HeldKind::Parked;
        let (page, paged) = held_page(ctx, kind, None, first, after.as_deref(), "parked").await?;
        let (edges, page_info) = connection(page, "parked", paged, |m| m.id, ParkedEvent::from);
        Ok(ParkedEventConnection {
            edges: edges
                .into_iter()
                .map(|(cursor, node)| ParkedEventEdge { cursor, node })
                .collect(),
            page_info,
        })
    }

    /// The dead letters of a consumer group (`chronicle-projections`,
    /// `chronicle-report-worker`), oldest first, discarded ones left out (admin).
    #[graphql(
        deprecation = "Use `held(kind: DEAD_LETTER, holder: group)`; removed in Chronicle 2.0 (docs/api.md, Deprecations)."
    )]
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        group: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<DeadLetterConnection> {
        let kind = HeldKind::DeadLetter;
        let (page, paged) = held_page(
            ctx,
            kind,
            Some(&group),
            first,
            after.as_deref(),
            "deadletter",
        )
        .await
        .map_err(|e| renamed_holder(e, "group"))?;
        let (edges, page_info) = connection(page, "deadletter", paged, |m| m.id, DeadLetter::from);
        let edges = edges
            .into_iter()
            .map(|(cursor, node)| DeadLetterEdge { cursor, node })
            .collect();
        Ok(DeadLetterConnection { edges, page_info })
    }

    /// The events a projection (`tasks`, `reports`) could not apply, oldest first (admin).
    #[graphql(
        deprecation = "Use `held(kind: PROJECTION_FAILURE, holder: name)`; removed in Chronicle 2.0 (docs/api.md, Deprecations)."
    )]
    async fn projection_failures(
        &self,
        ctx: &Context<'_>,
        name: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ProjectionFailureConnection> {
        let kind = HeldKind::ProjectionFailure;
        let (page, paged) = held_page(ctx, kind, Some(&name), first, after.as_deref(), "failure")
            .await
            .map_err(|e| renamed_holder(e, "name"))?;
        let (edges, page_info) =
            connection(page, "failure", paged, |m| m.id, ProjectionFailure::from);
        let edges = edges
            .into_iter()
            .map(|(cursor, node)| ProjectionFailureEdge { cursor, node })
            .collect();
        Ok(ProjectionFailureConnection { edges, page_info })
    }
}

/// The deprecated mutations of held messages.
#[derive(Default)]
pub(crate) struct DeprecatedHeldMutation;

#[Object]
impl DeprecatedHeldMutation {
    /// Sends parked records back to the relay once their cause is fixed: one aggregate's, or
    /// every one when `aggregateId` is absent (admin). Answers how many were unparked; they
    /// and the events that waited behind them are published in order. One refused again is
    /// parked again after its attempts.
    #[graphql(
        deprecation = "Use `retryHeld(kind: PARKED, ids: ...)`; removed in Chronicle 2.0 (docs/api.md, Deprecations)."
    )]
    async fn retry_parked_events(
        &self,
        ctx: &Context<'_>,
        aggregate_id: Option<ID>,
    ) -> async_graphql::Result<i64> {
        let request = ctx.request();
        let ids = async {
            let principal = request.principal()?;
            let Some(id) = aggregate_id else {
                return Ok(None);
            };
            let id = id
                .parse::<Uuid>()
                .map_err(|_| AppError::validation("aggregateId", "is not a UUID"))?;
            ctx.services().held.parked_of(principal, id).await.map(Some)
        };
        let ids = ids.await.map_err(|e| to_graphql(e, request))?;
        let outcome = retry(ctx, HeldKind::Parked, Some(OUTBOX), ids).await?;
        Ok(outcome.retried as i64)
    }

    /// Sends a group's dead letters back to that group, and to no other, once their cause is
    /// fixed: those of `ids`, or every one waiting when `ids` is absent (admin). They keep
    /// their key, headers and order per key, and are handled with the same exactly-once effect
    /// as a first delivery; one rejected again is listed again with its attempts counted on.
    /// Answers how many were sent.
    #[graphql(
        deprecation = "Use `retryHeld(kind: DEAD_LETTER, holder: group)`; removed in Chronicle 2.0 (docs/api.md, Deprecations)."
    )]
    async fn redrive_dead_letters(
        &self,
        ctx: &Context<'_>,
        group: String,
        ids: Option<Vec<ID>>,
    ) -> async_graphql::Result<i64> {
        let request = ctx.request();
        let ids = request
            .principal()
            .and_then(|_| {
                ids.as_deref()
                    .map(|ids| held_ids(ids, DEAD_LETTER_ID))
                    .transpose()
            })
            .map_err(|e| to_graphql(e, request))?;
        let outcome = retry(ctx, HeldKind::DeadLetter, Some(&group), ids)
            .await
            .map_err(|e| renamed_holder(e, "group"))?;
        Ok(outcome.retried as i64)
    }

    /// Discards dead letters of a group: they leave the list (admin). Answers how many.
    #[graphql(
        deprecation = "Use `discardHeld(kind: DEAD_LETTER, holder: group)`; removed in Chronicle 2.0 (docs/api.md, Deprecations)."
    )]
    async fn discard_dead_letters(
        &self,
        ctx: &Context<'_>,
        group: String,
        ids: Vec<ID>,
    ) -> async_graphql::Result<i64> {
        discard(
            ctx,
            HeldKind::DeadLetter,
            Some(&group),
            &ids,
            DEAD_LETTER_ID,
        )
        .await
        .map_err(|e| renamed_holder(e, "group"))
    }

    /// Applies a projection's failures again, in store order, once their cause is gone (the
    /// missing predecessor arrived, a fixed projection version runs) (admin). Those that
    /// apply are removed; those that fail again stay with one more attempt.
    #[graphql(
        deprecation = "Use `retryHeld(kind: PROJECTION_FAILURE, holder: name)`; removed in Chronicle 2.0 (docs/api.md, Deprecations)."
    )]
    async fn retry_projection_failures(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<ProjectionFailureRetry> {
        let outcome = retry(ctx, HeldKind::ProjectionFailure, Some(&name), None)
            .await
            .map_err(|e| renamed_holder(e, "name"))?;
        Ok(ProjectionFailureRetry {
            resolved: outcome.retried as i64,
            remaining: outcome.remaining as i64,
        })
    }
}
