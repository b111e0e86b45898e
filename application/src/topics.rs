//! Kafka topic names, in one place so producers, consumers and topic creation agree.

use crate::aggregates;

/// Topic names under an optional prefix (one prefix per environment or test).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (may be empty).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The events topic of an aggregate type (`Task` → `{prefix}chronicle.task.events`).
    pub fn events_of(&self, aggregate_type: &str) -> String {
        format!(
            "{}chronicle.{}.events",
            self.prefix,
            aggregate_type.to_ascii_lowercase()
        )
    }

    /// Task events.
    pub fn task_events(&self) -> String {
        self.events_of(aggregates::TASK.type_name)
    }

    /// Report events.
    pub fn report_events(&self) -> String {
        self.events_of(aggregates::REPORT.type_name)
    }

    /// Every event topic the service writes: one per aggregate of the registry.
    pub fn event_topics(&self) -> Vec<String> {
        aggregates::ALL
            .iter()
            .map(|kind| self.events_of(kind.type_name))
            .collect()
    }

    /// Where signed audit checkpoints are published: `{prefix}chronicle.audit.checkpoints`.
    pub fn audit_checkpoints(&self) -> String {
        format!("{}chronicle.audit.checkpoints", self.prefix)
    }

    /// A consumer group id under the same prefix, so environments (and tests) sharing a broker
    /// never join each other's groups.
    pub fn group(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The dead-letter topic of a consumer group for a topic: `{topic}.{group}.dlq`.
    pub fn dead_letter(topic: &str, group: &str) -> String {
        format!("{topic}.{group}.dlq")
    }

    /// Where a consumer group's dead letters of a topic are sent back to it, and only to it:
    /// `{topic}.{group}.redrive`, which that group alone subscribes to beside `topic`.
    pub fn redrive(topic: &str, group: &str) -> String {
        format!("{topic}.{group}.redrive")
    }
}
