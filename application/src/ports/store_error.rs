//! Why a storage call failed: the one error every port speaks.

use thiserror::Error;

/// Why a storage call failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another writer appended to the same aggregate first.
    #[error("another writer appended to the aggregate first")]
    Conflict,
    /// The idempotency key was recorded by a concurrent request first.
    #[error("the idempotency key was used concurrently")]
    IdempotencyKeyTaken,
    /// The storage could not be reached or answered with an error.
    #[error("storage failure: {0}")]
    Backend(String),
    /// The storage cannot be reached now (down, restarting, out of connections); the same
    /// request succeeds once it is back.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The read model does not accept live writes right now (a rebuild or an operator paused
    /// it); nothing was written, and the same write succeeds once it is live again.
    #[error("projection {0} is paused")]
    Paused(String),
}
