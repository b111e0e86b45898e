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
//! A sealed event says so in its metadata (`"sealed": "pd1"`, covered by its hash), and only
//! such an event is opened: what a value looks like never decides, so a title typed as
//! `subject:...` in an event stored before sealing reads as it was typed. In a sealed event
//! every personal value must have its sealed form; anything else is reported as an integrity
//! error, never shown. Opening answers the values, or, once a key was destroyed, the marker
//! `erased:<pseudonym>` in the value's place, and, out of band, which values were erased (a
//! user can type a marker as text; [`Opening::erased`] cannot be typed).
//!
//! The hash chain and the Merkle tree are computed over the sealed event, so destroying a key
//! changes no stored byte and no hash: every proof stays valid.
//!
//! Not sealed: a report's result (`Personal::Derived`), which relates to several people; an
//! erasure of any of them replaces it by a marker ([`super::redact`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chronicle_domain::ids::{ERASED_PREFIX, RESERVED_PREFIXES};
use chronicle_domain::personal::{Personal, PersonalField, METADATA_FIELDS};
use serde_json::Value;

use super::seal::{is_pseudonym, open, pseudonym_of, reference, referenced_pseudonym, seal};
use crate::aggregates;
use crate::data::event_log::StoredEvent;
use crate::error::AppError;
use crate::ports::subject_keys::{SubjectKey, SubjectKeys};

/// The metadata field that marks a sealed event, and its value (the format).
pub(crate) const SEALED_FLAG: (&str, &str) = ("sealed", "pd1");

/// Actors that are the service itself, not people: their ids and text are not personal data.
/// No user may have one of these ids (`UserId::parse` refuses them).
pub(crate) const SERVICE_ACTORS: &[&str] = chronicle_domain::ids::SERVICE_IDS;

/// A value whose subject's key was destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedValue {
    /// Where it is: `payload/TaskCreated/title`, `metadata/actor_id`.
    pub field: String,
    /// The pseudonym of the person it belonged to.
    pub pseudonym: String,
}

/// What sealing an event did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sealed {
    /// Whose each personal value was, by its place in the Kafka envelope.
    pub whose: BTreeMap<String, String>,
    /// The pseudonyms of the keys it was sealed under (a reference to someone erased before
    /// uses no key): each must still exist when the event is stored.
    pub keys_used: Vec<String>,
}

/// What opening an event found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opening {
    /// Values opened or resolved.
    pub opened: usize,
    /// Values whose key was destroyed, each answered as `erased:<pseudonym>`.
    pub erased: Vec<ErasedValue>,
}

/// Seals and opens events' personal fields with the subjects' keys.
pub(crate) struct EventSealer {
    keys: Arc<dyn SubjectKeys>,
}

/// Where a personal value sits: in the payload or the metadata, at a JSON pointer.
pub(super) struct Slot {
    in_metadata: bool,
    pointer: String,
}

impl Slot {
    fn name(&self) -> String {
        let part = if self.in_metadata {
            "metadata"
        } else {
            "payload"
        };
        format!("{part}{}", self.pointer)
    }

    /// Where the value sits in the Kafka envelope: `actorId`, `payload.title`,
    /// `payload.watchers.0` (the payload there has no event-type wrapper).
    fn envelope_path(&self) -> String {
        if self.in_metadata {
            return match self.pointer.as_str() {
                "/actor_id" => "actorId".to_owned(),
                other => format!("metadata{}", other.replace('/', ".")),
            };
        }
        let inside_wrapper: Vec<&str> = self.pointer.split('/').skip(2).collect();
        format!("payload.{}", inside_wrapper.join("."))
    }

    /// The value's place, which its seal binds.
    fn place(&self, event: &StoredEvent) -> String {
        format!("{} {}", event.event_id, self.name())
    }

    pub(super) fn get<'e>(&self, event: &'e StoredEvent) -> Option<&'e str> {
        find(self.document(event), &self.pointer)?.as_str()
    }

    fn document<'e>(&self, event: &'e StoredEvent) -> &'e Value {
        if self.in_metadata {
            &event.metadata
        } else {
            &event.payload
        }
    }

    pub(super) fn set(&self, event: &mut StoredEvent, value: String) {
        let document = if self.in_metadata {
            &mut event.metadata
        } else {
            &mut event.payload
        };
        if let Some(slot) = find_mut(document, &self.pointer) {
            *slot = Value::String(value);
        }
    }
}

