//! This instance's tail of the event store: one task settles the store's position and, while
//! anyone subscribes, reads what became final and broadcasts it in position order, as
//! contiguous batches `(after, through]`. Subscribers read older events from the store
//! themselves ([`super::follow`]); the batches only spare each of them a read per event.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};

use crate::error_chain::Chain;
use crate::ports::audit_log::AuditFilter;
use crate::ports::event_feed::{EventFeed, FeedRecord};

/// How often the tail looks at the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedSettings {
    /// Between rounds while someone subscribes: what bounds the delay from a commit on
    /// another instance to a notification (`CHRONICLE_FEED_POLL_MS`).
    pub poll: Duration,
    /// Between rounds while nobody does: only keeps the settled position fresh, so a new
    /// live-only subscription starts near the store's end (`CHRONICLE_FEED_IDLE_POLL_MS`).
    pub idle_poll: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(20),
            idle_poll: Duration::from_millis(250),
        }
    }
}

/// The least time between the starts of two rounds, however often the tail is woken: under
/// load a round then serves many commits.
const MIN_ROUND_GAP: Duration = Duration::from_millis(5);
/// Between rounds while positions wait to settle: transactions end within milliseconds.
const SETTLE_AGAIN: Duration = Duration::from_millis(3);
/// After a failed round (the database away).
const AFTER_FAILURE: Duration = Duration::from_millis(500);
/// Events per broadcast batch (and per read of the tail).
const TAIL_PAGE: usize = 1_000;
/// Batches kept for subscribers that are behind; one further behind reads the store instead.
pub(crate) const BATCHES_KEPT: usize = 256;

/// Events that became final together, in position order: every event with a position in
/// `(after, through]`.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) after: i64,
    pub(crate) through: i64,
    pub(crate) records: Vec<FeedRecord>,
}

/// What the tail shares with the subscriptions it feeds.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn EventFeed>,
    pub(crate) batches: broadcast::Sender<Arc<Batch>>,
    /// The settled position, `None` until the tail proved one.
    pub(crate) settled: watch::Sender<Option<i64>>,
    /// A subscription started, a page waits for what is committed to settle, or this process
    /// committed events while someone listens: the tail looks at once (no sooner than
    /// [`MIN_ROUND_GAP`] after its last round).
    pub(crate) wake: Notify,
    settings: FeedSettings,
}

/// The tail; clones share it.
#[derive(Clone)]
pub struct LiveFeed {
    pub(crate) shared: Arc<Shared>,
}

impl LiveFeed {
    /// A tail of `store`; nothing is read until [`LiveFeed::run`].
    pub fn new(store: Arc<dyn EventFeed>, settings: FeedSettings) -> Self {
        let (batches, _) = broadcast::channel(BATCHES_KEPT);
        let (settled, _) = watch::channel(None);
        Self {
            shared: Arc::new(Shared {
                store,
                batches,
                settled,
                wake: Notify::new(),
                settings,
            }),
        }
    }

    /// Follows the store until `stop` completes.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut settling_rounds = 0u32;
        loop {
            let began = tokio::time::Instant::now();
            let before = *self.shared.settled.borrow();
            let mut pause = round(&self.shared).await;
            let moved = *self.shared.settled.borrow() != before;
            // Positions settle within a round or two; when none does for several rounds (a
            // transaction running long), the quick rounds back off to the poll instead of
            // asking every 3 ms. Under load the position keeps moving, and the pace stays.
            if pause == SETTLE_AGAIN && !moved {
                pause = (SETTLE_AGAIN * 2u32.pow(settling_rounds.min(8)))
                    .min(self.shared.settings.poll.max(SETTLE_AGAIN));
                settling_rounds += 1;
            } else {
                settling_rounds = 0;
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
                () = self.shared.wake.notified() => {
                    tokio::time::sleep_until(began + MIN_ROUND_GAP).await;
                }
            }
        }
    }

    /// This process committed events: while anyone subscribes, the tail looks now rather than
    /// at its next poll (events from other processes wait for the poll).
    pub fn nudge(&self) {
        if self.shared.batches.receiver_count() > 0 {
            self.shared.wake.notify_one();
        }
    }
}

/// One round of the tail; answers how long to wait before the next. What it published as
/// settled is also how far it has broadcast: every final event up to there was sent in a batch,
/// or nobody was listening.
async fn round(shared: &Shared) -> Duration {
    let listening = shared.batches.receiver_count() > 0;
    let settled = match shared.store.settle().await {
        Ok(settled) => settled,
        Err(error) => {
            tracing::warn!(error = %Chain(&error), "the live feed could not read the store; retrying");
            return AFTER_FAILURE;
        }
    };
    if let Some(through) = settled.through {
        let published = *shared.settled.borrow();
        match published {
            Some(from) if listening && through > from => send(shared, from, through).await,
            _ => {
                // Subscribers wake only when it moves.
                shared.settled.send_if_modified(|settled| {
                    let moved = settled.is_none_or(|from| through > from);
                    if moved {
                        *settled = Some(through);
                    }
                    moved
                });
            }
        }
    }
    // Nobody listening or waiting for a page: no hurry to settle (each settling round with
    // new positions takes a transaction id).
    let awaited = listening || shared.settled.receiver_count() > 0;
    if settled.waiting && awaited {
        SETTLE_AGAIN
    } else if listening {
        shared.settings.poll
    } else {
        shared.settings.idle_poll
    }
}

/// Broadcasts `(from, through]` in pages, publishing the settled position after each (a failed
/// read stops it, and the next round goes on from where it got).
async fn send(shared: &Shared, from: i64, through: i64) {
    let mut after = from;
    while after < through {
        let records = match shared
            .store
            .read(&AuditFilter::default(), after, through, TAIL_PAGE)
            .await
        {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "the live feed could not read events; retrying");
                return;
            }
        };
        let end = match records.last() {
            Some(last) if records.len() == TAIL_PAGE => last.position,
            _ => through,
        };
        // The batch first, then the position: a subscription that sees the position rise
        // finds the batch already waiting for it, and one that sees a rise with no batch
        // knows to read the store.
        // Nobody listening any more is not an error: the events are in the store.
        let _ = shared.batches.send(Arc::new(Batch {
            after,
            through: end,
            records,
        }));
        shared.settled.send_replace(Some(end));
        after = end;
    }
}
