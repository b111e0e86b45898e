//! Held messages in GraphQL, for operators (admin): `held`, `heldCounts`, `retryHeld` and
//! `discardHeld` over parked outbox records, dead letters and projection failures alike. The
//! names each kind shipped with first live on, deprecated, in [`deprecated`].

pub mod deprecated;

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chronicle_application::held::RetryOutcome;
use chronicle_application::ports::held::{
    HeldContent, HeldKind as AppHeldKind, HeldMessage as AppHeldMessage,
};
use chronicle_application::ports::page::Page;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::error::to_graphql;
use super::pagination::{connection, decode_cursor, PageInfo};

/// The most of a dead letter's payload shown: the stored message is kept whole (a retry
/// sends it all), a page of them should not weigh megabytes.
pub(crate) const PAYLOAD_SHOWN_BYTES: usize = 16 * 1024;

/// Which part of the service holds a message, and so what a retry does with it.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "chronicle_application::ports::held::HeldKind")]
pub enum HeldKind {
    /// An outbox record the broker refused for good; its aggregate's later events wait behind
    /// it. Held by `outbox`. A retry hands it back to the relay; it cannot be discarded.
    Parked,
    /// A message a consumer group set aside. Held by its group (`chronicle-projections`,
    /// `chronicle-report-worker`). A retry sends it back to that group alone.
    DeadLetter,
    /// An event a projection could not apply. Held by its projection (`tasks`, `reports`). A
    /// retry applies it again in store order; those that apply leave the list.
    ProjectionFailure,
}

/// A message held for an operator, with why and what was done since. Fields that a kind does
/// not have are null.
#[derive(SimpleObject)]
pub struct HeldMessage {
    /// Pass it to `retryHeld` or `discardHeld` with its kind.
    pub id: ID,
    /// What holds it, and so what a retry does.
    pub kind: HeldKind,
    /// Who holds it: `outbox`, a consumer group, or a projection.
    pub holder: String,
    /// Why it is held (the last refusal or failure).
    pub reason: String,
    /// Attempts made at it so far.
    pub attempts: i32,
    /// When it was first held.
    pub first_held_at: DateTime<Utc>,
    /// When it was last held; later than `retriedAt` when a retry failed again.
    pub last_held_at: DateTime<Utc>,
    /// When it was last retried (dead letters, which stay listed after a retry).
    pub retried_at: Option<DateTime<Utc>>,
    /// Who retried it.
    pub retried_by: Option<String>,
    /// The event's aggregate type (`Task`, `Report`): parked records, projection failures.
    pub aggregate_type: Option<String>,
    /// The event's aggregate: parked records, projection failures.
    pub aggregate_id: Option<ID>,
    /// The event: parked records, projection failures.
    pub event_id: Option<ID>,
    /// The event's sequence in its aggregate: parked records, projection failures.
    pub sequence: Option<i64>,
    /// The event's type (`TaskStarted`): projection failures.
    pub event_type: Option<String>,
    /// The topic a dead letter was consumed from.
    pub topic: Option<String>,
    /// Its partition there.
    pub partition: Option<i32>,
    /// Its offset there.
    pub offset: Option<i64>,
    /// A dead letter's key (the aggregate id), as text.
    pub key: Option<String>,
    /// A dead letter's value as text, cut at 16 KiB (see `payloadTruncated`).
    pub payload: Option<String>,
    /// Whether `payload` was cut.
    pub payload_truncated: bool,
}

