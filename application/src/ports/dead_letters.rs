//! Messages a consumer group set aside (dead letters): how a group records them, and how a
//! redrive sends one back to that group. Operators list, redrive and discard them as held
//! messages ([`crate::ports::held`]).
//!
//! The Kafka dead-letter topic (`{topic}.{group}.dlq`) still receives each one for any other
//! tool; this store is what the service itself lists and redrives from, with who did what.

use async_trait::async_trait;

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

/// Where consumer groups record what they set aside; operators reach the records through
/// [`crate::ports::held::HeldStore`].
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Records a rejected message (idempotent per original topic, partition and offset, so a
    /// redelivery after a crash makes no second entry); a redrive's rejection counts its
    /// attempts on the entry it came from. Answers the entry's id.
    async fn record(&self, message: RejectedMessage) -> Result<i64, StoreError>;
}

/// Sends dead letters back to the group that set them aside, and to no other.
#[async_trait]
pub trait Redrive: Send + Sync {
    /// Publishes dead letter `id`'s message where only its group reads it, with its key, headers and value, in
    /// the order given per key; returns once the broker acknowledged it.
    async fn send_back(&self, id: i64, letter: &RejectedMessage) -> Result<(), StoreError>;
}
