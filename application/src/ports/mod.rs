//! The boundary between use cases and the outside world: one module per port, each owning its
//! trait and every type the trait speaks. Adapters implement them in `chronicle-infrastructure`
//! (Postgres, Kafka) and in [`crate::testing`] (memory); nothing here knows about SQL or Kafka.
//!
//! Invariant: a port module imports only data modules (`event_log`, `message`, the read-model
//! views, `privacy::data_key`) and other ports, never a use case, so every use case can import
//! any port without a circle. There are no re-exports here: each type has one path.

pub mod audit_log;
pub mod audit_tree;
pub mod dead_letters;
pub mod erasures;
pub mod event_feed;
pub mod event_handler;
pub mod event_store;
pub mod held;
pub mod outbox_monitor;
pub mod page;
pub mod projection_control;
pub mod report_data;
pub mod store_error;
pub mod subject_keys;
pub mod view_queries;
pub mod view_store;
