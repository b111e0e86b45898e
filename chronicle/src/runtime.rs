//! The async runtime every command runs on, and how many worker threads it has
//! (`CHRONICLE_WORKER_THREADS`).
//!
//! The default is tokio's: one worker per core the process may use. Fewer workers trade peak
//! parallelism for less scheduling. Chronicle's work per command is short and mostly waits on
//! Postgres and Kafka; with a worker per core, a task woken while one worker is busy wakes
//! another, and each such hand-off is a futex call and a context switch. On the 2-core
//! development machine, shared with Postgres and the broker, one worker instead of two cut the
//! API process's CPU per createTask by about a sixth and raised the commands per second; but a
//! read-heavy load that needs more than one core for the API (the `tasks` page at 100 readers)
//! was served about a tenth slower (docs/performance.md, "Runtime workers"). So the count is
//! the operator's to choose for the host and the load, and the default stays the one that never
//! leaves a core idle.

use std::num::NonZeroUsize;

use thiserror::Error;

/// The variable that sizes the runtime.
const VARIABLE: &str = "CHRONICLE_WORKER_THREADS";

/// Why the runtime did not start.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The variable is set to something other than a whole number from 1.
    #[error("CHRONICLE_WORKER_THREADS must be a whole number from 1 (got {0:?})")]
    NotAWorkerCount(String),
    /// The operating system refused the runtime's threads or its I/O driver.
    #[error("could not start the async runtime")]
    Build(#[source] std::io::Error),
}

/// Workers when the variable is unset: one per core.
pub fn default_workers(cores: NonZeroUsize) -> usize {
    cores.get()
}

/// The workers `value` (the variable's text, when set) asks for on a host with `cores`.
pub fn workers(value: Option<&str>, cores: NonZeroUsize) -> Result<usize, RuntimeError> {
    let Some(text) = value else {
        return Ok(default_workers(cores));
    };
    match text.trim().parse::<usize>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(RuntimeError::NotAWorkerCount(text.to_owned())),
    }
}

/// The runtime, sized by `CHRONICLE_WORKER_THREADS` (read after the `.env` file).
pub fn build() -> Result<tokio::runtime::Runtime, RuntimeError> {
    // The cores this process may use: its CPU affinity and cgroup quota, as the standard
    // library counts them.
    let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let value = std::env::var(VARIABLE).ok();
    let workers = workers(value.as_deref(), cores)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(RuntimeError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(count: usize) -> NonZeroUsize {
        NonZeroUsize::new(count).unwrap()
    }

    #[test]
    fn unset_takes_one_worker_per_core() {
        assert_eq!(workers(None, cores(1)).unwrap(), 1);
        assert_eq!(workers(None, cores(16)).unwrap(), 16);
    }

    #[test]
    fn a_set_count_is_taken_as_it_is() {
        assert_eq!(workers(Some("4"), cores(2)).unwrap(), 4);
        assert_eq!(workers(Some(" 1 "), cores(16)).unwrap(), 1);
    }

    #[test]
    fn anything_but_a_count_from_one_is_refused_with_the_value() {
        for bad in ["0", "-1", "two", "", "1.5"] {
            let error = workers(Some(bad), cores(2)).unwrap_err();
            assert!(
                error.to_string().contains(&format!("{bad:?}")),
                "{bad}: {error}"
            );
        }
    }
}
