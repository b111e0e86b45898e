//! Signed checkpoints and proofs in GraphQL (auditors and admins): `auditCheckpoint`,
//! `auditCheckpoints`, `auditProof` and `auditConsistencyProof`. Hashes and signatures are lowercase hex; how a
//! client checks them is docs/audit.md.

use async_graphql::{Context, Object, SimpleObject, ID};
use chronicle_application::audit::checkpoints::{ConsistencyProof, InclusionProof};
use chronicle_application::audit::merkle::Hash;
use chronicle_application::audit::signing::Checkpoint;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::context::ContextExt;
use super::error::to_graphql;
use super::pagination::{connection, decode_cursor, PageInfo};

/// A signed statement: the first `treeSize` events of the store have this root.
#[derive(SimpleObject)]
pub(crate) struct AuditCheckpoint {
    /// Events in the tree.
    pub tree_size: i64,
    /// The Merkle root (RFC 9162), hex.
    pub root_hash: String,
    /// When it was signed.
    pub issued_at: DateTime<Utc>,
    /// The signing key's id (first 16 hex digits of SHA-256 of the raw public key).
    pub key_id: String,
    /// Ed25519 over `signedText`, hex.
    pub signature: String,
    /// Exactly the text the signature covers.
    pub signed_text: String,
}

impl From<Checkpoint> for AuditCheckpoint {
    fn from(checkpoint: Checkpoint) -> Self {
        Self {
            tree_size: checkpoint.tree_size as i64,
            root_hash: hex::encode(checkpoint.root),
            signed_text: Checkpoint::signed_text(
                checkpoint.tree_size,
                &checkpoint.root,
                &checkpoint.issued_at,
            ),
            issued_at: checkpoint.issued_at,
            key_id: checkpoint.key_id,
            signature: hex::encode(&checkpoint.signature),
        }
    }
}

fn hexes(path: &[Hash]) -> Vec<String> {
    path.iter().map(hex::encode).collect()
}

/// The proof that one event is in the log a checkpoint signed.
#[derive(SimpleObject)]
pub(crate) struct AuditInclusionProof {
    /// The event.
    pub event_id: ID,
    /// Its leaf index in the tree (0-based, store order).
    pub leaf_index: i64,
    /// Its leaf hash: SHA-256(0x00 || leaf data), hex.
    pub leaf_hash: String,
    /// Sibling hashes from the leaf up (RFC 9162's inclusion proof), hex.
    pub path: Vec<String>,
    /// The checkpoint it proves against.
    pub checkpoint: AuditCheckpoint,
}

/// The proof that a signed checkpoint extends the log's first `fromSize` events.
#[derive(SimpleObject)]
pub(crate) struct AuditConsistencyProof {
    /// The earlier tree's size.
    pub from_size: i64,
    /// The earlier tree's Merkle root, hex: compare it with the root you kept.
    pub from_root_hash: String,
    /// The checkpoint at `fromSize`, when one was signed (null otherwise: the proof alone
    /// binds `fromRootHash` to the signed `to`).
    pub from: Option<AuditCheckpoint>,
    /// The later, signed checkpoint.
    pub to: AuditCheckpoint,
    /// RFC 9162's consistency proof, hex.
    pub path: Vec<String>,
}

/// An edge of the checkpoint list.
#[derive(SimpleObject)]
pub(crate) struct AuditCheckpointEdge {
    /// Opaque cursor: pass it as `after` to continue after this checkpoint.
    pub cursor: String,
    /// The checkpoint.
    pub node: AuditCheckpoint,
}

