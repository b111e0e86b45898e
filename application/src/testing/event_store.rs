//! [`MemoryEventStore`]: the event store as maps behind one lock.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::data::event_log::StoredEvent;
use crate::data::message::OutboxMessage;
use crate::ports::event_store::{
    AppendBatch, EventStore, IdempotencyRecord, LoadedStream, Snapshot,
};
use crate::ports::store_error::StoreError;

/// Everything the store holds; tests read it (and a race step may write it) directly.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryLog {
    /// Each aggregate's events in sequence order, by (aggregate type, id).
    pub streams: BTreeMap<(String, String), Vec<StoredEvent>>,
    /// The newest snapshot of each aggregate.
    pub snapshots: BTreeMap<(String, String), Snapshot>,
    /// Outbox rows in commit order.
    pub outbox: Vec<OutboxMessage>,
    /// Idempotency records by (actor, key).
    pub idempotency: BTreeMap<(String, String), IdempotencyRecord>,
    /// The team recorded beside each aggregate's events.
    pub teams: BTreeMap<(String, String), Option<String>>,
}

impl MemoryLog {
    /// One aggregate's events (empty when it has none).
    pub fn stream(&self, aggregate_type: &str, aggregate_id: &str) -> &[StoredEvent] {
        self.streams
            .get(&(aggregate_type.to_owned(), aggregate_id.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// Appends a batch atomically with the constraints of the Postgres store: every sequence
    /// must be free and follow the stream, and an idempotency key may be recorded once. The
    /// keys a batch was sealed under are not checked (this store knows no keys); the Postgres
    /// store's guard is tested end to end.
    pub fn append(&mut self, batch: AppendBatch) -> Result<(), StoreError> {
        let key = (batch.aggregate_type.clone(), batch.aggregate_id.clone());
        let stored = self.streams.get(&key).map_or(0, Vec::len) as u64;
        let in_order = batch
            .events
            .iter()
            .enumerate()
            .all(|(offset, event)| event.sequence == stored + offset as u64 + 1);
        if !in_order {
            return Err(StoreError::Conflict);
        }
        if let Some(record) = &batch.idempotency {
            if self
                .idempotency
                .contains_key(&(record.actor_id.clone(), record.key.clone()))
            {
                return Err(StoreError::IdempotencyKeyTaken);
            }
        }
        if let Some(record) = batch.idempotency {
            self.idempotency
                .insert((record.actor_id.clone(), record.key.clone()), record);
        }
        if let Some(snapshot) = batch.snapshot {
            self.snapshots.insert(key.clone(), snapshot);
        }
        self.teams.insert(key.clone(), batch.team_id);
        self.outbox.extend(batch.outbox);
        self.streams.entry(key).or_default().extend(batch.events);
        Ok(())
    }
}

/// A step run inside the next append, before its checks: how a test lets a rival writer win a
/// race between a command's load and its append.
type RaceStep = Box<dyn FnOnce(&mut MemoryLog, &AppendBatch) + Send>;

/// The event store in memory.
#[derive(Default)]
pub(crate) struct MemoryEventStore {
    log: Mutex<MemoryLog>,
    races: Mutex<Vec<RaceStep>>,
}

impl MemoryEventStore {
    /// What the store holds now.
    pub fn log(&self) -> MutexGuard<'_, MemoryLog> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `step` inside the next append, before its checks (once). `step` sees the batch
    /// about to be written and may append another writer's events first.
    pub(crate) fn before_next_append(
        &self,
        step: impl FnOnce(&mut MemoryLog, &AppendBatch) + Send + 'static,
    ) {
        self.races
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Box::new(step));
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<LoadedStream, StoreError> {
        let log = self.log();
        let key = (aggregate_type.to_owned(), aggregate_id.to_owned());
        let snapshot = log.snapshots.get(&key).cloned();
        let from = snapshot.as_ref().map_or(0, |s| s.last_sequence);
        let events = log
            .stream(aggregate_type, aggregate_id)
            .iter()
            .filter(|event| event.sequence >= from)
            .cloned()
            .collect();
        Ok(LoadedStream { snapshot, events })
    }

    async fn append(&self, batch: AppendBatch) -> Result<(), StoreError> {
        let race = {
            let mut races = self
                .races
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (!races.is_empty()).then(|| races.remove(0))
        };
        let mut log = self.log();
        if let Some(step) = race {
            step(&mut log, &batch);
        }
        log.append(batch)
    }

    async fn find_idempotent(
        &self,
        actor_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self
            .log()
            .idempotency
            .get(&(actor_id.to_owned(), key.to_owned()))
            .cloned())
    }
}
