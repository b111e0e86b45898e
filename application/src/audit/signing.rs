//! Signed checkpoints: a tree size and root hash, signed with Ed25519 under a key the database
//! never holds, so whoever can write the database cannot sign a rewritten history.
//!
//! The signature covers the UTF-8 text [`Checkpoint::signed_text`], one field per line:
//!
//! ```text
//! chronicle-audit-checkpoint-v1
//! <tree size, decimal>
//! <root hash, 64 lowercase hex digits>
//! <issued at, RFC 3339 UTC with milliseconds>
//! ```
//!
//! Keys are PKCS#8 PEM (what `openssl genpkey -algorithm ed25519` writes); public keys are
//! SPKI PEM (`openssl pkey -pubout`). A key's id is the first 16 hex digits of the SHA-256 of
//! its 32 raw public-key bytes.

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

pub use crate::data::checkpoint::Checkpoint;

impl Checkpoint {
    /// Whether the signature is `key`'s over this checkpoint.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Ok(signature) = Signature::from_slice(&self.signature) else {
            return false;
        };
        let text = Self::signed_text(self.tree_size, &self.root, &self.issued_at);
        self.key_id == key.id() && key.0.verify(text.as_bytes(), &signature).is_ok()
    }
}

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not an Ed25519 key in PEM ({0})")]
pub struct KeyError(String);

/// The checkpoint signer: an Ed25519 private key.
pub struct CheckpointSigner {
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.public_key().id())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer of a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| KeyError(e.to_string()))
    }

    /// A new random key (`chronicle audit keygen`).
    pub fn generate() -> Self {
        use rand_core::RngCore;
        // The seed is the private key: 32 bytes from the operating system, wiped after use.
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand_core::OsRng.fill_bytes(seed.as_mut());
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The private key as PKCS#8 PEM, for the key file: version 1 (RFC 5208, the private key
    /// alone), as `openssl genpkey` writes it; OpenSSL 3.0 does not read version 2 keys.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| KeyError(e.to_string()))
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs the statement that the first `tree_size` events have root `root`, now.
    pub fn sign(&self, tree_size: u64, root: Hash, now: DateTime<Utc>) -> Checkpoint {
        // Milliseconds: the precision every party stores and prints alike.
        let issued_at = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        let text = Checkpoint::signed_text(tree_size, &root, &issued_at);
        Checkpoint {
            tree_size,
            root,
            issued_at,
            key_id: self.public_key().id(),
            signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        }
    }
}

impl CheckpointSigner {
    /// Signs another statement of the audit log (an erasure's, [`super::erasure_check`]): the
    /// text's first line names its format, so no statement reads as another.
    pub(crate) fn sign_statement(&self, text: &str) -> (String, Vec<u8>) {
        (
            self.public_key().id(),
            self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        )
    }

    /// Signs a C2SP signed note's text ([`super::signed_note`]): its first line is a log's
    /// origin, which that module keeps from being one of the format names above, so a note
    /// never reads as a checkpoint or an erasure either.
    pub(crate) fn sign_note_text(&self, text: &str) -> [u8; 64] {
        self.key.sign(text.as_bytes()).to_bytes()
    }
}

/// An Ed25519 public key, which verifies checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// From SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_public_key_pem(pem)
            .map(Self)
            .map_err(|e| KeyError(e.to_string()))
    }

    /// As SPKI PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError(e.to_string()))
    }

    /// From the 32 raw bytes of RFC 8032 (what a C2SP verifier key carries after its
    /// algorithm byte).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| KeyError(e.to_string()))
    }

    /// The 32 raw bytes of RFC 8032.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Whether `signature` is this key's over `text` ([`CheckpointSigner::sign_statement`]).
    pub(crate) fn verifies_statement(&self, text: &str, key_id: &str, signature: &[u8]) -> bool {
        key_id == self.id() && self.verifies(text, signature)
    }

    /// Whether `signature` is this key's over `text`, whatever key id goes with it (a signed
    /// note names its keys its own way: [`super::signed_note`]).
    pub(crate) fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify(text.as_bytes(), &signature).is_ok()
    }

    /// The key's id: the first 16 hex digits of SHA-256 of its raw bytes.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_under_its_key_only_and_not_once_changed() {
        let signer = CheckpointSigner::generate();
        let checkpoint = signer.sign(42, [7; 32], Utc::now());
        let key = signer.public_key();
        assert!(checkpoint.verify(&key));
        assert!(!checkpoint.verify(&CheckpointSigner::generate().public_key()));
        let mut bigger = checkpoint.clone();
        bigger.tree_size = 43;
        assert!(!bigger.verify(&key));
        assert_eq!(
            Checkpoint::from_json(&checkpoint.to_json()),
            Some(checkpoint.clone())
        );
        let mut rerooted = checkpoint.clone();
        rerooted.root[0] ^= 1;
        assert!(!rerooted.verify(&key));
    }

    #[test]
    fn keys_round_trip_through_pem_as_openssl_writes_them() {
        let signer = CheckpointSigner::generate();
        let pem = signer.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = CheckpointSigner::from_pem(&pem).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        let public = signer.public_key().to_pem().unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(PublicKey::from_pem(&public).unwrap(), signer.public_key());
        assert!(CheckpointSigner::from_pem("not a key").is_err());
    }
}

#[cfg(test)]
mod vectors;
