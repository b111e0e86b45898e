//! Command handling: load an aggregate, let it decide, append what it decided.

mod executor;
mod task;

pub use executor::{AggregateExecutor, CommandOutcome, ExecuteOptions};
pub use task::{NewTask, TaskCommands};
