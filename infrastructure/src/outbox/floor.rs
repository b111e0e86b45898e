//! How far back the relay's reads must look: a gap-safe lower bound on unpublished ids.
//!
//! Reading "unpublished rows in id order" from the start of the partial index costs more
//! than the rows it finds: every row published since the last vacuum leaves a dead entry the
//! scan walks past (1.5-8 ms a read under load, against 0.1 ms for a read that starts at the
//! last row it enqueued). But ids are taken when a row is inserted and transactions commit in
//! any order, so a read that only looks past the last id it saw would miss a row whose
//! transaction took a lower id and committed later: lost, not late.
//!
//! The floor moves past an id only once no transaction that could still commit a row at or
//! below it is running, as the audit tree settles positions:
//!
//! - every id is taken after its transaction got its id (the column default asks for the
//!   transaction id first), so at a read whose snapshot sees `top` as the highest id, every
//!   transaction holding an id up to `top` has a transaction id below that snapshot's `xmax`;
//! - at a later read whose snapshot's `xmin` (the oldest transaction still running) is at
//!   least that `xmax`, all of them have ended: their rows are visible to that read or never
//!   will be, and that read (which starts at the old floor) finds every one still unpublished.
//!
//! Rows the reads leave out on purpose stay above the floor: a parked row and the rows of its
//! aggregate behind it (the floor stays below the first parked row), rows a full queue or a
//! read's limit left for later (the floor stops at the last row enqueued), and rows whose
//! delivery failed (a failure resets the floor, so the next read starts from the beginning).
//! A row can become unpublished below the floor only through something outside this relay (an
//! operator's repair, a restored backup, a relay elsewhere that lost its lock late): the floor
//! starts over from the first row every [`SWEEP_EVERY`], so such a row waits at most that long,
//! for one slower read a second.

use std::time::{Duration, Instant};

/// How often a read starts from the first row whatever the floor says.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What one read saw of the outbox, beside its rows, all from the read's own snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marks {
    /// The oldest transaction still running (`pg_snapshot_xmin`).
    pub oldest_running: i64,
    /// The first transaction id not yet given out (`pg_snapshot_xmax`).
    pub next_transaction: i64,
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

/// A bound waiting for the transactions that could still write below it to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// Every transaction holding an id up to `top` has a transaction id below this.
    horizon: i64,
    top: i64,
}

/// Every unpublished row the relay still has to read has an id above [`Floor::get`].
#[derive(Debug, Default)]
pub(super) struct Floor {
    below: i64,
    pending: Option<Pending>,
    /// When the floor last started from the first row (`None`: it is there now).
    swept_at: Option<Instant>,
}

impl Floor {
    /// Reads at `now` look at ids above this.
    pub(super) fn get(&mut self, now: Instant) -> i64 {
        match self.swept_at {
            None => self.swept_at = Some(now),
            Some(swept) if now.duration_since(swept) >= SWEEP_EVERY => {
                *self = Self {
                    swept_at: Some(now),
                    ..Self::default()
                };
            }
            Some(_) => {}
        }
        self.below
    }

    /// Moves the floor after a read that started at [`Floor::get`], saw `marks` and covered
    /// `covered`.
    pub(super) fn advance(&mut self, marks: Marks, covered: Covered) {
        if let Some(pending) = self.pending {
            if marks.oldest_running >= pending.horizon {
                let mut to = pending.top;
                if let Covered::UpTo(id) = covered {
                    to = to.min(id);
                }
                if let Some(parked) = marks.first_parked {
                    to = to.min(parked - 1);
                }
                self.below = self.below.max(to);
                self.pending = None;
            }
        }
        if self.pending.is_none() && marks.top > self.below {
            self.pending = Some(Pending {
                horizon: marks.next_transaction,
                top: marks.top,
            });
        }
    }

    /// Starts over from the first row: a delivery failed, so rows below the floor may be
    /// unpublished again.
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(floor: &mut Floor) -> i64 {
        floor.get(Instant::now())
    }

    fn marks(oldest_running: i64, next_transaction: i64, top: i64) -> Marks {
        Marks {
            oldest_running,
            next_transaction,
            top,
            first_parked: None,
        }
    }

    #[test]
    fn the_floor_passes_ids_only_once_every_transaction_that_took_them_ended() {
        let mut floor = Floor::default();
        // Ids up to 10 seen while transaction 100 (which may hold a lower id) runs.
        floor.advance(marks(100, 105, 10), Covered::Everything);
        assert_eq!(at(&mut floor), 0);
        // Transaction 100 still runs: nothing moves, however many reads pass.
        floor.advance(marks(100, 110, 20), Covered::Everything);
        floor.advance(marks(100, 120, 30), Covered::Everything);
        assert_eq!(at(&mut floor), 0);
        // It ended, and so did everything that began before the first read: up to 10 is done.
        floor.advance(marks(105, 130, 40), Covered::Everything);
        assert_eq!(at(&mut floor), 10);
        // The next bound is the one this read saw.
        floor.advance(marks(130, 140, 45), Covered::Everything);
        assert_eq!(at(&mut floor), 40);
    }

    #[test]
    fn rows_a_read_left_for_later_or_held_behind_a_parked_row_stay_above_the_floor() {
        let mut floor = Floor::default();
        floor.advance(marks(1, 2, 50), Covered::Everything);
        // The read stopped at 30 (its limit or a full queue): rows 31-50 are still to read.
        floor.advance(marks(2, 3, 60), Covered::UpTo(30));
        assert_eq!(at(&mut floor), 30);
        floor.advance(
            Marks {
                first_parked: Some(45),
                ..marks(3, 4, 70)
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
    fn a_failure_starts_over_and_an_empty_outbox_moves_nothing() {
        let mut floor = Floor::default();
        floor.advance(marks(1, 2, 0), Covered::Everything);
        floor.advance(marks(5, 6, 0), Covered::Everything);
        assert_eq!(at(&mut floor), 0);
        floor.advance(marks(5, 6, 8), Covered::Everything);
        floor.advance(marks(6, 7, 8), Covered::Everything);
        assert_eq!(at(&mut floor), 8);
        floor.reset();
        assert_eq!(at(&mut floor), 0);
    }

    #[test]
    fn every_sweep_interval_a_read_starts_from_the_first_row() {
        let mut floor = Floor::default();
        let start = Instant::now();
        assert_eq!(floor.get(start), 0);
        floor.advance(marks(1, 2, 9), Covered::Everything);
        floor.advance(marks(2, 3, 9), Covered::Everything);
        assert_eq!(floor.get(start + SWEEP_EVERY / 2), 9);
        assert_eq!(floor.get(start + SWEEP_EVERY), 0, "a sweep");
        floor.advance(marks(3, 4, 9), Covered::Everything);
        floor.advance(marks(4, 5, 9), Covered::Everything);
        assert_eq!(
            floor.get(start + SWEEP_EVERY * 3 / 2),
            9,
            "and the climb again"
        );
    }
}
