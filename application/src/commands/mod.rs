//! Command handling: load an aggregate, let it decide, append what it decided.

mod executor;
mod fingerprint;
mod report;
mod task;

pub(crate) use executor::ExecuteOptions;
pub use executor::{AggregateExecutor, CommandOutcome};
pub use report::ReportCommands;
pub use task::{NewTask, TaskCommands};

#[cfg(test)]
mod tests;
