//! When a prefix of a sequence-numbered table is final: no transaction that could still commit
//! a row in it is running.
//!
//! Event positions and outbox ids are taken at insert, and transactions commit in any order,
//! so a reader that follows such a table past the rows it has seen (the audit tree, the relay's
//! floor) would skip a row whose transaction took a lower number and committed later. A row's
//! own transaction id does not tell: a transaction with a lower transaction id can take a
//! higher number after another took a lower one, and `pg_snapshot_xmax` is the last completed
//! transaction plus one, not the next one to be given out, so a transaction that started just
//! before a read can be above it and below nothing the read reports.
//!
//! What does hold: every number is taken after its transaction got its id (the columns'
//! defaults ask for the transaction id first, `migrations/20261208000001_…`), and transaction
//! ids are given out in increasing order. So, in three steps:
//!
//! 1. a read's snapshot sees `top` as the highest number: every transaction holding a number
//!    up to `top` got its transaction id before that snapshot was taken;
//! 2. any transaction id given out after that read (the reader's own next write) is higher
//!    than all of theirs;
//! 3. once a later snapshot's oldest running transaction (`pg_snapshot_xmin`) is above that
//!    id, all of them have ended: every row up to `top` is visible to it, or never will be.
//!
//! [`Settling`] keeps that bookkeeping; the reader feeds it the three facts as it meets them.

/// A read's view, waiting for a transaction id given out after it, then for every older
/// transaction to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    top: i64,
    later_transaction: Option<i64>,
}

/// The highest number up to which every row is final, and the read that will move it next.
#[derive(Debug, Default, Clone)]
pub(crate) struct Settling {
    through: i64,
    pending: Option<Pending>,
    /// Whether `through` was proved by a read (rather than being the start's 0).
    proved: bool,
}

impl Settling {
    /// A read whose snapshot had `oldest_running` as its `pg_snapshot_xmin` and saw `top` as
    /// the highest number. Settles an earlier read's `top` if every transaction older than a
    /// transaction given out after it has ended, then waits on this one's. Answers the number
    /// up to which every row is final as of this read's snapshot: visible to it, or never.
    pub(crate) fn read(&mut self, oldest_running: i64, top: i64) -> i64 {
        if let Some(Pending {
            top: earlier,
            later_transaction: Some(later),
        }) = self.pending
        {
            if oldest_running > later {
                self.through = self.through.max(earlier);
                self.pending = None;
                self.proved = true;
            }
        }
        if self.pending.is_none() && top <= self.through {
            // Nothing above what is final: this read proves it as well.
            self.proved = true;
        }
        if self.pending.is_none() && top > self.through {
            self.pending = Some(Pending {
                top,
                later_transaction: None,
            });
        }
        self.through
    }

    /// Whether [`Settling::read`]'s answer is proved, not the 0 a fresh reader starts from
    /// (which a store with events has not yet shown to be all that is final).
    pub(crate) fn proved(&self) -> bool {
        self.proved
    }

    /// Whether a read saw numbers above the final prefix, and they are not yet final.
    pub(crate) fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// The highest number a transaction id given out now would settle: a read's `top` above
    /// it needs one (see [`Settling::later_transaction`]).
    pub(crate) fn covered(&self) -> i64 {
        match self.pending {
            Some(Pending {
                top,
                later_transaction: Some(_),
            }) => top,
            _ => self.through,
        }
    }

    /// The transaction id the pending read waits on, if it has one: a new id helps only once
    /// the oldest running transaction is above it (the read then settles, and the next one
    /// needs an id of its own); before, it would be thrown away.
    pub(crate) fn awaited(&self) -> Option<i64> {
        self.pending.and_then(|pending| pending.later_transaction)
    }

    /// A transaction id the reader was given after its last [`Settling::read`] (by a write of
    /// its own, in a later statement).
    pub(crate) fn later_transaction(&mut self, transaction: i64) {
        if let Some(pending) = &mut self.pending {
            pending.later_transaction.get_or_insert(transaction);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_settles_only_after_a_later_transaction_and_every_older_one_ended() {
        let mut settling = Settling::default();
        // Up to 10 seen; nothing is known yet about who may hold a number below it.
        assert_eq!(settling.read(100, 10), 0);
        // Without a transaction given out after that read, no xmin proves anything.
        assert_eq!(settling.read(500, 12), 0);
        settling.later_transaction(120);
        // Transaction 120 (or one before it) is still running.
        assert_eq!(settling.read(120, 15), 0);
        // Everything up to 120 ended: 10 is final, and this read's 20 is the next to wait.
        assert_eq!(settling.read(121, 20), 10);
        settling.later_transaction(130);
        settling.later_transaction(140);
        assert_eq!(
            settling.read(131, 25),
            20,
            "the first later transaction counts"
        );
    }

    #[test]
    fn a_transaction_from_before_the_read_does_not_count() {
        let mut settling = Settling::default();
        // A write before any read: there is nothing pending for it to settle.
        settling.later_transaction(50);
        assert_eq!(settling.read(60, 10), 0);
        assert_eq!(settling.read(1_000, 10), 0);
        settling.later_transaction(70);
        assert_eq!(settling.read(71, 10), 10);
        // Nothing new above it: nothing waits.
        settling.later_transaction(80);
        assert_eq!(settling.read(90, 10), 10);
    }

    /// The interleaving that defeats a rule based on `pg_snapshot_xmax`: A (xid 100) takes 11
    /// and 12 after B (xid 101) took 10; A commits; a read sees 12 with B above its xmax.
    #[test]
    fn a_younger_transaction_holding_a_lower_number_holds_the_prefix_back() {
        let mut settling = Settling::default();
        // The read: xmin 101 (B is at or above xmax and not counted), top 12.
        assert_eq!(settling.read(101, 12), 0);
        // The reader's next write is given 102, after B's 101.
        settling.later_transaction(102);
        // B still runs: every snapshot's xmin is at most 101.
        assert_eq!(settling.read(101, 13), 0);
        // B ended (and so did the reader's 102): 12 is final, B's 10 visible.
        assert_eq!(settling.read(103, 13), 12);
    }

    #[test]
    fn a_fresh_reader_proves_its_prefix_before_answering_for_it() {
        let mut settling = Settling::default();
        assert_eq!(settling.read(100, 10), 0);
        assert!(
            !settling.proved() && settling.waiting(),
            "0 is not yet known final"
        );
        assert_eq!(settling.covered(), 0);
        settling.later_transaction(101);
        assert_eq!(
            settling.covered(),
            10,
            "a transaction given out now settles 10"
        );
        assert_eq!(settling.read(102, 10), 10);
        assert!(settling.proved() && !settling.waiting());

        let mut empty = Settling::default();
        assert_eq!(empty.read(7, 0), 0);
        assert!(empty.proved(), "an empty table is final at 0");
    }

    #[test]
    fn a_read_waiting_on_its_transaction_names_it_until_it_settles() {
        let mut settling = Settling::default();
        assert_eq!(settling.awaited(), None, "nothing pending");
        settling.read(100, 10);
        assert_eq!(settling.awaited(), None, "pending, but no id yet: take one");
        settling.later_transaction(101);
        assert_eq!(settling.awaited(), Some(101));
        // A transaction older than 101 still runs: another id now would be thrown away.
        settling.read(90, 30);
        assert_eq!(settling.awaited(), Some(101));
        // It ended: 10 settles, and 40 waits for an id of its own.
        assert_eq!(settling.read(102, 40), 10);
        assert_eq!(settling.awaited(), None);
    }
}
