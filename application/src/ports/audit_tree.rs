//! The Merkle tree over the event store and its signed checkpoints, as stored.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::audit::merkle::Hash;
use crate::audit::signing::Checkpoint;
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

    /// The latest checkpoint, or the one at `tree_size`.
    async fn checkpoint(&self, tree_size: Option<u64>) -> Result<Option<Checkpoint>, StoreError>;

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
