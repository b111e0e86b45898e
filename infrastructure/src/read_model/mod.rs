//! Read-model tables in Postgres.

pub mod tasks;
