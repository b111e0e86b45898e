//! Erasing values stored in clear: events written before sealing was on (or with it off), and
//! reports' results, which copy several people's ids and titles and are never sealed.
//! Destroying a key cannot erase those, so the erasure replaces each of the person's values in
//! the stored event by the marker `erased:<pseudonym>`, as opening a sealed value whose key is
//! gone reads.
//!
//! The event's `hash` and `previous_hash` stay as stored, so its successor's link and its
//! Merkle leaf (which commits to the hash) hold; its content no longer matches the hash, and
//! each replacement is recorded in the erasure ledger (`prior_hash` to `redacted_hash`), to
//! which the erasure event commits with a signed digest ([`crate::audit::erasure_check`]). The
//! verifier accepts exactly those changes.
//!
//! What is the person's, as in docs/privacy.md: an id field equal to their id (the actor, the
//! assignee, a watcher), the text of an event they caused, and a report's result that names
//! them or lists a stream holding their values (replaced whole: a report is a snapshot and can
//! be requested again).

use std::collections::HashSet;

use chronicle_domain::ids::ERASED_PREFIX;
use chronicle_domain::personal::Personal;
use serde_json::Value;

use super::sealing::{is_sealed, slots, unexpected};
use crate::aggregates;
use crate::data::event_log::StoredEvent;
use crate::error::AppError;

/// Whose values to replace, and by what.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Their user id, as events stored in clear hold it.
    pub id: &'a str,
    /// Their pseudonym: the marker is `erased:<pseudonym>`.
    pub pseudonym: &'a str,
    /// What makes a report's result theirs when it holds it: their id, and the ids of the
    /// streams holding their values (a report listing a task copies its title).
    pub named_by: &'a HashSet<String>,
}

impl Subject<'_> {
    fn marker(&self) -> String {
        format!("{ERASED_PREFIX}{}", self.pseudonym)
    }
}

/// `event` with `subject`'s values stored in clear replaced by their marker, or `None` when it
/// holds none. Sealed values are left to the key's destruction.
pub fn redact(event: &StoredEvent, subject: &Subject<'_>) -> Result<Option<StoredEvent>, AppError> {
    let mut redacted = event.clone();
    let mut changed = false;
    if !is_sealed(event) {
        let caused_by_subject = event.metadata["actor_id"].as_str() == Some(subject.id);
        for (slot, kind) in slots(event)? {
            let Some(value) = slot.get(event) else {
                continue;
            };
            let theirs = match kind {
                Personal::Subject => value == subject.id,
                Personal::Authored => caused_by_subject,
                Personal::Subjects | Personal::Derived => false,
            };
            if theirs {
                slot.set(&mut redacted, subject.marker());
                changed = true;
            }
        }
    }
    let derived = aggregates::by_type(&event.aggregate_type)
        .ok_or_else(|| unexpected(event, "an aggregate type the registry does not know"))?
        .personal_fields
        .iter()
        .filter(|field| field.event_type == event.event_type && field.kind == Personal::Derived);
    for field in derived {
        let pointer = format!("/{}/{}", event.event_type, field.field);
        if let Some(value) = redacted.payload.pointer_mut(&pointer) {
            if names_any(value, subject.named_by) {
                *value = Value::String(subject.marker());
                changed = true;
            }
        }
    }
    Ok(changed.then_some(redacted))
}

