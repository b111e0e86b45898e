//! Who asked for a change and why: the metadata every event carries.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The context of one command. The actor comes from the verified token, never from input; the
/// correlation id ties every event of one user action together (across the report worker too);
/// the causation id names what directly caused this command (a request or an event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMetadata {
    /// The token's subject.
    pub actor_id: String,
    /// From `X-Correlation-Id`, or generated at the edge.
    pub correlation_id: String,
    /// The request id for user commands; the triggering event id for reactions.
    pub causation_id: String,
    /// W3C trace context of the request, stored so consumers continue the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Client-chosen key that makes a retried mutation answer its first result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl CommandMetadata {
    /// Metadata for a command with fresh correlation and causation ids (scripts, tests).
    pub fn for_actor(actor_id: impl Into<String>) -> Self {
        let id = Uuid::now_v7().to_string();
        Self {
            actor_id: actor_id.into(),
            correlation_id: id.clone(),
            causation_id: id,
            traceparent: None,
            idempotency_key: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use chronicle_domain::personal::{METADATA, METADATA_FIELDS, METADATA_NOT_PERSONAL};

    use super::*;

    /// Every field of the metadata stored with each event is judged personal or not (the
    /// domain's registry, docs/privacy.md), so a field added here must be judged too.
    #[test]
    fn every_metadata_field_is_judged_personal_or_not() {
        let metadata = CommandMetadata {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            idempotency_key: Some("k-1".into()),
            ..CommandMetadata::for_actor("u-7")
        };
        let value = serde_json::to_value(&metadata).unwrap();
        for field in value.as_object().unwrap().keys() {
            let judged = METADATA_FIELDS.iter().any(|p| p.field == field)
                || METADATA_NOT_PERSONAL
                    .iter()
                    .any(|n| n.event_type == METADATA && n.field == field);
            assert!(
                judged,
                "metadata.{field} is neither personal nor judged not personal"
            );
        }
    }
}
