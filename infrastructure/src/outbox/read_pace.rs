//! When the relay reads: at once after a quiet spell, and while rows keep coming at most once
//! per interval, so each read takes a few milliseconds' rows instead of the two or three that
//! one group of commands commits.
//!
//! Rows read together go to the producer together, in fewer and fuller batches: the Kafka
//! client's cost per record fell to about half when reads went from five rows to twenty-five
//! (docs/performance.md, "Reads paced, notifies paced"). A read cut short (by the room in
//! flight, a full producer queue) leaves rows it could see: the next one is due at once.

use std::time::Duration;

use tokio::time::Instant;

/// Whether the relay should read now, and if not, until when it waits.
#[derive(Debug)]
pub(crate) struct ReadPace {
    interval: Duration,
    /// Rows may be waiting: set by every wake-up and by a read that found rows, cleared by a
    /// read that found none.
    unread: bool,
    /// While rows keep coming, the earliest time of the next read.
    next: Option<Instant>,
}

impl ReadPace {
    /// A pace of at most one read per `interval` while rows keep coming; the first read is due.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            unread: true,
            next: None,
        }
    }

    /// Whether a read is due at `now`.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.unread && self.next.is_none_or(|at| now >= at)
    }

    /// A read ended at `now` having enqueued `found` rows, `cut_short` if it left rows it could
    /// see (then the next read is due at once, even when none could be enqueued).
    pub(crate) fn read(&mut self, now: Instant, found: usize, cut_short: bool) {
        self.unread = found > 0 || cut_short;
        self.next = (found > 0 && !cut_short).then(|| now + self.interval);
    }

    /// Rows were appended (or may have been: the poll, a notification).
    pub(crate) fn woken(&mut self) {
        self.unread = true;
    }

    /// Everything unpublished is to be read again from the start, at once (after a failure).
    pub(crate) fn restart(&mut self) {
        (self.unread, self.next) = (true, None);
    }

    /// Whether nothing is known to wait: the relay may idle.
    pub(crate) fn quiet(&self) -> bool {
        !self.unread
    }

    /// When a read that is waiting for its turn is due; `None` when none is waiting.
    pub(crate) fn waiting_until(&self) -> Option<Instant> {
        self.next.filter(|_| self.unread)
    }

    /// Completes when [`Self::waiting_until`] is reached; never when no read is waiting.
    pub(crate) async fn turn(&self) {
        match self.waiting_until() {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(5);

    #[test]
    fn the_first_read_and_the_first_after_a_quiet_spell_are_due_at_once() {
        let now = Instant::now();
        let mut pace = ReadPace::new(INTERVAL);
        assert!(pace.due(now));
        pace.read(now, 0, false);
        assert!(!pace.due(now) && pace.quiet() && pace.waiting_until().is_none());
        pace.woken();
        assert!(
            pace.due(now),
            "an append after an empty read is read at once"
        );
    }

    #[test]
    fn while_rows_keep_coming_reads_wait_their_turn() {
        let now = Instant::now();
        let mut pace = ReadPace::new(INTERVAL);
        pace.read(now, 3, false);
        pace.woken();
        assert!(!pace.due(now + INTERVAL / 2));
        assert_eq!(pace.waiting_until(), Some(now + INTERVAL));
        assert!(pace.due(now + INTERVAL));
        // The read after the rows found none: the pace ends, nothing waits.
        pace.read(now + INTERVAL, 0, false);
        assert!(pace.quiet() && pace.waiting_until().is_none());
    }

    #[test]
    fn a_read_cut_short_is_followed_at_once_and_a_failure_starts_over_at_once() {
        let now = Instant::now();
        let mut pace = ReadPace::new(INTERVAL);
        pace.read(now, 1000, true);
        assert!(
            pace.due(now),
            "a read cut short by the room in flight goes on at once"
        );
        pace.read(now, 0, true);
        assert!(
            pace.due(now) && !pace.quiet(),
            "a read whose rows found the producer's queue full is read again, not forgotten"
        );
        pace.read(now, 2, false);
        assert!(!pace.due(now));
        pace.restart();
        assert!(pace.due(now));
    }
}
