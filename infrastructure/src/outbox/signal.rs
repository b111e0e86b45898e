//! How the relay learns that rows were appended, without a `NOTIFY` in the append.
//!
//! The append statement used to call `pg_notify` in its own transaction. Postgres takes one
//! cluster-wide lock for every committing transaction that notified and holds it through the WAL
//! flush, so commits that notify stop sharing flushes: pgbench's single-row insert fell from
//! about 15,000 to 3,400 transactions/s with a notify beside it (docs/performance.md). Instead:
//!
//! - **In the appending process** the store raises [`OutboxSignal::appended`] after the commit,
//!   and a relay running in that process wakes at once (a [`Notify`] permit: an append while
//!   the relay is busy is remembered, never lost).
//! - **For a relay in another process** (`--only api` instances, or a standby whose leader is
//!   elsewhere), [`OutboxSignal::announce`] sends one `NOTIFY` in a transaction of its own after
//!   local appends, with at most one in flight, and while appends keep coming at most one per
//!   [`ANNOUNCE_AT_MOST_EVERY`]: the first append after a quiet spell is announced at once,
//!   later ones wait for the gap and go together. Sent back to back, one per round trip, the
//!   notifies were 7% of an API process's CPU under load (docs/performance.md). The commands'
//!   own commits never take the notify lock. It stays quiet while this process's own relay
//!   leads, since that relay was already woken directly.
//! - The relay still polls every [`crate::outbox::RelayOptions::poll_interval`], so a
//!   notification lost while its listener reconnects delays rows by at most that long.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt as _;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::status::RelayStatus;
use crate::db::kept::{KeptConnection, KEEP_WHILE_IDLE};
use chronicle_application::error_chain::Chain;

/// The channel the relay listens on for appends made by other processes.
pub const OUTBOX_CHANNEL: &str = "chronicle_outbox";

/// Least time between two announcements while appends keep coming. A relay in another process
/// learns of a busy API's appends this much later at most (it reads a few milliseconds' rows
/// at once then), and an API process sends at most 200 notifies a second instead of one per
/// round trip.
pub const ANNOUNCE_AT_MOST_EVERY: Duration = Duration::from_millis(5);

/// What the announcer does next.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// Tell the other relays.
    Announce,
    /// Nothing was appended for a while: the kept connection goes back to the pool.
    Idle,
}

/// Raised by the event store after each committed append; awaited by the relay.
#[derive(Clone, Default)]
pub struct OutboxSignal {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Wakes the relay of this process.
    relay: Notify,
    /// Wakes the announcer, which tells relays of other processes.
    announcer: Notify,
    /// This process's relay, once the announcer runs beside one.
    local_relay: OnceLock<Arc<RelayStatus>>,
    /// Told of every append too (the subscriptions' tail of the store).
    also: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl OutboxSignal {
    /// A signal nobody listens to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Has `wake` called after every append as well; only the first call counts.
    pub fn also_wake(&self, wake: impl Fn() + Send + Sync + 'static) {
        let _ = self.inner.also.set(Box::new(wake));
    }

    /// Rows were committed to the outbox by this process.
    pub fn appended(&self) {
        self.inner.relay.notify_one();
        if let Some(wake) = self.inner.also.get() {
            wake();
        }
        // While the local relay leads nobody else needs telling, and the command path does
        // not wake the announcer for nothing.
        if !self.local_relay_leads() {
            self.inner.announcer.notify_one();
        }
    }

    fn local_relay_leads(&self) -> bool {
        self.inner
            .local_relay
            .get()
            .is_some_and(|status| status.is_leader())
    }

    /// Completes after the next [`Self::appended`] (at once if one happened since the last
    /// wait): the relay's in-process wake-up.
    pub(crate) async fn appended_here(&self) {
        self.inner.relay.notified().await;
    }

    /// Tells relays in other processes about this process's appends with `NOTIFY`, until
    /// `shutdown`. `local_relay` is this process's relay, if it runs one: while it leads, it was
    /// woken directly and nothing is sent.
    pub async fn announce(
        self,
        pool: PgPool,
        local_relay: Option<Arc<RelayStatus>>,
        shutdown: CancellationToken,
    ) {
        if let Some(status) = local_relay {
            let _ = self.inner.local_relay.set(status);
        }
        // Kept while appends keep coming: no test of the connection at each release.
        let mut kept: Option<KeptConnection> = None;
        let mut last: Option<Instant> = None;
        while let Some(turn) = self.next_turn(&mut last, kept.is_some(), &shutdown).await {
            kept = match turn {
                Turn::Announce => notify_other_relays(&pool, kept).await,
                Turn::Idle => None,
            };
        }
    }

    /// Waits for the next announcement that is due (`last` is when the one before was sent,
    /// and becomes now) or, while `holding` a connection, for a quiet spell; `None` at
    /// `shutdown`.
    async fn next_turn(
        &self,
        last: &mut Option<Instant>,
        holding: bool,
        shutdown: &CancellationToken,
    ) -> Option<Turn> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = self.inner.announcer.notified() => {}
                () = tokio::time::sleep(KEEP_WHILE_IDLE), if holding => return Some(Turn::Idle),
            }
            // Appends soon after the last announcement wait for the gap. Every append made
            // meanwhile committed before this announcement is sent, so it goes with it: its
            // wake-up is taken here rather than announced again a gap later.
            if let Some(at) = *last {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep_until(at + ANNOUNCE_AT_MOST_EVERY) => {}
                }
                let _ = self.inner.announcer.notified().now_or_never();
            }
            // Leadership may have come since the append that woke us.
            if !self.local_relay_leads() {
                *last = Some(Instant::now());
                return Some(Turn::Announce);
            }
        }
    }
}

