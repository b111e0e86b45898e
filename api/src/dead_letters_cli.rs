//! `chronicle dead-letters list|show|redrive|discard --group NAME [--id ID]...`: the dead
//! letters of a consumer group from a shell, as `deadLetters` and its mutations show them.
//! The actor recorded for a redrive or a discard is `cli:$USER`.

use std::process::ExitCode;

use chronicle_application::access::Principal;
use chronicle_application::dead_letter_admin::DeadLetterAdmin;
use chronicle_application::ports::dead_letters::DeadLetter;
use chronicle_application::AppError;

use crate::cli::{exit_status, operator, USAGE};

/// What to do with the group's dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Every dead letter not discarded, one line each.
    List,
    /// Each of `--id` in full.
    Show,
    /// Send back those of `--id`, or every one waiting.
    Redrive,
    /// Discard those of `--id`.
    Discard,
}

/// Runs `action` on `group`'s dead letters; exit 0 when done, 2 for an unknown group or a
/// missing `--id`, 1 when a dead letter to show is not there or the broker refused a redrive.
pub async fn run(
    admin: &DeadLetterAdmin,
    action: Action,
    group: &str,
    ids: &[i64],
) -> anyhow::Result<ExitCode> {
    let principal = operator();
    let outcome = match action {
        Action::List => list(admin, &principal, group).await,
        Action::Show => show(admin, &principal, group, ids).await,
        Action::Redrive => {
            let ids = (!ids.is_empty()).then_some(ids);
            admin.redrive(&principal, group, ids).await.map(|sent| {
                println!("sent {sent} dead letters back to {group}");
                true
            })
        }
        Action::Discard if ids.is_empty() => {
            eprintln!("chronicle dead-letters discard: name the dead letters with --id");
            return Ok(ExitCode::from(USAGE));
        }
        Action::Discard => admin.discard(&principal, group, ids).await.map(|n| {
            println!("discarded {n} dead letters of {group}");
            true
        }),
    };
    Ok(exit_status("dead-letters", outcome))
}

async fn list(
    admin: &DeadLetterAdmin,
    principal: &Principal,
    group: &str,
) -> Result<bool, AppError> {
    let mut after = None;
    let mut count = 0;
    loop {
        let page = admin.list(principal, group, Some(100), after).await?;
        for letter in &page.items {
            println!("{}", summary(letter));
            count += 1;
        }
        match (page.has_next_page, page.items.last()) {
            (true, Some(last)) => after = Some(last.id),
            _ => break,
        }
    }
    println!("{count} dead letters of {group}");
    Ok(true)
}

async fn show(
    admin: &DeadLetterAdmin,
    principal: &Principal,
    group: &str,
    ids: &[i64],
) -> Result<bool, AppError> {
    let mut all_found = true;
    for id in ids {
        match admin.get(principal, group, *id).await? {
            Some(letter) => print!("{}", details(&letter)),
            None => {
                eprintln!("no dead letter {id} in {group}");
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

/// One line: id, attempts, when, where from, key, reason, and its last redrive.
fn summary(letter: &DeadLetter) -> String {
    let message = &letter.message;
    let redriven = letter
        .redriven
        .as_ref()
        .map(|(at, by)| format!("  redriven {} by {by}", at.to_rfc3339()))
        .unwrap_or_default();
    format!(
        "{}  attempts={}  {}  {}/{}@{}  key={}  {}{redriven}",
        letter.id,
        message.attempts,
        letter.dead_lettered_at.to_rfc3339(),
        message.original_topic,
        message.original_partition,
        message.original_offset,
        text(message.key.as_deref()),
        message.reason,
    )
}

/// Every field, headers and the whole payload.
fn details(letter: &DeadLetter) -> String {
    let mut out = format!("{}\n", summary(letter));
    for (name, value) in &letter.message.headers {
        out.push_str(&format!("  {name}: {}\n", text(value.as_deref())));
    }
    out.push_str(&format!("{}\n", text(letter.message.payload.as_deref())));
    out
}
