//! Chronicle's adapters: everything that talks to Postgres or Kafka.
//!
//! Each module implements ports of `chronicle-application` or runs a background loop
//! (the outbox relay, the Kafka consumers). Nothing here decides business rules.

pub mod audit_log;
pub mod audit_tree;
pub mod config;
pub mod db;
pub mod erasures;
pub mod event_feed;
pub mod event_store;
pub mod held;
pub mod kafka;
pub mod outbox;
pub mod projections;
pub mod read_model;
pub mod secret;
pub(crate) mod settling;
pub mod subject_keys;

/// The one error type of this layer: what went wrong talking to a backend, with context.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// A Postgres call failed.
    #[error("database: {context}")]
    Database {
        /// What we were doing.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A Kafka call failed.
    #[error("kafka: {context}")]
    Kafka {
        /// What we were doing.
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Migrations could not be applied.
    #[error("migrations could not be applied")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl InfraError {
    /// Wraps a database error with what we were doing.
    pub fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let context = context.into();
        move |source| Self::Database { context, source }
    }

    /// Wraps a Kafka error with what we were doing.
    pub fn kafka(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let context = context.into();
        move |source| Self::Kafka { context, source }
    }
}
