//! The one error type of the application layer, mapped once to GraphQL codes by the API.

use chronicle_domain::DomainError;
use thiserror::Error;

use crate::data::event_log::EventCodecError;
use crate::error_chain::BoxError;
use crate::ports::store_error::StoreError;

/// Why a use case failed, in terms a client can act on.
#[derive(Debug, Error)]
pub enum AppError {
    /// Input breaks a rule; `field` names the input.
    #[error("{field}: {message}")]
    Validation {
        /// The offending input field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The aggregate or row does not exist (or the caller may not know it does).
    #[error("{0} not found")]
    NotFound(String),
    /// Optimistic concurrency: the aggregate is not at the version the caller expected.
    #[error("expected version {expected} but the aggregate is at version {actual}")]
    Conflict {
        /// The version the caller sent (or the one the command was decided on).
        expected: u64,
        /// The version found.
        actual: u64,
    },
    /// An idempotency key was reused for a request other than the one first made with it
    /// (another command, target, arguments or expected version). Nothing was written: answering
    /// the first result would hide the client's mistake.
    #[error(
        "idempotencyKey was already used for a different request ({command} on {aggregate_id}); \
         retry exactly that request, or use a new key"
    )]
    IdempotencyKeyReused {
        /// The first request's command (`createTask`).
        command: String,
        /// The aggregate the first request touched.
        aggregate_id: String,
    },
    /// The command is not allowed in the aggregate's current state.
    #[error("{0}")]
    InvalidTransition(String),
    /// No valid credentials.
    #[error("authentication required")]
    Unauthenticated,
    /// Valid credentials, not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The read model did not reach the requested version in time.
    #[error("the read model is at version {current}, not yet at {wanted}; retry shortly")]
    StaleRead {
        /// The version asked for.
        wanted: u64,
        /// The version the read model holds (0 when absent).
        current: u64,
    },
    /// A request asked for more than a limit allows.
    #[error("{0}")]
    LimitExceeded(String),
    /// The database cannot be reached now; the cause is for the logs. The same request
    /// succeeds once it is back, so clients retry, unlike [`AppError::Internal`].
    #[error("the database is unavailable; retry shortly")]
    Unavailable(#[source] BoxError),
    /// Anything the caller cannot fix: logged with its cause chain, opaque to clients.
    #[error("internal error: {context}")]
    Internal {
        /// What failed, in words.
        context: String,
        /// Why, when another error says so.
        #[source]
        source: Option<BoxError>,
    },
}

impl AppError {
    /// A short, fixed name of the kind of failure: the `outcome` label of metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation_failed",
            Self::NotFound(_) => "not_found",
            Self::Conflict { .. } => "concurrency_conflict",
            Self::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            Self::InvalidTransition(_) => "invalid_transition",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::StaleRead { .. } => "stale_read",
            Self::LimitExceeded(_) => "limit_exceeded",
            Self::Unavailable(_) => "unavailable",
            Self::Internal { .. } => "internal",
        }
    }

    /// An internal error with no further cause.
    pub fn internal(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// An internal error caused by `source`.
    pub(crate) fn internal_from(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// Shorthand for a validation failure on one field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Validation { field, message } => Self::Validation { field, message },
            DomainError::NotFound { aggregate } => Self::NotFound(aggregate.to_owned()),
            DomainError::AlreadyExists { .. } | DomainError::InvalidTransition { .. } => {
                Self::InvalidTransition(error.to_string())
            }
        }
    }
}

impl From<EventCodecError> for AppError {
    fn from(error: EventCodecError) -> Self {
        Self::Internal {
            context: error.context,
            source: Some(Box::new(error.source)),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable(Box::new(error)),
            other => Self::internal_from("storage", other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain::Chain;

    #[test]
    fn a_storage_failure_keeps_its_cause_and_the_chain_shows_every_link() {
        let driver = std::io::Error::other("connection reset by peer");
        let error = AppError::from(StoreError::backend("the statement failed", driver));

        assert_eq!(error.to_string(), "internal error: storage");
        assert_eq!(
            Chain(&error).to_string(),
            "internal error: storage: storage failure: the statement failed: connection reset by peer"
        );
        let unavailable = AppError::from(StoreError::unavailable(std::io::Error::other("refused")));
        assert!(matches!(unavailable, AppError::Unavailable(_)));
        assert_eq!(
            Chain(&unavailable).to_string(),
            "the database is unavailable; retry shortly: storage unavailable: refused"
        );
    }
}
