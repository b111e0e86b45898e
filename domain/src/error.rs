//! The one error type of the domain layer.

use thiserror::Error;

/// Why an aggregate refused a command.
///
/// Each variant maps to one public error code at the API edge, so a client can tell a typo in its
/// input (`Validation`) from a command that is valid but not allowed now (`InvalidTransition`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// An input value breaks a rule; `field` names the input field so a client can point at it.
    #[error("{field}: {message}")]
    Validation {
        /// The input field at fault, as the API names it (`title`, `labels[2]`).
        field: String,
        /// What is wrong with it, in words a user understands.
        message: String,
    },
    /// The command targets an aggregate that was never created.
    #[error("{aggregate} not found")]
    NotFound {
        /// The aggregate type, for the message.
        aggregate: &'static str,
    },
    /// The aggregate exists already (a create command with a used id).
    #[error("{aggregate} already exists")]
    AlreadyExists {
        /// The aggregate type, for the message.
        aggregate: &'static str,
    },
    /// The command is not allowed in the aggregate's current state.
    #[error("cannot {action} a {aggregate} that is {state}")]
    InvalidTransition {
        /// The aggregate type.
        aggregate: &'static str,
        /// What the command tried to do (`start`, `complete`).
        action: &'static str,
        /// The current state, as the API names it (`COMPLETED`).
        state: &'static str,
    },
}

impl DomainError {
    /// Shorthand for a validation failure on one field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }
}
