//! Fixed vectors of the checkpoint: the signed text, the signature, the key id and the JSON form,
//! written out and pinned. The key is RFC 8032's first Ed25519 test key, and every expected value
//! was computed outside Chronicle (OpenSSL through Python's `cryptography`, and hashlib), so a
//! verifier written from the documented format alone reproduces each of them.
//!
//! The root is the two-event tree of `merkle`'s vectors, whose leaves are the events of
//! `data::hash_chain`'s: event, leaf, root and checkpoint form one chain of pinned values.

use chrono::DateTime;

use super::*;

/// RFC 8032, section 7.1, TEST 1: the secret key, as PKCS#8 v1 PEM (what OpenSSL writes).
const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";

/// Its public key `d75a9801…511a`, as SPKI PEM.
const PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
-----END PUBLIC KEY-----
";

/// The first 16 hex digits of SHA-256 of the 32 public-key bytes.
const KEY_ID: &str = "21fe31dfa154a261";

/// RFC 8032 TEST 1's signature of the empty message.
const RFC_8032_EMPTY_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

/// The root of `merkle`'s two-leaf vector tree.
const ROOT: &str = "d6695f6294123287bcdfecab0883b5e76ca7b54b8741081aadb6efa052f7d706";

/// The text a checkpoint of that tree, issued at 07:08:09.010, signs.
const SIGNED_TEXT: &str = "chronicle-audit-checkpoint-v1
2
d6695f6294123287bcdfecab0883b5e76ca7b54b8741081aadb6efa052f7d706
2024-05-06T07:08:09.010Z
";

/// Ed25519 of [`SIGNED_TEXT`] under the RFC 8032 key (deterministic, so pinned).
const SIGNATURE: &str = "029c8ec2f74af235d7c3755cc9a4bd90e218e0a15834df42b84cb5f67da04454e916b9c4a7498fe1433875bd915b78598ef090b9c28d0c902f46faffb297f00d";

/// The checkpoint as published to Kafka and exported (serde_json sorts the keys).
const CHECKPOINT_JSON: &str = r#"{"issuedAt":"2024-05-06T07:08:09.010Z","keyId":"21fe31dfa154a261","rootHash":"d6695f6294123287bcdfecab0883b5e76ca7b54b8741081aadb6efa052f7d706","signature":"029c8ec2f74af235d7c3755cc9a4bd90e218e0a15834df42b84cb5f67da04454e916b9c4a7498fe1433875bd915b78598ef090b9c28d0c902f46faffb297f00d","treeSize":2}"#;

fn root() -> Hash {
    hex::decode(ROOT).unwrap().try_into().unwrap()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn the_key_is_rfc_8032s_first_test_key_in_openssls_formats() {
    let signer = CheckpointSigner::from_pem(PRIVATE_PEM).unwrap();
    assert_eq!(signer.to_pem().unwrap(), PRIVATE_PEM);
    let public = signer.public_key();
    assert_eq!(public.to_pem().unwrap(), PUBLIC_PEM);
    assert_eq!(PublicKey::from_pem(PUBLIC_PEM).unwrap(), public);
    assert_eq!(public.id(), KEY_ID);
    // The signing primitive reproduces the RFC's own vector.
    let (key_id, signature) = signer.sign_statement("");
    assert_eq!(key_id, KEY_ID);
    assert_eq!(hex::encode(signature), RFC_8032_EMPTY_SIGNATURE);
}

#[test]
fn the_signed_text_is_the_pinned_text() {
    assert_eq!(
        Checkpoint::signed_text(2, &root(), &at("2024-05-06T07:08:09.010Z")),
        SIGNED_TEXT
    );
    // Whole seconds keep their three digits; sizes are plain decimal at any width.
    assert_eq!(
        Checkpoint::signed_text(u64::MAX, &[0; 32], &at("1999-12-31T23:59:59Z")),
        "chronicle-audit-checkpoint-v1\n18446744073709551615\n\
         0000000000000000000000000000000000000000000000000000000000000000\n\
         1999-12-31T23:59:59.000Z\n"
    );
}

#[test]
fn a_checkpoint_signs_to_its_pinned_vector() {
    let signer = CheckpointSigner::from_pem(PRIVATE_PEM).unwrap();
    // Microseconds in the clock are cut to the milliseconds the text carries.
    let checkpoint = signer.sign(2, root(), at("2024-05-06T07:08:09.010999Z"));
    assert_eq!(
        checkpoint,
        Checkpoint {
            tree_size: 2,
            root: root(),
            issued_at: at("2024-05-06T07:08:09.010Z"),
            key_id: KEY_ID.to_owned(),
            signature: hex::decode(SIGNATURE).unwrap(),
        }
    );
    assert_eq!(checkpoint.to_json().to_string(), CHECKPOINT_JSON);
}

#[test]
fn the_pinned_checkpoint_verifies_under_the_pinned_key_only() {
    let published: serde_json::Value = serde_json::from_str(CHECKPOINT_JSON).unwrap();
    let checkpoint = Checkpoint::from_json(&published).unwrap();
    let key = PublicKey::from_pem(PUBLIC_PEM).unwrap();
    assert!(checkpoint.verify(&key));
    let mut later = checkpoint.clone();
    later.issued_at = at("2024-05-06T07:08:09.011Z");
    assert!(!later.verify(&key));
    assert!(!checkpoint.verify(&CheckpointSigner::generate().public_key()));
}
