//! Dead letters in GraphQL, for operators (admin): `deadLetters`, `redriveDeadLetters` and
//! `discardDeadLetters`.

use async_graphql::{Context, Object, SimpleObject, ID};
use chronicle_application::ports::dead_letters::DeadLetter as AppDeadLetter;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::error::to_graphql;
use super::pagination::{connection, decode_cursor, PageInfo};

/// The most of a dead letter's payload shown: the stored message is kept whole (a redrive
/// sends it all), a page of them should not weigh megabytes.
pub const PAYLOAD_SHOWN_BYTES: usize = 16 * 1024;

/// A message a consumer group set aside, with why and what was done since.
#[derive(SimpleObject)]
pub struct DeadLetter {
    /// Pass it to `redriveDeadLetters` or `discardDeadLetters`.
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

impl From<AppDeadLetter> for DeadLetter {
    fn from(letter: AppDeadLetter) -> Self {
        let message = letter.message;
        let payload = message.payload.as_deref().map(String::from_utf8_lossy);
        let truncated = payload
            .as_ref()
            .is_some_and(|text| text.len() > PAYLOAD_SHOWN_BYTES);
        let payload = payload.map(|text| {
            let mut end = text.len().min(PAYLOAD_SHOWN_BYTES);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_owned()
        });
        let (redriven_at, redriven_by) = letter.redriven.unzip();
        Self {
            id: ID(letter.id.to_string()),
            original_topic: message.original_topic,
            original_partition: message.original_partition,
            original_offset: message.original_offset,
            key: message
                .key
                .as_deref()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            reason: message.reason,
            attempts: i32::try_from(message.attempts).unwrap_or(i32::MAX),
            dead_lettered_at: letter.dead_lettered_at,
            payload,
            payload_truncated: truncated,
            redriven_at,
            redriven_by,
        }
    }
}

/// A dead letter with its cursor.
#[derive(SimpleObject)]
pub struct DeadLetterEdge {
    /// Pass it as `after` to continue after this one.
    pub cursor: String,
    /// The dead letter.
    pub node: DeadLetter,
}

/// A page of a group's dead letters, oldest first.
#[derive(SimpleObject)]
pub struct DeadLetterConnection {
    /// The dead letters with their cursors.
    pub edges: Vec<DeadLetterEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

fn ids(ids: &[ID]) -> Result<Vec<i64>, AppError> {
    ids.iter()
        .map(|id| {
            id.parse::<i64>()
                .map_err(|_| AppError::validation("ids", "each must be a dead letter's id"))
        })
        .collect()
}

/// Dead-letter queries.
#[derive(Default)]
pub struct DeadLetterQuery;

#[Object]
impl DeadLetterQuery {
    /// The dead letters of a consumer group (`chronicle-projections`,
    /// `chronicle-report-worker`), oldest first, discarded ones left out (admin).
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        group: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<DeadLetterConnection> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let after = after
                .as_deref()
                .map(|c| decode_cursor("deadletter", c))
                .transpose()?;
            let page = ctx
                .services()
                .dead_letters
                .list(principal, &group, first.map(i64::from), after)
                .await?;
            Ok::<_, AppError>((page, after.is_some()))
        };
        let (page, paged) = run.await.map_err(|e| to_graphql(e, request))?;
        let (edges, page_info) = connection(page, "deadletter", paged, |l| l.id, DeadLetter::from);
        let edges = edges
            .into_iter()
            .map(|(cursor, node)| DeadLetterEdge { cursor, node })
            .collect();
        Ok(DeadLetterConnection { edges, page_info })
    }
}

/// Dead-letter mutations.
#[derive(Default)]
pub struct DeadLetterMutation;

#[Object]
impl DeadLetterMutation {
    /// Sends a group's dead letters back to that group, and to no other, once their cause is
    /// fixed: those of `ids`, or every one waiting when `ids` is absent (admin). They keep
    /// their key, headers and order per key, and are handled with the same exactly-once effect
    /// as a first delivery; one rejected again is listed again with its attempts counted on.
    /// Answers how many were sent.
    async fn redrive_dead_letters(
        &self,
        ctx: &Context<'_>,
        group: String,
        ids: Option<Vec<ID>>,
    ) -> async_graphql::Result<i64> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let ids = ids.as_deref().map(self::ids).transpose()?;
            ctx.services()
                .dead_letters
                .redrive(principal, &group, ids.as_deref())
                .await
        };
        run.await
            .map(|n| n as i64)
            .map_err(|e| to_graphql(e, request))
    }

    /// Discards dead letters of a group: they leave the list (admin). Answers how many.
    async fn discard_dead_letters(
        &self,
        ctx: &Context<'_>,
        group: String,
        ids: Vec<ID>,
    ) -> async_graphql::Result<i64> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let ids = self::ids(&ids)?;
            ctx.services()
                .dead_letters
                .discard(principal, &group, &ids)
                .await
        };
        run.await
            .map(|n| n as i64)
            .map_err(|e| to_graphql(e, request))
    }
}
