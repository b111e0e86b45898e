//! The outbox relay: publishes committed events to Kafka, in order, at least once.

pub mod relay;
pub mod retention;

pub use relay::{OutboxRelay, RelayOptions, RelayStatus};