/// The value at the JSON pointer `pointer` in `document`, as `Value::pointer` finds it.
///
/// A slot's pointer is built from field names and list indexes, which hold no `~`: walking its
/// tokens as they are skips the two strings `Value::pointer` allocates for every token to
/// unescape it (sealing walks about sixteen pointers per event). A pointer that does hold a `~`,
/// and the empty one (the whole document), go through `Value::pointer`.
fn find<'v>(document: &'v Value, pointer: &str) -> Option<&'v Value> {
    if pointer.is_empty() || pointer.contains('~') {
        return document.pointer(pointer);
    }
    pointer
        .strip_prefix('/')?
        .split('/')
        .try_fold(document, |target, token| match target {
            Value::Object(fields) => fields.get(token),
            Value::Array(items) => items.get(list_index(token)?),
            _ => None,
        })
}

/// [`find`], for changing the value.
fn find_mut<'v>(document: &'v mut Value, pointer: &str) -> Option<&'v mut Value> {
    if pointer.is_empty() || pointer.contains('~') {
        return document.pointer_mut(pointer);
    }
    pointer
        .strip_prefix('/')?
        .split('/')
        .try_fold(document, |target, token| match target {
            Value::Object(fields) => fields.get_mut(token),
            Value::Array(items) => items.get_mut(list_index(token)?),
            _ => None,
        })
}

/// A list index as a JSON pointer writes it (RFC 6901): digits, no sign, no leading zero.
fn list_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
        return None;
    }
    token.parse().ok()
}

/// An event whose shape the registry does not expect: sealing it could leave data in clear,
/// opening it could show the wrong value.
pub(super) fn unexpected(event: &StoredEvent, what: impl std::fmt::Display) -> AppError {
    AppError::internal(format!(
        "event {} ({} {}): {what}",
        event.event_id, event.aggregate_type, event.event_type
    ))
}

/// The personal values of `event` and how each relates to its subject, list items one by one.
pub(super) fn slots(event: &StoredEvent) -> Result<Vec<(Slot, Personal)>, AppError> {
    let registered = aggregates::by_type(&event.aggregate_type)
        .ok_or_else(|| unexpected(event, "an aggregate type the registry does not know"))?
        .personal_fields
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
        match (field.kind, find(slot.document(event), &slot.pointer)) {
            (_, None | Some(Value::Null)) | (Personal::Derived, _) => {}
            (Personal::Subjects, Some(Value::Array(items))) => {
                for (index, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        return Err(unexpected(event, format!("{} holds a non-id", slot.name())));
                    }
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
            (Personal::Subject | Personal::Authored, Some(Value::String(_))) => {
                slots.push((slot, field.kind));
            }
            (_, Some(_)) => {
                return Err(unexpected(
                    event,
                    format!("{} is not of the shape its kind has", slot.name()),
                ))
            }
        }
    }
    Ok(slots)
}

fn is_service(actor: &str) -> bool {
    SERVICE_ACTORS.contains(&actor)
}

/// The pseudonym of an erased person's marker (`erased:<pseudonym>`), if `value` is one.
fn erased_pseudonym(value: &str) -> Option<&str> {
    value
        .strip_prefix(ERASED_PREFIX)
        .filter(|pseudonym| is_pseudonym(pseudonym))
}

pub(super) fn is_sealed(event: &StoredEvent) -> bool {
    event.metadata[SEALED_FLAG.0] == SEALED_FLAG.1
}

impl EventSealer {
    /// Over `keys`.
    pub fn new(keys: Arc<dyn SubjectKeys>) -> Self {
        Self { keys }
    }

