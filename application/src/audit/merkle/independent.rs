//! Chronicle's tree checked against an independent RFC 6962 implementation: the `ct-merkle` crate,
//! written by other people from the RFC with array-based tree arithmetic rather than merkle.rs's
//! recursion on the split point. For every tree size from 1 to [`MAX_SIZE`] over seeded
//! pseudo-random Chronicle leaves, both compute the same root, the same inclusion proof of every
//! leaf and the same consistency proof from every smaller size, and each verifies the other's.
//! A disagreement is a real finding about one of the two, so it names the size and index.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::Sha256;
use uuid::Uuid;

use super::*;

/// Every size up to this: past 256, so every shape of the recursion up to nine levels is seen.
const MAX_SIZE: u64 = 300;

/// The leaves' seed: a failure reproduces exactly.
const SEED: u64 = 0x6368_726f_6e69_636c;

/// SplitMix64: a few lines of seeded randomness, so the test needs no `rand`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn hex(&mut self, bytes: u64) -> String {
        hex::encode(
            (0..bytes)
                .map(|_| self.next().to_le_bytes()[0])
                .collect::<Vec<u8>>(),
        )
    }
}

/// `count` events' leaf data, in store order: positions with gaps, random ids, streams of
/// varied length and random chain hashes.
fn random_leaves(count: u64) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64(SEED);
    let mut position = 0;
    (0..count)
        .map(|_| {
            position += 1 + rng.below(3) as i64;
            let event_id = Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
            let aggregate_type = ["Task", "Project", "Team", "Comment"][rng.below(4) as usize];
            let id_bytes = 1 + rng.below(16);
            let aggregate_id = rng.hex(id_bytes);
            let sequence = 1 + rng.below(1000) as i64;
            let chain_hash = rng.hex(32);
            leaf_data(
                position,
                &event_id,
                aggregate_type,
                &aggregate_id,
                sequence,
                &chain_hash,
            )
        })
        .collect()
}

/// A proof's hashes, from the independent crate's concatenated bytes.
fn split_hashes(bytes: &[u8]) -> Vec<Hash> {
    assert_eq!(bytes.len() % 32, 0, "a proof is whole hashes");
    bytes
        .chunks(32)
        .map(|chunk| Hash::try_from(chunk).unwrap())
        .collect()
}

/// Both trees over the same leaves: Chronicle's holding all of them (as the store does, ahead
/// of any checkpoint), the independent one grown one leaf at a time by the caller.
struct Trees {
    leaves: Vec<Vec<u8>>,
    chronicle: MemoryTree,
    independent: MemoryBackedTree<Sha256, Vec<u8>>,
}

impl Trees {
    fn new(count: u64) -> Self {
        let leaves = random_leaves(count);
        let mut chronicle = MemoryTree::default();
        for leaf in &leaves {
            chronicle.push(leaf_hash(leaf));
        }
        Self {
            leaves,
            chronicle,
            independent: MemoryBackedTree::new(),
        }
    }

    /// Grows the independent tree by one leaf; answers its new size.
    fn grow(&mut self) -> u64 {
        let next = self.leaves[self.independent.len() as usize].clone();
        self.independent.push(next);
        self.independent.len()
    }
}

