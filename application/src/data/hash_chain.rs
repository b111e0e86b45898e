//! The tamper-evidence chain: each event's hash covers its own content and its predecessor's
//! hash in the same aggregate, so editing, removing or reordering an event breaks the chain.

use chrono::SecondsFormat;
use sha2::{Digest, Sha256};

use crate::data::event_log::StoredEvent;

/// The `previous_hash` of an aggregate's first event.
pub const GENESIS_HASH: &str = "";

/// SHA-256 (hex) over the canonical encoding of `event`, including its `previous_hash` link.
///
/// The encoding is a JSON array serialized by serde_json, whose maps keep keys sorted: a
/// payload read back from `jsonb` (which reorders keys) encodes to the same bytes. The recorded
/// time is encoded at microseconds, the precision Postgres stores.
pub fn event_hash(event: &StoredEvent) -> String {
    let mut hasher = HashWriter(Sha256::new());
    // A tuple serializes as the JSON array of its fields, byte for byte what `json!([...])`
    // would produce, without cloning the payload and metadata trees into a new value.
    let canonical = (
        "chronicle-event-v1",
        event.event_id.to_string(),
        &event.aggregate_type,
        &event.aggregate_id,
        event.sequence,
        &event.event_type,
        &event.event_version,
        &event.payload,
        &event.metadata,
        event
            .recorded_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        &event.previous_hash,
    );
    // Writing JSON of in-memory values into a hasher cannot fail.
    if serde_json::to_writer(&mut hasher, &canonical).is_err() {
        unreachable!("serializing JSON values into a hasher does not fail");
    }
    hex::encode(hasher.0.finalize())
}

/// Feeds serialized bytes straight into the digest (no intermediate string).
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::{json, Value};
    use uuid::Uuid;

    fn event() -> StoredEvent {
        StoredEvent {
            event_id: Uuid::from_u128(7),
            aggregate_type: "Task".into(),
            aggregate_id: "a".into(),
            sequence: 1,
            event_type: "TaskStarted".into(),
            event_version: "1.0".into(),
            payload: json!({"TaskStarted": {}}),
            metadata: json!({"b": "2", "a": "1"}),
            recorded_at: Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            hash: String::new(),
            previous_hash: GENESIS_HASH.into(),
        }
    }

    /// The encoding of version 1 as first written (a `json!` array turned into a string): the
    /// streaming encoder must produce the same bytes, or stored chains would stop verifying.
    fn reference_hash(event: &StoredEvent) -> String {
        let canonical: Value = json!([
            "chronicle-event-v1",
            event.event_id.to_string(),
            event.aggregate_type,
            event.aggregate_id,
            event.sequence,
            event.event_type,
            event.event_version,
            event.payload,
            event.metadata,
            event
                .recorded_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            event.previous_hash,
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }

    #[test]
    fn the_streaming_encoding_equals_the_reference_encoding() {
        let mut rich = event();
        rich.payload = json!({"TaskCreated": {"title": "ünïcode \"quoted\" \\ 🚀", "labels": ["a", "b"],
                                              "dueAt": null, "n": 1.5, "big": 12345678901234u64}});
        rich.previous_hash = "ab".repeat(32);
        for sample in [event(), rich] {
            assert_eq!(event_hash(&sample), reference_hash(&sample));
        }
    }

    #[test]
    fn hash_is_stable_under_key_reordering_and_sensitive_to_content() {
        let original = event_hash(&event());
        let mut reordered = event();
        reordered.metadata = serde_json::from_str(r#"{"a":"1","b":"2"}"#).unwrap();
        assert_eq!(event_hash(&reordered), original);

        let mut edited = event();
        edited.metadata = json!({"a": "1", "b": "3"});
        assert_ne!(event_hash(&edited), original);
        let mut relinked = event();
        relinked.previous_hash = "abc".into();
        assert_ne!(event_hash(&relinked), original);
    }
}

#[cfg(test)]
mod vectors;
