//! Rebuilds: building read models again from the event store, the source of truth (the CLI
//! calls it `chronicle replay`).
//!
//! A rebuild claims its projections (their live consumer pauses: its writes are refused while
//! the claim holds), reads one consistent snapshot of the store in position order, folds it in
//! memory with the read model's own [`crate::projection::read_model::ReadModel::apply`], writes shadow
//! tables in bulk, indexes them, and swaps them in with the claim's release in one transaction.
//! Readers keep reading the old tables until that instant. The resumed consumer applies what
//! the snapshot missed and skips what it held (per-aggregate sequence check). A rebuild that
//! fails or dies never touched the live tables: its claim is released (when the process died,
//! with its database connection) and the live consumer carries on.

mod rebuilder;

pub use rebuilder::{Projection, Rebuilder};

#[cfg(test)]
mod tests;
