//! Chronicle's API: HTTP and GraphQL.
//!
//! [`http`] serves the GraphQL routes (limits, timeout, panic guard) over [`graphql`]'s schema;
//! [`auth`] turns bearer tokens into principals; [`rate_limit`] and [`settings`] are what only
//! the API reads. The process that hosts it (the command line, wiring, health, telemetry) is
//! the `chronicle` crate.

pub mod auth;
pub mod graphiql;
pub mod graphql;
pub mod http;
pub mod rate_limit;
pub mod settings;
