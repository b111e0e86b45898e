//! Sealing the personal fields of an event before it is stored, and opening them as it is read.
//!
//! Which fields are personal is the domain's registry (`aggregates::AggregateKind::
//! personal_fields`, and the metadata's actor). A user id is stored as a reference to its
//! subject, `subject:<pseudonym>`: the same in every event, so a filter by person (the audit
//! trail's `actorId`) still finds their events. Free text is sealed under its author's key (the
//! event's actor), bound to its place (event id and field), so a value moved to another event
//! or field does not open. Destroying one person's key forgets their ids and their words, and
//! nothing of anyone else.
//!
//! Opening answers the value, or, once its key was destroyed, the stable marker
//! `erased:<pseudonym>`: the same for every value of that person, so an auditor still sees that
//! one unknown person did X and Y. A value stored before sealing is answered as it is.
//!
//! The hash chain and the Merkle tree are computed over the sealed event, so destroying a key
//! changes no stored byte and no hash: every proof stays valid.
//!
//! Not sealed yet: a report's result (`Personal::Derived`), which relates to several people and
//! needs a seal every one of them can break.

use std::collections::HashMap;
use std::sync::Arc;

use chronicle_domain::personal::{Personal, PersonalField, METADATA_FIELDS};
use serde_json::Value;

use super::seal::{named_pseudonym, open, pseudonym_of, reference, seal, SealError};
use crate::aggregates;
use crate::error::AppError;
use crate::event_log::StoredEvent;
use crate::ports::subject_keys::{SubjectKey, SubjectKeys};
use crate::reports::worker::WORKER_ACTOR;

/// What stands in for a value whose key was destroyed.
pub const ERASED_PREFIX: &str = "erased:";

/// Actors that are the service itself, not people: their ids and text are not personal data.
pub const SERVICE_ACTORS: &[&str] = &[WORKER_ACTOR];

/// What opening an event found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opening {
    /// Values opened or resolved.
    pub opened: usize,
    /// Values whose key was destroyed, answered as `erased:<pseudonym>`.
    pub erased: usize,
}

/// Seals and opens events' personal fields with the subjects' keys.
pub struct EventSealer {
    keys: Arc<dyn SubjectKeys>,
}

/// Where a personal value sits: in the payload or the metadata, at a JSON pointer.
struct Slot {
    in_metadata: bool,
    pointer: String,
}

impl Slot {
    /// The value's place, which its seal binds.
    fn place(&self, event: &StoredEvent) -> String {
        let part = if self.in_metadata {
            "metadata"
        } else {
            "payload"
        };
        format!("{} {part}{}", event.event_id, self.pointer)
    }

    fn get<'e>(&self, event: &'e StoredEvent) -> Option<&'e str> {
        self.document(event).pointer(&self.pointer)?.as_str()
    }

    fn document<'e>(&self, event: &'e StoredEvent) -> &'e Value {
        if self.in_metadata {
            &event.metadata
        } else {
            &event.payload
        }
    }

    fn set(&self, event: &mut StoredEvent, value: String) {
        let document = if self.in_metadata {
            &mut event.metadata
        } else {
            &mut event.payload
        };
        if let Some(slot) = document.pointer_mut(&self.pointer) {
            *slot = Value::String(value);
        }
    }
}

/// The personal values of `event` and how each relates to its subject, list items one by one.
fn slots(event: &StoredEvent) -> Vec<(Slot, Personal)> {
    let registered = aggregates::by_type(&event.aggregate_type)
        .map(|kind| kind.personal_fields)
        .unwrap_or_default()
        .iter()
        .filter(|field| field.event_type == event.event_type)
        .map(|field| {
            (
                false,
                format!("/{}/{}", event.event_type, field.field),
                field,
            )
        });
    let metadata = METADATA_FIELDS
        .iter()
        .map(|field: &PersonalField| (true, format!("/{}", field.field), field));
    let mut slots = Vec::new();
    for (in_metadata, pointer, field) in registered.chain(metadata) {
        let slot = Slot {
            in_metadata,
            pointer,
        };
        match slot.document(event).pointer(&slot.pointer) {
            Some(Value::Array(items)) if field.kind == Personal::Subjects => {
                for index in 0..items.len() {
                    let pointer = format!("{}/{index}", slot.pointer);
                    slots.push((
                        Slot {
                            in_metadata,
                            pointer,
                        },
                        Personal::Subject,
                    ));
                }
            }
            Some(Value::String(_)) => slots.push((slot, field.kind)),
            _ => {}
        }
    }
    slots
}

fn is_person(actor: &str) -> bool {
    !SERVICE_ACTORS.contains(&actor)
}

