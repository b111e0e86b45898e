//! What the relay is doing, shared with health checks, metrics and the outbox signal (which
//! stays quiet while the local relay leads).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What the relay is doing, for health checks and metrics.
#[derive(Debug, Default)]
pub struct RelayStatus {
    leader: AtomicBool,
    published: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl RelayStatus {
    /// Whether this instance holds the relay lock.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Rows this instance published since start.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The last delivery or database error, cleared by the next success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    pub(super) fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    pub(super) fn add_published(&self, rows: u64) {
        self.published.fetch_add(rows, Ordering::Relaxed);
    }

    pub(super) fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}
