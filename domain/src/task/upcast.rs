//! Upcasters: older task event schemas brought to today's before they are deserialized.
//!
//! The store never rewrites an event (its hash chain would break, and it is the record of what
//! was said then); every reader — aggregate loading, time travel, projections, replay — runs
//! stored payloads through [`upcasters`] instead.

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster};
use serde_json::Value;

use super::events::TASK_CREATED_VERSION;

/// Every task upcaster, oldest first.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(SemanticVersionEventUpcaster::new(
        "TaskCreated",
        TASK_CREATED_VERSION,
        Box::new(task_created_v2),
    ))]
}

/// `TaskCreated` 1.0 → 2.0: `watchers` appeared; a version 1.0 task was watched by its creator.
/// Takes and returns cqrs-es's serialized form (`{"TaskCreated": {...}}`).
pub fn task_created_v2(mut payload: Value) -> Value {
    if let Some(created) = payload
        .get_mut("TaskCreated")
        .and_then(Value::as_object_mut)
    {
        if !created.contains_key("watchers") {
            let creator = created.get("creatorId").cloned().unwrap_or(Value::Null);
            let watchers = if creator.is_string() {
                vec![creator]
            } else {
                Vec::new()
            };
            created.insert("watchers".to_owned(), Value::Array(watchers));
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskEvent;
    use cqrs_es::persist::SerializedEvent;
    use serde_json::json;

    fn stored(version: &str, payload: Value) -> SerializedEvent {
        SerializedEvent {
            aggregate_id: "t".into(),
            sequence: 1,
            aggregate_type: "Task".into(),
            event_type: "TaskCreated".into(),
            event_version: version.into(),
            payload,
            metadata: json!({}),
        }
    }

    fn v1_payload() -> Value {
        json!({"TaskCreated": {"taskId": "0190a000-0000-7000-8000-000000000001", "title": "t",
               "description": "", "teamId": "team-a", "creatorId": "u-1", "assigneeId": null,
               "priority": "LOW", "dueAt": null, "labels": []}})
    }

    #[test]
    fn a_version_1_task_created_gets_its_creator_as_watcher() {
        let upcasters = upcasters();
        let event = stored("1.0", v1_payload());
        let upcaster = upcasters
            .iter()
            .find(|u| u.can_upcast(&event.event_type, &event.event_version))
            .expect("1.0 is upcast");
        let upcast = upcaster.upcast(event);
        assert!(
            upcast.event_version.starts_with("2.0"),
            "{}",
            upcast.event_version
        );
        let TaskEvent::TaskCreated { watchers, .. } =
            serde_json::from_value(upcast.payload).unwrap()
        else {
            panic!("not a TaskCreated")
        };
        assert_eq!(
            watchers.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
            ["u-1"]
        );
    }

    #[test]
    fn current_versions_and_other_events_are_left_alone() {
        let upcasters = upcasters();
        assert!(!upcasters.iter().any(|u| u.can_upcast("TaskCreated", "2.0")));
        assert!(!upcasters.iter().any(|u| u.can_upcast("TaskStarted", "1.0")));
        // Version 1.0 without the field cannot be read as today's event: the upcaster is needed.
        assert!(serde_json::from_value::<TaskEvent>(v1_payload()).is_err());
    }
}
