//! Chronicle's use cases.
//!
//! This crate decides *what* happens when a command arrives, an event is consumed or a query is
//! asked, and speaks to the outside world only through the traits in [`ports`]. The adapters
//! (Postgres, Kafka) live in `chronicle-infrastructure`; the GraphQL edge in `chronicle-api`.

pub mod access;
pub mod aggregates;
pub mod audit;
pub mod commands;
pub mod data;
pub mod erasure;
pub mod error;
pub mod error_chain;
pub mod held;
pub mod live;
pub mod observability;
pub mod ports;
pub mod privacy;
pub mod projection;
pub mod queries;
pub mod rebuild;
pub mod reports;
pub mod retry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod topics;

pub use error::AppError;
