//! Chronicle's edge: HTTP, GraphQL, authentication and process wiring.
//!
//! The `chronicle` binary (`main.rs`) parses the command line; [`app`] builds the services from
//! settings and starts the background loops; [`http`] serves the API and [`ops`] the health
//! and metrics every process answers.

pub mod app;
pub mod audit_cli;
pub mod auth;
pub mod cli;
pub mod erase_cli;
pub mod graphiql;
pub mod graphql;
pub mod held_cli;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod rate_limit;
pub mod rebuild_cli;
pub mod settings;
pub mod telemetry;
