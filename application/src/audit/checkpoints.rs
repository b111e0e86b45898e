//! Signed checkpoints of the event log and the proofs clients check them with.
//!
//! - [`Checkpointer`] grows the Merkle tree with the events that settled, signs a checkpoint
//!   when it grew, and publishes every signed checkpoint beyond the database (Kafka).
//! - [`AuditProofs`] answers checkpoints, inclusion proofs (an event is in the log a
//!   checkpoint signed) and consistency proofs (a later checkpoint extends an earlier one:
//!   nothing before it was rewritten). Proofs carry hashes only, never another team's events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use uuid::Uuid;

use crate::access::{Action, Principal};
use crate::audit::merkle::{self, Hash, ProofError, Subtrees};
use crate::audit::signing::{Checkpoint, CheckpointSigner};
use crate::error::AppError;
use crate::ports::audit_tree::{AuditTree, CheckpointLog};

/// Events appended to the tree per store round trip.
const APPEND_BATCH: usize = 5_000;

/// Grows the tree and signs checkpoints (one instance at a time: the caller holds a lock).
pub struct Checkpointer {
    tree: Arc<dyn AuditTree>,
    log: Arc<dyn CheckpointLog>,
    signer: CheckpointSigner,
}

impl Checkpointer {
    /// Over `tree`, publishing to `log`, signing with `signer`.
    pub fn new(
        tree: Arc<dyn AuditTree>,
        log: Arc<dyn CheckpointLog>,
        signer: CheckpointSigner,
    ) -> Self {
        Self { tree, log, signer }
    }

    /// One round: appends every settled event, signs a checkpoint if the tree grew past the
    /// last one, and publishes what is signed and not yet published. Answers the checkpoint it
    /// signed, if any.
    pub async fn round(&self) -> Result<Option<Checkpoint>, AppError> {
        let mut size = self.tree.size().await?;
        loop {
            let grown = self.tree.append_settled(APPEND_BATCH).await?;
            if grown < size + APPEND_BATCH as u64 {
                size = grown;
                break;
            }
            size = grown;
        }
        let latest = self.tree.checkpoint(None).await?;
        let signed = match latest {
            Some(latest) if latest.tree_size >= size => None,
            _ if size == 0 => None,
            _ => {
                let root = root_at(self.tree.as_ref(), size).await?;
                let checkpoint = self.signer.sign(size, root, Utc::now());
                self.tree.store_checkpoint(&checkpoint).await?;
                metrics::gauge!("chronicle_audit_tree_size").set(size as f64);
                Some(checkpoint)
            }
        };
        for checkpoint in self.tree.unpublished().await? {
            self.log.publish(&checkpoint).await?;
            self.tree.mark_published(checkpoint.tree_size).await?;
        }
        Ok(signed)
    }
}

/// An inclusion proof of one event, against a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The event's leaf index.
    pub leaf_index: u64,
    /// The event's leaf hash.
    pub leaf_hash: Hash,
    /// Sibling hashes from the leaf up (RFC 9162's PATH).
    pub path: Vec<Hash>,
    /// The signed checkpoint it proves against.
    pub checkpoint: Checkpoint,
}

/// A consistency proof between two checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The earlier checkpoint.
    pub from: Checkpoint,
    /// The later one.
    pub to: Checkpoint,
    /// RFC 9162's PROOF(from, to).
    pub path: Vec<Hash>,
}

/// Checkpoints and proofs, for auditors and admins.
pub struct AuditProofs {
    tree: Arc<dyn AuditTree>,
}

impl AuditProofs {
    /// Over `tree`.
    pub fn new(tree: Arc<dyn AuditTree>) -> Self {
        Self { tree }
    }

    /// The latest checkpoint, or the one at `tree_size`.
    pub async fn checkpoint(
        &self,
        principal: &Principal,
        tree_size: Option<u64>,
    ) -> Result<Checkpoint, AppError> {
        principal.scope(Action::ReadAudit)?;
        self.signed(tree_size).await
    }

    async fn signed(&self, tree_size: Option<u64>) -> Result<Checkpoint, AppError> {
        self.tree.checkpoint(tree_size).await?.ok_or_else(|| {
            AppError::NotFound(match tree_size {
                Some(size) => format!("checkpoint at tree size {size}"),
                None => "checkpoint (none signed yet)".to_owned(),
            })
        })
    }