/// `bytes` as text, cut at [`PAYLOAD_SHOWN_BYTES`] on a character boundary; and whether it
/// was cut.
fn shown_text(bytes: Option<&[u8]>) -> (Option<String>, bool) {
    let Some(text) = bytes.map(String::from_utf8_lossy) else {
        return (None, false);
    };
    let mut end = text.len().min(PAYLOAD_SHOWN_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (Some(text[..end].to_owned()), end < text.len())
}

impl From<AppHeldMessage> for HeldMessage {
    fn from(held: AppHeldMessage) -> Self {
        let kind = held.kind().into();
        let (retried_at, retried_by) = held.retried.unzip();
        let mut node = Self {
            id: ID(held.id.to_string()),
            kind,
            holder: held.holder,
            reason: held.reason,
            attempts: i32::try_from(held.attempts).unwrap_or(i32::MAX),
            first_held_at: held.first_held_at,
            last_held_at: held.last_held_at,
            retried_at,
            retried_by,
            aggregate_type: None,
            aggregate_id: None,
            event_id: None,
            sequence: None,
            event_type: None,
            topic: None,
            partition: None,
            offset: None,
            key: None,
            payload: None,
            payload_truncated: false,
        };
        match held.content {
            HeldContent::Outbox {
                aggregate_type,
                aggregate_id,
                event_id,
                sequence,
            } => {
                node.aggregate_type = Some(aggregate_type);
                node.aggregate_id = Some(ID(aggregate_id));
                node.event_id = Some(ID(event_id.to_string()));
                node.sequence = Some(sequence);
            }
            HeldContent::Message(letter) => {
                let (payload, truncated) = shown_text(letter.payload.as_deref());
                node.topic = Some(letter.original_topic);
                node.partition = Some(letter.original_partition);
                node.offset = Some(letter.original_offset);
                node.key = letter
                    .key
                    .as_deref()
                    .map(|key| String::from_utf8_lossy(key).into_owned());
                node.payload = payload;
                node.payload_truncated = truncated;
            }
            HeldContent::Event(event) => {
                node.aggregate_type = Some(event.aggregate_type);
                node.aggregate_id = Some(ID(event.aggregate_id));
                node.event_id = Some(ID(event.event_id.to_string()));
                node.sequence = Some(event.sequence as i64);
                node.event_type = Some(event.event_type);
            }
        }
        node
    }
}

/// A held message with its cursor.
#[derive(SimpleObject)]
pub(crate) struct HeldMessageEdge {
    /// Pass it as `after` to continue after this one.
    pub cursor: String,
    /// The message.
    pub node: HeldMessage,
}

/// A page of held messages, oldest first.
#[derive(SimpleObject)]
pub(crate) struct HeldMessageConnection {
    /// The messages with their cursors.
    pub edges: Vec<HeldMessageEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

/// How many messages one holder holds.
#[derive(SimpleObject)]
pub(crate) struct HeldCount {
    /// What is held.
    pub kind: HeldKind,
    /// Who holds them.
    pub holder: String,
    /// How many (0 when none).
    pub count: i64,
}

/// What `retryHeld` did.
#[derive(SimpleObject)]
pub(crate) struct HeldRetry {
    /// Messages handed back: parked records to the relay, dead letters to their group,
    /// projection failures that applied now (those leave the list).
    pub retried: i64,
    /// Messages still held after it (projection failures that failed again, with one more
    /// attempt counted).
    pub remaining: i64,
}

impl From<RetryOutcome> for HeldRetry {
    fn from(outcome: RetryOutcome) -> Self {
        Self {
            retried: outcome.retried as i64,
            remaining: outcome.remaining as i64,
        }
    }
}

/// What a held message's id must be, as errors say.
const HELD_ID: &str = "a held message's id";

/// Held ids as the use case takes them; one that is not is refused, saying each must be
/// `what` (`a held message's id`).
pub(super) fn held_ids(ids: &[ID], what: &str) -> Result<Vec<i64>, AppError> {
    ids.iter()
        .map(|id| {
            id.parse::<i64>()
                .map_err(|_| AppError::validation("ids", format!("each must be {what}")))
        })
        .collect()
}

/// A page of `kind` held by `holder` after the cursor `after` (of `cursor_kind`), as the
/// use case answers it, and whether a cursor was given.
pub(super) async fn held_page(
    ctx: &Context<'_>,
    kind: AppHeldKind,
    holder: Option<&str>,
    first: Option<i32>,
    after: Option<&str>,
    cursor_kind: &str,
) -> async_graphql::Result<(Page<AppHeldMessage>, bool)> {
    let request = ctx.request();
    let run = async {
        let principal = request.principal()?;
        let after = after.map(|c| decode_cursor(cursor_kind, c)).transpose()?;
        let page = ctx
            .services()
            .held
            .list(principal, kind, holder, first.map(i64::from), after)
            .await?;
        Ok::<_, AppError>((page, after.is_some()))
    };
    run.await.map_err(|e| to_graphql(e, request))
}

/// Retries `kind` held by `holder` (those of `ids`, or every one waiting).
pub(super) async fn retry(
    ctx: &Context<'_>,
    kind: AppHeldKind,
    holder: Option<&str>,
    ids: Option<Vec<i64>>,
) -> async_graphql::Result<RetryOutcome> {
    let request = ctx.request();
    let run = async {
        let principal = request.principal()?;
        ctx.services()
            .held
            .retry(principal, kind, holder, ids.as_deref())
            .await
    };
    run.await.map_err(|e| to_graphql(e, request))
}

/// Discards `ids` (each `what`, for the error that refuses one) of `kind` held by `holder`;
/// answers how many.
pub(super) async fn discard(
    ctx: &Context<'_>,
    kind: AppHeldKind,
    holder: Option<&str>,
    ids: &[ID],
    what: &str,
) -> async_graphql::Result<i64> {
    let request = ctx.request();
    let run = async {
        let principal = request.principal()?;
        let ids = held_ids(ids, what)?;
        ctx.services()
            .held
            .discard(principal, kind, holder, &ids)
            .await
    };
    run.await
        .map(|n| n as i64)
        .map_err(|e| to_graphql(e, request))
}

/// Held message queries.
#[derive(Default)]
pub(crate) struct HeldQuery;

#[Object]
impl HeldQuery {
    /// Messages of `kind` held by `holder` (a consumer group for dead letters, a projection
    /// for projection failures; parked records need none), oldest first, discarded ones left
    /// out (admin).
    async fn held(
        &self,
        ctx: &Context<'_>,
        kind: HeldKind,
        holder: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<HeldMessageConnection> {
        let (page, paged) = held_page(
            ctx,
            kind.into(),
            holder.as_deref(),
            first,
            after.as_deref(),
            "held",
        )
        .await?;
        let (edges, page_info) = connection(page, "held", paged, |m| m.id, HeldMessage::from);
        let edges = edges
            .into_iter()
            .map(|(cursor, node)| HeldMessageEdge { cursor, node })
            .collect();
        Ok(HeldMessageConnection { edges, page_info })
    }

    /// How many messages every holder of every kind holds, each holder named (admin).
    async fn held_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<HeldCount>> {
        let request = ctx.request();
        let run = async {
            request.may(chronicle_application::access::Action::Operate)?;
            let mut counts = Vec::new();
            for kind in AppHeldKind::ALL {
                for (holder, count) in ctx.services().held.counts(kind).await? {
                    counts.push(HeldCount {
                        kind: kind.into(),
                        holder,
                        count: count as i64,
                    });
                }
            }
            Ok::<_, AppError>(counts)
        };
        run.await.map_err(|e| to_graphql(e, request))
    }
}

/// Held message mutations.
#[derive(Default)]
pub(crate) struct HeldMutation;

#[Object]
impl HeldMutation {
    /// Retries messages of `kind` held by `holder` once their cause is fixed: those of `ids`,
    /// or every one waiting when `ids` is absent (admin). Parked records go back to the
    /// relay, which publishes them and the events that waited behind them in order; dead
    /// letters go back to their group alone, keeping key, headers and order per key; projection
    /// failures are applied again in store order. One that fails again is held again with its
    /// attempts counted on.
    async fn retry_held(
        &self,
        ctx: &Context<'_>,
        kind: HeldKind,
        holder: Option<String>,
        ids: Option<Vec<ID>>,
    ) -> async_graphql::Result<HeldRetry> {
        let request = ctx.request();
        let ids = request
            .principal()
            .and_then(|_| ids.as_deref().map(|ids| held_ids(ids, HELD_ID)).transpose())
            .map_err(|error| to_graphql(error, request))?;
        retry(ctx, kind.into(), holder.as_deref(), ids)
            .await
            .map(HeldRetry::from)
    }

    /// Discards messages of `kind` held by `holder`: they leave the list (admin). Dead
    /// letters keep their record (who discarded them, when); a discarded projection failure
    /// leaves its event out of the read model until a rebuild. Parked records cannot be
    /// discarded (`VALIDATION_FAILED`): every committed event is published. Answers how many.
    async fn discard_held(
        &self,
        ctx: &Context<'_>,
        kind: HeldKind,
        holder: Option<String>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<i64> {
        discard(ctx, kind.into(), holder.as_deref(), &ids, HELD_ID).await
    }
}
