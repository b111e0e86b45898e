//! The async runtime every command runs on, and how many worker threads it has
//! (`CHRONICLE_RUNTIME_WORKERS`).
//!
//! Unset, the count is tokio's default: one worker per core the process may use, or
//! `TOKIO_WORKER_THREADS`. Fewer workers trade peak parallelism for less scheduling.
//! Chronicle's work per command is short and mostly waits on Postgres and Kafka; with a worker
//! per core, a task woken while one worker is busy wakes another, and each such hand-off is a
//! futex call and a context switch. On the 2-core development machine, shared with Postgres and
//! the broker, one worker instead of two cut the API process's CPU per createTask by about a
//! sixth without lowering the commands per second; but the `tasks` page at 100 readers, a load
//! that needs more than one core for the API, was served 0.85-0.9x as fast (docs/performance.md,
//! "Runtime workers"). So the count is the operator's to choose for the host and the load, and
//! the default stays the one that never leaves a core idle.

use std::num::NonZeroUsize;

use chronicle_infrastructure::config::{var, ConfigError};
use thiserror::Error;

/// The variable that sizes the runtime.
const VARIABLE: &str = "CHRONICLE_RUNTIME_WORKERS";

/// Why the runtime did not start.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The variable is set to something other than a whole number from 1.
    #[error(transparent)]
    Setting(#[from] ConfigError),
    /// The operating system refused the runtime's threads or its I/O driver.
    #[error("could not start the async runtime")]
    Build(#[source] std::io::Error),
}

/// The workers `value` (the variable's text, when set and not empty) asks for; `None` leaves
/// the count to tokio.
fn workers(value: Option<String>) -> Result<Option<NonZeroUsize>, ConfigError> {
    let Some(text) = value else {
        return Ok(None);
    };
    match text.trim().parse::<NonZeroUsize>() {
        Ok(count) => Ok(Some(count)),
        Err(_) => Err(ConfigError {
            variable: VARIABLE,
            message: format!("must be a whole number from 1, got {text:?}"),
        }),
    }
}

/// The runtime, sized by `CHRONICLE_RUNTIME_WORKERS` (`main` has loaded the `.env` file).
pub fn build() -> Result<tokio::runtime::Runtime, RuntimeError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(count) = workers(var(VARIABLE))? {
        builder.worker_threads(count.get());
    }
    builder.enable_all().build().map_err(RuntimeError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_leaves_the_count_to_tokio() {
        assert_eq!(workers(None).unwrap(), None);
    }

    #[test]
    fn a_set_count_is_taken_as_it_is() {
        assert_eq!(workers(Some("4".into())).unwrap(), NonZeroUsize::new(4));
        assert_eq!(workers(Some(" 1 ".into())).unwrap(), NonZeroUsize::new(1));
    }

    #[test]
    fn anything_but_a_count_from_one_is_refused_with_the_value() {
        for bad in ["0", "-1", "two", "1.5"] {
            let error = workers(Some(bad.to_owned())).unwrap_err().to_string();
            assert!(
                error.starts_with("CHRONICLE_RUNTIME_WORKERS: ")
                    && error.contains(&format!("{bad:?}")),
                "{bad}: {error}"
            );
        }
    }
}
