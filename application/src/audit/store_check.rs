//! Verification of every chain in the store, streamed in position order.
//!
//! The store is read once, sequentially (the fastest way Postgres can hand it over), hashing
//! batches in parallel and keeping one small verifier per aggregate; the first broken event
//! ends the run. Truncated tails are checked at the end against the versions snapshots and
//! read models have seen, and the team column against each stream's creation event.

use std::collections::HashMap;

use futures::StreamExt;

use super::chain::ChainVerifier;
use super::erasure_check::{Content, ErasureEvidence, Signatures};
use super::signing::PublicKey;
use crate::aggregates;
use crate::data::hash_chain::event_hash;
use crate::error::AppError;
use crate::ports::audit_log::{AuditLog, AuditRecord};
use crate::ports::store_error::StoreError;

/// The verdict on the whole store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCheck {
    /// Events examined.
    pub events_checked: u64,
    /// Aggregates examined.
    pub aggregates_checked: u64,
    /// The first broken chain: (aggregate type, id, sequence, reason).
    pub first_broken: Option<(String, String, u64, String)>,
    /// Events whose values stored in clear a signed erasure replaced by markers.
    pub erased_events: u64,
    /// Erasures that replaced values stored in clear.
    pub erasures: usize,
    /// Whether the erasures' signatures were checked.
    pub signatures: Signatures,
    /// Pseudonyms whose values read as erased although no erasure event records it: their
    /// key was destroyed outside an erasure (a finding, like a broken chain).
    pub keys_destroyed_unrecorded: Vec<String>,
}

impl StoreCheck {
    /// Whether nothing was found.
    pub fn intact(&self) -> bool {
        self.first_broken.is_none() && self.keys_destroyed_unrecorded.is_empty()
    }
}

/// The erasure ledger and the erasure events it needs, read once: `of_stream` narrows it to
/// the erasures that changed one stream. Signatures are checked under `key` when given.
pub(crate) async fn erasure_evidence(
    log: &dyn AuditLog,
    of_stream: Option<(&str, &str)>,
    key: Option<&PublicKey>,
) -> Result<ErasureEvidence, AppError> {
    let ledger = log.erasure_ledger(of_stream).await?;
    let mut pseudonyms: Vec<&str> = ledger.iter().map(|row| row.pseudonym.as_str()).collect();
    pseudonyms.sort_unstable();
    pseudonyms.dedup();
    let mut erasure_events: Vec<AuditRecord> = Vec::new();
    for pseudonym in pseudonyms {
        // The subject's stream is named by the pseudonym as a UUID; a malformed pseudonym has
        // no stream, and its rows are not accepted.
        if let Ok(stream) = uuid::Uuid::parse_str(pseudonym) {
            let of_subject = log
                .stream(aggregates::DATA_SUBJECT.type_name, &stream.to_string())
                .await?;
            erasure_events.extend(of_subject);
        }
    }
    Ok(ErasureEvidence::new(ledger, &erasure_events, key))
}

/// Events hashed together on a blocking thread.
const BATCH: usize = 4_096;
/// Batches being hashed at once (the cores, plus one arriving from the database).
const BATCHES_IN_FLIGHT: usize = 3;

/// Verifies every chain; `progress` is called with the events checked so far after each batch.
///
/// Recomputing hashes is the costly part and needs no order, so batches are hashed on blocking
/// threads in parallel (in order of arrival); the links between events are then checked in
/// position order, one small verifier per aggregate.
/// Erasures' signatures are checked under `key` when given.
pub async fn verify_store(
    log: &dyn AuditLog,
    key: Option<&PublicKey>,
    progress: impl FnMut(u64),
) -> Result<StoreCheck, AppError> {
    let evidence = erasure_evidence(log, None, key).await?;
    // The team-column and key checks are queries the server answers while the chains
    // stream by.
    let (chains, misattributed, unrecorded) = futures::join!(
        verify_chains(log, &evidence, progress),
        log.misattributed(None),
        log.keys_destroyed_unrecorded()
    );
    let check = StoreCheck {
        keys_destroyed_unrecorded: unrecorded?,
        ..chains?
    };
    if check.first_broken.is_some() {
        return Ok(check);
    }
    let first_broken = misattributed?.map(|wrong| {
        let reason = wrong.reason();
        (
            wrong.aggregate_type,
            wrong.aggregate_id,
            wrong.sequence,
            reason,
        )
    });
    Ok(StoreCheck {
        first_broken,
        ..check
    })
}

/// Every chain's hashes and links, and truncated tails.
async fn verify_chains(
    log: &dyn AuditLog,
    evidence: &ErasureEvidence,
    mut progress: impl FnMut(u64),
) -> Result<StoreCheck, AppError> {
    let mut hashed = log
        .scan()
        .ready_chunks(BATCH)
        .map(|chunk| {
            tokio::task::spawn_blocking(move || {
                let records = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
                let hashes: Vec<String> = records.iter().map(|r| event_hash(&r.event)).collect();
                Ok::<_, StoreError>((records, hashes))
            })
        })
        .buffered(BATCHES_IN_FLIGHT);
    // Per aggregate type, per aggregate id: looked up by `&str`, keys cloned only once each.
    let mut chains: HashMap<String, HashMap<String, ChainVerifier>> = HashMap::new();
    let mut checked = 0u64;
    let mut aggregates = 0u64;
    let mut erased_events = 0u64;
    let verdict = |checked, aggregates, erased_events, first_broken| StoreCheck {
        events_checked: checked,
        aggregates_checked: aggregates,
        first_broken,
        erased_events,
        erasures: evidence.erasures(),
        signatures: evidence.signatures().clone(),
        keys_destroyed_unrecorded: Vec::new(),
    };
    while let Some(batch) = hashed.next().await {
        let (records, hashes) =
            batch.map_err(|e| AppError::internal_from("hashing thread failed", e))??;
        for (record, content_hash) in records.iter().zip(hashes) {
            let event = &record.event;
            let of_type = match chains.get_mut(&event.aggregate_type) {
                Some(of_type) => of_type,
                None => chains.entry(event.aggregate_type.clone()).or_default(),
            };
            let verifier = match of_type.get_mut(&event.aggregate_id) {
                Some(verifier) => verifier,
                None => {
                    aggregates += 1;
                    of_type.entry(event.aggregate_id.clone()).or_default()
                }
            };
            let content =
                evidence.judge(event.event_id, &event.hash, record.position, &content_hash);
            if matches!(content, Content::Erased(_)) {
                erased_events += 1;
            }
            verifier.push_judged(event, content);
            checked += 1;
            if let Some((sequence, reason)) = verifier.broken() {
                return Ok(verdict(
                    checked,
                    aggregates,
                    erased_events,
                    Some((
                        event.aggregate_type.clone(),
                        event.aggregate_id.clone(),
                        sequence,
                        reason.to_owned(),
                    )),
                ));
            }
        }
        progress(checked);
    }
    for (aggregate_type, aggregate_id, witnessed) in log.witnessed_versions().await? {
        let verifier = chains
            .get_mut(&aggregate_type)
            .and_then(|of_type| of_type.remove(&aggregate_id))
            .unwrap_or_default();
        let check = verifier.finish(witnessed);
        if let (Some(sequence), Some(reason)) = (check.first_invalid_sequence, check.reason) {
            return Ok(verdict(
                checked,
                aggregates,
                erased_events,
                Some((aggregate_type, aggregate_id, sequence, reason)),
            ));
        }
    }
    Ok(verdict(checked, aggregates, erased_events, None))
}
