//! Verification of the store against signed checkpoints kept out of the database's reach:
//! the tree is recomputed from the events themselves (never from the stored tree, which whoever
//! edits events can rewrite too), and each checkpoint's root must match.
//!
//! Detected, each as a finding that says where:
//! - a checkpoint whose signature fails under the auditor's public key (forged, or the signing
//!   key was swapped);
//! - a checkpoint in the database that differs from the published one of the same size (the
//!   checkpoint table was rewritten);
//! - a root that no longer matches: an event under that checkpoint was edited (even with its
//!   chain recomputed), removed, inserted or reordered, or a whole stream removed; the
//!   divergence is narrowed to the leaves between the last matching checkpoint and the first
//!   failing one, and to the first leaf that differs from the stored tree when that still
//!   holds the original;
//! - fewer events in the store than a checkpoint signed.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::merkle::{self, MemoryTree};
use super::signing::{Checkpoint, PublicKey};
use crate::error::AppError;
use crate::ports::audit_log::AuditLog;

/// What the verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeCheck {
    /// Events read from the store.
    pub events: u64,
    /// Published checkpoints whose signature verified and whose root was compared.
    pub checkpoints_verified: u64,
    /// Every divergence, in words; empty when the store is what the checkpoints signed.
    pub findings: Vec<String>,
}

/// An event's place, for findings.
#[derive(Debug, Clone)]
struct Leaf {
    position: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: u64,
    hash: merkle::Hash,
}

/// Verifies the store read through `log` against `published` checkpoints (from Kafka or an
/// exported file) under `key`, comparing `stored` (the database's own checkpoints) and
/// `stored_leaves` (the database's tree, leaf index to hash) along the way.
pub async fn verify_tree(
    log: &dyn AuditLog,
    published: &[Checkpoint],
    stored: &[Checkpoint],
    stored_leaves: &BTreeMap<u64, merkle::Hash>,
    key: &PublicKey,
) -> Result<TreeCheck, AppError> {
    let mut findings = Vec::new();
    let mut trusted: BTreeMap<u64, &Checkpoint> = BTreeMap::new();
    for checkpoint in published {
        if checkpoint.verify(key) {
            trusted.insert(checkpoint.tree_size, checkpoint);
        } else {
            findings.push(format!(
                "published checkpoint at tree size {} (key {}) does not verify under key {}: forged, or signed with another key",
                checkpoint.tree_size, checkpoint.key_id, key.id()
            ));
        }
    }
    for checkpoint in stored {
        match trusted.get(&checkpoint.tree_size) {
            Some(published) if *published != checkpoint => findings.push(format!(
                "the database's checkpoint at tree size {} differs from the published one (root {} there, {} here): the checkpoint table was rewritten",
                checkpoint.tree_size,
                hex::encode(published.root),
                hex::encode(checkpoint.root)
            )),
            None if !checkpoint.verify(key) => findings.push(format!(
                "the database's checkpoint at tree size {} does not verify under key {}",
                checkpoint.tree_size,
                key.id()
            )),
            _ => {}
        }
    }

    // The tree, recomputed from the events as stored now.
    let mut tree = MemoryTree::default();
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut events = log.scan();
    while let Some(record) = events.next().await {
        let record = record?;
        let event = &record.event;
        let hash = merkle::leaf_hash(&merkle::leaf_data(
            record.position,
            &event.event_id.to_string(),
            &event.aggregate_type,
            &event.aggregate_id,
            event.sequence as i64,
            &event.hash,
        ));
        tree.push(hash);
        leaves.push(Leaf {
            position: record.position,
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            hash,
        });
    }
    let size = tree.size();
    let mut verified = 0;
    let mut last_good = 0u64;
    for (&tree_size, checkpoint) in &trusted {
        if tree_size > size {
            findings.push(format!(
                "the store holds {size} events, fewer than the {tree_size} the checkpoint of {} signed: events were removed",
                checkpoint.issued_at.to_rfc3339()
            ));
            break;
        }
        let root = merkle::root(&tree, tree_size)
            .map_err(|e| AppError::internal_from("recomputing the tree", e))?;
        if root == checkpoint.root {
            verified += 1;
            last_good = tree_size;
            continue;
        }
        let mut finding = format!(
            "the first {tree_size} events are not what the checkpoint of {} signed: an event among leaves {last_good}..{tree_size} was edited, removed, inserted or reordered",
            checkpoint.issued_at.to_rfc3339()
        );
        let differing = (last_good..tree_size).find(|index| {
            stored_leaves
                .get(index)
                .is_some_and(|stored| leaves.get(*index as usize).map(|l| l.hash) != Some(*stored))
        });
        if let Some(index) = differing {
            let leaf = &leaves[index as usize];
            finding.push_str(&format!(
                "; the first leaf that differs from the stored tree is {index}: position {}, {} {} sequence {}",
                leaf.position, leaf.aggregate_type, leaf.aggregate_id, leaf.sequence
            ));
        }
        findings.push(finding);
        break;
    }
    Ok(TreeCheck {
        events: size,
        checkpoints_verified: verified,
        findings,
    })
}