impl EventSealer {
    /// Over `keys`.
    pub fn new(keys: Arc<dyn SubjectKeys>) -> Self {
        Self { keys }
    }

    /// Seals every personal value of `event` in place (before its hash is computed).
    pub async fn seal(&self, event: &mut StoredEvent) -> Result<(), AppError> {
        let actor = event.metadata["actor_id"]
            .as_str()
            .filter(|actor| is_person(actor))
            .map(str::to_owned);
        let mut keys: HashMap<String, SubjectKey> = HashMap::new();
        for (slot, kind) in slots(event) {
            let Some(value) = slot.get(event).map(str::to_owned) else {
                continue;
            };
            let stored = match kind {
                Personal::Subject | Personal::Subjects if is_person(&value) => {
                    reference(&self.key(&mut keys, &value).await?.pseudonym)
                }
                Personal::Authored => match &actor {
                    Some(actor) => {
                        let author = self.key(&mut keys, actor).await?;
                        seal(&author.key, &author.pseudonym, &value, &slot.place(event))
                    }
                    None => continue, // the service's own words
                },
                _ => continue,
            };
            slot.set(event, stored);
        }
        Ok(())
    }

    /// Opens every personal value of `event` in place: the value, or `erased:<pseudonym>` when
    /// its key was destroyed.
    pub async fn open(&self, event: &mut StoredEvent) -> Result<Opening, AppError> {
        let mut found: HashMap<String, Option<SubjectKey>> = HashMap::new();
        let mut opening = Opening::default();
        for (slot, _) in slots(event) {
            let Some(stored) = slot.get(event).map(str::to_owned) else {
                continue;
            };
            let Some(pseudonym) = named_pseudonym(&stored).map(str::to_owned) else {
                continue; // stored before sealing: as it is
            };
            if !found.contains_key(&pseudonym) {
                let subject = self.keys.by_pseudonym(&pseudonym).await?;
                found.insert(pseudonym.clone(), subject);
            }
            let value = match found.get(&pseudonym).and_then(Option::as_ref) {
                Some(subject) if pseudonym_of(&stored).is_some() => {
                    open(&subject.key, &stored, &slot.place(event))
                        .map_err(|error| unopenable(event, error))?
                }
                Some(subject) => subject.subject_id.clone(),
                None => {
                    opening.erased += 1;
                    slot.set(event, format!("{ERASED_PREFIX}{pseudonym}"));
                    continue;
                }
            };
            opening.opened += 1;
            slot.set(event, value);
        }
        Ok(opening)
    }

    /// A subject's pseudonym and key, looked up once per event.
    async fn key(
        &self,
        keys: &mut HashMap<String, SubjectKey>,
        subject_id: &str,
    ) -> Result<SubjectKey, AppError> {
        if let Some(found) = keys.get(subject_id) {
            return Ok(found.clone());
        }
        let made = self.keys.key_for(subject_id).await?;
        keys.insert(subject_id.to_owned(), made.clone());
        Ok(made)
    }
}

