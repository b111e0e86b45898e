//! The outbox relay: publishes committed events to Kafka, in order, at least once.

mod floor;
pub(crate) mod monitor;
mod pipeline;
mod publish_span;
mod read_pace;
pub mod relay;
pub mod retention;
pub mod signal;
pub mod status;

pub use monitor::PgOutboxMonitor;
pub use relay::{OutboxRelay, RelayOptions};
pub use signal::{OutboxSignal, OUTBOX_CHANNEL};
pub use status::RelayStatus;
