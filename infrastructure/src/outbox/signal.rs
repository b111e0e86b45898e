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
//!   local appends, with at most one in flight: a burst of any size costs one or two notifies,
//!   and the commands' own commits never take the notify lock. It stays quiet while this
//!   process's own relay leads, since that relay was already woken directly.
//! - The relay still polls every [`crate::outbox::RelayOptions::poll_interval`], so a
//!   notification lost while its listener reconnects delays rows by at most that long.

use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::status::RelayStatus;
use chronicle_application::error_chain::Chain;

/// The channel the relay listens on for appends made by other processes.
pub const OUTBOX_CHANNEL: &str = "chronicle_outbox";

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
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.announcer.notified() => {}
            }
            // Leadership may have come since the append that woke us.
            if self.local_relay_leads() {
                continue;
            }
            if let Err(error) = sqlx::query!("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
                .execute(&pool)
                .await
            {
                // The relay's poll picks the rows up anyway.
                tracing::debug!(error = %Chain(&error), "could not notify the relay of other instances");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    async fn without_an_append_the_relay_keeps_waiting() {
        let signal = OutboxSignal::new();
        let waited = tokio::time::timeout(Duration::from_millis(50), signal.appended_here()).await;
        assert!(waited.is_err());
    }
}
