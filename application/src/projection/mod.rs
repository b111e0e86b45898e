//! Projections: fold published events into read models.
//!
//! The fold is pure ([`task::fold`]) so the live consumer and a replay apply events the same way;
//! the projector around it batches loads and saves through a port.

pub mod task;

use serde_json::Value;

use crate::event_log::wrap_payload;
use crate::message::EventMessage;

/// What a projector did with a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events applied to a row.
    pub applied: usize,
    /// Events skipped because the row already reflected them (redeliveries).
    pub skipped: usize,
    /// Messages that can never be applied (unknown type, unreadable payload), by index in the
    /// batch, with the reason: the consumer dead-letters them and moves on.
    pub rejected: Vec<(usize, String)>,
}

/// Rebuilds cqrs-es's wrapped payload from an envelope so the domain enum can be read.
pub fn domain_payload(message: &EventMessage) -> Value {
    wrap_payload(&message.event_type, message.payload.clone())
}
