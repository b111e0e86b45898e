//! What makes two requests under one idempotency key "the same request".
//!
//! An idempotency key promises that a retry answers the first result. A client that reuses a
//! key for a different request (another title, another expected version) has a bug, and
//! answering the first result would hide it: the convention (Stripe; the IETF
//! Idempotency-Key draft) is to refuse. The fingerprint is what is compared: a SHA-256 over
//! the command's name, its target, the version the caller pinned and the command's arguments.
//!
//! A creation's target is an id generated for each request, so a retry carries a new one: it
//! is left out of the target and masked wherever the arguments repeat it.

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// Which way of fingerprinting a stored fingerprint was made with: one made another way (a
/// later release hashing a changed command shape) cannot be compared, and is treated like a
/// key recorded before fingerprints were.
const VERSION: &str = "v1:";

/// Whether two stored fingerprints say "another request": only when both were made the same
/// way and differ.
pub(crate) fn differs(first: &str, this: &str) -> bool {
    let version = |f: &str| f.split_once(':').map(|(v, _)| v.to_owned());
    version(first) == version(this) && first != this
}

/// The request `command` is, as the fingerprint stored with its idempotency key
/// (`v1:` and hex).
pub(crate) fn request_fingerprint<C: Serialize>(
    command_name: &str,
    aggregate_id: &str,
    creates_aggregate: bool,
    expected_version: Option<u64>,
    command: &C,
) -> Result<String, AppError> {
    let mut arguments = serde_json::to_value(command)
        .map_err(|e| AppError::internal_from("fingerprint the command", e))?;
    let target = if creates_aggregate {
        mask(&mut arguments, aggregate_id);
        Value::Null
    } else {
        Value::from(aggregate_id)
    };
    // serde_json's maps are ordered by key, so the text is canonical for a given value.
    let request = json!({
        "command": command_name,
        "target": target,
        "expectedVersion": expected_version,
        "arguments": arguments,
    });
    let digest = Sha256::digest(request.to_string().as_bytes());
    Ok(format!("{VERSION}{}", hex::encode(digest)))
}

/// Replaces every occurrence of the generated id with a placeholder.
fn mask(value: &mut Value, generated_id: &str) {
    match value {
        Value::String(text) if text == generated_id => *text = "<generated>".to_owned(),
        Value::Array(items) => items.iter_mut().for_each(|item| mask(item, generated_id)),
        Value::Object(fields) => fields.values_mut().for_each(|v| mask(v, generated_id)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Create {
        id: String,
        title: String,
    }

    fn create(id: &str, title: &str) -> String {
        let command = Create {
            id: id.to_owned(),
            title: title.to_owned(),
        };
        request_fingerprint("createTask", id, true, None, &command).unwrap()
    }

    #[test]
    fn a_retried_creation_under_a_new_generated_id_is_the_same_request() {
        assert_eq!(create("id-1", "first"), create("id-2", "first"));
    }

    #[test]
    fn clearing_a_deadline_is_another_request_than_leaving_it() {
        use chronicle_domain::task::{TaskCommand, UpdateTaskDetails};
        let update = |due_at| {
            let command = TaskCommand::UpdateDetails(UpdateTaskDetails {
                title: Some("X".to_owned()),
                due_at,
                ..UpdateTaskDetails::default()
            });
            request_fingerprint("updateTask", "t-1", false, None, &command).unwrap()
        };
        assert_ne!(update(None), update(Some(None)));
        assert_eq!(update(None), update(None));
    }

    #[test]
    fn fingerprints_of_another_version_are_not_compared() {
        let this = create("id-1", "first");
        assert!(differs(&create("id-1", "other"), &this));
        assert!(!differs(&this, &this));
        assert!(
            !differs("v0:abc", &this),
            "made another way: not comparable"
        );
    }

    #[test]
    fn other_arguments_another_target_or_another_pinned_version_are_another_request() {
        assert_ne!(create("id-1", "first"), create("id-1", "DIFFERENT"));
        let start = |target: &str, expected: Option<u64>| {
            request_fingerprint("startTask", target, false, expected, &()).unwrap()
        };
        assert_eq!(start("t-1", Some(1)), start("t-1", Some(1)));
        assert_ne!(start("t-1", Some(1)), start("t-2", Some(1)));
        assert_ne!(start("t-1", Some(1)), start("t-1", Some(2)));
        assert_ne!(start("t-1", None), start("t-1", Some(1)));
        let cancel = request_fingerprint("cancelTask", "t-1", false, Some(1), &()).unwrap();
        assert_ne!(start("t-1", Some(1)), cancel);
    }
}
