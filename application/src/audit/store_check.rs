//! Verification of every chain in the store, streamed in position order.
//!
//! The store is read once, sequentially (the fastest way Postgres can hand it over), hashing
//! batches in parallel and keeping one small verifier per aggregate; the first broken event
//! ends the run. Truncated tails are checked at the end against the versions snapshots and
//! read models have seen, and the team column against each stream's creation event.

use std::collections::HashMap;

use futures::StreamExt;

use super::chain::ChainVerifier;
use crate::error::AppError;
use crate::hash_chain::event_hash;
use crate::ports::audit_log::AuditLog;
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
pub async fn verify_store(
    log: &dyn AuditLog,
    progress: impl FnMut(u64),
) -> Result<StoreCheck, AppError> {
    // The team-column check is one query the server answers while the chains stream by.
    let (chains, misattributed) =
        futures::join!(verify_chains(log, progress), log.misattributed(None));
    let check = chains?;
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
    mut progress: impl FnMut(u64),
) -> Result<StoreCheck, AppError> {
    let mut hashed = log
        .scan()
        .ready_chunks(BATCH)
        .map(|chunk| {
            tokio::task::spawn_blocking(move || {
                let records = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
                let intact: Vec<bool> = records
                    .iter()
                    .map(|r| event_hash(&r.event) == r.event.hash)
                    .collect();
                Ok::<_, StoreError>((records, intact))
            })
        })
        .buffered(BATCHES_IN_FLIGHT);
    // Per aggregate type, per aggregate id: looked up by `&str`, keys cloned only once each.
    let mut chains: HashMap<String, HashMap<String, ChainVerifier>> = HashMap::new();
    let mut checked = 0u64;
    let mut aggregates = 0u64;
    while let Some(batch) = hashed.next().await {
        let (records, intact) =
            batch.map_err(|e| AppError::internal_from("hashing thread failed", e))??;
        for (record, content_intact) in records.iter().zip(intact) {
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
            verifier.push_hashed(event, content_intact);
            checked += 1;
            if let Some((sequence, reason)) = verifier.broken() {
                return Ok(StoreCheck {
                    events_checked: checked,
                    aggregates_checked: aggregates,
                    first_broken: Some((
                        event.aggregate_type.clone(),
                        event.aggregate_id.clone(),
                        sequence,
                        reason.to_owned(),
                    )),
                });
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
            return Ok(StoreCheck {
                events_checked: checked,
                aggregates_checked: aggregates,
                first_broken: Some((aggregate_type, aggregate_id, sequence, reason)),
            });
        }
    }
    Ok(StoreCheck {
        events_checked: checked,
        aggregates_checked: aggregates,
        first_broken: None,
    })
}
