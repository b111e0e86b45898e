//! Fixed vectors of the event hash: two linked events written out field by field, the exact
//! bytes of their canonical encoding written out in full, and the SHA-256 of those bytes pinned.
//!
//! The other tests compare the encoder with a second encoder on the same serde_json, so a change
//! in serde_json's output (number formatting, escaping, key order), in chrono's RFC 3339 text or
//! in the field order would pass them and silently stop every stored chain from verifying. These
//! do not: the expected bytes and hashes are literals, computed once outside Rust (Python's
//! hashlib over the literal text) and pinned.

use chrono::{TimeZone, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{event_hash, GENESIS_HASH};
use crate::data::event_log::StoredEvent;

/// The canonical encoding of [`first`], byte for byte: keys of the payload and metadata sorted,
/// time at microseconds, an empty link for the first event of a stream.
const FIRST_CANONICAL: &str = r#"["chronicle-event-v1","01890a5d-ac96-774b-bcce-b302099a8057","Task","task-1",1,"TaskCreated","1.0",{"TaskCreated":{"teamId":"team-a","title":"Write the vectors"}},{"actor_id":"user-1","correlation_id":"c-1"},"2023-11-14T22:13:20.123456Z",""]"#;

/// SHA-256 of [`FIRST_CANONICAL`].
const FIRST_HASH: &str = "8f8df0500e431a83d690f125fc04aa9c8297ad5cd732cb723d0acb927a042b5b";

/// The canonical encoding of [`second`]: every JSON shape whose formatting a serializer could
/// change (escapes, non-ASCII, floats, exponents, negative zero, the integer extremes, empty
/// containers, null), a whole-second time, and the link to [`FIRST_HASH`]. Note serde_json's
/// choices a client in another language must copy: `1e+21` (signed exponent) but `1e-7`, `2.0`
/// and `-0.0` for whole floats, non-ASCII as raw UTF-8, and `\u0001` in lowercase hex.
const SECOND_CANONICAL: &str = r#"["chronicle-event-v1","01890a5d-ac97-7000-8000-000000000002","Task","task-1",2,"TaskUpdated","2.1",{"TaskUpdated":{"done":false,"dueAt":null,"empty":{},"huge":1e+21,"labels":["b","a"],"max":18446744073709551615,"min":-9223372036854775808,"neg":-3,"negZero":-0.0,"none":[],"ratio":1.5,"tenth":0.1,"tiny":1e-7,"title":"ünïcode \"quoted\" \\ back/slash 🚀\n\t\u0001","whole":2.0}},{"actor_id":"user-1","causation_id":"01890a5d-ac96-774b-bcce-b302099a8057","correlation_id":"c-1","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},"2023-11-14T22:13:21.000000Z","8f8df0500e431a83d690f125fc04aa9c8297ad5cd732cb723d0acb927a042b5b"]"#;

/// SHA-256 of [`SECOND_CANONICAL`].
const SECOND_HASH: &str = "a936da0648e4165f2f61047e6db64f1f60979c890c15f9255d225b3601ec8a57";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A stream's first event, its maps written in unsorted order.
fn first() -> StoredEvent {
    StoredEvent {
        event_id: Uuid::from_u128(0x01890a5d_ac96_774b_bcce_b302099a8057),
        aggregate_type: "Task".into(),
        aggregate_id: "task-1".into(),
        sequence: 1,
        event_type: "TaskCreated".into(),
        event_version: "1.0".into(),
        payload: json!({"TaskCreated": {"title": "Write the vectors", "teamId": "team-a"}}),
        metadata: json!({"correlation_id": "c-1", "actor_id": "user-1"}),
        recorded_at: Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
        // The stored hash is not part of the encoding: a wrong one must not change the result.
        hash: "not part of the hash".into(),
        previous_hash: GENESIS_HASH.into(),
    }
}

/// The same stream's second event, linked to the first.
fn second() -> StoredEvent {
    StoredEvent {
        event_id: Uuid::from_u128(0x01890a5d_ac97_7000_8000_000000000002),
        aggregate_type: "Task".into(),
        aggregate_id: "task-1".into(),
        sequence: 2,
        event_type: "TaskUpdated".into(),
        event_version: "2.1".into(),
        payload: json!({"TaskUpdated": {
            "title": "ünïcode \"quoted\" \\ back/slash 🚀\n\t\u{1}",
            "whole": 2.0,
            "tiny": 1e-7,
            "tenth": 0.1,
            "ratio": 1.5,
            "none": [],
            "negZero": -0.0,
            "neg": -3,
            "min": i64::MIN,
            "max": u64::MAX,
            "labels": ["b", "a"],
            "huge": 1e21,
            "empty": {},
            "dueAt": null,
            "done": false,
        }}),
        metadata: json!({
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "correlation_id": "c-1",
            "causation_id": "01890a5d-ac96-774b-bcce-b302099a8057",
            "actor_id": "user-1",
        }),
        recorded_at: Utc.timestamp_micros(1_700_000_001_000_000).unwrap(),
        hash: String::new(),
        previous_hash: FIRST_HASH.into(),
    }
}

#[test]
fn the_written_out_encodings_hash_to_the_pinned_values() {
    // Independent of Chronicle's encoder: SHA-256 straight over the literal bytes.
    assert_eq!(sha256_hex(FIRST_CANONICAL.as_bytes()), FIRST_HASH);
    assert_eq!(sha256_hex(SECOND_CANONICAL.as_bytes()), SECOND_HASH);
}

#[test]
fn a_first_event_hashes_to_its_pinned_vector() {
    assert_eq!(event_hash(&first()), FIRST_HASH);
}

#[test]
fn a_linked_event_with_every_awkward_json_shape_hashes_to_its_pinned_vector() {
    assert_eq!(event_hash(&second()), SECOND_HASH);
}

#[test]
fn the_encoding_is_the_one_written_out() {
    // The same bytes through a serde_json value read back from the literal: what a client in
    // another language is told to produce. A hash mismatch above with this passing points at the
    // event's fields; this failing points at the encoding itself.
    for (event, canonical) in [(first(), FIRST_CANONICAL), (second(), SECOND_CANONICAL)] {
        let parsed: serde_json::Value = serde_json::from_str(canonical).unwrap();
        assert_eq!(parsed[7], event.payload);
        assert_eq!(parsed[8], event.metadata);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), canonical);
    }
}