/// Whether any string in `value`, or any key of its objects, is one of `names`.
fn names_any(value: &Value, names: &HashSet<String>) -> bool {
    match value {
        Value::String(text) => names.contains(text),
        Value::Array(items) => items.iter().any(|item| names_any(item, names)),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, item)| names.contains(key) || names_any(item, names)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::data::hash_chain::GENESIS_HASH;

    const PSEUDONYM: &str = "3f9a0000000000000000000000000000";

    fn event(aggregate_type: &str, event_type: &str, actor: &str, payload: Value) -> StoredEvent {
        StoredEvent {
            event_id: uuid::Uuid::now_v7(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: "0190f0a0-0000-7000-8000-000000000001".to_owned(),
            sequence: 1,
            event_type: event_type.to_owned(),
            event_version: "2.0".to_owned(),
            payload,
            metadata: json!({"actor_id": actor, "correlation_id": "c-1"}),
            recorded_at: crate::data::event_log::store_now(),
            hash: "h".to_owned(),
            previous_hash: GENESIS_HASH.to_owned(),
        }
    }

    fn created(actor: &str, assignee: &str) -> StoredEvent {
        event(
            "Task",
            "TaskCreated",
            actor,
            json!({"TaskCreated": {
                "taskId": "0190f0a0-0000-7000-8000-000000000001",
                "title": "Call Maria Keller",
                "description": "about her contract",
                "teamId": "team-a",
                "creatorId": actor,
                "assigneeId": assignee,
                "priority": "High",
                "dueAt": null,
                "labels": ["contracts"],
                "watchers": [actor, "u-carol"],
            }}),
        )
    }

    fn maria(named_by: &HashSet<String>) -> Subject<'_> {
        Subject {
            id: "u-maria",
            pseudonym: PSEUDONYM,
            named_by,
        }
    }

    #[test]
    fn the_authors_ids_and_words_become_markers_and_nothing_else_changes() {
        let names = HashSet::from(["u-maria".to_owned()]);
        let original = created("u-maria", "u-bob");
        let redacted = redact(&original, &maria(&names)).unwrap().unwrap();
        let marker = format!("erased:{PSEUDONYM}");
        let fields = &redacted.payload["TaskCreated"];
        for field in ["title", "description", "creatorId"] {
            assert_eq!(fields[field], json!(marker), "{field}");
        }
        assert_eq!(fields["watchers"], json!([marker, "u-carol"]));
        assert_eq!(fields["assigneeId"], json!("u-bob"));
        assert_eq!(fields["labels"], json!(["contracts"]));
        assert_eq!(redacted.metadata["actor_id"], json!(marker));
        assert_eq!(redacted.metadata["correlation_id"], json!("c-1"));
        assert_eq!(
            (&redacted.hash, &redacted.previous_hash),
            (&original.hash, &original.previous_hash),
            "the chain's fields stay as stored"
        );
    }

    #[test]
    fn someone_only_named_loses_their_id_but_not_the_authors_words() {
        let names = HashSet::from(["u-maria".to_owned()]);
        let redacted = redact(&created("u-bob", "u-maria"), &maria(&names))
            .unwrap()
            .unwrap();
        let fields = &redacted.payload["TaskCreated"];
        assert_eq!(fields["assigneeId"], json!(format!("erased:{PSEUDONYM}")));
        assert_eq!(fields["title"], json!("Call Maria Keller"));
        assert_eq!(redacted.metadata["actor_id"], json!("u-bob"));
    }

    #[test]
    fn an_event_that_holds_nothing_of_the_person_is_left_alone() {
        let names = HashSet::from(["u-maria".to_owned()]);
        assert_eq!(
            redact(&created("u-bob", "u-carol"), &maria(&names)).unwrap(),
            None
        );
        let mut sealed = created("u-maria", "u-maria");
        sealed.metadata["sealed"] = json!("pd1");
        assert_eq!(
            redact(&sealed, &maria(&names)).unwrap(),
            None,
            "a sealed event is erased by destroying the key"
        );
    }

    #[test]
    fn a_report_result_naming_the_person_or_their_task_is_replaced_whole() {
        let task = "0190f0a0-0000-7000-8000-00000000aaaa".to_owned();
        let names = HashSet::from(["u-maria".to_owned(), task.clone()]);
        let by_assignee = event(
            "Report",
            "ReportCompleted",
            "report-worker",
            json!({"ReportCompleted": {"result": [{"assigneeId": "u-maria", "open": 2}]}}),
        );
        let overdue = event(
            "Report",
            "ReportCompleted",
            "report-worker",
            json!({"ReportCompleted": {"result": {"tasks": [{"taskId": task, "title": "x"}]}}}),
        );
        let someone_else = event(
            "Report",
            "ReportCompleted",
            "report-worker",
            json!({"ReportCompleted": {"result": [{"assigneeId": "u-bob", "open": 2}]}}),
        );
        for report in [by_assignee, overdue] {
            let redacted = redact(&report, &maria(&names)).unwrap().unwrap();
            assert_eq!(
                redacted.payload["ReportCompleted"]["result"],
                json!(format!("erased:{PSEUDONYM}"))
            );
        }
        assert_eq!(redact(&someone_else, &maria(&names)).unwrap(), None);
    }
}
