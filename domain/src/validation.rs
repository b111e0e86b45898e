//! Field rules shared by commands: lengths and shapes of free text.
//!
//! Limits are counted in characters (not bytes) so users of any script get the same allowance.

use crate::error::DomainError;
use crate::ids::UserId;

/// Longest task title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest task description.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Most labels on one task.
pub const MAX_LABELS: usize = 20;
/// Longest label.
pub const MAX_LABEL_CHARS: usize = 50;
/// Longest free-text outcome (a task's result or error, a cancellation reason).
pub const MAX_OUTCOME_CHARS: usize = 10_000;

/// A title is trimmed, must not be blank and must fit in [`MAX_TITLE_CHARS`].
pub fn title(field: &str, raw: &str) -> Result<String, DomainError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(DomainError::validation(field, "must not be blank"));
    }
    at_most(field, trimmed, MAX_TITLE_CHARS)?;
    Ok(trimmed.to_owned())
}

/// Rejects text longer than `max` characters, or holding a NUL character (which no text or
/// JSON value can store, so it can only be an attack or a broken client).
pub fn at_most(field: &str, text: &str, max: usize) -> Result<(), DomainError> {
    if text.contains('\0') {
        return Err(DomainError::validation(
            field,
            "must not contain NUL characters",
        ));
    }
    if text.chars().count() > max {
        return Err(DomainError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Labels are trimmed, non-blank, at most [`MAX_LABEL_CHARS`] each, at most [`MAX_LABELS`] in
/// all; duplicates collapse and the order is made canonical (sorted) so that "the same labels"
/// compares equal and an update that only reorders them emits nothing.
pub fn labels(field: &str, raw: &[String]) -> Result<Vec<String>, DomainError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, label) in raw.iter().enumerate() {
        let trimmed = label.trim();
        let label_field = format!("{field}[{i}]");
        if trimmed.is_empty() {
            return Err(DomainError::validation(label_field, "must not be blank"));
        }
        at_most(&label_field, trimmed, MAX_LABEL_CHARS)?;
        out.push(trimmed.to_owned());
    }
    canonical_set(field, out, MAX_LABELS, "labels")
}

/// Sorts and deduplicates a set-like field, then enforces its size limit, so the same set
/// always serializes the same way.
fn canonical_set<T: Ord>(
    field: &str,
    mut items: Vec<T>,
    max: usize,
    noun: &str,
) -> Result<Vec<T>, DomainError> {
    items.sort();
    items.dedup();
    if items.len() > max {
        return Err(DomainError::validation(
            field,
            format!("at most {max} {noun}"),
        ));
    }
    Ok(items)
}

/// Most watchers a task can have.
pub const MAX_WATCHERS: usize = 50;

/// Parses user ids, sorted and deduplicated, at most [`MAX_WATCHERS`]; errors name the item.
pub fn user_ids(field: &str, raw: &[String]) -> Result<Vec<UserId>, DomainError> {
    let ids = raw
        .iter()
        .enumerate()
        .map(|(i, id)| UserId::parse(&format!("{field}[{i}]"), id.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    canonical_set(field, ids, MAX_WATCHERS, "watchers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_is_trimmed_and_bounded_in_characters() {
        assert_eq!(title("title", "  Write it  ").unwrap(), "Write it");
        assert!(title("title", &"é".repeat(200)).is_ok());
        assert!(title("title", &"é".repeat(201)).is_err());
        assert!(title("title", " \t ").is_err());
        assert!(title("title", "nul\0inside").is_err());
    }

    #[test]
    fn watchers_are_user_ids_deduplicated_sorted_and_limited() {
        let raw: Vec<String> = ["u-2", " u-1", "u-2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ids = user_ids("watchers", &raw).unwrap();
        assert_eq!(
            ids.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
            ["u-1", "u-2"]
        );
        let bad = user_ids("watchers", &["ok".to_owned(), "not ok".to_owned()]).unwrap_err();
        assert!(bad.to_string().contains("watchers[1]"), "{bad}");
        let many: Vec<String> = (0..51).map(|n| format!("u-{n}")).collect();
        assert!(user_ids("watchers", &many).is_err());
    }

    #[test]
    fn labels_are_deduplicated_sorted_and_limited() {
        let raw: Vec<String> = ["b", "a", "b "].iter().map(|s| s.to_string()).collect();
        assert_eq!(labels("labels", &raw).unwrap(), vec!["a", "b"]);
        let too_many: Vec<String> = (0..21).map(|i| format!("l{i}")).collect();
        assert!(labels("labels", &too_many).is_err());
        let err = labels("labels", &["ok".into(), " ".into()]).unwrap_err();
        assert_eq!(
            err,
            DomainError::validation("labels[1]", "must not be blank")
        );
    }
}
