//! The outbox relay: publishes committed events to Kafka, in order, at least once.

pub mod monitor;
pub mod relay;
pub mod retention;

pub use monitor::PgOutboxMonitor;
pub use relay::{OutboxRelay, RelayOptions, RelayStatus};
