//! Projections: fold published events into read models.
//!
//! A read model says how one event changes one row ([`read_model::ReadModel::apply`], pure);
//! the generic [`projector::Projector`] does the rest the same way for every model: decode,
//! skip redeliveries by sequence, report gaps, and load and save each batch's rows in one round
//! trip each. Replay reuses the same fold.

pub mod projector;
pub mod read_model;
pub mod refold;
pub mod report;
pub mod task;

#[cfg(test)]
mod tests;
