//! How far back the relay's reads must look: a gap-safe lower bound on unpublished ids.
//!
//! Reading "unpublished rows in id order" from the start of the partial index costs more
//! than the rows it finds: every row published since the last vacuum leaves a dead entry the
//! scan walks past (1.5-8 ms a read under load, against 0.1 ms for a read that starts at the
//! last row it enqueued). But ids are taken when a row is inserted and transactions commit in
//! any order, so a read that only looks past the last id it saw would miss a row whose
//! transaction took a lower id and committed later: published out of its aggregate's order.
//!
//! The floor passes an id only once it is settled ([`crate::settling`]: no transaction that
//! could still commit a row at or below it is running) and a read that started at the old
//! floor covered it. Rows the reads leave out on purpose stay above it: a parked row and the
//! rows of its aggregate behind it (the floor stays below the first parked row), rows a full
//! queue or a read's limit left for later (the floor stops at the last row enqueued), and rows
//! whose delivery failed (a failure resets the floor, so the next read starts from the first
//! row). A row can become unpublished below the floor only through something outside this
//! relay (an operator's repair, a restored backup, a relay elsewhere that lost its lock late):
//! the floor starts over from the first row every [`SWEEP_EVERY`], so such a row waits at most
//! that long (possibly behind later rows of its aggregate, as any re-publication is), for one
//! slower read a second.

use std::time::{Duration, Instant};

use crate::settling::Settling;

/// How often a read starts from the first row whatever the floor says.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What one read saw of the outbox, beside its rows, all from the read's own snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marks {
    /// The oldest transaction still running (`pg_snapshot_xmin`).
    pub oldest_running: i64,
    /// The highest id visible (0 when the outbox is empty).
    pub top: i64,
    /// The lowest id of a parked, unpublished row, if any.
    pub first_parked: Option<i64>,
}

/// How much of the outbox one read covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Covered {
    /// Every row it could take: fewer rows than its limit, all enqueued.
    Everything,
    /// Only up to this id: its limit, a full queue or a refused row stopped it there.
    UpTo(i64),
}

/// Every unpublished row the relay still has to read has an id above [`Floor::get`].
#[derive(Debug, Default)]
pub(super) struct Floor {
    below: i64,
    settling: Settling,
    /// When the floor last started from the first row (`None`: it is there now).
    swept_at: Option<Instant>,
}

impl Floor {
    /// Reads at `now` look at ids above this.
    pub(super) fn get(&mut self, now: Instant) -> i64 {
        match self.swept_at {
            None => self.swept_at = Some(now),
            Some(swept) if now.duration_since(swept) >= SWEEP_EVERY => {
                self.below = 0;
                self.swept_at = Some(now);
            }
            Some(_) => {}
        }
        self.below
    }

    /// Moves the floor after a read that started at [`Floor::get`], saw `marks` and covered
    /// `covered`.
    pub(super) fn advance(&mut self, marks: Marks, covered: Covered) {
        let mut to = self.settling.read(marks.oldest_running, marks.top);
        if let Covered::UpTo(id) = covered {
            to = to.min(id);
        }
        if let Some(parked) = marks.first_parked {
            to = to.min(parked - 1);
        }
        self.below = self.below.max(to);
    }

    /// The relay was given this transaction id (marking rows published) after its last read.
    pub(super) fn later_transaction(&mut self, transaction: i64) {
        self.settling.later_transaction(transaction);
    }

    /// Starts over from the first row: a delivery failed, so rows below the floor may be
    /// unpublished again. What is settled stays settled.
    pub(super) fn reset(&mut self) {
        self.below = 0;
        self.swept_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(floor: &mut Floor) -> i64 {
        floor.get(Instant::now())
    }

    fn marks(oldest_running: i64, top: i64) -> Marks {
        Marks {
            oldest_running,
            top,
            first_parked: None,
        }
    }

    /// Reads `top` at `oldest_running`, then marks rows published as transaction `mark`.
    fn read_then_mark(floor: &mut Floor, oldest_running: i64, top: i64, mark: i64) {
        floor.advance(marks(oldest_running, top), Covered::Everything);
        floor.later_transaction(mark);
    }

    #[test]
    fn the_floor_passes_ids_only_once_they_are_settled() {
        let mut floor = Floor::default();
        read_then_mark(&mut floor, 100, 10, 105);
        assert_eq!(at(&mut floor), 0);
        // Transaction 100 (which may hold an id below 10) still runs.
        read_then_mark(&mut floor, 100, 20, 110);
        assert_eq!(at(&mut floor), 0);
        // Everything up to the mark given out after the first read has ended.
        read_then_mark(&mut floor, 106, 30, 120);
        assert_eq!(at(&mut floor), 10);
        read_then_mark(&mut floor, 121, 40, 130);
        assert_eq!(at(&mut floor), 30);
    }

    #[test]
    fn rows_a_read_left_for_later_or_held_behind_a_parked_row_stay_above_the_floor() {
        let mut floor = Floor::default();
        read_then_mark(&mut floor, 1, 50, 2);
        // The read stopped at 30 (its limit or a full queue): rows 31-50 are still to read.
        floor.advance(marks(3, 60), Covered::UpTo(30));
        floor.later_transaction(4);
        assert_eq!(at(&mut floor), 30);
        floor.advance(
            Marks {
                first_parked: Some(45),
                ..marks(5, 70)
            },
            Covered::Everything,
        );
        assert_eq!(
            at(&mut floor),
            44,
            "the parked row and its aggregate's later rows"
        );
    }

    #[test]
    fn a_failure_starts_over_from_the_first_row() {
        let mut floor = Floor::default();
        read_then_mark(&mut floor, 1, 8, 2);
        read_then_mark(&mut floor, 3, 8, 4);
        assert_eq!(at(&mut floor), 8);
        floor.reset();
        assert_eq!(at(&mut floor), 0);
    }

    #[test]
    fn every_sweep_interval_a_read_starts_from_the_first_row() {
        let mut floor = Floor::default();
        let start = Instant::now();
        assert_eq!(floor.get(start), 0);
        read_then_mark(&mut floor, 1, 9, 2);
        read_then_mark(&mut floor, 3, 9, 4);
        assert_eq!(floor.get(start + SWEEP_EVERY / 2), 9);
        assert_eq!(floor.get(start + SWEEP_EVERY), 0, "a sweep");
        // What is settled stays settled: the read after the sweep climbs back at once.
        floor.advance(marks(5, 9), Covered::Everything);
        assert_eq!(floor.get(start + SWEEP_EVERY * 3 / 2), 9);
    }
}
