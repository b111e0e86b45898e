//! The Task aggregate: a unit of a team's work and its lifecycle.
//!
//! ```text
//! Open ──start──► InProgress ──complete──► Completed
//!  │                 │        └──fail────► Failed
//!  └──cancel──► Cancelled ◄──cancel──┘
//! Completed | Failed | Cancelled ──reopen──► Open
//! ```
//! A command that would change nothing (assigning the current assignee, starting a task already
//! in progress) succeeds and emits no event, so retries are harmless.

mod aggregate;
mod commands;
mod events;
pub mod personal;
mod status;
pub mod upcast;

pub use aggregate::Task;
pub use commands::{CreateTask, TaskCommand, UpdateTaskDetails};
pub use events::{TaskEvent, TASK_CREATED_VERSION, TASK_EVENT_VERSION};
pub use status::{Priority, TaskStatus};

#[cfg(test)]
mod tests;