/// A page of signed checkpoints, newest first.
#[derive(SimpleObject)]
pub(crate) struct AuditCheckpointConnection {
    /// The checkpoints with their cursors.
    pub edges: Vec<AuditCheckpointEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

/// Cursors of the checkpoint list name a tree size.
const CHECKPOINT_CURSOR: &str = "checkpoint";

/// Checkpoint and proof queries.
#[derive(Default)]
pub(crate) struct AuditProofQuery;

#[Object]
impl AuditProofQuery {
    /// The latest signed checkpoint, or the one at `treeSize` (auditor or admin).
    async fn audit_checkpoint(
        &self,
        ctx: &Context<'_>,
        tree_size: Option<i64>,
    ) -> async_graphql::Result<AuditCheckpoint> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let size = tree_size.map(non_negative("treeSize")).transpose()?;
            ctx.services()
                .audit_proofs
                .checkpoint(principal, size)
                .await
        };
        run.await
            .map(AuditCheckpoint::from)
            .map_err(|e| to_graphql(e, request))
    }

    /// Signed checkpoints, newest first, paged by cursor (`first` at most 100): the sizes a
    /// consistency proof can end at (auditor or admin).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn audit_checkpoints(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditCheckpointConnection> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let after = after
                .as_deref()
                .map(|c| decode_cursor::<u64>(CHECKPOINT_CURSOR, c))
                .transpose()?;
            let page = ctx
                .services()
                .audit_proofs
                .checkpoints(principal, first.map(i64::from), after)
                .await?;
            Ok::<_, AppError>((page, after.is_some()))
        };
        let (page, paged) = run.await.map_err(|e| to_graphql(e, request))?;
        let (edges, page_info) = connection(
            page,
            CHECKPOINT_CURSOR,
            paged,
            |c| c.tree_size,
            AuditCheckpoint::from,
        );
        let edges = edges
            .into_iter()
            .map(|(cursor, node)| AuditCheckpointEdge { cursor, node })
            .collect();
        Ok(AuditCheckpointConnection { edges, page_info })
    }

    /// The inclusion proof of one event against the latest checkpoint, or the one at
    /// `treeSize` (auditor or admin; another team's event is not found). Hashes only: no
    /// event's content is part of a proof.
    async fn audit_proof(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        tree_size: Option<i64>,
    ) -> async_graphql::Result<AuditInclusionProof> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let id = event_id
                .parse::<Uuid>()
                .map_err(|_| AppError::validation("eventId", "is not a UUID"))?;
            let size = tree_size.map(non_negative("treeSize")).transpose()?;
            let proof: InclusionProof = ctx
                .services()
                .audit_proofs
                .inclusion(principal, id, size)
                .await?;
            Ok(AuditInclusionProof {
                event_id: ID(id.to_string()),
                leaf_index: proof.leaf_index as i64,
                leaf_hash: hex::encode(proof.leaf_hash),
                path: hexes(&proof.path),
                checkpoint: proof.checkpoint.into(),
            })
        };
        run.await.map_err(|e| to_graphql(e, request))
    }

    /// The consistency proof from the log's first `fromSize` events (any size from 1, signed
    /// or not) to the checkpoint at `toSize`, which must be signed (auditor or admin): the
    /// later log extends the earlier one, nothing in it was rewritten.
    async fn audit_consistency_proof(
        &self,
        ctx: &Context<'_>,
        from_size: i64,
        to_size: i64,
    ) -> async_graphql::Result<AuditConsistencyProof> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let from = non_negative("fromSize")(from_size)?;
            let to = non_negative("toSize")(to_size)?;
            let proof: ConsistencyProof = ctx
                .services()
                .audit_proofs
                .consistency(principal, from, to)
                .await?;
            Ok(AuditConsistencyProof {
                from_size: proof.from.tree_size as i64,
                from_root_hash: hex::encode(proof.from.root),
                from: proof.from.checkpoint.map(AuditCheckpoint::from),
                to: proof.to.into(),
                path: hexes(&proof.path),
            })
        };
        run.await.map_err(|e| to_graphql(e, request))
    }
}

fn non_negative(field: &'static str) -> impl Fn(i64) -> Result<u64, AppError> {
    move |value| {
        u64::try_from(value).map_err(|_| AppError::validation(field, "must not be negative"))
    }
}
