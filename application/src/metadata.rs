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
