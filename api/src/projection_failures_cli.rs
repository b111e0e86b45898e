//! `chronicle projection-failures list|retry NAME`: the events a projection could not apply,
//! from a shell, as `projectionFailures` and `retryProjectionFailures` show them.

use std::process::ExitCode;

use chronicle_application::access::{Principal, ALL_TEAMS};
use chronicle_application::projection::failures::ProjectionFailures;
use chronicle_application::AppError;

/// Exit status for a usage error (an unknown projection), like clap's own.
const USAGE: u8 = 2;

/// What to do with a projection's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// One line per failure.
    List,
    /// Apply them again.
    Retry,
}

/// Runs `action` on `name`'s failures; exit 0 when done (a retry: when none remain), 1 when a
/// retry left some or failed, 2 for an unknown projection.
pub async fn run(
    failures: &ProjectionFailures,
    action: Action,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    let principal = Principal::new(
        format!("cli:{user}"),
        &["admin".to_owned()],
        &[ALL_TEAMS.to_owned()],
    );
    let outcome = match action {
        Action::List => list(failures, &principal, name).await,
        Action::Retry => failures.retry(&principal, name).await.map(|outcome| {
            println!(
                "{name}: {} applied, {} still failing",
                outcome.resolved, outcome.remaining
            );
            outcome.remaining == 0
        }),
    };
    match outcome {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::FAILURE),
        Err(AppError::Validation { message, .. }) => {
            eprintln!("chronicle projection-failures: {message}");
            Ok(ExitCode::from(USAGE))
        }
        Err(error) => {
            eprintln!(
                "chronicle projection-failures: {}",
                chronicle_application::error_chain::Chain(&error)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn list(
    failures: &ProjectionFailures,
    principal: &Principal,
    name: &str,
) -> Result<bool, AppError> {
    let mut after = None;
    let mut count = 0;
    loop {
        let page = failures.list(principal, name, Some(100), after).await?;
        for failure in &page.items {
            let event = &failure.event;
            println!(
                "{}  {} {}#{} {}  attempts={}  first={}  last={}  {}",
                event.event_id,
                event.aggregate_type,
                event.aggregate_id,
                event.sequence,
                event.event_type,
                failure.attempts,
                failure.first_failed_at.to_rfc3339(),
                failure.last_failed_at.to_rfc3339(),
                failure.reason
            );
            count += 1;
        }
        match (page.has_next_page, page.items.last()) {
            (true, Some(last)) => after = Some(last.id),
            _ => break,
        }
    }
    println!("{count} failures of {name}");
    Ok(true)
}
