//! The event store read in position order up to a settled point, for subscribers that must see
//! every event once: no event may appear later at a position a reader has already passed.

use async_trait::async_trait;

use crate::data::event_log::StoredEvent;
use crate::ports::audit_log::AuditFilter;
use crate::ports::store_error::StoreError;

/// One event of the feed with what a subscription filters it by.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRecord {
    /// Global position in the store: the feed's order and a subscriber's cursor.
    pub position: i64,
    /// The team its aggregate belongs to, as recorded beside it (`None` for aggregates that
    /// belong to no team).
    pub team: Option<String>,
    /// The event as stored (personal values sealed).
    pub event: StoredEvent,
}

/// What a settling round proved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// The position up to which every event is final (visible to every read from now on, or
    /// never to exist); `None` until a fresh reader has proved anything.
    pub through: Option<i64>,
    /// Whether positions above it were seen that are not yet final: another round soon will
    /// likely settle them.
    pub waiting: bool,
}

/// The store as a feed.
#[async_trait]
pub trait EventFeed: Send + Sync {
    /// One settling round. What it proves only rises; a fresh reader proves its first
    /// position after two rounds a few milliseconds apart, when no transaction is running
    /// long (a long one holds every reader back for as long as it runs). Called by one task at
    /// a time.
    async fn settle(&self) -> Result<Settled, StoreError>;

    /// The highest position a committed event holds now (0 for an empty store): what a page
    /// must wait to see settled to show every event committed before it was asked for.
    async fn top(&self) -> Result<i64, StoreError>;

    /// Events matching `filter` with positions in `(after, through]`, in position order, at
    /// most `limit`. `through` should be an answer of [`EventFeed::settle`]: below it the
    /// read is final.
    async fn read(
        &self,
        filter: &AuditFilter,
        after: i64,
        through: i64,
        limit: usize,
    ) -> Result<Vec<FeedRecord>, StoreError>;
}
