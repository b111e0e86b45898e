//! Verification of the hash chain: each event's stored hash must equal the hash of its content
//! and its predecessor's hash, and sequences must run 1, 2, 3… without gaps.
//!
//! What each kind of tampering looks like here:
//! - an edited payload, metadata, type or time: the recomputed hash differs (`edited`);
//! - a removed event: the sequence skips, or the next event's link names a hash that is gone;
//! - swapped events: the hash covers the sequence, so both recomputations differ;
//! - removed last events: the chain itself stays intact, so the verifier also takes the
//!   highest version something else has witnessed (a snapshot, a read-model row) and reports
//!   the missing tail.

#[cfg(test)]
use super::erasure_check::EDITED;
use super::erasure_check::{Content, ErasureRef};
use crate::data::event_log::StoredEvent;
#[cfg(test)]
use crate::data::hash_chain::event_hash;
use crate::data::hash_chain::GENESIS_HASH;

/// The verdict on one aggregate's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCheck {
    /// Whether the chain is intact.
    pub valid: bool,
    /// Events examined (up to and including the first broken one).
    pub events_checked: u64,
    /// The first sequence that fails.
    pub first_invalid_sequence: Option<u64>,
    /// Why it fails.
    pub reason: Option<String>,
    /// Events whose values stored in clear an erasure replaced by markers: (sequence, the
    /// erasures, oldest first).
    pub erased: Vec<(u64, Vec<ErasureRef>)>,
}

/// Checks one aggregate's events, fed in sequence order, one at a time (so a whole store can
/// stream through without being held in memory).
#[derive(Debug, Clone)]
pub(crate) struct ChainVerifier {
    last_sequence: u64,
    last_hash: String,
    checked: u64,
    broken: Option<(u64, String)>,
    erased: Vec<(u64, Vec<ErasureRef>)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            last_sequence: 0,
            last_hash: GENESIS_HASH.to_owned(),
            checked: 0,
            broken: None,
            erased: Vec::new(),
        }
    }
}

impl ChainVerifier {
    /// Checks the next event; after the first failure the rest are ignored.
    #[cfg(test)]
    pub fn push(&mut self, event: &StoredEvent) {
        self.push_hashed(event, event_hash(event) == event.hash);
    }

    /// Like [`ChainVerifier::push`], with the hash comparison already made (`content_intact`),
    /// so the costly part can run in parallel over many events while the links, which need
    /// the order, are checked here.
    #[cfg(test)]
    pub(crate) fn push_hashed(&mut self, event: &StoredEvent, content_intact: bool) {
        let content = match content_intact {
            true => Content::Intact,
            false => Content::Edited(EDITED.to_owned()),
        };
        self.push_judged(event, content);
    }

    /// Like [`ChainVerifier::push`], with the content already judged against its hash and the
    /// erasure ledger ([`super::erasure_check::ErasureEvidence::judge`]): an event changed
    /// only by signed erasures is accepted, and listed.
    pub(crate) fn push_judged(&mut self, event: &StoredEvent, content: Content) {
        if self.broken.is_some() {
            return;
        }
        self.checked += 1;
        let expected = self.last_sequence + 1;
        if event.sequence != expected {
            let reason = if event.sequence > expected {
                format!(
                    "event {expected} is missing: the stream goes from {} to {}",
                    self.last_sequence, event.sequence
                )
            } else {
                format!(
                    "sequence {} appears after {}: events are duplicated or reordered",
                    event.sequence, self.last_sequence
                )
            };
            self.broken = Some((expected.min(event.sequence), reason));
            return;
        }
        match content {
            Content::Intact => {}
            Content::Erased(by) => self.erased.push((event.sequence, by)),
            Content::Edited(reason) => {
                self.broken = Some((event.sequence, reason));
                return;
            }
        }
        if event.previous_hash != self.last_hash {
            self.broken = Some((
                event.sequence,
                format!(
                    "it links to a predecessor that is not event {}: an event was replaced, removed or reordered",
                    self.last_sequence
                ),
            ));
            return;
        }
        self.last_sequence = event.sequence;
        self.last_hash = event.hash.clone();
    }

    /// The first failure so far: (sequence, reason).
    pub fn broken(&self) -> Option<(u64, &str)> {
        self.broken
            .as_ref()
            .map(|(sequence, reason)| (*sequence, reason.as_str()))
    }

