//! The integration event: the JSON envelope and CloudEvents headers every Kafka consumer reads.
//!
//! This is a public contract (docs/api.md, "Kafka"): field names are camelCase, headers follow the
//! CloudEvents Kafka binding in binary mode plus `traceparent`, `correlation_id` and
//! `causation_id`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::data::event_log::{inner_payload, StoredEvent};
use crate::data::metadata::CommandMetadata;

/// The name producers put in `sourceService` and `ce_source`.
pub(crate) const SOURCE_SERVICE: &str = "chronicle";

/// The value of an event message on Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMessage {
    /// Unique per event; a duplicate delivery carries the same id.
    pub event_id: Uuid,
    /// Event name (`TaskCreated`).
    pub event_type: String,
    /// Payload schema version.
    pub event_version: String,
    /// `Task` or `Report`.
    pub aggregate_type: String,
    /// Also the Kafka key.
    pub aggregate_id: String,
    /// Position in the aggregate's stream; consumers skip what they already applied.
    pub sequence: u64,
    /// When the store accepted the event.
    pub occurred_at: DateTime<Utc>,
    /// Who caused it.
    pub actor_id: String,
    /// The user action it belongs to.
    pub correlation_id: String,
    /// What directly caused it.
    pub causation_id: String,
    /// Which service wrote it.
    pub source_service: String,
    /// The event's fields, without any wrapper.
    pub payload: Value,
    /// Whose personal data each personal value is, by its place in this envelope (`actorId`,
    /// `payload.title`, `payload.watchers.0`) and the person's pseudonym: what a consumer
    /// deletes when a `DataSubjectErased` names that pseudonym. Absent when nothing was
    /// sealed (sealing off, or only the service's own values). Written for consumers
    /// downstream; Chronicle's own consumers act on erasures otherwise, so they do not read it
    /// (a map fewer per message in each of them).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub personal_data: Option<BTreeMap<String, String>>,
    /// The W3C `traceparent` the message arrived with (a Kafka header, not part of the
    /// envelope): consumers continue that trace.
    #[serde(skip)]
    pub traceparent: Option<String>,
}

/// A message ready for the outbox: everything the relay needs, decided at commit time.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// Event this message publishes (unique in the outbox).
    pub event_id: Uuid,
    /// Destination topic.
    pub topic: String,
    /// Partition key: the aggregate id, so one aggregate's events stay in order.
    pub key: String,
    /// Kafka headers, in order.
    pub headers: Vec<(String, String)>,
    /// The JSON envelope, encoded once: the store writes it as it is (building it as a tree,
    /// copying and encoding the tree cost more than the text).
    pub payload: Box<RawValue>,
}

impl EventMessage {
    /// The envelope of a stored event written under `metadata`.
    pub(crate) fn from_stored(event: &StoredEvent, metadata: &CommandMetadata) -> Self {
        Self {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            occurred_at: event.recorded_at,
            actor_id: metadata.actor_id.clone(),
            correlation_id: metadata.correlation_id.clone(),
            causation_id: metadata.causation_id.clone(),
            source_service: SOURCE_SERVICE.to_owned(),
            payload: inner_payload(&event.payload),
            personal_data: None,
            traceparent: metadata.traceparent.clone(),
        }
    }

    /// The envelope of a stored event under the metadata stored with it (what the relay
    /// published for it); `None` when that metadata is not readable.
    pub(crate) fn of_stored(event: &StoredEvent) -> Option<Self> {
        let metadata: CommandMetadata = serde_json::from_value(event.metadata.clone()).ok()?;
        Some(Self::from_stored(event, &metadata))
    }

    /// CloudEvents binary-mode headers plus tracing and correlation headers.
    pub fn headers(&self, traceparent: Option<&str>) -> Vec<(String, String)> {
        let mut headers = vec![
            ("ce_specversion".to_owned(), "1.0".to_owned()),
            ("ce_id".to_owned(), self.event_id.to_string()),
            ("ce_source".to_owned(), format!("/{SOURCE_SERVICE}")),
            (
                "ce_type".to_owned(),
                format!(
                    "{SOURCE_SERVICE}.{}.{}",
                    self.aggregate_type.to_ascii_lowercase(),
                    self.event_type
                ),
            ),
            (
                "ce_time".to_owned(),
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            ("ce_subject".to_owned(), self.aggregate_id.clone()),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("correlation_id".to_owned(), self.correlation_id.clone()),
            ("causation_id".to_owned(), self.causation_id.clone()),
        ];
        if let Some(traceparent) = traceparent {
            headers.push(("traceparent".to_owned(), traceparent.to_owned()));
        }
        headers
    }

    /// The outbox row that publishes this envelope.
    pub(crate) fn to_outbox(
        &self,
        topic: String,
        traceparent: Option<&str>,
    ) -> Result<OutboxMessage, serde_json::Error> {
        Ok(OutboxMessage {
            event_id: self.event_id,
            topic,
            key: self.aggregate_id.clone(),
            headers: self.headers(traceparent),
            payload: serde_json::value::to_raw_value(self)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_uses_the_documented_names_and_headers() {
        let stored = StoredEvent {
            event_id: Uuid::from_u128(1),
            aggregate_type: "Task".into(),
            aggregate_id: "t-1".into(),
            sequence: 3,
            event_type: "TaskStarted".into(),
            event_version: "1.0".into(),
            payload: json!({"TaskStarted": {}}),
            metadata: json!({}),
            recorded_at: Utc::now(),
            hash: String::new(),
            previous_hash: String::new(),
        };
        let meta = CommandMetadata::for_actor("u-1");
        let message = EventMessage::from_stored(&stored, &meta);
        let value = serde_json::to_value(&message).unwrap();
        for field in [
            "eventId",
            "eventType",
            "eventVersion",
            "aggregateType",
            "aggregateId",
            "sequence",
            "occurredAt",
            "actorId",
            "correlationId",
            "causationId",
            "sourceService",
            "payload",
        ] {
            assert!(value.get(field).is_some(), "missing {field}");
        }
        assert_eq!(value["payload"], json!({}));
        let headers = message.headers(Some("00-abc-def-01"));
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"ce_id") && names.contains(&"traceparent"));
        assert_eq!(headers[3].1, "chronicle.task.TaskStarted");
    }
}