    /// Seals every personal value of `event` in place (before its hash is computed) and marks
    /// it sealed; answers whose each value was, by its place in the Kafka envelope
    /// ([`crate::data::message::EventMessage::personal_data`]), and the keys it used. An event of
    /// an unknown shape, or sealed already, is refused rather than stored with anything in
    /// clear.
    pub async fn seal(&self, event: &mut StoredEvent) -> Result<Sealed, AppError> {
        if is_sealed(event) {
            return Err(unexpected(event, "sealed twice"));
        }
        let actor = event.metadata["actor_id"]
            .as_str()
            .ok_or_else(|| unexpected(event, "no actor"))?
            .to_owned();
        let mut keys: HashMap<String, SubjectKey> = HashMap::new();
        let mut whose = BTreeMap::new();
        for (slot, kind) in slots(event)? {
            let Some(value) = slot.get(event).map(str::to_owned) else {
                continue;
            };
            let (stored, pseudonym) = match kind {
                Personal::Subject if is_service(&value) => continue,
                Personal::Subject => match erased_pseudonym(&value) {
                    // Someone erased since, carried over from the state (the previous assignee
                    // of a reassigned task): stored as the reference it replaced, which stays
                    // erased.
                    Some(pseudonym) => (reference(pseudonym), pseudonym.to_owned()),
                    None if RESERVED_PREFIXES.iter().any(|p| value.starts_with(p)) => {
                        return Err(unexpected(
                            event,
                            format!("{} holds a stored form, not an id", slot.name()),
                        ));
                    }
                    None => {
                        let pseudonym = self.key(&mut keys, &value).await?.pseudonym;
                        (reference(&pseudonym), pseudonym)
                    }
                },
                Personal::Authored if is_service(&actor) => continue, // the service's words
                Personal::Authored => {
                    let author = self.key(&mut keys, &actor).await?;
                    let sealed = seal(&author.key, &author.pseudonym, &value, &slot.place(event));
                    (sealed, author.pseudonym)
                }
                Personal::Subjects | Personal::Derived => continue,
            };
            whose.insert(slot.envelope_path(), pseudonym);
            slot.set(event, stored);
        }
        if let Some(metadata) = event.metadata.as_object_mut() {
            metadata.insert(SEALED_FLAG.0.to_owned(), Value::from(SEALED_FLAG.1));
        }
        Ok(Sealed {
            whose,
            keys_used: keys.into_values().map(|key| key.pseudonym).collect(),
        })
    }

