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
//! [`KEEP_AT_MOST`] after it was taken, so that the pool's own checks (which server is the
//! primary after a failover, the connections' lifetime) still reach it.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

/// Longest a worker keeps one connection before giving it back to the pool and taking another.
pub(crate) const KEEP_AT_MOST: Duration = Duration::from_secs(10);

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
        match kept.filter(|kept| kept.taken.elapsed() < KEEP_AT_MOST) {
            Some(kept) => Ok(kept),
            None => Ok(Self {
                connection: pool.acquire().await?,
                taken: Instant::now(),
            }),
        }
    }

    /// The connection, to run statements on.
    pub(crate) fn connection(&mut self) -> &mut PgConnection {
        &mut self.connection
    }

    /// Keeps the connection after a statement whose outcome says it is still usable: it
    /// answered (`fine`), or the server refused the statement, which leaves the connection
    /// ready for the next. Any other failure (I/O, protocol, a timeout) gives it back to the
    /// pool, whose test on release closes it if it is broken.
    pub(crate) fn keep_if(self, fine: bool) -> Option<Self> {
        fine.then_some(self)
    }

    /// [`Self::keep_if`] for a statement's own result.
    pub(crate) fn keep_after<T>(self, result: &Result<T, sqlx::Error>) -> Option<Self> {
        self.keep_if(matches!(result, Ok(_) | Err(sqlx::Error::Database(_))))
    }
}
