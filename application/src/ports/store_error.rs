//! Why a storage call failed: the one error every port speaks.

use thiserror::Error;

use crate::error_chain::BoxError;

/// Why a storage call failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another writer appended to the same aggregate first.
    #[error("another writer appended to the aggregate first")]
    Conflict,
    /// The idempotency key was recorded by a concurrent request first.
    #[error("the idempotency key was used concurrently")]
    IdempotencyKeyTaken,
    /// The storage answered with an error, or holds something it cannot read.
    #[error("storage failure: {context}")]
    Backend {
        /// What failed, in words.
        context: String,
        /// The driver's (or decoder's) error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The storage cannot be reached now (down, restarting, out of connections); the same
    /// request succeeds once it is back.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
    /// The read model does not accept live writes right now (a rebuild or an operator paused
    /// it); nothing was written, and the same write succeeds once it is live again.
    #[error("projection {0} is paused")]
    Paused(String),
    /// An append sealed under a key that was destroyed meanwhile (the person was erased, and
    /// this process still held their key): nothing was written. The keys named are the ones
    /// the batch was sealed under, to be read again before deciding again.
    #[error("sealed under a destroyed key")]
    SubjectErased(Vec<String>),
}

impl StoreError {
    /// A failure of the storage, caused by `source`.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// Stored data that cannot be read (a row with an unknown state, say).
    pub fn corrupt(context: impl Into<String>) -> Self {
        Self::Backend {
            context: context.into(),
            source: None,
        }
    }

    /// The storage is out of reach, as `source` says.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable(source.into())
    }
}
