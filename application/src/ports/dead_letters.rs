//! Messages a consumer group set aside (dead letters), kept where operators can list them,
//! send them back to that group once the cause is fixed (redrive), or discard them.
//!
//! The Kafka dead-letter topic (`{topic}.{group}.dlq`) still receives each one for any other
//! tool; this store is what the service itself lists and redrives from, with who did what.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ports::page::Page;
use crate::ports::store_error::StoreError;

/// A message as a consumer received it, with why it was set aside.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedMessage {
    /// The consumer group (with its prefix).
    pub group: String,
    /// Where it was consumed from originally (an event topic, never a redrive topic).
    pub original_topic: String,
    /// Its partition there.
    pub original_partition: i32,
    /// Its offset there.
    pub original_offset: i64,
    /// Its key, as sent.
    pub key: Option<Vec<u8>>,
    /// Its headers, as sent (redrive bookkeeping headers left out).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Its value, as sent.
    pub payload: Option<Vec<u8>>,
    /// Why it was set aside.
    pub reason: String,
    /// Attempts this delivery made.
    pub attempts: u32,
    /// The dead letter it is a redrive of, when it is one: that entry is updated (its attempts
    /// counted on) instead of a new one being made.
    pub redrive_of: Option<i64>,
}

/// A dead letter as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its id (per store).
    pub id: i64,
    /// The message and why.
    pub message: RejectedMessage,
    /// When it was (last) set aside.
    pub dead_lettered_at: DateTime<Utc>,
    /// When it was last sent back to its group, and by whom.
    pub redriven: Option<(DateTime<Utc>, String)>,
}

/// The dead letters of every group.
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Records a rejected message (idempotent per original topic, partition and offset, so a
    /// redelivery after a crash makes no second entry); a redrive's rejection counts its
    /// attempts on the entry it came from. Answers the entry's id.
    async fn record(&self, message: RejectedMessage) -> Result<i64, StoreError>;

    /// Up to `limit` entries of `group` not discarded, in id order, after `after`.
    async fn list(
        &self,
        group: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<DeadLetter>, StoreError>;

    /// The entries of `group` waiting for a redrive (never redriven, or set aside again since):
    /// those of `ids`, or every one.
    async fn pending(
        &self,
        group: &str,
        ids: Option<&[i64]>,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Records that `ids` are being sent back by `actor`, before they are sent: a redrive that
    /// fails again at once must find itself marked, so its new rejection is newer than the mark.
    async fn mark_redriven(&self, ids: &[i64], actor: &str) -> Result<(), StoreError>;

    /// Takes the mark back from `ids` whose sending failed: they wait for a redrive again.
    async fn unmark_redriven(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// Discards `ids` of `group` (they leave the list; the record stays); answers how many.
    async fn discard(&self, group: &str, ids: &[i64], actor: &str) -> Result<u64, StoreError>;
}

/// Sends dead letters back to the group that set them aside, and to no other.
#[async_trait]
pub trait Redrive: Send + Sync {
    /// Publishes `letter` where only its group reads it, with its key, headers and value, in
    /// the order given per key; returns once the broker acknowledged it.
    async fn send_back(&self, letter: &DeadLetter) -> Result<(), StoreError>;
}
