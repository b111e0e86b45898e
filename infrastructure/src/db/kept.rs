//! A pool connection a busy worker keeps between its statements, instead of taking one from the
//! pool and giving it back for each.
//!
//! sqlx tests every connection given back to its pool with a round trip (a protocol `Sync` and
//! its answer, in a task of its own), whatever the connection just did. For a worker that runs a
//! statement every few milliseconds, such as the group commit's writers, that is a second round
//! trip per statement: about 3% of the service's CPU under load, and a wake-up of a Postgres
//! backend each time (docs/performance.md, "The allocator's version and the pool's release
//! test").
//!
//! A kept connection goes back to the pool (and is tested then, as usual) when the worker
//! idles, when a statement failed in a way that may have left it unusable, and at the latest
//! [`KEEP_AT_MOST`] (a second) after it was taken, so that the pool's own checks (which server
//! is the primary after a failover, the connections' lifetime) still reach it.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

/// Longest a worker keeps one connection before giving it back to the pool and taking another:
/// the pool's check of which host is the primary runs once a second (`db::failover`), so a
/// kept connection is never a second staler than one the pool hands out.
pub(crate) const KEEP_AT_MOST: Duration = Duration::from_secs(1);

/// How long a worker keeps its connection once it has nothing left to do: a busy worker runs
/// its statements on the same connection without the pool's test at each release, and an idle
/// one gives it back soon, so a small pool's readers never wait on idle workers.
pub(crate) const KEEP_WHILE_IDLE: Duration = Duration::from_millis(100);

/// A connection taken from the pool, kept across statements while they keep succeeding.
pub(crate) struct KeptConnection {
    connection: PoolConnection<Postgres>,
    taken: Instant,
}

impl KeptConnection {
    /// `kept` if it may serve another statement, else a connection from `pool`.
    pub(crate) async fn reuse_or_acquire(
        kept: Option<Self>,
        pool: &PgPool,
    ) -> Result<Self, sqlx::Error> {
        match kept.filter(Self::fresh) {
            Some(kept) => Ok(kept),
            None => Ok(Self {
                connection: pool.acquire().await?,
                taken: Instant::now(),
            }),
        }
    }

    /// Whether it was taken less than [`KEEP_AT_MOST`] ago; one that was not goes back to the
    /// pool when dropped.
    pub(crate) fn fresh(&self) -> bool {
        self.taken.elapsed() < KEEP_AT_MOST
    }

    /// The connection, to run statements on.
    pub(crate) fn connection(&mut self) -> &mut PgConnection {
        &mut self.connection
    }

    /// Keeps the connection if `fine` (its statement answered, or failed in a way that leaves
    /// the connection ready for the next); otherwise gives it back to the pool, whose test on
    /// release closes it if it is broken.
    pub(crate) fn keep_if(self, fine: bool) -> Option<Self> {
        fine.then_some(self)
    }

    /// [`Self::keep_if`] for a statement's own result: kept when it answered or the server
    /// refused the statement (a taken key, a deadlock), not when the server is going away or
    /// the connection failed (`db::is_unreachable`: a terminated backend's `57P01`, a write
    /// that reached a standby, I/O).
    pub(crate) fn keep_after<T>(self, result: &Result<T, sqlx::Error>) -> Option<Self> {
        let usable = match result {
            Ok(_) => true,
            Err(error @ sqlx::Error::Database(_)) => !super::is_unreachable(error),
            Err(_) => false,
        };
        self.keep_if(usable)
    }
}
