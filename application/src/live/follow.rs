//! One subscription's way through the store: catch up from its cursor by reading the store
//! below the settled position, then take the tail's batches, and read the store again whenever
//! the batches cannot be trusted to follow on (it fell behind the kept batches, or it joined
//! between two). Each event is delivered once, in position order, and none is skipped: the
//! cursor only moves past positions read from the store or covered by a batch.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use super::feed::{Batch, Shared};
use super::filter::admits;
use crate::error::AppError;
use crate::ports::audit_log::AuditFilter;
use crate::ports::event_feed::FeedRecord;

/// Events read from the store per catch-up read: a subscriber's buffer is at most this.
pub(crate) const CATCH_UP_PAGE: usize = 500;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After this position (0: the beginning of the store).
    After(i64),
    /// Live only: from the store's settled position when it starts (events that became final
    /// shortly before may still arrive; none after it is missed).
    Now,
}

/// One subscription.
pub(crate) struct Follower {
    shared: Arc<Shared>,
    filter: AuditFilter,
    /// Every matching event up to here was delivered; `None` until a live-only start knows
    /// where the store ends.
    cursor: Option<i64>,
    batches: broadcast::Receiver<Arc<Batch>>,
    /// The settled position as the tail publishes it, after each batch: a rise with no batch
    /// before it means the tail moved on without broadcasting (nobody was listening when its
    /// round began), and the store has what lies between.
    settled: watch::Receiver<Option<i64>>,
    ready: VecDeque<FeedRecord>,
    catching_up: bool,
}

impl Follower {
    /// A subscription to `filter`'s events from `start`. It takes the tail's batches from
    /// now, before its first read of the store, so nothing falls between the two.
    pub(crate) fn new(shared: Arc<Shared>, filter: AuditFilter, start: Start) -> Self {
        let batches = shared.batches.subscribe();
        let settled = shared.settled.subscribe();
        shared.wake.notify_one();
        let (cursor, catching_up) = match start {
            Start::After(position) => (Some(position), true),
            // Where the store is settled now, if the tail knows yet.
            Start::Now => (*settled.borrow(), false),
        };
        Self {
            shared,
            filter,
            cursor,
            batches,
            settled,
            ready: VecDeque::new(),
            catching_up,
        }
    }

    /// The next event; `None` when the feed stopped; an error when the store could not be
    /// read (the subscription should end: the client resumes from its last cursor).
    pub(crate) async fn next(&mut self) -> Option<Result<FeedRecord, AppError>> {
        loop {
            if let Some(record) = self.ready.pop_front() {
                return Some(Ok(record));
            }
            let Some(cursor) = self.cursor else {
                self.cursor = Some(self.settled().await?);
                continue;
            };
            if self.catching_up {
                let through = self.settled().await?;
                if let Err(error) = self.catch_up(cursor, through).await {
                    return Some(Err(error));
                }
                continue;
            }
            tokio::select! {
                received = self.batches.recv() => match received {
                    Ok(batch) => self.take(cursor, &batch),
                    // Fallen behind the kept batches: what it missed is in the store.
                    Err(RecvError::Lagged(_)) => self.catching_up = true,
                    Err(RecvError::Closed) => return None,
                },
                changed = self.settled.changed() => {
                    changed.ok()?;
                    self.settled_rose()?;
                }
            }
        }
    }

    /// The settled position changed: take the batches sent before it, and if it is still
    /// past the cursor, none covered the rise: read the store.
    fn settled_rose(&mut self) -> Option<()> {
        let settled = *self.settled.borrow_and_update();
        loop {
            match self.batches.try_recv() {
                Ok(batch) => {
                    let cursor = self.cursor?;
                    self.take(cursor, &batch);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(_)) => {
                    self.catching_up = true;
                    break;
                }
                Err(TryRecvError::Closed) => return None,
            }
        }
        if settled
            .zip(self.cursor)
            .is_some_and(|(settled, cursor)| settled > cursor)
        {
            self.catching_up = true;
        }
        Some(())
    }

    /// The settled position, once the tail proved one; `None` when the tail is gone.
    async fn settled(&mut self) -> Option<i64> {
        let proved = self.settled.wait_for(Option::is_some).await.ok()?;
        *proved
    }

    /// One read of the store after `cursor`, up to the settled position `through`; done once
    /// a read comes back short of a page (the batches sent meanwhile follow on from
    /// `through`, since the tail publishes a position only after its batch).
    async fn catch_up(&mut self, cursor: i64, through: i64) -> Result<(), AppError> {
        if through <= cursor {
            self.catching_up = false;
            return Ok(());
        }
        let page = self
            .shared
            .store
            .read(&self.filter, cursor, through, CATCH_UP_PAGE)
            .await?;
        self.cursor = Some(match page.last() {
            Some(last) if page.len() == CATCH_UP_PAGE => last.position,
            _ => {
                self.catching_up = false;
                through
            }
        });
        self.ready.extend(page);
        Ok(())
    }

    /// A batch of the tail: the events after `cursor` it covers, or, when it starts past the
    /// cursor, a read of the store first.
    fn take(&mut self, cursor: i64, batch: &Batch) {
        if batch.through <= cursor {
            return; // read from the store already
        }
        if batch.after > cursor {
            // Joined between batches or a batch was not seen: read the gap from the store
            // (the settled position is already at least this batch's end).
            self.catching_up = true;
            return;
        }
        self.ready.extend(
            batch
                .records
                .iter()
                .filter(|record| record.position > cursor && admits(&self.filter, record))
                .cloned(),
        );
        self.cursor = Some(batch.through);
    }
}
