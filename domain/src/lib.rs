//! Chronicle's domain: the aggregates that decide which events happen.
//!
//! Everything here is pure: no database, broker or HTTP. Aggregates follow cqrs-es 0.5
//! (`handle` validates a command against the current state and writes events to a sink,
//! `apply` folds an event into the state), so the same code serves command handling, time
//! travel and replay.

pub mod error;
pub mod ids;
pub mod ownership;
pub mod personal;
pub mod report;
pub mod subject;
pub mod task;
pub mod validation;

pub use error::DomainError;
pub use ownership::TeamOwned;
