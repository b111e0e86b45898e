//! What the operator commands (`dead-letters`, `projection-failures`, `replay`) share: who the
//! operator at the shell is, and how an outcome becomes an exit status.

use std::process::ExitCode;

use chronicle_application::access::{Principal, ALL_TEAMS};
use chronicle_application::error_chain::Chain;
use chronicle_application::AppError;

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
