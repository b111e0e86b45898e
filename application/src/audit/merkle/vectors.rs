//! Fixed vectors of the Merkle tree: Chronicle's leaf text and hashes written out and pinned, and
//! the RFC 6962 reference vectors (the leaves, roots and proofs that Certificate Transparency's
//! implementations share, as published by transparency-dev/merkle) that any correct tree must
//! reproduce. Every expected value here was computed outside Chronicle (Python's hashlib, or
//! the reference itself), so a change to the leaf format or the hashing fails here.

use sha2::{Digest, Sha256};

use super::*;

/// [`leaf_data`] of the event whose hash is pinned in `data::hash_chain`'s vectors, at position
/// 1042.
const FIRST_LEAF: &str = "chronicle-audit-leaf-v1\n1042\n01890a5d-ac96-774b-bcce-b302099a8057\nTask\ntask-1\n1\n8f8df0500e431a83d690f125fc04aa9c8297ad5cd732cb723d0acb927a042b5b";

/// `SHA-256(0x00 || FIRST_LEAF)`.
const FIRST_LEAF_HASH: &str = "0084b97a7914a8d1a3d02cb9bc033958b807570256e486944eefa0e73628121e";

/// The next event of that stream, at position 1043.
const SECOND_LEAF: &str = "chronicle-audit-leaf-v1\n1043\n01890a5d-ac97-7000-8000-000000000002\nTask\ntask-1\n2\na936da0648e4165f2f61047e6db64f1f60979c890c15f9255d225b3601ec8a57";

/// `SHA-256(0x00 || SECOND_LEAF)`.
const SECOND_LEAF_HASH: &str = "019f7088ca347ff24ca0ae9679fa603f1bd444cbfa695f5e6b1135c951746fe1";

/// `SHA-256(0x01 || FIRST_LEAF_HASH || SECOND_LEAF_HASH)`: the root of the tree of both.
const TWO_LEAF_ROOT: &str = "d6695f6294123287bcdfecab0883b5e76ca7b54b8741081aadb6efa052f7d706";

