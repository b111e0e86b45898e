//! Verification of every chain in the store, streamed in position order.
//!
//! The store is read once, sequentially (the fastest way Postgres can hand it over), keeping
//! one small verifier per aggregate; the first broken event ends the run. Truncated tails are
//! checked at the end against the versions snapshots and read models have seen.

use std::collections::HashMap;

use futures::StreamExt;

use super::chain::ChainVerifier;
use crate::error::AppError;
use crate::ports::AuditLog;

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

/// Verifies every chain; `progress` is called with the events checked so far every 10,000
/// events.
pub async fn verify_store(
    log: &dyn AuditLog,
    mut progress: impl FnMut(u64),
) -> Result<StoreCheck, AppError> {
    let mut chains: HashMap<(String, String), ChainVerifier> = HashMap::new();
    let mut checked = 0u64;
    let mut events = log.scan();
    while let Some(record) = events.next().await {
        let event = record?.event;
        let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let verifier = chains.entry(key).or_default();
        verifier.push(&event);
        checked += 1;
        if checked.is_multiple_of(10_000) {
            progress(checked);
        }
        if let Some((sequence, reason)) = verifier.broken() {
            let reason = reason.to_owned();
            return Ok(StoreCheck {
                events_checked: checked,
                aggregates_checked: chains.len() as u64,
                first_broken: Some((event.aggregate_type, event.aggregate_id, sequence, reason)),
            });
        }
    }
    progress(checked);
    let aggregates_checked = chains.len() as u64;
    for (aggregate_type, aggregate_id, witnessed) in log.witnessed_versions().await? {
        let key = (aggregate_type, aggregate_id);
        let check = chains.remove(&key).unwrap_or_default().finish(witnessed);
        if let (Some(sequence), Some(reason)) = (check.first_invalid_sequence, check.reason) {
            return Ok(StoreCheck {
                events_checked: checked,
                aggregates_checked,
                first_broken: Some((key.0, key.1, sequence, reason)),
            });
        }
    }
    Ok(StoreCheck {
        events_checked: checked,
        aggregates_checked,
        first_broken: None,
    })
}
