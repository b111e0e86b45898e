//! The Postgres pool and migrations, on one host or on several (libpq's multi-host URLs,
//! [`target`]), following the primary when it moves ([`failover`]).

mod failover;
pub(crate) mod kept;
pub mod planned_per_call;
pub mod replica;
pub mod target;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use chronicle_application::ports::store_error::StoreError;

use crate::InfraError;

pub use failover::connect_session;
use target::Target;

/// The migrations in `migrations/`, embedded at build time so the binary migrates itself.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a one-shot command (`migrate`, `replay`, `audit verify`) waits for a connection.
pub(crate) const COMMAND_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool for a one-shot command.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, InfraError> {
    connect_with(url, max_connections, COMMAND_ACQUIRE_TIMEOUT).await
}

/// Opens a pool whose callers wait at most `acquire_timeout` for a connection: during a
/// database outage that is how long a request takes to answer `UNAVAILABLE` instead of hanging.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, InfraError> {
    connect_named(url, max_connections, acquire_timeout, "chronicle").await
}

/// [`connect_with`], its connections naming themselves `application_name` to the server, so
/// an operator tells the pools apart in `pg_stat_activity`.
pub async fn connect_named(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    application_name: &str,
) -> Result<PgPool, InfraError> {
    let target = Target::parse(url)
        .map_err(|error| InfraError::Database {
            context: "read DATABASE_URL".to_owned(),
            source: sqlx::Error::Configuration(error.into()),
        })?
        .with_application_name(application_name);
    let options = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(acquire_timeout)
        // No ping before each use: it was a round trip per statement (about 3.5% of the
        // service's CPU under load; sqlx still pings once when a connection goes back to the
        // pool). A connection that died while idle fails its next statement with an I/O
        // error, which is `UNAVAILABLE` (retry) like any outage, and the pool replaces it.
        .test_before_acquire(false);
    let pool = if target.is_plain() {
        let single = target.hosts.into_iter().next().map(|host| host.options);
        options.connect_with(single.unwrap_or_default()).await
    } else {
        failover::following_pool(target, options).await
    };
    pool.map_err(InfraError::db("connect to Postgres"))
}

/// Applies pending migrations; safe to run any number of times, from several processes.
pub async fn migrate(pool: &PgPool) -> Result<(), InfraError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Maps a driver error to a store error: [`StoreError::Unavailable`] when the database cannot be
/// reached (down, restarting, refusing connections, the pool waited in vain for one), so callers
/// answer "retry shortly" instead of an internal error; [`StoreError::Backend`] otherwise.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    if is_unreachable(&error) {
        StoreError::unavailable(error)
    } else {
        StoreError::backend("the statement failed", error)
    }
}

/// Whether the error says the database is out of reach rather than a statement failed: I/O and
/// TLS failures, pool timeouts, SQLSTATE classes 08 (connection exception) and 57P (the
/// server is shutting down or starting), 25006 (a write reached a standby: a failover is under
/// way), and a connection a proxy accepted and closed at once.
pub(crate) fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // HAProxy with no server up accepts the connection and closes it: the driver reads
        // nothing where the server answers its TLS request, and calls it a protocol error.
        sqlx::Error::Protocol(message) => {
            message.starts_with("unexpected response from SSLRequest")
        }
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "25006"
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_and_statement_failures_are_not() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(store_error(refused), StoreError::Unavailable(_)));
        assert!(matches!(
            store_error(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            store_error(sqlx::Error::RowNotFound),
            StoreError::Backend { .. }
        ));
        let closed_by_a_proxy =
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".to_owned());
        assert!(matches!(
            store_error(closed_by_a_proxy),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            store_error(sqlx::Error::Protocol("unknown message type".to_owned())),
            StoreError::Backend { .. }
        ));
    }
}
