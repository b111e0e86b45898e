//! In-memory adapters of the ports, for tests that need neither a database nor a broker: the
//! role cqrs-es's `MemStore` plays for its users. They keep the rules the Postgres adapters
//! enforce with constraints (a taken sequence is a conflict, a taken idempotency key is
//! refused, a row only moves forward, a paused projection refuses writes), so a use case
//! tested on them behaves as it does in production; the end-to-end tests keep the adapters
//! themselves honest.
//!
//! Compiled for this crate's tests and, with the `testing` feature, for other crates' tests.

pub mod event_feed;
pub mod event_store;
pub(crate) mod fixtures;
pub mod projection_control;
pub mod subject_keys;
pub mod view_store;