#[test]
fn roots_and_proofs_equal_ct_merkles_at_every_size_up_to_300() {
    let mut trees = Trees::new(MAX_SIZE);
    assert_eq!(
        &root(&trees.chronicle, 0).unwrap()[..],
        trees.independent.root().as_bytes().as_slice(),
        "the empty tree's root"
    );
    // roots[m - 1]: the independent root of the first m leaves.
    let mut roots: Vec<RootHash<Sha256>> = Vec::new();
    for _ in 1..=MAX_SIZE {
        let n = trees.grow();
        let theirs = trees.independent.root();
        let ours = root(&trees.chronicle, n).unwrap();
        assert_eq!(&ours[..], theirs.as_bytes().as_slice(), "root at size {n}");
        roots.push(theirs.clone());

        for index in 0..n {
            let leaf = &trees.leaves[index as usize];
            let proof = inclusion_proof(&trees.chronicle, index, n).unwrap();
            let expected = trees.independent.prove_inclusion(index as usize);
            assert_eq!(
                proof.concat(),
                expected.as_bytes(),
                "inclusion proof of leaf {index} in {n}"
            );
            // The independent verifier accepts Chronicle's proof, from the leaf's data...
            let as_theirs = InclusionProof::<Sha256>::try_from_bytes(proof.concat()).unwrap();
            let verdict = theirs.verify_inclusion(leaf, index, &as_theirs);
            assert!(
                verdict.is_ok(),
                "ct-merkle rejects Chronicle's inclusion proof of leaf {index} in {n}: {verdict:?}"
            );
            // ...and Chronicle's verifier accepts the independent one.
            assert!(
                verify_inclusion(
                    &leaf_hash(leaf),
                    index,
                    n,
                    &split_hashes(expected.as_bytes()),
                    &ours
                ),
                "Chronicle rejects ct-merkle's inclusion proof of leaf {index} in {n}"
            );
        }

        for old in 1..=n {
            let old_root = &roots[old as usize - 1];
            let proof = consistency_proof(&trees.chronicle, old, n).unwrap();
            let expected = trees.independent.prove_consistency((n - old) as usize);
            assert_eq!(
                proof.concat(),
                expected.as_bytes(),
                "consistency proof {old} -> {n}"
            );
            let as_theirs = ConsistencyProof::<Sha256>::try_from_bytes(proof.concat()).unwrap();
            let verdict = theirs.verify_consistency(old_root, &as_theirs);
            assert!(
                verdict.is_ok(),
                "ct-merkle rejects Chronicle's consistency proof {old} -> {n}: {verdict:?}"
            );
            let old_root: Hash = old_root.as_bytes().as_slice().try_into().unwrap();
            assert!(
                verify_consistency(old, n, &old_root, &ours, &split_hashes(expected.as_bytes())),
                "Chronicle rejects ct-merkle's consistency proof {old} -> {n}"
            );
        }
    }
}

#[test]
fn ct_merkle_rejects_altered_chronicle_proofs() {
    // The agreement above means something only if the independent verifier can say no.
    const SIZE: u64 = 40;
    let mut trees = Trees::new(SIZE);
    let mut roots: Vec<RootHash<Sha256>> = Vec::new();
    for _ in 1..=SIZE {
        let n = trees.grow();
        let theirs = trees.independent.root();
        roots.push(theirs.clone());
        for index in 0..n {
            let leaf = &trees.leaves[index as usize];
            let proof = inclusion_proof(&trees.chronicle, index, n)
                .unwrap()
                .concat();
            for byte in (0..proof.len()).step_by(32) {
                let mut bent = proof.clone();
                bent[byte] ^= 1;
                let bent = InclusionProof::<Sha256>::try_from_bytes(bent).unwrap();
                assert!(theirs.verify_inclusion(leaf, index, &bent).is_err());
            }
            let proof = InclusionProof::<Sha256>::try_from_bytes(proof).unwrap();
            assert!(theirs
                .verify_inclusion(&b"another event".to_vec(), index, &proof)
                .is_err());
        }
        for old in 1..n {
            let proof = consistency_proof(&trees.chronicle, old, n)
                .unwrap()
                .concat();
            for byte in (0..proof.len()).step_by(32) {
                let mut bent = proof.clone();
                bent[byte] ^= 1;
                let bent = ConsistencyProof::<Sha256>::try_from_bytes(bent).unwrap();
                assert!(theirs
                    .verify_consistency(&roots[old as usize - 1], &bent)
                    .is_err());
            }
            // A rewritten past: the proof against another tree's root of the same size.
            let proof = ConsistencyProof::<Sha256>::try_from_bytes(proof).unwrap();
            let forged = RootHash::<Sha256>::new(leaf_hash(b"rewritten").into(), old);
            assert!(theirs.verify_consistency(&forged, &proof).is_err());
        }
    }
}
