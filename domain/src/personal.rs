//! Which fields of which events are personal data: a domain fact, since only the domain knows
//! what its events mean. Erasure (docs/privacy.md) seals and forgets exactly these; every other
//! field of an event is listed as not personal, with the reason, so that a field added to an
//! event must be judged one way or the other before its tests pass.

/// How a personal field relates to its data subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personal {
    /// A user id: the subject is that user.
    Subject,
    /// A list of user ids: each names its own subject.
    Subjects,
    /// Free text the event's actor wrote: the subject is the actor.
    Authored,
    /// A value computed from several people's data (a report's result): it relates to all of
    /// them.
    Derived,
}

/// A personal field of an event's payload (as serialized: camelCase), or of every event's
/// metadata (`event_type` [`METADATA`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalField {
    /// The event type (`TaskCreated`).
    pub event_type: &'static str,
    /// The field (`title`).
    pub field: &'static str,
    /// Its relation to the subject.
    pub kind: Personal,
}

/// A field judged not personal, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPersonal {
    /// The event type.
    pub event_type: &'static str,
    /// The field.
    pub field: &'static str,
    /// Why it names nobody.
    pub why: &'static str,
}

/// The `event_type` of fields every event's metadata carries.
pub const METADATA: &str = "metadata";

/// The metadata's personal field: the actor, a token's subject.
pub const METADATA_FIELDS: &[PersonalField] = &[PersonalField {
    event_type: METADATA,
    field: "actor_id",
    kind: Personal::Subject,
}];

/// The metadata's other fields, and why they name nobody. Clients choose some of them (the
/// correlation id, the idempotency key): the API documents them as opaque ids, never data.
pub const METADATA_NOT_PERSONAL: &[NotPersonal] = &[
    not_personal(
        METADATA,
        "correlation_id",
        "an opaque id of one user action",
    ),
    not_personal(METADATA, "causation_id", "a request or event id"),
    not_personal(METADATA, "traceparent", "W3C trace context: ids and flags"),
    not_personal(METADATA, "idempotency_key", "an opaque key of one request"),
    not_personal(METADATA, "sealed", "the format of the event's seals"),
];

/// Shorthand for the tables.
pub(crate) const fn personal(
    event_type: &'static str,
    field: &'static str,
    kind: Personal,
) -> PersonalField {
    PersonalField {
        event_type,
        field,
        kind,
    }
}

/// Shorthand for the tables.
pub(crate) const fn not_personal(
    event_type: &'static str,
    field: &'static str,
    why: &'static str,
) -> NotPersonal {
    NotPersonal {
        event_type,
        field,
        why,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// Every field of every sample event is either personal or judged not personal, and every
    /// listed field exists: the registry and the events cannot drift apart.
    pub(crate) fn assert_every_field_is_judged(
        samples: &[Value],
        personal: &[PersonalField],
        not_personal: &[NotPersonal],
    ) {
        let mut seen = BTreeSet::new();
        for sample in samples {
            let (event_type, fields) = sample
                .as_object()
                .and_then(|outer| outer.iter().next())
                .expect("an event serializes as {\"Type\": {...}}");
            for field in fields.as_object().expect("an object of fields").keys() {
                let judged = personal
                    .iter()
                    .any(|p| p.event_type == event_type && p.field == field)
                    || not_personal
                        .iter()
                        .any(|n| n.event_type == event_type && n.field == field);
                assert!(
                    judged,
                    "{event_type}.{field} is neither personal nor judged not personal: add it to \
                     the aggregate's `personal` tables (and docs/privacy.md)"
                );
                seen.insert((event_type.clone(), field.clone()));
            }
        }
        for (event_type, field) in personal
            .iter()
            .map(|p| (p.event_type, p.field))
            .chain(not_personal.iter().map(|n| (n.event_type, n.field)))
        {
            assert!(
                seen.contains(&(event_type.to_owned(), field.to_owned())),
                "{event_type}.{field} is listed but no sample event has it"
            );
        }
    }
}