    /// The verdict, given the highest version anything else has seen of this aggregate.
    pub fn finish(self, witnessed_version: u64) -> ChainCheck {
        let (first_invalid_sequence, reason) = match self.broken {
            Some((sequence, reason)) => (Some(sequence), Some(reason)),
            None if witnessed_version > self.last_sequence => (
                Some(self.last_sequence + 1),
                Some(format!(
                    "events {} to {witnessed_version} are missing: a snapshot or read model has seen version {witnessed_version}",
                    self.last_sequence + 1
                )),
            ),
            None => (None, None),
        };
        ChainCheck {
            valid: first_invalid_sequence.is_none(),
            events_checked: self.checked,
            first_invalid_sequence,
            reason,
            erased: self.erased,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    fn chain(length: u64) -> Vec<StoredEvent> {
        let mut previous = GENESIS_HASH.to_owned();
        (1..=length)
            .map(|sequence| {
                let mut event = StoredEvent {
                    event_id: Uuid::from_u128(sequence as u128),
                    aggregate_type: "Task".into(),
                    aggregate_id: "t-1".into(),
                    sequence,
                    event_type: "TaskUpdated".into(),
                    event_version: "1.0".into(),
                    payload: json!({"TaskUpdated": {"title": format!("v{sequence}")}}),
                    metadata: json!({"actor_id": "u-1"}),
                    recorded_at: Utc
                        .timestamp_micros(1_700_000_000_000_000 + sequence as i64)
                        .unwrap(),
                    hash: String::new(),
                    previous_hash: previous.clone(),
                };
                event.hash = event_hash(&event);
                previous = event.hash.clone();
                event
            })
            .collect()
    }

    fn verify(events: &[StoredEvent], witnessed: u64) -> ChainCheck {
        let mut verifier = ChainVerifier::default();
        for event in events {
            verifier.push(event);
        }
        verifier.finish(witnessed)
    }

    #[test]
    fn an_untouched_chain_is_valid() {
        let check = verify(&chain(4), 4);
        assert!(check.valid);
        assert_eq!(check.events_checked, 4);
        assert_eq!(check.first_invalid_sequence, None);
    }

    #[test]
    fn an_edited_payload_or_metadata_names_its_sequence() {
        let mut events = chain(4);
        events[2].payload = json!({"TaskUpdated": {"title": "forged"}});
        assert_eq!(verify(&events, 4).first_invalid_sequence, Some(3));
        let mut events = chain(4);
        events[1].metadata = json!({"actor_id": "u-2"});
        let check = verify(&events, 4);
        assert_eq!(check.first_invalid_sequence, Some(2));
        assert!(check.reason.unwrap().contains("edited"));
    }

    #[test]
    fn a_removed_event_names_the_missing_sequence() {
        let mut events = chain(4);
        events.remove(1);
        let check = verify(&events, 4);
        assert_eq!(check.first_invalid_sequence, Some(2));
        assert!(check.reason.unwrap().contains("missing"));
    }

    #[test]
    fn a_removed_and_renumbered_event_breaks_the_link() {
        let mut events = chain(4);
        events.remove(1);
        for event in &mut events[1..] {
            event.sequence -= 1;
        }
        // Renumbering changes the content under the hash.
        assert_eq!(verify(&events, 0).first_invalid_sequence, Some(2));
    }

    #[test]
    fn swapped_events_are_detected_at_the_first_of_them() {
        let mut events = chain(4);
        let (a, b) = (events[1].sequence, events[2].sequence);
        events.swap(1, 2);
        events[1].sequence = a;
        events[2].sequence = b;
        assert_eq!(verify(&events, 4).first_invalid_sequence, Some(2));
    }

    #[test]
    fn a_removed_tail_is_caught_by_what_was_witnessed() {
        let events = chain(3);
        let check = verify(&events, 5);
        assert!(!check.valid);
        assert_eq!(check.first_invalid_sequence, Some(4));
        assert!(verify(&events, 3).valid);
    }

    #[test]
    fn a_rehashed_forgery_still_breaks_the_successors_link() {
        let mut events = chain(3);
        events[0].payload = json!({"TaskUpdated": {"title": "forged"}});
        events[0].hash = event_hash(&events[0]);
        let check = verify(&events, 3);
        assert_eq!(check.first_invalid_sequence, Some(2));
    }
}
