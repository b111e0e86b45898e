//! `chronicle projection-failures list|retry NAME`: the events a projection could not apply,
//! from a shell, as `projectionFailures` and `retryProjectionFailures` show them.

use std::process::ExitCode;

use chronicle_application::access::Principal;
use chronicle_application::projection::failures::ProjectionFailures;
use chronicle_application::AppError;

use crate::cli::{exit_status, operator};

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
    let principal = operator();
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
    Ok(exit_status("projection-failures", outcome))
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
