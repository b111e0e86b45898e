//! The `chronicle` process: what runs the API rather than what the API is.
//!
//! `main.rs` parses the command line; [`app`] builds the services from settings and starts the
//! background loops (relay, projections, report worker, checkpointer); [`ops`] serves the
//! health and metrics every process answers, whatever parts it runs; [`telemetry`] and
//! [`metrics`] set up logs, traces and the metrics recorder; [`runtime`] sizes the async
//! runtime; [`settings`] is the typed tree of every setting, read once where a command starts;
//! the `*_cli` modules are the operator commands, sharing [`cli`]'s operator and exit status;
//! [`variables`] lists in each command's `--help` the environment variables it reads. The HTTP
//! and GraphQL API is `chronicle-api`.

pub mod app;
pub mod audit_cli;
pub mod cli;
pub mod erase_cli;
pub mod held_cli;
pub mod metrics;
pub mod ops;
pub mod rebuild_cli;
pub mod runtime;
pub mod settings;
pub mod telemetry;
pub mod variables;
