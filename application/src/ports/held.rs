//! Messages held for an operator: outbox records the broker refused for good (parked), messages
//! a consumer group set aside (dead letters) and events a projection could not apply
//! (projection failures). Three parts of the service hold them; operators see, retry and
//! discard them through this one port, so the three read, page and answer alike.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::data::event_log::StoredEvent;
use crate::ports::dead_letters::RejectedMessage;
use crate::ports::page::Page;
use crate::ports::store_error::StoreError;

/// Which part of the service holds a message, and so what a retry does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeldKind {
    /// An outbox record the broker refused for good; its aggregate's later events wait behind
    /// it. A retry hands it back to the relay.
    Parked,
    /// A message a consumer group set aside. A retry sends it back to that group alone.
    DeadLetter,
    /// An event a projection could not apply. A retry applies it again through the
    /// projection's fold.
    ProjectionFailure,
}

impl HeldKind {
    /// Every kind, in the order operators see them.
    pub const ALL: [HeldKind; 3] = [Self::Parked, Self::DeadLetter, Self::ProjectionFailure];

    /// The kind as the CLI and logs write it (`parked`, `dead-letter`, `projection-failure`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parked => "parked",
            Self::DeadLetter => "dead-letter",
            Self::ProjectionFailure => "projection-failure",
        }
    }
}

/// What is held, as the part that held it knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum HeldContent {
    /// A parked outbox record: the event it carries, by reference (the envelope is in the
    /// outbox row and goes out unchanged).
    Outbox {
        /// The event's aggregate type (`Task`, `Report`).
        aggregate_type: String,
        /// The aggregate, which is the record's key.
        aggregate_id: String,
        /// The event.
        event_id: Uuid,
        /// The event's sequence in its aggregate.
        sequence: i64,
    },
    /// A dead letter: the message as the group received it.
    Message(RejectedMessage),
    /// A projection failure: the event as stored (sealed values still sealed).
    Event(StoredEvent),
}

/// One held message with why it is held and what operators did about it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldMessage {
    /// Its id within its kind: what `retry` and `discard` name, and the list's cursor.
    pub id: i64,
    /// Who holds it: `outbox`, a consumer group's id, or a projection's name.
    pub holder: String,
    /// What is held.
    pub content: HeldContent,
    /// Why (the last refusal or failure).
    pub reason: String,
    /// Attempts made at it: a projection failure's and a dead letter's over every delivery
    /// and retry; a parked record's since it was last unparked (a retry starts its count over).
    pub attempts: u32,
    /// When it was first held: a projection failure's first failure; for a dead letter and a
    /// parked record, when it was last set aside or parked (their tables keep no earlier time).
    pub first_held_at: DateTime<Utc>,
    /// When it was last held (after a failed retry, later than the retry).
    pub last_held_at: DateTime<Utc>,
    /// When it was last retried and by whom: dead letters, which stay listed after a retry
    /// until they are discarded.
    pub retried: Option<(DateTime<Utc>, String)>,
}

impl HeldMessage {
    /// Its kind, from what it holds.
    pub fn kind(&self) -> HeldKind {
        match self.content {
            HeldContent::Outbox { .. } => HeldKind::Parked,
            HeldContent::Message(_) => HeldKind::DeadLetter,
            HeldContent::Event(_) => HeldKind::ProjectionFailure,
        }
    }
}

/// The held messages of every kind. `holder` is what the kind is held by: `outbox` for parked
/// records, a group id for dead letters, a projection name for projection failures.
#[async_trait]
pub trait HeldStore: Send + Sync {
    /// How many of `kind` each holder holds (holders holding none are absent).
    async fn counts(&self, kind: HeldKind) -> Result<Vec<(String, u64)>, StoreError>;

    /// How many of `kind` are held in all (readiness and metrics read it).
    async fn total(&self, kind: HeldKind) -> Result<u64, StoreError> {
        Ok(self.counts(kind).await?.iter().map(|(_, n)| n).sum())
    }

    /// Up to `limit` of `kind` held by `holder` and not discarded, in id order (the order
    /// they were recorded; parked records in outbox order), after id `after`.
    async fn list(
        &self,
        kind: HeldKind,
        holder: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<HeldMessage>, StoreError>;

    /// Those of `kind` held by `holder` that wait for a retry (of `ids`, or every one), in
    /// the order a retry must take them: outbox order, dead-letter order, store order.
    async fn pending(
        &self,
        kind: HeldKind,
        holder: &str,
        ids: Option<&[i64]>,
    ) -> Result<Vec<HeldMessage>, StoreError>;

    /// Records that `ids` (every one held when `None`) are being retried by `actor`, before the
    /// retry acts: a dead letter rejected again at once must find itself marked, so its new
    /// rejection is newer than the mark. For parked records the mark is the whole retry: they
    /// are unparked, in one statement, and the relay woken. Answers how many were marked.
    async fn mark_retried(
        &self,
        kind: HeldKind,
        ids: Option<&[i64]>,
        actor: &str,
    ) -> Result<u64, StoreError>;

    /// Takes the mark back from `ids` whose retry failed: they wait for a retry again.
    async fn unmark_retried(&self, kind: HeldKind, ids: &[i64]) -> Result<(), StoreError>;

    /// Removes those of `(id, attempts)` whose attempts are still those (the retry applied
    /// them and they did not fail again meanwhile); answers how many were removed.
    async fn release(
        &self,
        kind: HeldKind,
        holder: &str,
        seen: &[(i64, u32)],
    ) -> Result<u64, StoreError>;

    /// Discards `ids` of `kind` held by `holder` as `actor`: they leave the list; answers how
    /// many.
    async fn discard(
        &self,
        kind: HeldKind,
        holder: &str,
        ids: &[i64],
        actor: &str,
    ) -> Result<u64, StoreError>;
}
