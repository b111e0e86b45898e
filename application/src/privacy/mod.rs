//! Personal data that can be forgotten without breaking a proof: crypto-shredding.
//!
//! A personal value is stored sealed under a key of its data subject ([`seal`]), named in the
//! sealed text by the subject's pseudonym. The hash chain and the Merkle tree commit to what is
//! stored, the sealed text, so destroying the subject's key (the [`SubjectKeys`] port) makes
//! the value unreadable without changing a stored byte: every hash and every proof stays valid.
//!
//! This module is the core of that design (docs/design/erasure.md): keys, sealing a value
//! ([`seal`]) and an event's personal fields ([`sealing`]). Wiring them into the store's write
//! and read paths, and the erasure itself, build on it.
//!
//! [`SubjectKeys`]: crate::ports::subject_keys::SubjectKeys

pub mod data_key;
pub mod seal;
pub mod sealing;
