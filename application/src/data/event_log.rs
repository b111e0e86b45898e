//! Events as the store keeps them, and the conversion between domain events and stored rows.
//!
//! Payloads keep cqrs-es's serialized form (`{"TaskCreated": {...}}`) so the store stays
//! readable by postgres-es; [`inner_payload`] strips the wrapper for the wire and the audit trail.

use std::sync::OnceLock;

use chrono::{DateTime, SubsecRound, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// One event read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Globally unique id (UUIDv7), also the Kafka CloudEvents id.
    pub event_id: Uuid,
    /// Aggregate type (`Task`).
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// 1-based position in the aggregate's stream.
    pub sequence: u64,
    /// Event name (`TaskCreated`).
    pub event_type: String,
    /// Schema version of the payload.
    pub event_version: String,
    /// cqrs-es serialized payload.
    pub payload: Value,
    /// Actor, correlation, causation, traceparent.
    pub metadata: Value,
    /// When the store accepted it (microsecond precision, as Postgres keeps it).
    pub recorded_at: DateTime<Utc>,
    /// Hash-chain link of this event.
    pub hash: String,
    /// The hash of the aggregate's previous event (empty for the first).
    pub previous_hash: String,
}

/// The current time at the store's precision, so a hash computed now verifies after a reload.
pub(crate) fn store_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// An event that did not turn into JSON, or JSON that did not turn back into an event: a bug
/// or a stored payload no upcaster covers, never the caller's input. The use cases' error
/// takes it as internal, keeping this as its source.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct EventCodecError {
    /// Which event, and which way.
    pub(crate) context: String,
    /// serde's reason.
    #[source]
    pub(crate) source: serde_json::Error,
}

/// Serializes a domain event the way cqrs-es does.
pub fn serialize_event<E: Serialize>(event: &E) -> Result<Value, EventCodecError> {
    serde_json::to_value(event).map_err(|source| EventCodecError {
        context: "serialize event".to_owned(),
        source,
    })
}

/// Every aggregate's upcasters, built once.
fn upcasters() -> &'static [Box<dyn EventUpcaster>] {
    static UPCASTERS: OnceLock<Vec<Box<dyn EventUpcaster>>> = OnceLock::new();
    UPCASTERS.get_or_init(|| {
        crate::aggregates::ALL
            .iter()
            .flat_map(|kind| (kind.upcasters)())
            .collect()
    })
}

/// Whether a payload of this type and schema version must be upcast before it is read.
pub(crate) fn needs_upcast(event_type: &str, event_version: &str) -> bool {
    upcasters()
        .iter()
        .any(|u| u.can_upcast(event_type, event_version))
}

/// Brings a payload (cqrs-es's serialized form) written with an older schema to today's, with
/// the domain's upcasters; a current payload comes back as it was. Every reader of stored or
/// published events goes through it, so the store never needs rewriting.
pub fn upcast(event_type: &str, event_version: &str, payload: Value) -> Value {
    if !needs_upcast(event_type, event_version) {
        return payload;
    }
    let mut event = SerializedEvent {
        aggregate_id: String::new(),
        sequence: 0,
        aggregate_type: String::new(),
        event_type: event_type.to_owned(),
        event_version: event_version.to_owned(),
        payload,
        metadata: Value::Null,
    };
    for upcaster in upcasters() {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event.payload
}

/// Deserializes a stored payload into a domain event, upcast first; a failure names the event
/// so an operator can find it.
pub(crate) fn deserialize_event<E: DeserializeOwned>(
    event: &StoredEvent,
) -> Result<E, EventCodecError> {
    let payload = upcast(
        &event.event_type,
        &event.event_version,
        event.payload.clone(),
    );
    serde_json::from_value(payload).map_err(|source| EventCodecError {
        context: format!(
            "event {} ({} v{}) does not deserialize",
            event.event_id, event.event_type, event.event_version
        ),
        source,
    })
}

/// Decodes a stored payload (cqrs-es's serialized JSON text) into a domain event: straight from
/// the text when its schema is current (replay decodes millions), through a JSON tree and the
/// upcasters when it is older.
pub(crate) fn decode_payload<E: DeserializeOwned>(
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<E, String> {
    let cannot = |e: serde_json::Error| format!("cannot read {event_type} v{event_version}: {e}");
    if !needs_upcast(event_type, event_version) {
        return serde_json::from_str(payload).map_err(cannot);
    }
    let tree: Value = serde_json::from_str(payload).map_err(cannot)?;
    serde_json::from_value(upcast(event_type, event_version, tree)).map_err(cannot)
}

/// The payload without cqrs-es's enum wrapper: `{"TaskStarted": {}}` → `{}`.
pub fn inner_payload(payload: &Value) -> Value {
    match payload {
        Value::Object(map) if map.len() == 1 => map.values().next().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Wraps an inner payload back into cqrs-es's form, so a consumer can deserialize the enum.
pub(crate) fn wrap_payload(event_type: &str, inner: Value) -> Value {
    let mut map = serde_json::Map::with_capacity(1);
    map.insert(event_type.to_owned(), inner);
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_inverts_unwrapping() {
        let stored = serde_json::json!({"TaskFailed": {"error": "x"}});
        let inner = inner_payload(&stored);
        assert_eq!(inner, serde_json::json!({"error": "x"}));
        assert_eq!(wrap_payload("TaskFailed", inner), stored);
    }
}
