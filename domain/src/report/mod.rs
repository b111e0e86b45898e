//! The Report aggregate: a request for a computed summary, generated in the background.
//!
//! ```text
//! Requested ──start──► Generating ──complete──► Completed
//!     │                    └────────fail──────► Failed
//!     └──────────────fail─────────────────────► Failed
//! ```
//! Generation runs on a Kafka-driven worker that may see the same request twice (redelivery
//! after a crash), so every command that arrives after the work is done is recognised as done
//! and emits nothing. Regenerating a failed report is a new request.

mod aggregate;
mod events;
mod kind;
pub mod personal;

pub use aggregate::{Report, ReportCommand, ReportStatus};
pub use events::{ReportEvent, REPORT_EVENT_VERSION};
pub use kind::ReportKind;

#[cfg(test)]
mod tests;
