//! What the operator commands (`held`, `replay`, `erase`, `migrate`, `audit`) share: how they
//! reach the database, who the operator at the shell is, and how an outcome becomes an exit
//! status.

use std::process::ExitCode;

use anyhow::Context as _;
use chronicle_application::access::{Principal, ALL_TEAMS};
use chronicle_application::error_chain::Chain;
use chronicle_application::AppError;
use chronicle_infrastructure::db;
use chronicle_infrastructure::secret::DatabaseUrl;
use sqlx::PgPool;

/// Whether a command brings the schema up to date before it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply pending migrations (idempotent): the command writes, or reads what they add.
    Apply,
    /// Leave the schema as it is: the command only reads, and may run against a replica.
    Leave,
}

/// A pool of `connections` on `url`, the way every operator command connects (a short
/// acquire timeout: a shell waits for no one), migrated when `migrations` says so.
pub async fn database(
    url: &DatabaseUrl,
    connections: u32,
    migrations: Migrations,
) -> anyhow::Result<PgPool> {
    let pool = db::connect(url.expose(), connections).await?;
    if migrations == Migrations::Apply {
        db::migrate(&pool).await.context("applying migrations")?;
    }
    Ok(pool)
}

/// Exit 0 when a check found everything intact, 1 when it did not.
pub fn verdict(intact: bool) -> ExitCode {
    match intact {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// Exit status for a usage error (an unknown name), like clap's own.
pub(crate) const USAGE: u8 = 2;

/// The operator at this shell: an admin of every team, recorded as `cli:$USER` wherever an
/// actor is recorded (who redrove a dead letter, say).
pub fn operator() -> Principal {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    Principal::new(
        format!("cli:{user}"),
        &["admin".to_owned()],
        &[ALL_TEAMS.to_owned()],
    )
}

/// Exit 0 when `outcome` is done, 1 when it is not (or failed: the cause is printed), 2 for a
/// validation error (an unknown name: the message names the known ones).
pub(crate) fn exit_status(command: &str, outcome: Result<bool, AppError>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(AppError::Validation { message, .. }) => {
            eprintln!("chronicle {command}: {message}");
            ExitCode::from(USAGE)
        }
        Err(error) => {
            eprintln!("chronicle {command}: {}", Chain(&error));
            ExitCode::FAILURE
        }
    }
}