/// A sealed value that its own key does not open was altered or moved: tampering, which the
/// audit trail's verification reports; reading it is an internal error, never a wrong value.
fn unopenable(event: &StoredEvent, error: SealError) -> AppError {
    AppError::internal_from(
        format!(
            "a sealed value of event {} does not open: altered or moved",
            event.event_id
        ),
        error,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hash_chain::{event_hash, GENESIS_HASH};
    use crate::testing::subject_keys::MemorySubjectKeys;

    fn event(event_type: &str, actor: &str, payload: Value) -> StoredEvent {
        StoredEvent {
            event_id: uuid::Uuid::now_v7(),
            aggregate_type: aggregates::TASK.type_name.to_owned(),
            aggregate_id: uuid::Uuid::now_v7().to_string(),
            sequence: 1,
            event_type: event_type.to_owned(),
            event_version: "2.0".to_owned(),
            payload,
            metadata: json!({"actor_id": actor, "correlation_id": "c-1", "causation_id": "r-1"}),
            recorded_at: crate::event_log::store_now(),
            hash: String::new(),
            previous_hash: GENESIS_HASH.to_owned(),
        }
    }

    fn created_by_maria() -> StoredEvent {
        event(
            "TaskCreated",
            "u-maria",
            json!({"TaskCreated": {
                "taskId": "0190f0a0-0000-7000-8000-000000000001",
                "title": "Call Maria Keller about her contract",
                "description": "She asked on Monday",
                "teamId": "team-a",
                "creatorId": "u-maria",
                "assigneeId": "u-bob",
                "priority": "High",
                "dueAt": null,
                "labels": ["contracts"],
                "watchers": ["u-maria", "u-bob"],
            }}),
        )
    }

    #[tokio::test]
    async fn a_sealed_event_shows_no_personal_value_and_opens_to_the_original() {
        let keys = Arc::new(MemorySubjectKeys::default());
        let sealer = EventSealer::new(keys.clone());
        let original = created_by_maria();
        let mut stored = original.clone();
        sealer.seal(&mut stored).await.unwrap();

        let text = format!("{} {}", stored.payload, stored.metadata);
        for planted in ["Maria Keller", "Monday", "u-maria", "u-bob"] {
            assert!(!text.contains(planted), "{planted} in {text}");
        }
        for kept in ["team-a", "contracts", "High", "c-1"] {
            assert!(text.contains(kept), "not personal, kept in clear: {kept}");
        }
        assert_eq!(keys.len(), 2, "one key per person: Maria and Bob");
        // A person's id is one reference in every place and event: filters by person work.
        let created = &stored.payload["TaskCreated"];
        assert!(created["creatorId"]
            .as_str()
            .unwrap()
            .starts_with("subject:"));
        assert_eq!(created["creatorId"], stored.metadata["actor_id"]);
        assert_eq!(created["watchers"][0], stored.metadata["actor_id"]);
        let mut again = created_by_maria();
        sealer.seal(&mut again).await.unwrap();
        assert_eq!(again.metadata["actor_id"], stored.metadata["actor_id"]);
        assert_ne!(
            again.payload["TaskCreated"]["title"], created["title"],
            "text is sealed afresh each time"
        );

        let mut read = stored.clone();
        let opening = sealer.open(&mut read).await.unwrap();
        assert_eq!(read.payload, original.payload);
        assert_eq!(read.metadata, original.metadata);
        assert_eq!(
            opening,
            Opening {
                opened: 7,
                erased: 0
            }
        );
    }

    #[tokio::test]
    async fn after_a_key_is_destroyed_that_persons_values_read_as_one_marker_and_no_hash_changes() {
        let keys = Arc::new(MemorySubjectKeys::default());
        let sealer = EventSealer::new(keys.clone());
        let mut stored = created_by_maria();
        sealer.seal(&mut stored).await.unwrap();
        stored.hash = event_hash(&stored);
        let before = stored.clone();

        let pseudonym = keys.destroy("u-maria").await.unwrap().unwrap();

        assert_eq!(stored, before, "destroying a key changes no stored byte");
        assert_eq!(event_hash(&stored), stored.hash, "the chain still verifies");
        let mut read = stored.clone();
        let opening = sealer.open(&mut read).await.unwrap();
        let marker = format!("erased:{pseudonym}");
        let created = &read.payload["TaskCreated"];
        for field in ["title", "description", "creatorId"] {
            assert_eq!(created[field], marker.as_str(), "{field}");
        }
        assert_eq!(created["watchers"], json!([marker, "u-bob"]));
        assert_eq!(created["assigneeId"], "u-bob", "Bob's key is untouched");
        assert_eq!(read.metadata["actor_id"], marker.as_str());
        assert_eq!(
            opening,
            Opening {
                opened: 2,
                erased: 5
            }
        );
    }

    #[tokio::test]
    async fn the_service_and_events_stored_before_sealing_are_read_as_they_are() {
        let keys = Arc::new(MemorySubjectKeys::default());
        let sealer = EventSealer::new(keys.clone());
        let mut by_worker = event(
            "TaskFailed",
            WORKER_ACTOR,
            json!({"TaskFailed": {"error": "the worker's own words"}}),
        );
        let untouched = by_worker.clone();
        sealer.seal(&mut by_worker).await.unwrap();
        assert_eq!(by_worker, untouched, "the service is not a person");
        assert!(keys.is_empty());

        let mut legacy = created_by_maria();
        let plain = legacy.clone();
        let opening = sealer.open(&mut legacy).await.unwrap();
        assert_eq!(legacy, plain);
        assert_eq!(opening, Opening::default());
    }

    #[tokio::test]
    async fn a_sealed_value_moved_to_another_event_does_not_open() {
        let keys = Arc::new(MemorySubjectKeys::default());
        let sealer = EventSealer::new(keys.clone());
        let mut first = created_by_maria();
        let mut second = created_by_maria();
        sealer.seal(&mut first).await.unwrap();
        sealer.seal(&mut second).await.unwrap();
        second.payload["TaskCreated"]["title"] = first.payload["TaskCreated"]["title"].clone();
        let error = sealer.open(&mut second).await.unwrap_err();
        assert!(matches!(error, AppError::Internal { .. }), "{error:?}");
        assert!(
            error.to_string().contains("does not open")
                || format!("{error:?}").contains("does not open")
        );
    }
}