    /// The proof that event `event_id` is in the log the checkpoint at `tree_size` (the
    /// latest when `None`) signed. An event of a team the caller cannot see is not found.
    pub async fn inclusion(
        &self,
        principal: &Principal,
        event_id: Uuid,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, AppError> {
        let scope = principal.scope(Action::ReadAudit)?;
        let not_found = || AppError::NotFound(format!("event {event_id} in the audit tree"));
        let place = self.tree.leaf_of(event_id).await?.ok_or_else(not_found)?;
        let visible = match &place.team_id {
            Some(team) => scope.covers(team),
            None => scope.restriction().is_none(),
        };
        if !visible {
            return Err(not_found());
        }
        let checkpoint = self.signed(tree_size).await?;
        if place.index >= checkpoint.tree_size {
            return Err(AppError::NotFound(format!(
                "event {event_id} in the checkpoint at tree size {} (it is leaf {}; wait for the next checkpoint)",
                checkpoint.tree_size, place.index
            )));
        }
        let path = prefetched(self.tree.as_ref(), |tree| {
            merkle::inclusion_proof(&tree, place.index, checkpoint.tree_size)
        })
        .await?;
        Ok(InclusionProof {
            leaf_index: place.index,
            leaf_hash: place.hash,
            path,
            checkpoint,
        })
    }

    /// The proof that the checkpoint at `to` extends the one at `from`.
    pub async fn consistency(
        &self,
        principal: &Principal,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, AppError> {
        principal.scope(Action::ReadAudit)?;
        if from > to {
            return Err(AppError::validation("fromSize", "must not exceed toSize"));
        }
        let (from, to) = (self.signed(Some(from)).await?, self.signed(Some(to)).await?);
        let path = prefetched(self.tree.as_ref(), |tree| {
            merkle::consistency_proof(&tree, from.tree_size, to.tree_size)
        })
        .await?;
        Ok(ConsistencyProof { from, to, path })
    }
}

/// The root of the first `size` leaves of the stored tree.
pub async fn root_at(tree: &dyn AuditTree, size: u64) -> Result<Hash, AppError> {
    prefetched(tree, |nodes| merkle::root(&nodes, size)).await
}

/// Runs `compute` over the stored tree: first against a recorder to learn which subtrees it
/// reads (which does not depend on their hashes), then, with those fetched in one round
/// trip, for real.
async fn prefetched<T>(
    tree: &dyn AuditTree,
    compute: impl Fn(&dyn SubtreesDyn) -> Result<T, ProofError>,
) -> Result<T, AppError> {
    let recorder = Recorder::default();
    compute(&recorder).map_err(proof_error)?;
    let wanted: Vec<(u32, u64)> = recorder.wanted.into_inner().unwrap_or_default();
    let fetched = Fetched(tree.nodes(&wanted).await?);
    compute(&fetched).map_err(proof_error)
}

fn proof_error(error: ProofError) -> AppError {
    match error {
        ProofError::OutOfRange(message) => AppError::validation("treeSize", message),
        missing @ ProofError::MissingNode { .. } => {
            AppError::internal_from("the stored audit tree is incomplete", missing)
        }
    }
}

/// [`Subtrees`] as a trait object.
trait SubtreesDyn {
    fn node_dyn(&self, level: u32, index: u64) -> Option<Hash>;
}

impl Subtrees for &dyn SubtreesDyn {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.node_dyn(level, index)
    }
}

/// Answers every lookup with a placeholder, remembering what was asked.
#[derive(Default)]
struct Recorder {
    wanted: Mutex<Vec<(u32, u64)>>,
}

impl SubtreesDyn for Recorder {
    fn node_dyn(&self, level: u32, index: u64) -> Option<Hash> {
        if let Ok(mut wanted) = self.wanted.lock() {
            wanted.push((level, index));
        }
        Some([0; 32])
    }
}

/// The fetched subtrees.
struct Fetched(HashMap<(u32, u64), Hash>);

impl SubtreesDyn for Fetched {
    fn node_dyn(&self, level: u32, index: u64) -> Option<Hash> {
        self.0.get(&(level, index)).copied()
    }
}