    /// Opens every personal value of a sealed `event` in place: the value, or
    /// `erased:<pseudonym>` when its key was destroyed (and listed in [`Opening::erased`]). An
    /// event stored before sealing is left exactly as it is.
    pub async fn open(&self, event: &mut StoredEvent) -> Result<Opening, AppError> {
        let mut opening = Opening::default();
        if !is_sealed(event) {
            return Ok(opening);
        }
        let by_service = event.metadata["actor_id"].as_str().is_some_and(is_service);
        let mut found: HashMap<String, Option<SubjectKey>> = HashMap::new();
        for (slot, kind) in slots(event)? {
            let Some(stored) = slot.get(event).map(str::to_owned) else {
                continue;
            };
            let pseudonym = match kind {
                Personal::Subject if is_service(&stored) => continue,
                Personal::Subject => referenced_pseudonym(&stored),
                Personal::Authored if by_service => continue,
                Personal::Authored => pseudonym_of(&stored).filter(|p| is_pseudonym(p)),
                Personal::Subjects | Personal::Derived => continue,
            }
            .map(str::to_owned)
            .ok_or_else(|| {
                unexpected(
                    event,
                    format!("{} is in clear in a sealed event", slot.name()),
                )
            })?;
            if !found.contains_key(&pseudonym) {
                let subject = self.keys.by_pseudonym(&pseudonym).await?;
                found.insert(pseudonym.clone(), subject);
            }
            let value = match (found.get(&pseudonym).and_then(Option::as_ref), kind) {
                (Some(subject), Personal::Authored) => {
                    open(&subject.key, &stored, &slot.place(event)).map_err(|_| {
                        unexpected(
                            event,
                            format!("{} does not open: altered or moved", slot.name()),
                        )
                    })?
                }
                (Some(subject), _) => subject.subject_id.clone(),
                (None, _) => {
                    opening.erased.push(ErasedValue {
                        field: slot.name(),
                        pseudonym: pseudonym.clone(),
                    });
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::data::hash_chain::{event_hash, GENESIS_HASH};
    use crate::reports::worker::WORKER_ACTOR;
    use crate::testing::subject_keys::MemorySubjectKeys;

    #[test]
    fn a_slot_finds_what_a_json_pointer_finds() {
        let document = json!({
            "TaskCreated": {"title": "t", "watchers": ["a", "b"], "due_at": null},
            "a/b": {"m~n": 1},
            "": {"0": "zero", "01": "one"},
        });
        for pointer in [
            "/TaskCreated/title",
            "/TaskCreated/watchers/1",
            "/TaskCreated/watchers/2",
            "/TaskCreated/watchers/01",
            "/TaskCreated/watchers/+1",
            "/TaskCreated/watchers/-",
            "/TaskCreated/watchers/-0",
            "/TaskCreated/watchers/99999999999999999999999",
            "/TaskCreated/watchers/\u{661}",
            "/TaskCreated/",
            "/",
            "/TaskCreated/due_at",
            "/TaskCreated/title/more",
            "/TaskCreated/missing",
            "/a~1b/m~0n",
            "//0",
            "//01",
            "no-slash",
            "",
        ] {
            assert_eq!(
                find(&document, pointer),
                document.pointer(pointer),
                "{pointer}"
            );
            let mut changed = document.clone();
            if let Some(value) = find_mut(&mut changed, pointer) {
                *value = json!("sealed");
            }
            let mut expected = document.clone();
            if let Some(value) = expected.pointer_mut(pointer) {
                *value = json!("sealed");
            }
            assert_eq!(changed, expected, "{pointer}");
        }
    }

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
            recorded_at: crate::data::event_log::store_now(),
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
        assert_eq!(read.metadata["actor_id"], original.metadata["actor_id"]);
        assert_eq!(
            read.metadata["sealed"], "pd1",
            "the event says it is sealed"
        );
        assert_eq!(opening.opened, 7);
        assert!(opening.erased.is_empty());
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
        assert_eq!(opening.opened, 2);
        let erased: Vec<&str> = opening.erased.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            erased,
            [
                "payload/TaskCreated/creatorId",
                "payload/TaskCreated/watchers/0",
                "payload/TaskCreated/title",
                "payload/TaskCreated/description",
                "metadata/actor_id"
            ],
            "told apart from text that merely looks like a marker"
        );
        assert!(opening.erased.iter().all(|e| e.pseudonym == pseudonym));
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
        assert_eq!(
            by_worker.payload, untouched.payload,
            "the service is not a person"
        );
        assert_eq!(by_worker.metadata["actor_id"], WORKER_ACTOR);
        assert!(keys.is_empty());
        let mut read = by_worker.clone();
        sealer.open(&mut read).await.unwrap();
        assert_eq!(read, by_worker);

        // Stored before sealing: read exactly as stored, whatever the text looks like.
        let mut legacy = created_by_maria();
        legacy.payload["TaskCreated"]["title"] = json!("subject: budget review");
        legacy.payload["TaskCreated"]["description"] =
            json!("erased:0123456789abcdef0123456789abcdef");
        let plain = legacy.clone();
        let opening = sealer.open(&mut legacy).await.unwrap();
        assert_eq!(legacy, plain);
        assert_eq!(opening, Opening::default());
    }

    #[tokio::test]
    async fn what_would_leave_data_in_clear_or_show_a_wrong_value_is_refused() {
        let sealer = EventSealer::new(Arc::new(MemorySubjectKeys::default()));
        let mut sealed = created_by_maria();
        sealer.seal(&mut sealed).await.unwrap();
        let mut twice = sealed.clone();
        assert!(sealer.seal(&mut twice).await.is_err(), "sealed twice");

        let mut in_clear = sealed.clone();
        in_clear.payload["TaskCreated"]["title"] = json!("typed in clear");
        assert!(
            sealer.open(&mut in_clear).await.is_err(),
            "clear text in a sealed event"
        );
        let mut plain_id = sealed.clone();
        plain_id.payload["TaskCreated"]["assigneeId"] = json!("u-bob");
        assert!(sealer.open(&mut plain_id).await.is_err(), "an id in clear");

        let mut unknown = created_by_maria();
        unknown.aggregate_type = "Invoice".to_owned();
        assert!(
            sealer.seal(&mut unknown).await.is_err(),
            "an unknown aggregate type"
        );
        let mut odd_shape = created_by_maria();
        odd_shape.payload["TaskCreated"]["watchers"] = json!([7]);
        assert!(
            sealer.seal(&mut odd_shape).await.is_err(),
            "a list of non-ids"
        );
        let mut no_actor = created_by_maria();
        no_actor.metadata = json!({});
        assert!(sealer.seal(&mut no_actor).await.is_err(), "no actor");
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
