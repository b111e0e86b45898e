//! A signed checkpoint of the audit tree, as data: what it states, the text its signature
//! covers, and its JSON form. Signing and verifying are `audit::signing`'s.

use chrono::{DateTime, SecondsFormat, Utc};

/// A SHA-256 digest: a leaf, a node or a root of the audit tree.
pub type Hash = [u8; 32];

/// Names the format of the signed text.
pub(crate) const CHECKPOINT_FORMAT: &str = "chronicle-audit-checkpoint-v1";

/// A signed statement of the log: its first `tree_size` events have root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Events in the tree.
    pub tree_size: u64,
    /// The tree's root hash.
    pub root: Hash,
    /// When it was signed (milliseconds).
    pub issued_at: DateTime<Utc>,
    /// The signing key's id.
    pub key_id: String,
    /// Ed25519 over [`Checkpoint::signed_text`].
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The text the signature covers.
    pub fn signed_text(tree_size: u64, root: &Hash, issued_at: &DateTime<Utc>) -> String {
        format!(
            "{CHECKPOINT_FORMAT}\n{tree_size}\n{}\n{}\n",
            hex::encode(root),
            issued_at.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }

    /// The checkpoint as JSON, as published to Kafka, exported and shown over GraphQL:
    /// `{"treeSize", "rootHash" (hex), "issuedAt", "keyId", "signature" (hex)}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "treeSize": self.tree_size,
            "rootHash": hex::encode(self.root),
            "issuedAt": self.issued_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "keyId": self.key_id,
            "signature": hex::encode(&self.signature),
        })
    }

    /// Reads [`Checkpoint::to_json`]'s shape back; `None` when a field is missing or malformed.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let root: Hash = hex::decode(value["rootHash"].as_str()?)
            .ok()?
            .try_into()
            .ok()?;
        Some(Self {
            tree_size: value["treeSize"].as_u64()?,
            root,
            issued_at: DateTime::parse_from_rfc3339(value["issuedAt"].as_str()?)
                .ok()?
                .with_timezone(&Utc),
            key_id: value["keyId"].as_str()?.to_owned(),
            signature: hex::decode(value["signature"].as_str()?).ok()?,
        })
    }
}
