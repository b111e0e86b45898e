//! Chronicle's end-to-end tests, one module per area, in one test binary: every test runs the
//! real service against the real Postgres and the real Kafka-protocol broker, isolated by
//! database and topic prefix (`chronicle_tests::TestApp`). One binary links once, where a
//! binary per file linked the service fourteen times.
//!
//! Run one area with `cargo nextest run -p chronicle-tests --test e2e faults::`.

mod audit;
mod audit_checkpoints;
mod consumer;
mod dead_letters;
mod docs_examples;
mod erasure;
mod erasure_in_clear;
mod faults;
mod fuzz;
mod graphiql;
mod group_commit;
mod held;
mod identity;
mod kafka_flow;
mod limits;
mod observability;
mod outbox;
mod pooler;
mod postgres_es;
mod privacy;
mod projection_failures;
mod read_models;
mod replay;
mod reports;
mod security;
mod signed_notes;
mod subscriptions;
mod task_api;
mod tls;
mod tracing;
