//! `chronicle held list|show|retry|discard --kind KIND [--holder NAME] [--id ID]...`: held
//! messages (parked outbox records, dead letters, projection failures) from a shell, as
//! `held` and its mutations show them. The actor recorded for a retry or a discard is
//! `cli:$USER`. `chronicle dead-letters` and `chronicle projection-failures` are this command
//! with the kind given.

use std::process::ExitCode;

use chronicle_application::access::Principal;
use chronicle_application::held::HeldMessages;
use chronicle_application::ports::dead_letters::{Redrive, RejectedMessage};
use chronicle_application::ports::held::{HeldContent, HeldKind, HeldMessage};
use chronicle_application::ports::store_error::StoreError;
use chronicle_application::AppError;

use crate::cli::{exit_status, operator, USAGE};

/// What to do with the held messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Every one held (not discarded), one line each.
    List,
    /// Each of `--id` in full.
    Show,
    /// Retry those of `--id`, or every one waiting.
    Retry,
    /// Discard those of `--id`.
    Discard,
}

/// Runs `action` on `kind` held by `holder`; exit 0 when done (a retry: when none remain
/// held), 2 for an unknown holder or a missing `--id`, 1 when a message to show is not there,
/// a retry left some held or the broker refused a redrive.
pub async fn run(
    held: &HeldMessages,
    command: &str,
    action: Action,
    kind: HeldKind,
    holder: Option<&str>,
    ids: &[i64],
) -> ExitCode {
    let principal = operator();
    let outcome = match action {
        Action::List => list(held, &principal, kind, holder).await,
        Action::Show | Action::Discard if ids.is_empty() => {
            let verb = if action == Action::Show {
                "show"
            } else {
                "discard"
            };
            eprintln!(
                "chronicle {command} {verb}: name the {} with --id",
                plural(kind)
            );
            return ExitCode::from(USAGE);
        }
        Action::Show => show(held, &principal, kind, holder, ids).await,
        Action::Retry => {
            let chosen = (!ids.is_empty()).then_some(ids);
            held.retry(&principal, kind, holder, chosen)
                .await
                .map(|outcome| {
                    let holder = holder.unwrap_or("the relay");
                    match kind {
                        HeldKind::Parked => {
                            println!("sent {} parked records back to the relay", outcome.retried)
                        }
                        HeldKind::DeadLetter => {
                            println!("sent {} dead letters back to {holder}", outcome.retried)
                        }
                        HeldKind::ProjectionFailure => println!(
                            "{holder}: {} applied, {} still failing",
                            outcome.retried, outcome.remaining
                        ),
                    }
                    outcome.remaining == 0
                })
        }
        Action::Discard => held.discard(&principal, kind, holder, ids).await.map(|n| {
            println!("discarded {n} {}", noun(kind, holder));
            true
        }),
    };
    exit_status(command, outcome)
}

/// What messages of `kind` are called.
fn plural(kind: HeldKind) -> &'static str {
    match kind {
        HeldKind::Parked => "parked records",
        HeldKind::DeadLetter => "dead letters",
        HeldKind::ProjectionFailure => "failures",
    }
}

/// One message of `kind`, as errors name it.
fn singular(kind: HeldKind) -> &'static str {
    match kind {
        HeldKind::Parked => "parked record",
        HeldKind::DeadLetter => "dead letter",
        HeldKind::ProjectionFailure => "projection failure",
    }
}

/// What `kind` held by `holder` is called in a summary line.
fn noun(kind: HeldKind, holder: Option<&str>) -> String {
    let holder = holder.unwrap_or("-");
    match kind {
        HeldKind::Parked => "parked records".to_owned(),
        HeldKind::DeadLetter => format!("dead letters of {holder}"),
        HeldKind::ProjectionFailure => format!("failures of {holder}"),
    }
}

async fn list(
    held: &HeldMessages,
    principal: &Principal,
    kind: HeldKind,
    holder: Option<&str>,
) -> Result<bool, AppError> {
    let mut after = None;
    let mut count = 0;
    loop {
        let page = held.list(principal, kind, holder, Some(100), after).await?;
        for message in &page.items {
            println!("{}", summary(message));
            count += 1;
        }
        match (page.has_next_page, page.items.last()) {
            (true, Some(last)) => after = Some(last.id),
            _ => break,
        }
    }
    println!("{count} {}", noun(kind, holder));
    Ok(true)
}

async fn show(
    held: &HeldMessages,
    principal: &Principal,
    kind: HeldKind,
    holder: Option<&str>,
    ids: &[i64],
) -> Result<bool, AppError> {
    let mut all_found = true;
    for id in ids {
        match held.get(principal, kind, holder, *id).await? {
            Some(message) => print!("{}", details(&message)),
            None => {
                eprintln!(
                    "no {} {id} in {}",
                    singular(kind),
                    holder.unwrap_or(chronicle_application::held::OUTBOX)
                );
                all_found = false;
            }
        }
    }
    Ok(all_found)
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(
        || "-".to_owned(),
        |b| String::from_utf8_lossy(b).into_owned(),
    )
}

/// One line: id, attempts, when, what is held, why, and its last retry. A projection failure
/// leads with its event, as `chronicle projection-failures` printed it, and ends with its id.
fn summary(message: &HeldMessage) -> String {
    let retried = message
        .retried
        .as_ref()
        .map(|(at, by)| format!("  redriven {} by {by}", at.to_rfc3339()))
        .unwrap_or_default();
    let what = match &message.content {
        HeldContent::Outbox {
            aggregate_type,
            aggregate_id,
            event_id,
            sequence,
        } => format!("{aggregate_type} {aggregate_id}#{sequence} {event_id}"),
        HeldContent::Message(letter) => format!(
            "{}/{}@{}  key={}",
            letter.original_topic,
            letter.original_partition,
            letter.original_offset,
            text(letter.key.as_deref()),
        ),
        HeldContent::Event(event) => {
            return format!(
                "{}  {} {}#{} {}  attempts={}  first={}  last={}  {}  id={}",
                event.event_id,
                event.aggregate_type,
                event.aggregate_id,
                event.sequence,
                event.event_type,
                message.attempts,
                message.first_held_at.to_rfc3339(),
                message.last_held_at.to_rfc3339(),
                message.reason,
                message.id,
            )
        }
    };
    format!(
        "{}  attempts={}  {}  {what}  {}{retried}",
        message.id,
        message.attempts,
        message.last_held_at.to_rfc3339(),
        message.reason,
    )
}

/// Every field; a dead letter's headers and whole payload.
fn details(message: &HeldMessage) -> String {
    let mut out = format!("{}\n", summary(message));
    if let HeldContent::Message(letter) = &message.content {
        for (name, value) in &letter.headers {
            out.push_str(&format!("  {name}: {}\n", text(value.as_deref())));
        }
        out.push_str(&format!("{}\n", text(letter.payload.as_deref())));
    }
    out
}

/// The redrive of a command that holds no dead letters: it never sends, and says why if asked.
pub struct NoBroker;

#[async_trait::async_trait]
impl Redrive for NoBroker {
    async fn send_back(&self, _id: i64, _letter: &RejectedMessage) -> Result<(), StoreError> {
        Err(StoreError::backend(
            "redrive",
            "this command was not given a broker: only dead letters are sent back",
        ))
    }
}
