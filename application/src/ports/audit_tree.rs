//! The Merkle tree over the event store and its signed checkpoints, as stored.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::data::checkpoint::{Checkpoint, Hash};
use crate::ports::store_error::StoreError;

/// Where an event sits in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafPlace {
    /// Its leaf index.
    pub index: u64,
    /// Its leaf hash.
    pub hash: Hash,
    /// Its aggregate type, for the access check.
    pub aggregate_type: String,
    /// Its aggregate's team (`None` for events stored before teams were recorded).
    pub team_id: Option<String>,
}

/// A leaf with the event fields it commits to (`merkle::leaf_data`): what an export shows of
/// the events just outside its range, to prove that nothing inside was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafEvent {
    /// The leaf index.
    pub index: u64,
    /// The event's store position.
    pub position: i64,
    /// The event's id.
    pub event_id: String,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its sequence in the aggregate.
    pub sequence: i64,
    /// Its hash-chain hash (hex).
    pub chain_hash: String,
}

/// The leaves of the events in a range of store positions: leaves are in position order, so
/// they are consecutive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafSpan {
    /// The first leaf at or after the range's start (the tree size when there is none).
    pub first_index: u64,
    /// How many leaves fall in the range.
    pub count: u64,
}

/// The stored tree and checkpoints.
#[async_trait]
pub trait AuditTree: Send + Sync {
    /// Leaves in the tree.
    async fn size(&self) -> Result<u64, StoreError>;

    /// Appends, in store order, the events no earlier event can still appear behind (at most
    /// `limit`), with the subtrees they complete; answers the new size.
    async fn append_settled(&self, limit: usize) -> Result<u64, StoreError>;

    /// The stored subtree hashes among `wanted` (`(level, index)`).
    async fn nodes(&self, wanted: &[(u32, u64)]) -> Result<HashMap<(u32, u64), Hash>, StoreError>;

    /// Where event `event_id` is in the tree, if it is there yet.
    async fn leaf_of(&self, event_id: uuid::Uuid) -> Result<Option<LeafPlace>, StoreError>;

    /// The leaves among the first `tree_size` whose events' positions are within
    /// `from_position..=to_position`.
    async fn leaf_span(
        &self,
        from_position: i64,
        to_position: i64,
        tree_size: u64,
    ) -> Result<LeafSpan, StoreError>;

    /// Leaf `index` with the event fields it commits to, if the tree has it.
    async fn leaf_event(&self, index: u64) -> Result<Option<LeafEvent>, StoreError>;

    /// The latest checkpoint, or the one at `tree_size`.
    async fn checkpoint(&self, tree_size: Option<u64>) -> Result<Option<Checkpoint>, StoreError>;

    /// At most `limit` stored checkpoints below tree size `before` (all when `None`), the
    /// largest first.
    async fn checkpoints_before(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, StoreError>;

    /// Every stored checkpoint, by tree size.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// Every stored leaf hash, by leaf index.
    async fn leaves(&self) -> Result<std::collections::BTreeMap<u64, Hash>, StoreError>;

    /// Stores a signed checkpoint.
    async fn store_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// Checkpoints stored but not yet published (oldest first).
    async fn unpublished(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// Records that the checkpoint at `tree_size` was published.
    async fn mark_published(&self, tree_size: u64) -> Result<(), StoreError>;
}

/// Where checkpoints are published, beyond the database's reach.
#[async_trait]
pub trait CheckpointLog: Send + Sync {
    /// Publishes `checkpoint`; returns once it is durable there.
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
}
