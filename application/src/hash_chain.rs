//! The tamper-evidence chain: each event's hash covers its own content and its predecessor's
//! hash in the same aggregate, so editing, removing or reordering an event breaks the chain.

use chrono::SecondsFormat;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::event_log::StoredEvent;

/// The `previous_hash` of an aggregate's first event.
pub const GENESIS_HASH: &str = "";

/// SHA-256 (hex) over the canonical encoding of `event`, including its `previous_hash` link.
///
/// The encoding is a JSON array serialized by serde_json, whose maps keep keys sorted: a
/// payload read back from `jsonb` (which reorders keys) encodes to the same bytes. The recorded
/// time is encoded at microseconds, the precision Postgres stores.
pub fn event_hash(event: &StoredEvent) -> String {
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
    let mut hasher = Sha256::new();
    hasher.update(canonical.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
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
