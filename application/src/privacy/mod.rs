//! Personal data that can be forgotten without breaking a proof: crypto-shredding.
//!
//! A personal value is stored sealed under a key of its data subject ([`seal`]), named in the
//! sealed text by the subject's pseudonym. The hash chain and the Merkle tree commit to what is
//! stored, the sealed text, so destroying the subject's key (the [`SubjectKeys`] port) makes
//! the value unreadable without changing a stored byte: every hash and every proof stays valid.
//!
//! This module is that design (docs/design/erasure.md): keys ([`data_key`], kept in memory a
//! while by [`cache`]), sealing a value ([`seal`]) and an event's personal fields
//! ([`sealing`]), the one door the write and read paths use ([`personal_data`]), erasing
//! a person (the use case [`crate::erasure`]), and forgetting keys other processes erased ([`follower`]).
//!
//! [`SubjectKeys`]: crate::ports::subject_keys::SubjectKeys

pub mod cache;
pub use crate::data::data_key;
pub mod follower;
pub mod personal_data;
pub mod redact;
pub mod seal;
pub mod sealing;