/// The RFC 6962 reference leaves (hex).
const REFERENCE_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The reference roots of the first 0 to 8 of [`REFERENCE_LEAVES`].
const REFERENCE_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Reference inclusion proofs: (tree size, leaf index, path from the leaf up).
const REFERENCE_INCLUSIONS: [(u64, u64, &[&str]); 7] = [
    (1, 0, &[]),
    (
        2,
        0,
        &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
    ),
    (
        2,
        1,
        &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
    ),
    (
        3,
        2,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        5,
        1,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        8,
        0,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        8,
        5,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

/// Reference consistency proofs: (old size, new size, proof).
const REFERENCE_CONSISTENCIES: [(u64, u64, &[&str]); 4] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn hash(hex: &str) -> Hash {
    hex::decode(hex).unwrap().try_into().unwrap()
}

fn hashes(hexes: &[&str]) -> Vec<Hash> {
    hexes.iter().map(|h| hash(h)).collect()
}

/// The tree of the reference leaves.
fn reference_tree() -> MemoryTree {
    let mut tree = MemoryTree::default();
    for leaf in REFERENCE_LEAVES {
        tree.push(leaf_hash(&hex::decode(leaf).unwrap()));
    }
    tree
}

#[test]
fn a_leaf_is_the_pinned_text_and_hashes_to_its_pinned_vector() {
    let first = leaf_data(
        1042,
        "01890a5d-ac96-774b-bcce-b302099a8057",
        "Task",
        "task-1",
        1,
        "8f8df0500e431a83d690f125fc04aa9c8297ad5cd732cb723d0acb927a042b5b",
    );
    let second = leaf_data(
        1043,
        "01890a5d-ac97-7000-8000-000000000002",
        "Task",
        "task-1",
        2,
        "a936da0648e4165f2f61047e6db64f1f60979c890c15f9255d225b3601ec8a57",
    );
    assert_eq!(String::from_utf8(first.clone()).unwrap(), FIRST_LEAF);
    assert_eq!(String::from_utf8(second.clone()).unwrap(), SECOND_LEAF);
    assert_eq!(hex::encode(leaf_hash(&first)), FIRST_LEAF_HASH);
    assert_eq!(hex::encode(leaf_hash(&second)), SECOND_LEAF_HASH);
}

#[test]
fn leaf_and_node_hashes_are_sha256_of_the_rfc_6962_prefixes() {
    // Computed here with sha2 alone, from the RFC's definition, not through merkle.rs.
    let leaf = |text: &str| -> Hash { Sha256::digest([&[0x00], text.as_bytes()].concat()).into() };
    assert_eq!(hex::encode(leaf(FIRST_LEAF)), FIRST_LEAF_HASH);
    assert_eq!(hex::encode(leaf(SECOND_LEAF)), SECOND_LEAF_HASH);
    let node: Hash =
        Sha256::digest([&[0x01][..], &leaf(FIRST_LEAF), &leaf(SECOND_LEAF)].concat()).into();
    assert_eq!(hex::encode(node), TWO_LEAF_ROOT);

    assert_eq!(
        node_hash(&hash(FIRST_LEAF_HASH), &hash(SECOND_LEAF_HASH)),
        hash(TWO_LEAF_ROOT)
    );
    // And the same order in a tree: the earlier event on the left.
    let mut tree = MemoryTree::default();
    tree.push(hash(FIRST_LEAF_HASH));
    tree.push(hash(SECOND_LEAF_HASH));
    assert_eq!(root(&tree, 2).unwrap(), hash(TWO_LEAF_ROOT));
    assert_eq!(root(&tree, 1).unwrap(), hash(FIRST_LEAF_HASH));
    assert_eq!(
        inclusion_proof(&tree, 0, 2).unwrap(),
        vec![hash(SECOND_LEAF_HASH)]
    );
}

#[test]
fn roots_match_the_rfc_6962_reference_roots() {
    let tree = reference_tree();
    for (size, expected) in REFERENCE_ROOTS.iter().enumerate() {
        let size = size as u64;
        // From the whole tree, as the service computes an older checkpoint's root.
        assert_eq!(
            hex::encode(root(&tree, size).unwrap()),
            *expected,
            "size {size}"
        );
        // And from a tree of exactly that size.
        let mut exact = MemoryTree::default();
        for leaf in &REFERENCE_LEAVES[..size as usize] {
            exact.push(leaf_hash(&hex::decode(leaf).unwrap()));
        }
        assert_eq!(
            hex::encode(root(&exact, size).unwrap()),
            *expected,
            "size {size}"
        );
    }
}

#[test]
fn inclusion_proofs_match_the_rfc_6962_reference_proofs() {
    let tree = reference_tree();
    for (size, index, expected) in REFERENCE_INCLUSIONS {
        let expected = hashes(expected);
        assert_eq!(
            inclusion_proof(&tree, index, size).unwrap(),
            expected,
            "leaf {index} of {size}"
        );
        let leaf = leaf_hash(&hex::decode(REFERENCE_LEAVES[index as usize]).unwrap());
        let root = hash(REFERENCE_ROOTS[size as usize]);
        assert!(
            verify_inclusion(&leaf, index, size, &expected, &root),
            "leaf {index} of {size}"
        );
    }
}

#[test]
fn consistency_proofs_match_the_rfc_6962_reference_proofs() {
    let tree = reference_tree();
    for (old, new, expected) in REFERENCE_CONSISTENCIES {
        let expected = hashes(expected);
        assert_eq!(
            consistency_proof(&tree, old, new).unwrap(),
            expected,
            "{old} -> {new}"
        );
        let old_root = hash(REFERENCE_ROOTS[old as usize]);
        let new_root = hash(REFERENCE_ROOTS[new as usize]);
        assert!(
            verify_consistency(old, new, &old_root, &new_root, &expected),
            "{old} -> {new}"
        );
    }
}
