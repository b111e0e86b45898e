//! The Merkle tree over every event in store order, as RFC 9162 (Certificate Transparency 2.0)
//! defines it, with its inclusion and consistency proofs and their verification.
//!
//! - A leaf's hash is `SHA-256(0x00 || leaf)`, an interior node's `SHA-256(0x01 || left ||
//!   right)`, and the tree of `n` leaves splits at the largest power of two below `n`
//!   (RFC 9162, 2.1.1). The domain-separation bytes keep a leaf from passing for a node.
//! - The leaf of an event is [`leaf_data`]: its position, id, stream and the hash of its
//!   stream's chain, so the tree commits to the content through the chain and an event's
//!   content can later be erased without invalidating any proof.
//! - Proofs are computed from a [`Subtrees`] source of complete, aligned subtree hashes (the
//!   stored tree), so a proof at any size costs O(log² n) lookups, not a walk of the log.
//!
//! The verifiers are written from RFC 9162's algorithms (2.1.3.2 and 2.1.4.2), not from the
//! prover, so a client in another language can follow them line by line.

use sha2::{Digest, Sha256};

pub use crate::data::checkpoint::Hash;

/// Where [`leaf_data`] says which format it is, so a later format cannot be confused with it.
pub(crate) const LEAF_FORMAT: &str = "chronicle-audit-leaf-v1";

/// The bytes a leaf commits to for one event (UTF-8, one field per line): the format, the
/// event's store position, its id, its aggregate type and id, its sequence, and its
/// hash-chain hash (hex).
pub fn leaf_data(
    position: i64,
    event_id: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    chain_hash: &str,
) -> Vec<u8> {
    format!(
        "{LEAF_FORMAT}\n{position}\n{event_id}\n{aggregate_type}\n{aggregate_id}\n{sequence}\n{chain_hash}"
    )
    .into_bytes()
}

/// `SHA-256(0x00 || data)`: a leaf's hash.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: an interior node's hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: `SHA-256()`.
pub(crate) fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Complete, aligned subtree hashes: the hash of leaves `[index * 2^level, (index + 1) *
/// 2^level)` for every such range the tree holds in full.
pub trait Subtrees {
    /// The hash at `level` (0: leaves) and `index`; `None` if the tree does not hold it.
    fn node(&self, level: u32, index: u64) -> Option<Hash>;
}

/// Why a proof could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The sizes or index are outside the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The tree lacks a node it should hold (the store is incomplete or was altered).
    #[error("the stored tree lacks node {level}/{index}")]
    MissingNode {
        /// Its level.
        level: u32,
        /// Its index.
        index: u64,
    },
}