/// Sends one `NOTIFY` on `kept` or a connection from `pool`; answers the connection if it may
/// serve the next one. A failure is only logged: the relay's poll picks the rows up anyway.
async fn notify_other_relays(
    pool: &PgPool,
    kept: Option<KeptConnection>,
) -> Option<KeptConnection> {
    let mut connection = match KeptConnection::reuse_or_acquire(kept, pool).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(error = %Chain(&error), "could not notify the relay of other instances");
            return None;
        }
    };
    let sent = sqlx::query!("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
        .execute(connection.connection())
        .await;
    if let Err(error) = &sent {
        tracing::debug!(error = %Chain(error), "could not notify the relay of other instances");
    }
    connection.keep_after(&sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_append_while_the_relay_is_busy_is_not_lost() {
        let signal = OutboxSignal::new();
        signal.appended(); // nobody waiting yet
        tokio::time::timeout(Duration::from_millis(100), signal.appended_here())
            .await
            .expect("the earlier append wakes the next wait");
    }

    #[tokio::test]
    async fn announcements_are_paced_while_appends_keep_coming_and_the_last_append_is_announced() {
        let signal = OutboxSignal::new();
        let shutdown = CancellationToken::new();
        let appender = tokio::spawn({
            let signal = signal.clone();
            async move {
                let first = Instant::now();
                let mut last = first;
                for _ in 0..30 {
                    signal.appended();
                    last = Instant::now();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (first, last)
            }
        });
        let mut last = None;
        let mut announced = Vec::new();
        // Until nothing more comes for a while.
        while let Ok(turn) = tokio::time::timeout(
            Duration::from_millis(200),
            signal.next_turn(&mut last, false, &shutdown),
        )
        .await
        {
            assert_eq!(turn, Some(Turn::Announce));
            announced.push(Instant::now());
        }
        let (first_append, last_append) = appender.await.unwrap();
        let spread = last_append - first_append;
        let paced = spread.as_millis() / ANNOUNCE_AT_MOST_EVERY.as_millis() + 2;
        assert!(
            (1..=paced as usize).contains(&announced.len()),
            "{} announcements for 30 appends over {spread:?}, at most {paced} expected",
            announced.len()
        );
        for pair in announced.windows(2) {
            assert!(pair[1] - pair[0] >= ANNOUNCE_AT_MOST_EVERY, "{announced:?}");
        }
        assert!(
            announced.last().is_some_and(|at| *at >= last_append),
            "the last append was announced after it was made"
        );
    }

    #[tokio::test]
    async fn without_an_append_the_relay_keeps_waiting() {
        let signal = OutboxSignal::new();
        let waited = tokio::time::timeout(Duration::from_millis(50), signal.appended_here()).await;
        assert!(waited.is_err());
    }
}
