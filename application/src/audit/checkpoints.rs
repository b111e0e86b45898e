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
use crate::audit::export::{Boundary, ExportHeader, ExportRange};
use crate::audit::merkle::{self, Hash, ProofError, Subtrees};
use crate::audit::signing::{Checkpoint, CheckpointSigner};
use crate::error::AppError;
use crate::ports::audit_tree::{AuditTree, CheckpointLog};
use crate::ports::page::Page;
use crate::queries::page_size;

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

/// The first `tree_size` events of the log as a tree: its root, and the checkpoint that signed
/// that size, if one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// Events in the tree.
    pub tree_size: u64,
    /// Its Merkle root.
    pub root: Hash,
    /// The checkpoint at exactly this size, when one was signed.
    pub checkpoint: Option<Checkpoint>,
}

/// A consistency proof from any earlier size to a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The earlier tree: a client that kept its root (from an earlier proof, an export, or a
    /// checkpoint) checks that the signed log extends it.
    pub from: TreeHead,
    /// The later, signed checkpoint.
    pub to: Checkpoint,
    /// RFC 9162's PROOF(from, to).
    pub path: Vec<Hash>,
}

/// Whether this deployment signs checkpoints: with no key, "no checkpoint" is not a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// `CHRONICLE_AUDIT_SIGNING_KEY_FILE` is set: checkpoints come every interval.
    On,
    /// No key on this instance: none are signed here.
    Off,
}

/// Checkpoints and proofs, for auditors and admins.
pub struct AuditProofs {
    tree: Arc<dyn AuditTree>,
    signing: Signing,
}

impl AuditProofs {
    /// Over `tree`, on an instance that signs checkpoints or not.
    pub fn new(tree: Arc<dyn AuditTree>, signing: Signing) -> Self {
        Self { tree, signing }
    }

    /// Signed checkpoints, newest first, those below tree size `before` when given: a page of
    /// at most `first` (20 when absent, at most 100).
    pub async fn checkpoints(
        &self,
        principal: &Principal,
        first: Option<i64>,
        before: Option<u64>,
    ) -> Result<Page<Checkpoint>, AppError> {
        principal.scope(Action::ReadAudit)?;
        let limit = page_size(first)?;
        let rows = self.tree.checkpoints_before(before, limit + 1).await?;
        Ok(Page::of_one_extra(rows, limit))
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
            AppError::NotFound(match (tree_size, self.signing) {
                (Some(size), _) => format!("checkpoint at tree size {size}"),
                (None, Signing::On) => "checkpoint (none signed yet)".to_owned(),
                (None, Signing::Off) => "checkpoint (checkpoints are off: \
                     CHRONICLE_AUDIT_SIGNING_KEY_FILE is not set on this instance)"
                    .to_owned(),
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

    /// What an export of the events at positions `from..=to` states before its events: the
    /// latest checkpoint, the range's leaves, and the leaves just outside it with their
    /// proofs. The boundary leaves name events of any team, so only a caller who sees every
    /// team (the command line, an unrestricted auditor) may export.
    pub async fn export_header(
        &self,
        principal: &Principal,
        from: i64,
        to: i64,
    ) -> Result<ExportHeader, AppError> {
        let scope = principal.scope(Action::ReadAudit)?;
        if scope.restriction().is_some() {
            return Err(AppError::Forbidden(
                "an export spans every team: it needs access to all of them".to_owned(),
            ));
        }
        if from > to {
            return Err(AppError::validation(
                "fromPosition",
                "must not exceed toPosition",
            ));
        }
        let checkpoint = self.signed(None).await?;
        let size = checkpoint.tree_size;
        let span = self.tree.leaf_span(from, to, size).await?;
        let after_index = span.first_index + span.count;
        let before = match span.first_index {
            0 => None,
            first => Some(self.boundary(first - 1, size).await?),
        };
        let after = if after_index < size {
            Some(self.boundary(after_index, size).await?)
        } else {
            None
        };
        Ok(ExportHeader {
            checkpoint,
            range: ExportRange {
                from_position: from,
                to_position: to,
                first_leaf_index: span.first_index,
                count: span.count,
            },
            before,
            after,
        })
    }

    /// Leaf `index` of the first `size`, with the fields it commits to and its proof.
    async fn boundary(&self, index: u64, size: u64) -> Result<Boundary, AppError> {
        let leaf = self.tree.leaf_event(index).await?.ok_or_else(|| {
            AppError::internal(format!("the stored audit tree has no leaf {index}"))
        })?;
        let proof = prefetched(self.tree.as_ref(), |tree| {
            merkle::inclusion_proof(&tree, index, size)
        })
        .await?;
        Ok(Boundary { leaf, proof })
    }

    /// The proof that the checkpoint at `to` extends the log's first `from` events, whether
    /// or not a checkpoint signed that size (its root then comes from the stored tree, and
    /// the proof is what binds it to the signed one).
    pub async fn consistency(
        &self,
        principal: &Principal,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, AppError> {
        principal.scope(Action::ReadAudit)?;
        if from == 0 {
            return Err(AppError::validation("fromSize", "must be at least 1"));
        }
        if from > to {
            return Err(AppError::validation("fromSize", "must not exceed toSize"));
        }
        let to = self.signed(Some(to)).await?;
        let checkpoint = self.tree.checkpoint(Some(from)).await?;
        let root = match &checkpoint {
            Some(signed) => signed.root,
            None => root_at(self.tree.as_ref(), from).await?,
        };
        let path = prefetched(self.tree.as_ref(), |tree| {
            merkle::consistency_proof(&tree, from, to.tree_size)
        })
        .await?;
        Ok(ConsistencyProof {
            from: TreeHead {
                tree_size: from,
                root,
                checkpoint,
            },
            to,
            path,
        })
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
