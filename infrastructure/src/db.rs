//! The Postgres pool and migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::InfraError;

/// The migrations in `migrations/`, embedded at build time so the binary migrates itself.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool. Acquiring fails fast (5 s) so a database outage turns into a clear error for
/// the caller instead of a hung request.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, InfraError> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()
        .map_err(InfraError::db("parse DATABASE_URL"))?
        .application_name("chronicle");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(InfraError::db("connect to Postgres"))
}

/// Applies pending migrations; safe to run any number of times, from several processes.
pub async fn migrate(pool: &PgPool) -> Result<(), InfraError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
