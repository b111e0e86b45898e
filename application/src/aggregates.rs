//! The registry of aggregates: everything Chronicle says about an aggregate type, written
//! once. The store, the envelope, the topics, the projections, the audit trail and the GraphQL
//! `AggregateType` enum all read it, so adding an aggregate means its domain module, its read
//! model and one entry in [`ALL`]; `tests/tests/architecture.rs` fails when a type name is written
//! as a string anywhere else outside the domain, and the API's tests fail when the GraphQL
//! enum misses an entry.

use chronicle_domain::personal::PersonalField;
use chronicle_domain::report::Report;
use chronicle_domain::subject::DataSubject;
use chronicle_domain::task::Task;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;

/// One aggregate type, as every part of Chronicle names it.
#[derive(Debug, Clone, Copy)]
pub struct AggregateKind {
    /// The type name the store, the envelope and the audit trail use: cqrs-es's
    /// `Aggregate::TYPE`. Its events go to `chronicle.{lowercase name}.events`.
    pub type_name: &'static str,
    /// Its value of the GraphQL enum `AggregateType`.
    pub graphql_name: &'static str,
    /// The read model its events are projected into; `None` for a type nothing projects (a
    /// data subject's erasure: the trail and the topic are where it is read).
    pub read_model: Option<ReadModelName>,
    /// The upcasters that bring its events' older schemas to today's.
    pub upcasters: fn() -> Vec<Box<dyn EventUpcaster>>,
    /// The fields of its events that are personal data (docs/privacy.md): what erasure seals
    /// and forgets.
    pub personal_fields: &'static [PersonalField],
}

/// A read model as operators and the database name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadModelName {
    /// The projection that reads the events (`projections`, `chronicle replay NAME`).
    pub projection: &'static str,
    /// Its table (its shadow during a rebuild is `{table}__rebuild`).
    pub table: &'static str,
}

/// The tasks read model.
pub(crate) const TASKS: ReadModelName = ReadModelName {
    projection: "tasks",
    table: "tasks",
};

/// The reports read model.
pub(crate) const REPORTS: ReadModelName = ReadModelName {
    projection: "reports",
    table: "reports",
};

/// Tasks.
pub const TASK: AggregateKind = AggregateKind {
    type_name: Task::TYPE,
    graphql_name: "TASK",
    read_model: Some(TASKS),
    upcasters: chronicle_domain::task::upcast::upcasters,
    personal_fields: chronicle_domain::task::personal::PERSONAL_FIELDS,
};

/// Reports.
pub const REPORT: AggregateKind = AggregateKind {
    type_name: Report::TYPE,
    graphql_name: "REPORT",
    read_model: Some(REPORTS),
    upcasters: Vec::new,
    personal_fields: chronicle_domain::report::personal::PERSONAL_FIELDS,
};

/// Data subjects: one stream per erased person, holding the erasure (`DataSubjectErased`).
pub const DATA_SUBJECT: AggregateKind = AggregateKind {
    type_name: DataSubject::TYPE,
    graphql_name: "DATA_SUBJECT",
    read_model: None,
    upcasters: Vec::new,
    personal_fields: chronicle_domain::subject::personal::PERSONAL_FIELDS,
};

/// Every aggregate type of the store.
pub const ALL: [AggregateKind; 3] = [TASK, REPORT, DATA_SUBJECT];

/// The aggregate named `type_name` (`Task`).
pub(crate) fn by_type(type_name: &str) -> Option<&'static AggregateKind> {
    ALL.iter().find(|kind| kind.type_name == type_name)
}

/// The aggregate whose projection is `projection` (`tasks`).
pub fn by_projection(projection: &str) -> Option<&'static AggregateKind> {
    ALL.iter().find(|kind| {
        kind.read_model
            .is_some_and(|read_model| read_model.projection == projection)
    })
}

/// Every type name, in registry order (for messages listing the valid ones).
pub fn type_names() -> Vec<&'static str> {
    ALL.iter().map(|kind| kind.type_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lookups_find_each_entry() {
        for kind in &ALL {
            let found = by_type(kind.type_name).map(|k| k.graphql_name);
            assert_eq!(found, Some(kind.graphql_name));
            if let Some(read_model) = kind.read_model {
                let found = by_projection(read_model.projection).map(|k| k.type_name);
                assert_eq!(found, Some(kind.type_name));
            }
        }
        let mut names = type_names();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(by_type("Invoice").is_none());
    }
}