/// `MTH(D[start:end])` for a range the RFC's recursion produces (`start` aligned to the
/// largest power of two in `end - start`, or to its own size when that is a power of two).
fn range_hash(tree: &impl Subtrees, start: u64, end: u64) -> Result<Hash, ProofError> {
    let size = end - start;
    if size.is_power_of_two() && start & (size - 1) == 0 {
        let level = size.trailing_zeros();
        let index = start >> level;
        return tree
            .node(level, index)
            .ok_or(ProofError::MissingNode { level, index });
    }
    let k = split(size);
    let left = range_hash(tree, start, start + k)?;
    let right = range_hash(tree, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` leaves.
pub fn root(tree: &impl Subtrees, size: u64) -> Result<Hash, ProofError> {
    match size {
        0 => Ok(empty_root()),
        _ => range_hash(tree, 0, size),
    }
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves
/// (RFC 9162, 2.1.3.1), from the leaf up.
pub(crate) fn inclusion_proof(
    tree: &impl Subtrees,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {size}"
        )));
    }
    let mut proof = Vec::new();
    path(tree, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// PATH(m, D[start:end]), appending from the leaf up.
fn path(
    tree: &impl Subtrees,
    m: u64,
    start: u64,
    end: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(tree, m, start, start + k, proof)?;
        proof.push(range_hash(tree, start + k, end)?);
    } else {
        path(tree, m - k, start + k, end, proof)?;
        proof.push(range_hash(tree, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `old` leaves to that of `new` (RFC 9162, 2.1.4.1).
pub(crate) fn consistency_proof(
    tree: &impl Subtrees,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange(format!(
            "a tree of {old} cannot precede one of {new}"
        )));
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(tree, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

/// SUBPROOF(m, D[start:end], b).
fn subproof(
    tree: &impl Subtrees,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if m == n {
        if !whole {
            proof.push(range_hash(tree, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(tree, m, start, start + k, whole, proof)?;
        proof.push(range_hash(tree, start + k, end)?);
    } else {
        subproof(tree, m - k, start + k, end, false, proof)?;
        proof.push(range_hash(tree, start, start + k)?);
    }
    Ok(())
}

/// Whether `proof` shows the leaf with hash `leaf` at `index` in the tree of `size` leaves
/// whose root is `root` (RFC 9162, 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Whether `proof` shows the tree of `old` leaves with root `old_root` to be a prefix of the
/// tree of `new` leaves with root `new_root` (RFC 9162, 2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *old_root && sr == *new_root
}

/// A tree held in memory: every complete aligned subtree of its leaves. Tests, exported
/// files and small logs use it; the service's tree lives in the store.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[l][i]`: the hash of leaves `[i * 2^l, (i + 1) * 2^l)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Appends a leaf (its hash), completing every subtree it closes.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len() & 1 == 0 {
            let nodes = &self.levels[level];
            let parent = node_hash(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
            if self.levels[level].len() & 1 == 1 {
                break;
            }
        }
    }

    /// Leaves held.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }
}

impl Subtrees for MemoryTree {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.levels
            .get(level as usize)?
            .get(usize::try_from(index).ok()?)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MTH(D[n])` straight from the RFC's definition, over leaf hashes.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn tree_of(n: u64) -> (MemoryTree, Vec<Hash>) {
        let mut tree = MemoryTree::default();
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for leaf in &leaves {
            tree.push(*leaf);
        }
        (tree, leaves)
    }

    #[test]
    fn hashes_are_domain_separated_as_rfc_9162_says() {
        // SHA-256 of the empty string, and of the single byte 0x00 (the empty leaf).
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let leaf = leaf_hash(b"x");
        assert_ne!(node_hash(&leaf, &leaf), leaf_hash(&[leaf, leaf].concat()));
    }

    #[test]
    fn roots_match_the_definition_at_every_size() {
        for n in 0..70 {
            let (tree, leaves) = tree_of(n);
            assert_eq!(root(&tree, n).unwrap(), reference_root(&leaves), "size {n}");
            // Any prefix too: an older checkpoint's root is computed from today's tree.
            for m in 0..=n {
                assert_eq!(
                    root(&tree, m).unwrap(),
                    reference_root(&leaves[..m as usize])
                );
            }
        }
    }

    #[test]
    fn inclusion_proofs_verify_and_catch_every_change() {
        let (tree, leaves) = tree_of(37);
        for size in 1..=37 {
            let root = root(&tree, size).unwrap();
            for index in 0..size {
                let proof = inclusion_proof(&tree, index, size).unwrap();
                let leaf = &leaves[index as usize];
                assert!(
                    verify_inclusion(leaf, index, size, &proof, &root),
                    "{index}/{size}"
                );
                assert!(!verify_inclusion(
                    &leaf_hash(b"other"),
                    index,
                    size,
                    &proof,
                    &root
                ));
                if size > 1 {
                    assert!(!verify_inclusion(
                        leaf,
                        (index + 1) % size,
                        size,
                        &proof,
                        &root
                    ));
                    let mut bent = proof.clone();
                    bent[0][0] ^= 1;
                    assert!(!verify_inclusion(leaf, index, size, &bent, &root));
                }
            }
        }
        assert!(inclusion_proof(&tree, 5, 5).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_catch_a_rewritten_past() {
        let (tree, _) = tree_of(40);
        for new in 1..=40 {
            let new_root = root(&tree, new).unwrap();
            for old in 1..=new {
                let old_root = root(&tree, old).unwrap();
                let proof = consistency_proof(&tree, old, new).unwrap();
                assert!(
                    verify_consistency(old, new, &old_root, &new_root, &proof),
                    "{old} -> {new}"
                );
                if old < new {
                    let forged = leaf_hash(b"rewritten");
                    assert!(!verify_consistency(old, new, &forged, &new_root, &proof));
                    assert!(!verify_consistency(old, new, &old_root, &forged, &proof));
                }
            }
        }
        // A log whose fourth event was replaced is not consistent with its old checkpoint.
        let (honest, mut leaves) = tree_of(8);
        leaves[3] = leaf_hash(b"edited");
        let mut edited = MemoryTree::default();
        for leaf in &leaves {
            edited.push(*leaf);
        }
        edited.push(leaf_hash(b"ninth"));
        let proof = consistency_proof(&edited, 6, 9).unwrap();
        let old_root = root(&honest, 6).unwrap();
        assert!(!verify_consistency(
            6,
            9,
            &old_root,
            &root(&edited, 9).unwrap(),
            &proof
        ));
    }

    #[test]
    fn proofs_are_logarithmic() {
        let (tree, _) = tree_of(1000);
        assert!(inclusion_proof(&tree, 517, 1000).unwrap().len() <= 10);
        assert!(consistency_proof(&tree, 333, 1000).unwrap().len() <= 20);
    }
}

#[cfg(test)]
mod independent;
#[cfg(test)]
mod vectors;
